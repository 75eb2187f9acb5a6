package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ordo-dev/ordo/internal/config"
	"github.com/ordo-dev/ordo/internal/ops"
	"github.com/ordo-dev/ordo/processors"
	"github.com/ordo-dev/ordo/schemas"
)

// dlqFlags are shared by every `ordo dlq` subcommand.
type dlqFlags struct {
	config string
	topic  string
	where  []string
	since  string
	until  string
	output string
}

func (f *dlqFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVarP(&f.config, "config", "c", config.DefaultPath, "YAML config file (brokers, registry, dead_letter_topic); ORDO_* environment variables override its keys")
	fl.StringVar(&f.topic, "dlq-topic", "", "dead-letter topic (default: dead_letter_topic of the config)")
	fl.StringSliceVarP(&f.where, "where", "w", nil, "only dead letters with key=value; keys: "+strings.Join(ops.WhereKeys, ", ")+
		" (reason matches a substring of the error; repeat a key for either value, different keys must all match)")
	fl.StringVar(&f.since, "since", "", "only dead letters written at or after this time: RFC 3339 or a negative duration (-24h)")
	fl.StringVar(&f.until, "until", "", "only dead letters written at or before this time")
	fl.StringVarP(&f.output, "output", "o", "text", "text or json")
}

// dlqEnv is what the subcommands share once the flags are read.
type dlqEnv struct {
	cfg    *config.Config
	conn   []kgo.Opt
	topic  string
	filter ops.Filter
}

func (f *dlqFlags) load() (*dlqEnv, error) {
	if f.output != "text" && f.output != "json" {
		return nil, fmt.Errorf("--output %q: use text or json", f.output)
	}
	cfg, err := config.Load(f.config, os.Environ())
	if err != nil {
		return nil, err
	}
	e := &dlqEnv{cfg: cfg, topic: f.topic}
	if e.topic == "" {
		e.topic = cfg.DeadLetter
	}
	if e.filter.Where, err = ops.ParseWhere(f.where); err != nil {
		return nil, err
	}
	now := time.Now()
	if f.since != "" {
		if e.filter.Since, err = ops.ParseTime(f.since, now); err != nil {
			return nil, fmt.Errorf("--since: %w", err)
		}
	}
	if f.until != "" {
		if e.filter.Until, err = ops.ParseTime(f.until, now); err != nil {
			return nil, fmt.Errorf("--until: %w", err)
		}
	}
	if !e.filter.Since.IsZero() && !e.filter.Until.IsZero() && e.filter.Until.Before(e.filter.Since) {
		return nil, fmt.Errorf("--until %s is before --since %s", f.until, f.since)
	}
	if e.conn, err = clientOpts(cfg); err != nil {
		return nil, err
	}
	return e, nil
}

// nothing explains an empty result: an empty topic or a filter that
// matches nothing. It is not an error.
func (e *dlqEnv) nothing(st ops.ScanStats) string {
	if st.Read == 0 && e.filter.Since.IsZero() {
		return fmt.Sprintf("%s is empty: no dead letters", e.topic)
	}
	return fmt.Sprintf("no dead letters on %s match %s (%d read)", e.topic, e.filter, st.Read)
}

func newDLQCmd(o *options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dlq",
		Short: "Inspect dead letters and redrive them to their source topics",
		Long: `Dead letters are input events a processor rejected with a permanent error.
ordo writes the original key, value and headers to dead_letter_topic with
ordo-dlq-* headers that say why (processor, error) and where the event came
from (source topic, partition, offset). These commands read them as a
read_committed consumer: dead letters of aborted transactions never count.

  ordo dlq list                  grouped by processor and reason, with counts
  ordo dlq show 0@42             one dead letter in full, payload decoded
  ordo dlq redrive --where ...   republish the originals once the cause is fixed`,
	}
	cmd.AddCommand(newDLQListCmd(o), newDLQShowCmd(o), newDLQRedriveCmd(o))
	return cmd
}

