package ops

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ordo-dev/ordo/processes"
)

// `ordo process show` and `ordo process list` read process instances from
// the committed changelog of the stateful stage (docs/processes.md), never
// from a replica's local store: they work from any machine that can read
// the cluster, whether ordo runs or not. The changelog is read
// read_committed up to the high watermark listed at the start (as a
// restore does, internal/state/restore.go): a version written by an
// aborted transaction is never shown, and a transaction still open when
// the read starts is waited for rather than skipped.

// ProcessSource names the changelog to read.
type ProcessSource struct {
	// Changelog is the changelog topic (state.changelog, by default
	// <kafka.group>.changelog).
	Changelog string
	// Fix is appended to the error when the changelog does not exist.
	Fix string
}

// ChangelogRead says what was read.
type ChangelogRead struct {
	Topic string `json:"changelog"`
	// Partitions is the changelog's partition count.
	Partitions int `json:"partitions"`
	// Read lists the partitions read and their offsets [from, to).
	Read []PartitionRead `json:"read"`
	// Records is how many committed data records were read.
	Records int64 `json:"records"`
}

// PartitionRead is the offsets [From, To) of one changelog partition read.
type PartitionRead struct {
	Partition int32 `json:"partition"`
	From      int64 `json:"from"`
	To        int64 `json:"to"`
}

// Origin is where an instance's current value came from.
type Origin struct {
	Topic     string    `json:"topic"`
	Partition int32     `json:"partition"`
	Offset    int64     `json:"offset"`
	Written   time.Time `json:"written"`
	// Earlier is how many earlier records of the same key the changelog
	// still holds (compaction keeps the recent ones, then only the last).
	Earlier int `json:"earlier_versions"`
}

// Coordinates is topic/partition@offset.
func (o Origin) Coordinates() string {
	return fmt.Sprintf("%s/%d@%d", o.Topic, o.Partition, o.Offset)
}

// InstanceVersion is one record of an instance key still in the changelog.
type InstanceVersion struct {
	Offset  int64     `json:"offset"`
	Written time.Time `json:"written"`
	// Deleted: a tombstone (the instance was removed, e.g. a finished
	// instance past keep_finished).
	Deleted bool   `json:"deleted,omitempty"`
	Version int    `json:"version,omitempty"`
	State   string `json:"state,omitempty"`
	Status  string `json:"status,omitempty"`
	// Updated is the instance's last-update (event) time.
	Updated time.Time `json:"updated,omitzero"`
	// Last is the last history entry of this version.
	Last    *HistoryView `json:"last,omitempty"`
	Problem string       `json:"problem,omitempty"`
}

// HistoryView is a processes.HistoryEntry for display.
type HistoryView struct {
	At     time.Time `json:"at"`
	Kind   string    `json:"kind"`
	Type   string    `json:"type"`
	ID     string    `json:"id,omitempty"`
	Source string    `json:"source,omitempty"`
}

// CompensationView is a recorded compensation command.
type CompensationView struct {
	Step   string         `json:"step"`
	Type   string         `json:"type"`
	Topic  string         `json:"topic"`
	Fields map[string]any `json:"fields"`
}

// TimerView is a running timer.
type TimerView struct {
	Name string    `json:"name"`
	Due  time.Time `json:"due"`
}

// InstanceView is one instance as `ordo process show` prints it. Vars and
// compensation fields are natural values (decimals are *big.Rat); the JSON
// form converts them with Jsonable.
type InstanceView struct {
	Process       string             `json:"process"`
	Version       int                `json:"version"`
	CorrelationID string             `json:"correlation_id"`
	State         string             `json:"state"`
	Status        string             `json:"status"`
	Started       time.Time          `json:"started"`
	Updated       time.Time          `json:"updated"`
	Vars          map[string]any     `json:"vars"`
	Joined        []string           `json:"joined,omitempty"`
	Compensations []CompensationView `json:"compensations"`
	Timers        []TimerView        `json:"timers"`
	// Waiting is how many early events were buffered for the instance at
	// its last change.
	Waiting  int               `json:"waiting,omitempty"`
	History  []HistoryView     `json:"history"`
	Origin   Origin            `json:"origin"`
	Versions []InstanceVersion `json:"versions,omitempty"`
	// Problem is set when the value does not decode (a newer ordo wrote
	// it, or it is corrupt); the other fields are then empty.
	Problem string `json:"problem,omitempty"`
}

