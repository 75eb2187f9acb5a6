package app

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ordo-dev/ordo/internal/config"
	"github.com/ordo-dev/ordo/internal/ops"
)

// processFlags are shared by `ordo process show` and `ordo process list`.
type processFlags struct {
	config    string
	changelog string
	process   string
	output    string
	timeout   time.Duration
}

func (f *processFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVarP(&f.config, "config", "c", config.DefaultPath, "YAML config file (brokers, state:); ORDO_* environment variables override its keys")
	fl.StringVar(&f.changelog, "changelog", "", "changelog topic (default: state.changelog of the config, else <kafka.group>.changelog)")
	fl.StringVar(&f.process, "process", "", "only instances of this process (a name under processes:)")
	fl.StringVarP(&f.output, "output", "o", "text", "text or json")
	fl.DurationVar(&f.timeout, "timeout", 5*time.Minute, "give up reading the changelog after this long (0: never)")
}

// load reads the config and resolves the changelog topic.
func (f *processFlags) load() (ops.ProcessSource, []kgo.Opt, error) {
	var src ops.ProcessSource
	if f.output != "text" && f.output != "json" {
		return src, nil, fmt.Errorf("--output %q: use text or json", f.output)
	}
	if f.timeout < 0 {
		return src, nil, fmt.Errorf("--timeout %s: use a positive duration, or 0 for no limit", f.timeout)
	}
	cfg, err := config.Load(f.config, os.Environ())
	if err != nil {
		return src, nil, err
	}
	src.Changelog = f.changelog
	if src.Changelog == "" {
		if cfg.State == nil {
			return src, nil, fmt.Errorf("%s has no state: block, so ordo keeps no process instances for it (processes need state: and processes:, see docs/processes.md); pass --changelog TOPIC to read another installation's changelog", cfg.File)
		}
		src.Changelog = cfg.StateSettings().Changelog
		src.Fix = fmt.Sprintf("the stateful stage creates it when `ordo run -c %s` starts; check state.changelog and kafka.group in %s", cfg.File, cfg.File)
	} else {
		src.Fix = "check --changelog"
	}
	conn, err := clientOpts(cfg)
	if err != nil {
		return src, nil, err
	}
	return src, conn, nil
}

func (f *processFlags) context(ctx context.Context) (context.Context, context.CancelFunc) {
	if f.timeout == 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, f.timeout)
}

func newProcessCmd(o *options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "process",
		Short: "Inspect process (saga) instances from the committed changelog",
		Long: `Process instances live in the stateful stage's state store, whose every change
is written to the compacted changelog topic in the same transaction as the
commands it caused. These commands read that changelog as a read_committed
consumer (no consumer group, no local store), so they work from any machine
that can read the cluster, with ordo running or not, and never show a change
of an aborted transaction.

  ordo process show ORDER-1     an instance: state, vars, timers, history, origin
  ordo process list             instances filtered by process, state, status, age`,
	}
	cmd.AddCommand(newProcessShowCmd(o), newProcessListCmd(o))
	return cmd
}