func newDLQListCmd(o *options) *cobra.Command {
	var (
		f       dlqFlags
		records bool
		limit   int
	)
	cmd := &cobra.Command{
		Use:   "list [--where key=value]... [--since T] [--records]",
		Short: "Count dead letters by processor and reason",
		Long: `Reads the dead-letter topic and prints one row per processor and reason
(error messages that differ only in quoted values or numbers share a row)
with the count, how many were already redriven, the source topics and the
time range. --records prints one line per dead letter instead.

Examples:
  ordo dlq list -c ordo.yaml
  ordo dlq list -c ordo.yaml --since -24h --where processor=order-rules
  ordo dlq list -c ordo.yaml --records --where reason="no table row" --limit 20`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			e, err := f.load()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			var dls []*ops.DeadLetter
			st, err := ops.ScanDeadLetters(ctx, e.conn, e.topic, e.filter, func(d *ops.DeadLetter) error {
				if !records {
					d.Key, d.Value, d.Headers = nil, nil, nil // keep only what the summary needs
				}
				dls = append(dls, d)
				return nil
			})
			if err != nil {
				return err
			}
			ledger, err := ops.ReadLedger(ctx, e.conn, ops.LedgerTopic(e.topic))
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if len(dls) == 0 {
				if f.output == "json" {
					fmt.Fprintln(w, "[]")
				}
				fmt.Fprintln(o.stderr, e.nothing(st))
				return nil
			}
			if records {
				if limit > 0 && len(dls) > limit {
					fmt.Fprintf(o.stderr, "showing the first %d of %d dead letters (--limit)\n", limit, len(dls))
					dls = dls[:limit]
				}
				if f.output == "json" {
					return writeJSON(w, dls)
				}
				ops.WriteRecordsTable(w, dls, ledger)
				return nil
			}
			sums := ops.Summarize(dls, ledger)
			if f.output == "json" {
				return writeJSON(w, sums)
			}
			ops.WriteSummaryTable(w, e.topic, len(dls), sums)
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&records, "records", false, "one line per dead letter (coordinates for `ordo dlq show`) instead of counts")
	cmd.Flags().IntVar(&limit, "limit", 100, "with --records: print at most this many (0: all)")
	return cmd
}

