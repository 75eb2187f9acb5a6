package processes

// Timers fire once because the state decides (Zeebe's design, notes §3,
// §4): a due timer is a row t/<due>/<cid>/<process>/<name>. The consumer
// loop finds due rows (Due) on a caught-up partition and produces a trigger
// record for each to the process log's partition (Record). When the engine
// consumes a trigger back (TriggerEvent, Type TimerType), it fires the timer
// only if the row still exists, deleting it in the same transaction; a
// second trigger for the same timer, or one for a timer that an event
// cancelled meanwhile, finds no row and does nothing (mark timer_stale).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ordo-dev/ordo/internal/state"
	"github.com/ordo-dev/ordo/processors"
)

// TimerType is ev.Type of a timer firing.
const TimerType = "ordo.process.timer"

// Trigger records carry this header (value HeaderKindTimer).
const (
	HeaderKind      = "ordo-kind"
	HeaderKindTimer = "timer"
)

// Timer is one due timer row.
type Timer struct {
	Process       string
	Version       int
	CorrelationID string
	Name          string
	Due           time.Time // whole milliseconds, UTC
}

// ID is the timer's deterministic id (a UUID from process, correlation id,
// name and due time): the envelope id of its timer event and the cause of
// the commands its firing emits.
func (t Timer) ID() string {
	return uuid8("ordo.timer.v1", t.Process, t.CorrelationID, t.Name, strconv.FormatInt(t.Due.UnixMilli(), 10))
}

// triggerValue is the JSON value of a trigger record.
type triggerValue struct {
	Process       string `json:"process"`
	Version       int    `json:"version"`
	CorrelationID string `json:"correlation_id"`
	Name          string `json:"name"`
	DueMs         int64  `json:"due_ms"`
}

// Record is the trigger record the loop produces to the process log's
// partition (the partition of the timer's state): key = correlation id,
// header ordo-kind: timer, a small JSON value.
func (t Timer) Record(processLog string, partition int32) *kgo.Record {
	v, _ := json.Marshal(triggerValue{Process: t.Process, Version: t.Version, CorrelationID: t.CorrelationID, Name: t.Name, DueMs: t.Due.UnixMilli()}) // cannot fail: strings and ints
	return &kgo.Record{
		Topic: processLog, Partition: partition, Key: []byte(t.CorrelationID), Value: v,
		Headers: []kgo.RecordHeader{{Key: HeaderKind, Value: []byte(HeaderKindTimer)}},
	}
}

// IsTrigger reports whether r is a timer trigger record.
func IsTrigger(r *kgo.Record) bool {
	for _, h := range r.Headers {
		if h.Key == HeaderKind {
			return string(h.Value) == HeaderKindTimer
		}
	}
	return false
}

// TriggerEvent is the Event the engine receives for a consumed trigger
// record: Type TimerType, Key and envelope.correlation_id the correlation
// id, envelope.id the timer's ID, envelope.time its due time, Value
// {process, version (long), name, due (time)} (CEL: event.name).
func TriggerEvent(r *kgo.Record) (*processors.Event, error) {
	if !IsTrigger(r) {
		return nil, errors.New("processes: not a timer trigger record (no header ordo-kind: timer)")
	}
	var v triggerValue
	if err := json.Unmarshal(r.Value, &v); err != nil {
		return nil, fmt.Errorf("processes: timer trigger at %s/%d/%d: %w", r.Topic, r.Partition, r.Offset, err)
	}
	if v.Process == "" || v.Name == "" || v.CorrelationID == "" {
		return nil, fmt.Errorf("processes: timer trigger at %s/%d/%d lacks process, name or correlation id", r.Topic, r.Partition, r.Offset)
	}
	if len(r.Key) > 0 && string(r.Key) != v.CorrelationID {
		return nil, fmt.Errorf("processes: timer trigger at %s/%d/%d: key %q is not its correlation id %q", r.Topic, r.Partition, r.Offset, r.Key, v.CorrelationID)
	}
	t := Timer{Process: v.Process, Version: v.Version, CorrelationID: v.CorrelationID, Name: v.Name, Due: time.UnixMilli(v.DueMs).UTC()}
	hs := make([]processors.Header, len(r.Headers))
	for i, h := range r.Headers {
		hs[i] = processors.Header{Key: h.Key, Value: h.Value}
	}
	return &processors.Event{
		Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Key: []byte(v.CorrelationID), Timestamp: r.Timestamp, Headers: hs,
		Type:     TimerType,
		Envelope: processors.Envelope{ID: t.ID(), Type: TimerType, Source: "ordo", Time: t.Due, CorrelationID: t.CorrelationID},
		Value:    map[string]any{"process": t.Process, "version": int64(t.Version), "name": t.Name, "due": t.Due},
	}, nil
}

