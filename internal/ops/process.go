package ops

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ordo-dev/ordo/processes"
)

// ProcessQuery selects process instances from the committed changelog
// (`ordo process show` and `ordo process list`).
type ProcessQuery struct {
	// Changelog is the state changelog topic; ProcessLog the process log
	// (its partition count places a correlation id).
	Changelog, ProcessLog string
	// CorrelationID, when set, reads only the changelog partition that
	// holds it (show). Empty: every partition (list).
	CorrelationID string
	// Filters (list): process name, state, status; OlderThan/NewerThan
	// compare the instance's last update (event time) with Now.
	Process, State, Status string
	OlderThan, NewerThan   time.Duration
	// Limit caps the instances returned (0: all).
	Limit int
	// Versions keeps every committed version of each instance still in the
	// changelog (compaction keeps recent ones), oldest first.
	Versions bool
	Now      time.Time
	// Timeout bounds reading (default 60s).
	Timeout time.Duration
}

// ProcessInstance is one instance as the committed changelog holds it.
type ProcessInstance struct {
	processes.Instance
	// Where its current value is: changelog partition and offset.
	Partition int32 `json:"changelog_partition"`
	Offset    int64 `json:"changelog_offset"`
	// VersionCount is how many committed versions of its key the changelog
	// still holds (compaction removes older ones).
	VersionCount int `json:"versions_in_changelog"`
	// History of values (with ProcessQuery.Versions), oldest first.
	Versions []ProcessVersion `json:"versions,omitempty"`
}

// ProcessVersion is one committed value of an instance's key.
type ProcessVersion struct {
	Offset  int64     `json:"changelog_offset"`
	State   string    `json:"state"`
	Status  string    `json:"status"`
	Updated time.Time `json:"updated"`
}

// ProcessResult is what a query found.
type ProcessResult struct {
	Instances []ProcessInstance `json:"instances"`
	// Buffered counts early events waiting for an instance of the queried
	// correlation id (show only).
	Buffered int `json:"buffered_early_events"`
	// Partitions read, and changelog records read.
	Partitions []int32 `json:"changelog_partitions"`
	Records    int     `json:"changelog_records"`
	// Totals by process and status (list).
	Totals map[string]map[string]int `json:"totals"`
}

// PartitionOf is the process-log partition of a correlation id: Kafka's
// murmur2 key hashing, as the forwarding stage partitions the process log.
func PartitionOf(cid string, partitions int) int32 {
	return int32(kgo.StickyKeyPartitioner(nil).ForTopic("").Partition(&kgo.Record{Key: []byte(cid)}, partitions))
}

