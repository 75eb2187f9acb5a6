package processes

import (
	"errors"
	"fmt"
	"time"
)

// StatusRunning is the status of an instance that has not reached a
// terminal state; a finished instance has its terminal state's status
// (e.g. "completed", "cancelled").
const StatusRunning = "running"

// Instance is one process instance: the state of one process for one
// correlation id, stored at InstanceKey(cid, process).
//
// Encoding (format 1): the bytes "OI", the format byte 0x01, then one map
// value in the encoding of codec.go with these keys:
//
//	process         string
//	version         long
//	correlation_id  string
//	state           string   current state
//	status          string   "running" or the terminal state's status
//	vars            map      the process variables (natural values)
//	joined          list     names of the join legs received in the current state
//	compensations   list     of map {step, type, topic, fields}: recorded
//	                         compensation commands, oldest first
//	timers          list     of map {name, due (time)}: running timers
//	started         time     start event's time
//	updated         time     time of the last event or timer applied
//	history         list     of map {at (time), kind, type, id, source}: the
//	                         last MaxHistory entries, oldest first
//
// All times are event times (record timestamps, or a timer's due time),
// never the wall clock, so a re-run writes the same bytes.
type Instance struct {
	Process       string
	Version       int
	CorrelationID string
	State         string
	Status        string
	Vars          map[string]any
	Joined        []string
	Compensations []Compensation
	Timers        []TimerSet
	Started       time.Time
	Updated       time.Time
	History       []HistoryEntry
}

// Finished reports whether the instance reached a terminal state.
func (in *Instance) Finished() bool { return in.Status != StatusRunning }

// Compensation is a compensation command recorded when its step completed
// (fields evaluated then), emitted if the process later compensates.
type Compensation struct {
	Step   string // config key of the step that recorded it
	Type   string
	Topic  string
	Fields map[string]any
}

// TimerSet is a running timer of an instance.
type TimerSet struct {
	Name string
	Due  time.Time
}

// HistoryEntry is one thing that happened to an instance.
type HistoryEntry struct {
	At time.Time
	// Kind is "event" (applied), "command" (emitted), "state" (entered),
	// "timer_set", "timer_fired" or "timer_cancelled".
	Kind string
	// Type is the event or command type, the state or the timer name.
	Type string
	// ID is the event's envelope id, the command's id or the timer's ID.
	ID string
	// Source is where an event came from: its input record as
	// topic/partition/offset.
	Source string
}

var instanceMagic = []byte{'O', 'I', 1}

// errNewerFormat: the value was written by a newer ordo.
var errNewerFormat = errors.New("newer than this ordo")

// EncodeInstance encodes in (see Instance).
func EncodeInstance(in *Instance) ([]byte, error) {
	comps := make([]any, len(in.Compensations))
	for i, c := range in.Compensations {
		comps[i] = map[string]any{"step": c.Step, "type": c.Type, "topic": c.Topic, "fields": c.Fields}
	}
	timers := make([]any, len(in.Timers))
	for i, t := range in.Timers {
		timers[i] = map[string]any{"name": t.Name, "due": t.Due}
	}
	hist := make([]any, len(in.History))
	for i, h := range in.History {
		hist[i] = map[string]any{"at": h.At, "kind": h.Kind, "type": h.Type, "id": h.ID, "source": h.Source}
	}
	joined := make([]any, len(in.Joined))
	for i, j := range in.Joined {
		joined[i] = j
	}
	vars := in.Vars
	if vars == nil {
		vars = map[string]any{}
	}
	m := map[string]any{
		"process": in.Process, "version": int64(in.Version), "correlation_id": in.CorrelationID,
		"state": in.State, "status": in.Status, "vars": vars, "joined": joined,
		"compensations": comps, "timers": timers, "started": in.Started, "updated": in.Updated,
		"history": hist,
	}
	b, err := appendValue(append([]byte(nil), instanceMagic...), m, 0)
	if err != nil {
		return nil, fmt.Errorf("encoding instance: %w", err)
	}
	return b, nil
}

// DecodeInstance decodes an instance value (for the engine and for `ordo
// process show/list`).
func DecodeInstance(v []byte) (Instance, error) {
	if len(v) < len(instanceMagic) || string(v[:2]) != string(instanceMagic[:2]) {
		return Instance{}, errors.New("processes: not an instance value")
	}
	if v[2] != instanceMagic[2] {
		return Instance{}, fmt.Errorf("processes: instance format %d: %w (it knows %d)", v[2], errNewerFormat, instanceMagic[2])
	}
	raw, err := DecodeValue(v[3:])
	if err != nil {
		return Instance{}, fmt.Errorf("processes: instance: %w", err)
	}
	f := fields{m: asMap(raw)}
	if f.m == nil {
		return Instance{}, errors.New("processes: instance: not a map")
	}
	in := Instance{
		Process: f.str("process"), Version: int(f.long("version")), CorrelationID: f.str("correlation_id"),
		State: f.str("state"), Status: f.str("status"), Vars: asMap(f.m["vars"]),
		Started: f.time("started"), Updated: f.time("updated"),
	}
	for _, j := range f.list("joined") {
		s, _ := j.(string)
		in.Joined = append(in.Joined, s)
	}
	for _, c := range f.list("compensations") {
		cf := fields{m: asMap(c)}
		in.Compensations = append(in.Compensations, Compensation{Step: cf.str("step"), Type: cf.str("type"), Topic: cf.str("topic"), Fields: asMap(cf.m["fields"])})
		f.err = errors.Join(f.err, cf.err)
	}
	for _, t := range f.list("timers") {
		tf := fields{m: asMap(t)}
		in.Timers = append(in.Timers, TimerSet{Name: tf.str("name"), Due: tf.time("due")})
		f.err = errors.Join(f.err, tf.err)
	}
	for _, h := range f.list("history") {
		hf := fields{m: asMap(h)}
		in.History = append(in.History, HistoryEntry{At: hf.time("at"), Kind: hf.str("kind"), Type: hf.str("type"), ID: hf.str("id"), Source: hf.str("source")})
		f.err = errors.Join(f.err, hf.err)
	}
	if in.Vars == nil {
		f.fail("vars")
	}
	if f.err != nil {
		return Instance{}, fmt.Errorf("processes: instance: %w", f.err)
	}
	return in, nil
}

func asMap(v any) map[string]any { m, _ := v.(map[string]any); return m }

// fields reads typed fields of a decoded map; errors are collected.
type fields struct {
	m   map[string]any
	err error
}

func (f *fields) fail(k string) {
	f.err = errors.Join(f.err, fmt.Errorf("field %s missing or of the wrong type", k))
}

func (f *fields) str(k string) string {
	s, ok := f.m[k].(string)
	if !ok {
		f.fail(k)
	}
	return s
}

func (f *fields) long(k string) int64 {
	n, ok := f.m[k].(int64)
	if !ok {
		f.fail(k)
	}
	return n
}

func (f *fields) time(k string) time.Time {
	t, ok := f.m[k].(time.Time)
	if !ok {
		f.fail(k)
	}
	return t
}

func (f *fields) list(k string) []any {
	l, ok := f.m[k].([]any)
	if !ok {
		f.fail(k)
	}
	return l
}