func timerOf(ev *processors.Event) (Timer, bool) {
	p, _ := ev.Value["process"].(string)
	n, _ := ev.Value["name"].(string)
	v, _ := ev.Value["version"].(int64)
	due, ok := ev.Value["due"].(time.Time)
	if p == "" || n == "" || !ok {
		return Timer{}, false
	}
	return Timer{Process: p, Version: int(v), CorrelationID: correlationID(ev), Name: n, Due: due.UTC()}, true
}

// Due lists up to limit timers with due ≤ now, earliest first. now is the
// wall clock: call it only for partitions that are restored and caught up
// (notes pitfall 7), or a backlog fires false deadlines.
func (e *Engine) Due(r state.Reader, now time.Time, limit int) ([]Timer, error) {
	var out []Timer
	var perr error
	upper := appendMillis([]byte(prefixTimer), time.UnixMilli(now.UnixMilli()+1))
	err := r.Range([]byte(prefixTimer), upper, func(k, v []byte) bool {
		pk, err := ParseKey(k)
		if err != nil {
			perr = err
			return false
		}
		ver, _ := strconv.Atoi(string(v))
		out = append(out, Timer{Process: pk.Process, Version: ver, CorrelationID: pk.CorrelationID, Name: pk.Name, Due: pk.Time})
		return limit <= 0 || len(out) < limit
	})
	if err == nil {
		err = perr
	}
	if err != nil {
		return nil, fmt.Errorf("processes: listing due timers: %w", err)
	}
	return out, nil
}

// NextDue is the earliest timer's due time (ok false: no timers), to bound
// how long the loop may wait for records.
func (e *Engine) NextDue(r state.Reader) (due time.Time, ok bool, err error) {
	err = r.Range([]byte(prefixTimer), prefixEnd([]byte(prefixTimer)), func(k, _ []byte) bool {
		if pk, perr := ParseKey(k); perr == nil {
			due, ok = pk.Time, true
		}
		return false
	})
	return due, ok, err
}

// fire applies a timer event (see the file comment).
func (e *Engine) fire(ctx context.Context, ev *processors.Event) ([]processors.Command, error) {
	t, ok := timerOf(ev)
	if !ok {
		return nil, processors.Permanent(fmt.Errorf("processes: malformed timer event %s (needs process, name and due)", ev.Envelope.ID))
	}
	tx, err := txnFrom(ctx)
	if err != nil {
		return nil, err
	}
	row := timerKey(t.Due, t.CorrelationID, t.Process, t.Name)
	_, exists, err := tx.Get(row)
	if err != nil {
		return nil, processors.Transient(fmt.Errorf("process %s: reading timer %s of %q: %w", t.Process, t.Name, t.CorrelationID, err))
	}
	if !exists {
		ev.Mark(t.Process, "timer_stale")
		return nil, nil
	}
	if err := tx.Delete(row); err != nil {
		return nil, processors.Transient(fmt.Errorf("process %s: %w", t.Process, err))
	}
	if e.latest(t.Process) == nil { // the process was removed from the config
		ev.Mark(t.Process, "timer_stale")
		return nil, nil
	}
	r, err := e.load(tx, ev, t.Process, t.CorrelationID)
	if err != nil {
		return nil, err
	}
	if r.inst == nil || r.inst.Finished() {
		r.mark("timer_stale")
		return nil, nil
	}
	i := -1
	for j, ts := range r.inst.Timers {
		if ts.Name == t.Name && ts.Due.Equal(t.Due) {
			i = j
		}
	}
	if i < 0 { // the row outlived its instance's timer: clean it up
		r.mark("timer_stale")
		return nil, nil
	}
	r.inst.Timers = append(r.inst.Timers[:i], r.inst.Timers[i+1:]...)
	r.begin(ev)
	r.mark("timer_fired")
	tr, err := r.match(r.def.states[r.inst.State].transitions, ev, t.Name)
	if err != nil {
		return nil, err
	}
	if tr == nil {
		r.mark("timer_unhandled")
	} else if err := r.apply(tr, ev); err != nil {
		return nil, err
	}
	if err := r.replay(); err != nil {
		return nil, err
	}
	if err := r.save(); err != nil {
		return nil, err
	}
	return r.out, nil
}