// ReadProcesses reads the committed changelog (read_committed, up to the
// high watermarks listed at the start, like a restore) and returns the
// instances q selects, newest update first.
func ReadProcesses(ctx context.Context, conn []kgo.Opt, q ProcessQuery) (*ProcessResult, error) {
	if q.Timeout <= 0 {
		q.Timeout = 60 * time.Second
	}
	if q.Now.IsZero() {
		q.Now = time.Now()
	}
	ctx, cancel := context.WithTimeout(ctx, q.Timeout)
	defer cancel()
	admCl, err := kgo.NewClient(conn...)
	if err != nil {
		return nil, err
	}
	defer admCl.Close()
	adm := kadm.NewClient(admCl)
	tds, err := adm.ListTopics(ctx, q.Changelog, q.ProcessLog)
	if err != nil {
		return nil, fmt.Errorf("describe %s: %w", q.Changelog, err)
	}
	td, ok := tds[q.Changelog]
	if !ok || td.Err != nil {
		return nil, fmt.Errorf("changelog topic %s not found (is state.changelog right, and has the stateful stage run?)", q.Changelog)
	}
	n := len(td.Partitions)
	var parts []int32
	if q.CorrelationID != "" {
		if pl, ok := tds[q.ProcessLog]; ok && pl.Err == nil && len(pl.Partitions) != n {
			return nil, fmt.Errorf("process log %s has %d partitions, changelog %s %d: they must be equal", q.ProcessLog, len(pl.Partitions), q.Changelog, n)
		}
		parts = []int32{PartitionOf(q.CorrelationID, n)}
	} else {
		for p := range int32(n) {
			parts = append(parts, p)
		}
	}
	starts, err := adm.ListStartOffsets(ctx, q.Changelog)
	if err != nil {
		return nil, fmt.Errorf("start offsets of %s: %w", q.Changelog, err)
	}
	// The HWM, not the LSO: a read_committed reader reaches it once the
	// open transactions before it end (markers are kept, see restore).
	ends, err := adm.ListEndOffsets(ctx, q.Changelog)
	if err != nil {
		return nil, fmt.Errorf("end offsets of %s: %w", q.Changelog, err)
	}
	want := map[int32]int64{}
	from := map[int32]kgo.Offset{}
	for _, p := range parts {
		s, _ := starts.Lookup(q.Changelog, p)
		e, _ := ends.Lookup(q.Changelog, p)
		if e.Offset > s.Offset {
			want[p] = e.Offset
			from[p] = kgo.NewOffset().At(s.Offset)
		}
	}
	res := &ProcessResult{Partitions: parts, Totals: map[string]map[string]int{}}
	type cur struct {
		inst ProcessInstance
		live bool
	}
	latest := map[string]*cur{}
	buffered := map[string]bool{}
	if len(want) > 0 {
		cl, err := kgo.NewClient(append(append([]kgo.Opt{}, conn...),
			kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{q.Changelog: from}),
			kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())...)
		if err != nil {
			return nil, err
		}
		defer cl.Close()
		next := map[int32]int64{}
		for len(want) > 0 {
			fs := cl.PollFetches(ctx)
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("reading %s: %d partition(s) not read to their end within %v", q.Changelog, len(want), q.Timeout)
			}
			var ferr error
			fs.EachError(func(t string, p int32, err error) { ferr = fmt.Errorf("fetch %s/%d: %w", t, p, err) })
			if ferr != nil {
				return nil, ferr
			}
			fs.EachRecord(func(r *kgo.Record) {
				next[r.Partition] = r.Offset + 1
				if r.Attrs.IsControl() {
					return
				}
				res.Records++
				k, err := processes.ParseKey(r.Key)
				if err != nil || (q.CorrelationID != "" && k.CorrelationID != q.CorrelationID) {
					return
				}
				switch k.Kind {
				case "buffer":
					buffered[string(r.Key)] = r.Value != nil
				case "instance":
					c := latest[string(r.Key)]
					if c == nil {
						c = &cur{}
						latest[string(r.Key)] = c
					}
					if r.Value == nil { // tombstone: the instance was removed
						c.live = false
						return
					}
					in, err := processes.DecodeInstance(r.Value)
					if err != nil {
						return
					}
					c.live = true
					c.inst.Instance, c.inst.Partition, c.inst.Offset = in, r.Partition, r.Offset
					c.inst.VersionCount++
					if q.Versions {
						c.inst.Versions = append(c.inst.Versions, ProcessVersion{Offset: r.Offset, State: in.State, Status: in.Status, Updated: in.Updated})
					}
				}
			})
			for p, w := range want {
				if next[p] >= w {
					delete(want, p)
				}
			}
		}
	}
	for _, live := range buffered {
		if live {
			res.Buffered++
		}
	}
	for _, c := range latest {
		if !c.live {
			continue
		}
		in := c.inst
		if !q.matches(&in.Instance) {
			continue
		}
		if res.Totals[in.Process] == nil {
			res.Totals[in.Process] = map[string]int{}
		}
		res.Totals[in.Process][in.Status]++
		res.Instances = append(res.Instances, in)
	}
	sort.Slice(res.Instances, func(i, j int) bool {
		a, b := res.Instances[i], res.Instances[j]
		if !a.Updated.Equal(b.Updated) {
			return a.Updated.After(b.Updated)
		}
		return a.CorrelationID+a.Process < b.CorrelationID+b.Process
	})
	if q.Limit > 0 && len(res.Instances) > q.Limit {
		res.Instances = res.Instances[:q.Limit]
	}
	return res, nil
}

func (q ProcessQuery) matches(in *processes.Instance) bool {
	switch {
	case q.Process != "" && in.Process != q.Process,
		q.State != "" && in.State != q.State,
		q.Status != "" && in.Status != q.Status,
		q.OlderThan > 0 && q.Now.Sub(in.Updated) < q.OlderThan,
		q.NewerThan > 0 && q.Now.Sub(in.Updated) > q.NewerThan:
		return false
	}
	return true
}

// Printable converts an instance variable to a JSON- and text-friendly
// value: decimals as exact decimal strings, times in RFC 3339.
func Printable(v any) any {
	switch x := v.(type) {
	case *big.Rat:
		return ratString(x)
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = Printable(e)
		}
		return m
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = Printable(e)
		}
		return out
	}
	return v
}

// ratString prints a decimal exactly when it has a finite expansion of at
// most 18 digits, else as a fraction.
func ratString(r *big.Rat) string {
	for d := 0; d <= 18; d++ {
		s := r.FloatString(d)
		back, ok := new(big.Rat).SetString(s)
		if ok && back.Cmp(r) == 0 {
			return s
		}
	}
	return r.RatString()
}