func newInstanceView(in *processes.Instance) InstanceView {
	v := InstanceView{
		Process: in.Process, Version: in.Version, CorrelationID: in.CorrelationID, State: in.State, Status: in.Status,
		Started: in.Started, Updated: in.Updated, Vars: in.Vars, Joined: in.Joined, Waiting: in.Waiting,
		Compensations: []CompensationView{}, Timers: []TimerView{}, History: []HistoryView{},
	}
	for _, c := range in.Compensations {
		v.Compensations = append(v.Compensations, CompensationView(c))
	}
	for _, t := range in.Timers {
		v.Timers = append(v.Timers, TimerView(t))
	}
	for _, h := range in.History {
		v.History = append(v.History, HistoryView(h))
	}
	return v
}

// Removed is an instance whose latest changelog record is a tombstone.
type Removed struct {
	Process string    `json:"process"`
	Offset  int64     `json:"offset"`
	Written time.Time `json:"written"`
	// Last is the last version before the tombstone, when the changelog
	// still holds it.
	Last *InstanceVersion `json:"last_version,omitempty"`
}

// ShowResult is what `ordo process show` found for a correlation id.
type ShowResult struct {
	CorrelationID string        `json:"correlation_id"`
	Process       string        `json:"process,omitempty"` // the --process filter
	Source        ChangelogRead `json:"source"`
	// Partition is the partition of the correlation id.
	Partition int32          `json:"partition"`
	Instances []InstanceView `json:"instances"`
	Removed   []Removed      `json:"removed,omitempty"`
	// Buffered counts early events waiting, by process.
	Buffered map[string]int `json:"buffered,omitempty"`
}

// BufferedTotal is how many early events are waiting for the id.
func (r *ShowResult) BufferedTotal() int {
	n := 0
	for _, c := range r.Buffered {
		n += c
	}
	return n
}

// ShowOptions selects what ShowProcess reads.
type ShowOptions struct {
	ProcessSource
	CorrelationID string
	// Process, when set, shows only that process's instance.
	Process string
	// Versions lists every version of each instance still in the
	// changelog (oldest first).
	Versions bool
}

// PartitionOf is the partition of a correlation id in a topic of n
// partitions: the process log is keyed by correlation id with Kafka's
// default (murmur2) partitioner, and the changelog is co-partitioned with
// it, so every key of an id is in this partition.
func PartitionOf(cid string, n int) int32 {
	return int32(kgo.StickyKeyPartitioner(nil).ForTopic("").Partition(&kgo.Record{Key: []byte(cid)}, n))
}

// keyVersions collects the records of one instance key.
type keyVersions struct {
	process string
	recs    []*kgo.Record // in offset order; a nil Value is a tombstone
}