func newProcessShowCmd(o *options) *cobra.Command {
	var (
		f        processFlags
		versions bool
	)
	cmd := &cobra.Command{
		Use:   "show CORRELATION-ID [--process NAME] [--versions]",
		Short: "Print the instances of a correlation id: state, vars, timers, compensations, history and origin",
		Long: `Reads the changelog partition of the correlation id (the partition its
events have in the process log) and prints each of its instances (one per
process): version, state, status, start and last-update times, variables
(decimals exact), recorded compensations, pending timers with due times, the
history (events applied with their input record topic/partition/offset,
commands emitted, states entered, timers set/fired/cancelled; the last 64),
and where the current value came from: its changelog offset and how many
earlier versions the changelog still holds. --versions lists them (state
after each change: the instance's event-sourcing view, as far back as
compaction has kept it).

An id without an instance is an error; the message says whether early
events are buffered for it (events that arrived before the one that starts
the process).

Examples:
  ordo process show -c ordo.yaml o-1001
  ordo process show -c ordo.yaml o-1001 --process order-fulfilment --versions
  ordo process show -c ordo.yaml o-1001 --output json | jq '.instances[0].vars'`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return fmt.Errorf("give one correlation id (e.g. ordo process show -c ordo.yaml o-1001); list ids with `ordo process list`")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			src, conn, err := f.load()
			if err != nil {
				return err
			}
			ctx, cancel := f.context(cmd.Context())
			defer cancel()
			res, err := ops.ShowProcess(ctx, conn, ops.ShowOptions{ProcessSource: src, CorrelationID: args[0], Process: f.process, Versions: versions})
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if f.output == "json" {
				views := res.Instances
				for i := range views {
					views[i].Vars = asMap(ops.Jsonable(views[i].Vars))
					for j := range views[i].Compensations {
						views[i].Compensations[j].Fields = asMap(ops.Jsonable(views[i].Compensations[j].Fields))
					}
				}
				if err := writeJSON(w, res); err != nil {
					return err
				}
			} else if len(res.Instances) > 0 || len(res.Removed) > 0 {
				ops.WriteProcessShow(w, res, time.Now())
			}
			if len(res.Instances) == 0 {
				return errors.New(res.NoInstance())
			}
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&versions, "versions", false, "list every version of each instance still in the changelog, with its offset and state")
	return cmd
}

func asMap(v any) map[string]any { m, _ := v.(map[string]any); return m }

func newProcessListCmd(o *options) *cobra.Command {
	var (
		f                    processFlags
		state, status        string
		olderThan, newerThan time.Duration
		limit                int
	)
	cmd := &cobra.Command{
		Use:   "list [--process NAME] [--state S] [--status S] [--older-than D] [--newer-than D]",
		Short: "List process instances, filtered by process, state, status and age, with totals",
		Long: `Reads every partition of the changelog and prints one line per instance
(latest committed version; instances removed by housekeeping are not
listed): correlation id, process@version, state, status, age (since its
start event), idle time (since its last event or timer) and the last
history entry, oldest first; then totals by process version and status.
Ages use event times (when the events happened), not when ordo saw them.

Filters: --process, --state and --status match exactly (status is running
or the status of a terminal state, e.g. completed, cancelled);
--older-than/--newer-than bound the age.

Examples:
  ordo process list -c ordo.yaml
  ordo process list -c ordo.yaml --status running --older-than 1h     # stuck?
  ordo process list -c ordo.yaml --process order-fulfilment --state awaiting_payment_and_stock
  ordo process list -c ordo.yaml --status running --output json | jq '.totals'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 0 {
				return fmt.Errorf("--limit %d: use a positive number, or 0 for all", limit)
			}
			src, conn, err := f.load()
			if err != nil {
				return err
			}
			lo := ops.ListOptions{ProcessSource: src, Process: f.process, State: state, Status: status, OlderThan: olderThan, NewerThan: newerThan}
			if err := lo.Validate(); err != nil {
				return err
			}
			ctx, cancel := f.context(cmd.Context())
			defer cancel()
			res, err := ops.ListProcesses(ctx, conn, lo)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if f.output == "json" {
				if limit > 0 && len(res.Instances) > limit {
					fmt.Fprintf(o.stderr, "showing the first %d of %d instances (--limit)\n", limit, len(res.Instances))
					res.Instances = res.Instances[:limit]
				}
				return writeJSON(w, res)
			}
			ops.WriteProcessList(w, res, limit)
			if len(res.Instances) == 0 && lo.String() != "" {
				fmt.Fprintf(o.stderr, "no instance matches %s\n", lo)
			}
			return nil
		},
	}
	f.register(cmd)
	fl := cmd.Flags()
	fl.StringVar(&state, "state", "", "only instances in this state")
	fl.StringVar(&status, "status", "", "only instances with this status: running, or a terminal state's status (completed, cancelled, ...)")
	fl.DurationVar(&olderThan, "older-than", 0, "only instances that started more than this long ago (e.g. 10m)")
	fl.DurationVar(&newerThan, "newer-than", 0, "only instances that started less than this long ago (e.g. 1h)")
	fl.IntVar(&limit, "limit", 100, "print at most this many instances, oldest first (0: all); totals count all")
	return cmd
}