// MarshalJSON prints an instance with readable variables.
func (p ProcessInstance) MarshalJSON() ([]byte, error) {
	type plain ProcessInstance
	vars := map[string]any{}
	for k, v := range p.Vars {
		vars[k] = Printable(v)
	}
	comps := make([]map[string]any, len(p.Compensations))
	for i, c := range p.Compensations {
		f := map[string]any{}
		for k, v := range c.Fields {
			f[k] = Printable(v)
		}
		comps[i] = map[string]any{"step": c.Step, "type": c.Type, "topic": c.Topic, "fields": f}
	}
	return json.Marshal(struct {
		plain
		Vars          map[string]any   `json:"Vars"`
		Compensations []map[string]any `json:"Compensations"`
	}{plain(p), vars, comps})
}

// WriteProcessShow prints show's text output.
func WriteProcessShow(w io.Writer, res *ProcessResult, q ProcessQuery) {
	if len(res.Instances) == 0 {
		fmt.Fprintf(w, "no instance of correlation id %q in %s (partition %v, %d committed records read)", q.CorrelationID, q.Changelog, res.Partitions, res.Records)
		if res.Buffered > 0 {
			fmt.Fprintf(w, "; %d early event(s) for it are buffered, waiting for the event that starts its process", res.Buffered)
		}
		fmt.Fprintln(w)
		return
	}
	for i, in := range res.Instances {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "%s@%d  %s\n", in.Process, in.Version, in.CorrelationID)
		fmt.Fprintf(w, "  state      %s (%s)\n", in.State, in.Status)
		fmt.Fprintf(w, "  started    %s\n", ts(in.Started))
		fmt.Fprintf(w, "  updated    %s (%s ago, by event time)\n", ts(in.Updated), q.Now.Sub(in.Updated).Round(time.Second))
		fmt.Fprintf(w, "  stored at  %s/%d@%d (%d committed version(s) of this instance still in the changelog)\n", q.Changelog, in.Partition, in.Offset, in.VersionCount)
		keys := make([]string, 0, len(in.Vars))
		for k := range in.Vars {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			b, _ := json.Marshal(Printable(in.Vars[k]))
			fmt.Fprintf(w, "  var        %s = %s\n", k, b)
		}
		if len(in.Joined) > 0 {
			fmt.Fprintf(w, "  joined     %s\n", strings.Join(in.Joined, ", "))
		}
		for _, t := range in.Timers {
			fmt.Fprintf(w, "  timer      %s due %s\n", t.Name, ts(t.Due))
		}
		for _, c := range in.Compensations {
			fmt.Fprintf(w, "  undo       %s → %s (recorded by %s)\n", c.Type, c.Topic, c.Step)
		}
		if len(in.History) > 0 {
			fmt.Fprintln(w, "  history (oldest first, last 64 entries):")
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			for _, h := range in.History {
				src := ""
				if h.Source != "" {
					src = "from " + h.Source
				}
				fmt.Fprintf(tw, "    %s\t%s\t%s\t%s\t%s\n", ts(h.At), h.Kind, h.Type, h.ID, src)
			}
			tw.Flush()
		}
		if len(in.Versions) > 0 {
			fmt.Fprintln(w, "  versions in the changelog (oldest first):")
			for _, v := range in.Versions {
				fmt.Fprintf(w, "    @%d  %s (%s)  updated %s\n", v.Offset, v.State, v.Status, ts(v.Updated))
			}
		}
	}
}

// WriteProcessList prints list's text output.
func WriteProcessList(w io.Writer, res *ProcessResult, q ProcessQuery) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CORRELATION ID\tPROCESS\tSTATE\tSTATUS\tUPDATED (event time)\tLAST")
	for _, in := range res.Instances {
		last := ""
		if n := len(in.History); n > 0 {
			h := in.History[n-1]
			last = h.Kind + " " + h.Type
		}
		fmt.Fprintf(tw, "%s\t%s@%d\t%s\t%s\t%s ago\t%s\n", in.CorrelationID, in.Process, in.Version, in.State, in.Status, q.Now.Sub(in.Updated).Round(time.Second), last)
	}
	tw.Flush()
	procs := make([]string, 0, len(res.Totals))
	for p := range res.Totals {
		procs = append(procs, p)
	}
	sort.Strings(procs)
	for _, p := range procs {
		sts := make([]string, 0, len(res.Totals[p]))
		for s, n := range res.Totals[p] {
			sts = append(sts, s+" "+strconv.Itoa(n))
		}
		sort.Strings(sts)
		fmt.Fprintf(w, "%s: %s\n", p, strings.Join(sts, ", "))
	}
	fmt.Fprintf(w, "(%d shown; changelog %s, %d partition(s), %d committed records read)\n", len(res.Instances), q.Changelog, len(res.Partitions), res.Records)
}

func ts(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}