// ShowProcess reads the changelog partition of o.CorrelationID and returns
// its instances with their history and origin, the instances removed and
// the early events waiting.
func ShowProcess(ctx context.Context, conn []kgo.Opt, o ShowOptions) (*ShowResult, error) {
	if o.CorrelationID == "" {
		return nil, errors.New("no correlation id given")
	}
	cl, err := kgo.NewClient(conn...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	parts, err := partitionsOf(ctx, adm, o.Changelog, "changelog", o.Fix)
	if err != nil {
		return nil, err
	}
	p := PartitionOf(o.CorrelationID, len(parts))
	spans, err := changelogSpans(ctx, adm, o.Changelog, []int32{p})
	if err != nil {
		return nil, err
	}
	res := &ShowResult{CorrelationID: o.CorrelationID, Process: o.Process, Partition: p, Instances: []InstanceView{}, Buffered: map[string]int{}}
	res.Source = sourceOf(o.Changelog, len(parts), spans)

	prefix, _ := processes.InstancesRange(o.CorrelationID)
	byKey := map[string]*keyVersions{}
	var order []string
	buffered := map[string]bool{} // buffer key → present
	bufProc := map[string]string{}
	err = readChangelog(ctx, conn, o.Changelog, spans, func(r *kgo.Record) error {
		res.Source.Records++
		switch {
		case bytes.HasPrefix(r.Key, prefix):
			k, err := processes.ParseKey(r.Key)
			if err != nil || (o.Process != "" && k.Process != o.Process) {
				return nil
			}
			kv := byKey[string(r.Key)]
			if kv == nil {
				kv = &keyVersions{process: k.Process}
				byKey[string(r.Key)] = kv
				order = append(order, string(r.Key))
			}
			kv.recs = append(kv.recs, r)
		case bytes.HasPrefix(r.Key, []byte("b/")):
			k, err := processes.ParseKey(r.Key)
			if err != nil || k.Kind != "buffer" || k.CorrelationID != o.CorrelationID || (o.Process != "" && k.Process != o.Process) {
				return nil
			}
			buffered[string(r.Key)] = r.Value != nil
			bufProc[string(r.Key)] = k.Process
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for k, present := range buffered {
		if present {
			res.Buffered[bufProc[k]]++
		}
	}
	slices.Sort(order)
	for _, key := range order {
		kv := byKey[key]
		last := kv.recs[len(kv.recs)-1]
		if last.Value == nil {
			rm := Removed{Process: kv.process, Offset: last.Offset, Written: last.Timestamp}
			if n := len(kv.recs); n > 1 && kv.recs[n-2].Value != nil {
				v := versionOf(kv.recs[n-2])
				rm.Last = &v
			}
			res.Removed = append(res.Removed, rm)
			continue
		}
		var view InstanceView
		in, err := processes.DecodeInstance(last.Value)
		if err != nil {
			view = InstanceView{Process: kv.process, CorrelationID: o.CorrelationID, Problem: err.Error()}
		} else {
			view = newInstanceView(&in)
		}
		view.Origin = Origin{Topic: last.Topic, Partition: last.Partition, Offset: last.Offset, Written: last.Timestamp, Earlier: len(kv.recs) - 1}
		if o.Versions {
			for _, r := range kv.recs {
				view.Versions = append(view.Versions, versionOf(r))
			}
		}
		res.Instances = append(res.Instances, view)
	}
	return res, nil
}

func versionOf(r *kgo.Record) InstanceVersion {
	v := InstanceVersion{Offset: r.Offset, Written: r.Timestamp}
	if r.Value == nil {
		v.Deleted = true
		return v
	}
	in, err := processes.DecodeInstance(r.Value)
	if err != nil {
		v.Problem = err.Error()
		return v
	}
	v.Version, v.State, v.Status, v.Updated = in.Version, in.State, in.Status, in.Updated
	if n := len(in.History); n > 0 {
		h := HistoryView(in.History[n-1])
		v.Last = &h
	}
	return v
}

// ListOptions selects the instances ListProcesses returns.
type ListOptions struct {
	ProcessSource
	Process string
	State   string
	Status  string
	// OlderThan and NewerThan bound the instance's age (now − started);
	// zero: no bound.
	OlderThan, NewerThan time.Duration
	// Now is the reference time of the ages (zero: time.Now()).
	Now time.Time
}

// Validate checks the filters.
func (o ListOptions) Validate() error {
	if o.OlderThan < 0 || o.NewerThan < 0 {
		return errors.New("--older-than and --newer-than take a positive duration, e.g. 10m")
	}
	if o.OlderThan > 0 && o.NewerThan > 0 && o.OlderThan >= o.NewerThan {
		return fmt.Errorf("--older-than %s and --newer-than %s select nothing: an instance cannot be older than %s and newer than %s (make --newer-than the larger one)", o.OlderThan, o.NewerThan, o.OlderThan, o.NewerThan)
	}
	return nil
}

// String describes the filters ("" when there are none).
func (o ListOptions) String() string {
	var parts []string
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, k+"="+v)
		}
	}
	add("process", o.Process)
	add("state", o.State)
	add("status", o.Status)
	if o.OlderThan > 0 {
		add("older-than", o.OlderThan.String())
	}
	if o.NewerThan > 0 {
		add("newer-than", o.NewerThan.String())
	}
	return strings.Join(parts, " ")
}

// ListEntry is one instance in `ordo process list`.
type ListEntry struct {
	CorrelationID string       `json:"correlation_id"`
	Process       string       `json:"process"`
	Version       int          `json:"version"`
	State         string       `json:"state"`
	Status        string       `json:"status"`
	Started       time.Time    `json:"started"`
	Updated       time.Time    `json:"updated"`
	Timers        []TimerView  `json:"timers,omitempty"`
	Last          *HistoryView `json:"last,omitempty"`
	Partition     int32        `json:"partition"`
	Offset        int64        `json:"offset"`
}

// Age is now − started.
func (e *ListEntry) Age(now time.Time) time.Duration { return now.Sub(e.Started) }

// ListTotal counts matching instances of one process version and status.
type ListTotal struct {
	Process string `json:"process"`
	Version int    `json:"version"`
	Status  string `json:"status"`
	Count   int    `json:"count"`
}

// Undecodable is an instance value that does not decode.
type Undecodable struct {
	Key       string `json:"key"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
	Problem   string `json:"problem"`
}

// ListResult is what ListProcesses found.
type ListResult struct {
	Source ChangelogRead `json:"source"`
	Now    time.Time     `json:"now"`
	// Instances match the filters, oldest first (by start time).
	Instances []ListEntry `json:"instances"`
	Totals    []ListTotal `json:"totals"`
	// Scanned counts the instances in the changelog (matching or not).
	Scanned     int           `json:"scanned"`
	Undecodable []Undecodable `json:"undecodable,omitempty"`
}

// match applies the filters to a decoded instance.
func (o ListOptions) match(in *processes.Instance, now time.Time) bool {
	if (o.Process != "" && in.Process != o.Process) || (o.State != "" && in.State != o.State) || (o.Status != "" && in.Status != o.Status) {
		return false
	}
	age := now.Sub(in.Started)
	return (o.OlderThan == 0 || age > o.OlderThan) && (o.NewerThan == 0 || age < o.NewerThan)
}

// ListProcesses reads every partition of the changelog and returns the
// instances (latest committed version of each instance key, tombstoned ones
// left out) that match the filters, with totals by process version and
// status. Only matching instances are kept in memory, as summaries.
func ListProcesses(ctx context.Context, conn []kgo.Opt, o ListOptions) (*ListResult, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	cl, err := kgo.NewClient(conn...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	parts, err := partitionsOf(ctx, adm, o.Changelog, "changelog", o.Fix)
	if err != nil {
		return nil, err
	}
	spans, err := changelogSpans(ctx, adm, o.Changelog, parts)
	if err != nil {
		return nil, err
	}
	res := &ListResult{Source: sourceOf(o.Changelog, len(parts), spans), Now: now, Instances: []ListEntry{}, Totals: []ListTotal{}}
	// Per instance key (a key lives in one partition only): the latest
	// version's summary if it matches, and whether the latest is live.
	type key struct {
		p int32
		k string
	}
	matched := map[key]*ListEntry{}
	live := map[key]bool{}
	bad := map[key]Undecodable{}
	lower, upper := processes.InstancesRange("")
	err = readChangelog(ctx, conn, o.Changelog, spans, func(r *kgo.Record) error {
		res.Source.Records++
		if bytes.Compare(r.Key, lower) < 0 || bytes.Compare(r.Key, upper) >= 0 {
			return nil
		}
		k := key{r.Partition, string(r.Key)}
		delete(matched, k)
		delete(bad, k)
		live[k] = r.Value != nil
		if r.Value == nil {
			return nil
		}
		in, err := processes.DecodeInstance(r.Value)
		if err != nil {
			bad[k] = Undecodable{Key: string(r.Key), Partition: r.Partition, Offset: r.Offset, Problem: err.Error()}
			return nil
		}
		if !o.match(&in, now) {
			return nil
		}
		e := &ListEntry{CorrelationID: in.CorrelationID, Process: in.Process, Version: in.Version, State: in.State, Status: in.Status,
			Started: in.Started, Updated: in.Updated, Partition: r.Partition, Offset: r.Offset}
		for _, t := range in.Timers {
			e.Timers = append(e.Timers, TimerView(t))
		}
		if n := len(in.History); n > 0 {
			h := HistoryView(in.History[n-1])
			e.Last = &h
		}
		matched[k] = e
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, l := range live {
		if l {
			res.Scanned++
		}
	}
	totals := map[ListTotal]int{}
	for _, e := range matched {
		res.Instances = append(res.Instances, *e)
		totals[ListTotal{Process: e.Process, Version: e.Version, Status: e.Status}]++
	}
	slices.SortFunc(res.Instances, func(a, b ListEntry) int {
		if c := a.Started.Compare(b.Started); c != 0 {
			return c
		}
		return strings.Compare(a.CorrelationID+"/"+a.Process, b.CorrelationID+"/"+b.Process)
	})
	for t, n := range totals {
		t.Count = n
		res.Totals = append(res.Totals, t)
	}
	slices.SortFunc(res.Totals, func(a, b ListTotal) int {
		if c := strings.Compare(a.Process, b.Process); c != 0 {
			return c
		}
		if a.Version != b.Version {
			return a.Version - b.Version
		}
		return strings.Compare(a.Status, b.Status)
	})
	for _, u := range bad {
		res.Undecodable = append(res.Undecodable, u)
	}
	slices.SortFunc(res.Undecodable, func(a, b Undecodable) int { return strings.Compare(a.Key, b.Key) })
	return res, nil
}

// changelogSpans lists [log start, high watermark) of each partition. The
// high watermark, not the last stable offset: a read_committed read up to
// it waits for a transaction open now, so a version committed just after
// the listing's moment is not mistaken for one that never was (ordo's
// transactions last milliseconds to seconds).
func changelogSpans(ctx context.Context, adm *kadm.Client, topic string, parts []int32) (map[int32]span, error) {
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("list start offsets of changelog %s: %w", topic, err)
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("list end offsets of changelog %s: %w", topic, err)
	}
	out := map[int32]span{}
	for _, p := range parts {
		st, ok1 := starts.Lookup(topic, p)
		en, ok2 := ends.Lookup(topic, p)
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("list offsets of changelog %s: no answer for partition %d", topic, p)
		}
		out[p] = span{from: st.Offset, to: max(en.Offset, st.Offset)}
	}
	return out, nil
}

func sourceOf(topic string, n int, spans map[int32]span) ChangelogRead {
	src := ChangelogRead{Topic: topic, Partitions: n, Read: []PartitionRead{}}
	for p, s := range spans {
		src.Read = append(src.Read, PartitionRead{Partition: p, From: s.from, To: s.to})
	}
	slices.SortFunc(src.Read, func(a, b PartitionRead) int { return int(a.Partition - b.Partition) })
	return src
}

// readChangelog is readSpans with a hint when it is stopped while a
// transaction keeps a partition from being read to its end.
func readChangelog(ctx context.Context, conn []kgo.Opt, topic string, spans map[int32]span, fn func(*kgo.Record) error) error {
	err := readSpans(ctx, conn, topic, spans, fn)
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("%w; a read_committed read waits for transactions open on the changelog: if it keeps waiting, a producer left one open (it ends within the producer's transaction.timeout.ms)", err)
	}
	return err
}