func newDLQShowCmd(o *options) *cobra.Command {
	var (
		f     dlqFlags
		limit int
	)
	cmd := &cobra.Command{
		Use:   "show [PARTITION@OFFSET]... [--where key=value]...",
		Short: "Print dead letters in full: reason, source, headers and the decoded payload",
		Long: `Prints each dead letter: why it was rejected (processor, error), where the
original came from (source topic/partition@offset), whether it was already
redriven, its key and headers, and its value decoded through the schema
registry as JSON when it is Confluent-framed Avro whose schema the registry
knows. A value that does not decode (the usual reason for a decode dead
letter) is shown as a hex dump with the decoder's error.

Name dead letters by PARTITION@OFFSET (as ` + "`ordo dlq list --records`" + ` prints
them), or select them with --where/--since (at most --limit).

Examples:
  ordo dlq show -c ordo.yaml 0@42 2@7
  ordo dlq show -c ordo.yaml --where processor=decode --limit 3
  ordo dlq show -c ordo.yaml 1@5 --output json | jq .payload.value`,
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := f.load()
			if err != nil {
				return err
			}
			if len(args) > 0 && (!e.filter.Empty()) {
				return fmt.Errorf("give PARTITION@OFFSET or filters (--where/--since/--until), not both")
			}
			ctx := cmd.Context()
			want := map[string]bool{}
			for _, a := range args {
				topic, p, off, err := ops.ParseCoordinates(a)
				if err != nil {
					return err
				}
				if topic != "" && topic != e.topic {
					return fmt.Errorf("%s is on topic %s, not the dead-letter topic %s (pass --dlq-topic %s)", a, topic, e.topic, topic)
				}
				want[fmt.Sprintf("%s/%d@%d", e.topic, p, off)] = true
			}
			var dls []*ops.DeadLetter
			st, err := ops.ScanDeadLetters(ctx, e.conn, e.topic, e.filter, func(d *ops.DeadLetter) error {
				if len(want) > 0 {
					if want[d.Coordinates()] {
						dls = append(dls, d)
						delete(want, d.Coordinates())
					}
					if len(want) == 0 {
						return ops.ErrStop
					}
					return nil
				}
				dls = append(dls, d)
				if limit > 0 && len(dls) >= limit {
					return ops.ErrStop
				}
				return nil
			})
			if err != nil {
				return err
			}
			if len(want) > 0 {
				missing := make([]string, 0, len(want))
				for k := range want {
					missing = append(missing, k)
				}
				slices.Sort(missing)
				return fmt.Errorf("no committed dead letter at %s (list them with `ordo dlq list --records`)", strings.Join(missing, ", "))
			}
			if len(dls) == 0 {
				fmt.Fprintln(o.stderr, e.nothing(st))
				return nil
			}
			ledger, err := ops.ReadLedger(ctx, e.conn, ops.LedgerTopic(e.topic))
			if err != nil {
				return err
			}
			dec, err := newPayloadDecoder(e.cfg)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			var views []ops.DeadLetterView
			for i, d := range dls {
				p := dec.payload(ctx, d)
				var red *ops.LedgerEntry
				if le, ok := ledger[d.Coordinates()]; ok {
					red = &le
				}
				if f.output == "json" {
					views = append(views, ops.NewDeadLetterView(d, p, red))
					continue
				}
				if i > 0 {
					fmt.Fprintln(w)
				}
				ops.WriteDeadLetter(w, d, p, red)
			}
			if f.output == "json" {
				return writeJSON(w, views)
			}
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().IntVar(&limit, "limit", 10, "with filters: show at most this many (0: all)")
	return cmd
}

func newDLQRedriveCmd(o *options) *cobra.Command {
	var (
		f        dlqFlags
		all      bool
		dryRun   bool
		force    bool
		batch    int
		ledger   string
		txnID    string
		maxLines int
	)
	cmd := &cobra.Command{
		Use:   "redrive (--where key=value... | --since T | --all) [--dry-run]",
		Short: "Republish dead letters to their source topics, exactly once",
		Long: `Republishes the original of each selected dead letter (key, value, headers
without the ordo-dlq-* ones, plus ordo-redrive-of: <dlq>/<partition>@<offset>)
to its source topic and partition, where ordo processes it as an ordinary
input. Run it after fixing the cause (a schema, a rule, a lookup table).

Exactly once: every batch is one Kafka transaction that writes the originals
and, per dead letter, an entry in the redrive ledger (the compacted topic
<dlq>.redrive-ledger). A dead letter in the ledger is never redriven again,
whichever filter a later run uses, so running the same redrive twice
republishes nothing the second time. The transactional id is the same for
every redrive of a dead-letter topic: starting one fences any other still
running (its open batch is aborted) before the ledger is read. If a
redriven event fails again, its new dead letter carries ordo-redrive-of and
can be redriven in turn.

Each dead letter is first decoded the way the pipeline decodes it; one that
still does not decode is skipped (redriving it would only dead-letter it
again) unless --force. A registry outage stops the run (nothing of the open
batch is written); rerun when it is back.

Examples:
  ordo dlq redrive -c ordo.yaml --where processor=customer-tier --dry-run
  ordo dlq redrive -c ordo.yaml --where processor=customer-tier --since -24h
  ordo dlq redrive -c ordo.yaml --where reason="no table row" --where source-topic=checkout.orders.v1
  ordo dlq redrive -c ordo.yaml --all`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			e, err := f.load()
			if err != nil {
				return err
			}
			if e.filter.Empty() && !all {
				return fmt.Errorf("no filter: pass --where key=value (keys: %s), --since/--until, or --all to redrive every dead letter", strings.Join(ops.WhereKeys, ", "))
			}
			if txnID == "" {
				txnID = e.cfg.Kafka.TransactionalIDPrefix + "-redrive-" + e.topic
			}
			ro := ops.RedriveOptions{DLQTopic: e.topic, LedgerTopic: ledger, TransactionalID: txnID, Filter: e.filter, DryRun: dryRun, BatchSize: batch}
			if !force {
				dec, err := newPayloadDecoder(e.cfg)
				if err != nil {
					return err
				}
				ro.Check = func(ctx context.Context, d *ops.DeadLetter) error {
					_, err := dec.pipeline.Decode(ctx, d.SourceTopic, d.Value)
					if err != nil && processors.IsTransient(err) {
						return fmt.Errorf("schema registry %s: %w (fix: bring it back, or pass --force to skip the check)", e.cfg.Registry.URL, err)
					}
					return err
				}
			}
			res, err := ops.Redrive(cmd.Context(), e.conn, ro)
			if res != nil {
				if f.output == "json" {
					_ = writeJSON(cmd.OutOrStdout(), res)
				} else {
					writeRedrive(cmd.OutOrStdout(), e, res, maxLines)
					if err != nil && !res.DryRun {
						fmt.Fprintln(cmd.OutOrStdout(), "stopped early by the error below: the dead letters listed above were redriven (committed); rerun for the rest")
					}
				}
			}
			return err
		},
	}
	f.register(cmd)
	fl := cmd.Flags()
	fl.BoolVar(&all, "all", false, "redrive every dead letter not redriven yet (required when no filter is given)")
	fl.BoolVar(&dryRun, "dry-run", false, "list what would be redriven; write nothing")
	fl.BoolVar(&force, "force", false, "redrive even dead letters whose payload still does not decode")
	fl.IntVar(&batch, "batch", 500, "dead letters per transaction")
	fl.StringVar(&ledger, "ledger-topic", "", "redrive ledger topic (default: <dead-letter topic>.redrive-ledger, created compacted when missing)")
	fl.StringVar(&txnID, "transactional-id", "", "transactional id of the redrive producer (default: <kafka.transactional_id_prefix>-redrive-<dead-letter topic>); keep it the same for every redrive of a topic")
	fl.IntVar(&maxLines, "show", 20, "print at most this many redriven and skipped dead letters (0: all)")
	return cmd
}

func writeRedrive(w io.Writer, e *dlqEnv, res *ops.RedriveResult, maxLines int) {
	verb := "redrove"
	if res.DryRun {
		verb = "would redrive"
	}
	if res.Read == 0 && e.filter.Since.IsZero() {
		fmt.Fprintf(w, "%s is empty: nothing to redrive\n", e.topic)
		return
	}
	fmt.Fprintf(w, "%s: read %d dead letter(s), %d match %s\n", e.topic, res.Read, res.Matched, e.filter)
	fmt.Fprintf(w, "%s %d", verb, len(res.Redriven))
	if !res.DryRun {
		fmt.Fprintf(w, " in %d transaction(s) (ledger %s, transactional id %s)", res.Transactions, res.LedgerTopic, res.TransactionalID)
	}
	fmt.Fprintln(w)
	if res.AlreadyRedriven > 0 {
		fmt.Fprintf(w, "%d already redriven by an earlier run: not again\n", res.AlreadyRedriven)
	}
	show := func(n int) bool { return maxLines <= 0 || n < maxLines }
	targets := map[string]bool{}
	for i, m := range res.Redriven {
		if show(i) {
			fmt.Fprintf(w, "  %s -> %s\n", m.DeadLetter, m.To)
		}
		topic := m.To
		if j := strings.LastIndexByte(topic, '/'); j >= 0 {
			topic = topic[:j]
		}
		targets[topic] = true
	}
	if !show(len(res.Redriven)) {
		fmt.Fprintf(w, "  ... and %d more\n", len(res.Redriven)-maxLines)
	}
	if len(res.Skipped) > 0 {
		fmt.Fprintf(w, "skipped %d:\n", len(res.Skipped))
		for i, s := range res.Skipped {
			if show(i) {
				fmt.Fprintf(w, "  %s: %s\n", s.DeadLetter, s.Why)
			}
		}
		if !show(len(res.Skipped)) {
			fmt.Fprintf(w, "  ... and %d more\n", len(res.Skipped)-maxLines)
		}
	}
	for t := range targets {
		if !slices.Contains(e.cfg.Inputs, t) {
			fmt.Fprintf(w, "note: %s is not an input of %s: only a pipeline that consumes it processes the redriven events\n", t, e.cfg.File)
		}
	}
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// payloadDecoder decodes dead-letter values for display and for redrive's
// check: pipeline resolves to ordo's reader schemas exactly as `ordo run`
// does; writer decodes with the writer schema alone, for types ordo has no
// reader for or values its reader cannot read.
type payloadDecoder struct {
	pipeline *schemas.Serde
	writer   *schemas.Serde
	url      string
}

func newPayloadDecoder(cfg *config.Config) (*payloadDecoder, error) {
	reg, err := newSchemaRegistry(cfg)
	if err != nil {
		return nil, err
	}
	readers, err := schemas.Demo()
	if err != nil {
		return nil, err
	}
	strategy, err := schemas.ParseSubjectStrategy(cfg.Registry.SubjectStrategy)
	if err != nil {
		return nil, err
	}
	return &payloadDecoder{
		pipeline: schemas.NewSerde(reg, readers, schemas.WithSubjectStrategy(strategy), schemas.WithAutoRegister(false)),
		writer:   schemas.NewSerde(reg, nil, schemas.WithSubjectStrategy(strategy), schemas.WithAutoRegister(false)),
		url:      cfg.Registry.URL,
	}, nil
}

func (p *payloadDecoder) payload(ctx context.Context, d *ops.DeadLetter) ops.Payload {
	dec, err := p.pipeline.Decode(ctx, d.SourceTopic, d.Value)
	if err == nil {
		return ops.Payload{Type: dec.Type, SchemaID: dec.SchemaID, Value: dec.Value}
	}
	if processors.IsTransient(err) {
		return ops.Payload{Problem: fmt.Sprintf("schema registry %s unreachable: %v", p.url, err)}
	}
	var unknown *schemas.UnknownSchemaError
	if errors.As(err, &unknown) {
		return ops.Payload{Problem: fmt.Sprintf("%v (the value was written against another registry, or is corrupt)", err)}
	}
	if w, werr := p.writer.Decode(ctx, d.SourceTopic, d.Value); werr == nil {
		return ops.Payload{Type: w.Type, SchemaID: w.SchemaID, Value: w.Value, Note: "decoded with the writer schema: ordo's reader schema cannot read it: " + err.Error()}
	}
	return ops.Payload{Problem: err.Error()}
}
