package processes

import (
	"encoding/binary"
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
//	waiting         long     early events buffered for the instance at its
//	                         last change (0: no need to look at the buffer)
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
	// Waiting is how many early events were buffered for the instance
	// when it last changed; 0 lets a state change skip the buffer.
	Waiting int
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

// EncodeInstance encodes in (see Instance). It writes the documented map
// directly (keys in byte order), without building it: this runs for every
// event.
func EncodeInstance(in *Instance) ([]byte, error) {
	b := make([]byte, 0, 256+64*len(in.History))
	b = append(b, instanceMagic...)
	b = binary.AppendUvarint(append(b, tagMap), 13)
	b = appendString(b, "compensations")
	b = binary.AppendUvarint(append(b, tagList), uint64(len(in.Compensations)))
	var err error
	for _, c := range in.Compensations {
		b = binary.AppendUvarint(append(b, tagMap), 4)
		fs := c.Fields
		if fs == nil {
			fs = map[string]any{}
		}
		if b, err = appendValue(appendString(b, "fields"), fs, 1); err != nil {
			return nil, fmt.Errorf("encoding instance: compensation %s: %w", c.Type, err)
		}
		b = appendStr(appendString(b, "step"), c.Step)
		b = appendStr(appendString(b, "topic"), c.Topic)
		b = appendStr(appendString(b, "type"), c.Type)
	}
	b = appendStr(appendString(b, "correlation_id"), in.CorrelationID)
	b = appendString(b, "history")
	b = binary.AppendUvarint(append(b, tagList), uint64(len(in.History)))
	for _, h := range in.History {
		b = binary.AppendUvarint(append(b, tagMap), 5)
		b = appendTime(appendString(b, "at"), h.At)
		b = appendStr(appendString(b, "id"), h.ID)
		b = appendStr(appendString(b, "kind"), h.Kind)
		b = appendStr(appendString(b, "source"), h.Source)
		b = appendStr(appendString(b, "type"), h.Type)
	}
	b = appendString(b, "joined")
	b = binary.AppendUvarint(append(b, tagList), uint64(len(in.Joined)))
	for _, j := range in.Joined {
		b = appendStr(b, j)
	}
	b = appendStr(appendString(b, "process"), in.Process)
	b = appendTime(appendString(b, "started"), in.Started)
	b = appendStr(appendString(b, "state"), in.State)
	b = appendStr(appendString(b, "status"), in.Status)
	b = appendString(b, "timers")
	b = binary.AppendUvarint(append(b, tagList), uint64(len(in.Timers)))
	for _, t := range in.Timers {
		b = binary.AppendUvarint(append(b, tagMap), 2)
		b = appendTime(appendString(b, "due"), t.Due)
		b = appendStr(appendString(b, "name"), t.Name)
	}
	b = appendTime(appendString(b, "updated"), in.Updated)
	vars := in.Vars
	if vars == nil {
		vars = map[string]any{}
	}
	if b, err = appendValue(appendString(b, "vars"), vars, 0); err != nil {
		return nil, fmt.Errorf("encoding instance: vars%w", err)
	}
	b = binary.AppendVarint(append(appendString(b, "version"), tagInt64), int64(in.Version))
	b = binary.AppendVarint(append(appendString(b, "waiting"), tagInt64), int64(in.Waiting))
	return b, nil
}

func appendStr(b []byte, s string) []byte { return appendString(append(b, tagString), s) }

func appendTime(b []byte, t time.Time) []byte {
	b = binary.AppendVarint(append(b, tagTime), t.Unix())
	return binary.AppendUvarint(b, uint64(t.Nanosecond()))
}

// DecodeInstance decodes an instance value (for the engine and for `ordo
// process show/list`). Keys it does not know are skipped (a newer ordo may
// add some); a missing or mistyped known key is an error.
func DecodeInstance(v []byte) (Instance, error) {
	if len(v) < len(instanceMagic) || string(v[:2]) != string(instanceMagic[:2]) {
		return Instance{}, errors.New("processes: not an instance value")
	}
	if v[2] != instanceMagic[2] {
		return Instance{}, fmt.Errorf("processes: instance format %d: %w (it knows %d)", v[2], errNewerFormat, instanceMagic[2])
	}
	r := &reader{b: v[3:]}
	var in Instance
	seen := 0
	r.mapOf(func(k []byte) {
		switch string(k) {
		case "compensations":
			r.listOf(func() {
				var c Compensation
				r.mapOf(func(k []byte) {
					switch string(k) {
					case "fields":
						c.Fields = r.mapValue()
					case "step":
						c.Step = r.str()
					case "topic":
						c.Topic = r.str()
					case "type":
						c.Type = r.str()
					default:
						r.value(1)
					}
				})
				in.Compensations = append(in.Compensations, c)
			})
		case "correlation_id":
			in.CorrelationID = r.str()
		case "history":
			r.listOf(func() {
				var h HistoryEntry
				r.mapOf(func(k []byte) {
					switch string(k) {
					case "at":
						h.At = r.timeV()
					case "id":
						h.ID = r.str()
					case "kind":
						h.Kind = r.str()
					case "source":
						h.Source = r.str()
					case "type":
						h.Type = r.str()
					default:
						r.value(1)
					}
				})
				in.History = append(in.History, h)
			})
		case "joined":
			r.listOf(func() { in.Joined = append(in.Joined, r.str()) })
		case "process":
			in.Process = r.str()
		case "started":
			in.Started = r.timeV()
		case "state":
			in.State = r.str()
		case "status":
			in.Status = r.str()
		case "timers":
			r.listOf(func() {
				var t TimerSet
				r.mapOf(func(k []byte) {
					switch string(k) {
					case "due":
						t.Due = r.timeV()
					case "name":
						t.Name = r.str()
					default:
						r.value(1)
					}
				})
				in.Timers = append(in.Timers, t)
			})
		case "updated":
			in.Updated = r.timeV()
		case "vars":
			in.Vars = r.mapValue()
		case "version":
			in.Version = int(r.long())
		case "waiting":
			in.Waiting = int(r.long())
		default:
			r.value(0)
			return
		}
		seen++
	})
	if r.err == nil && len(r.b) > 0 {
		r.fail("%d trailing bytes", len(r.b))
	}
	if r.err == nil && (seen != 13 || in.Vars == nil) {
		r.fail("%d of the 13 instance keys", seen)
	}
	if r.err != nil {
		return Instance{}, fmt.Errorf("processes: instance: %w", r.err)
	}
	return in, nil
}

// Typed reads for DecodeInstance: each expects its tag.

func (r *reader) expect(tag byte, what string) bool {
	if got := r.byte(); got != tag && r.err == nil {
		r.fail("want %s, got tag 0x%02x", what, got)
	}
	return r.err == nil
}

func (r *reader) str() string {
	if !r.expect(tagString, "a string") {
		return ""
	}
	return r.string()
}

func (r *reader) long() int64 {
	if !r.expect(tagInt64, "a long") {
		return 0
	}
	return r.varint()
}

func (r *reader) timeV() time.Time {
	if !r.expect(tagTime, "a time") {
		return time.Time{}
	}
	sec := r.varint()
	ns := r.uvarint()
	if ns >= 1e9 {
		r.fail("nanoseconds %d out of range", ns)
	}
	return time.Unix(sec, int64(ns)).UTC()
}

func (r *reader) mapValue() map[string]any {
	m, ok := r.value(1).(map[string]any)
	if !ok && r.err == nil {
		r.fail("want a map")
	}
	return m
}

func (r *reader) listOf(fn func()) {
	if !r.expect(tagList, "a list") {
		return
	}
	for n := r.count(); n > 0 && r.err == nil; n-- {
		fn()
	}
}

// mapOf calls fn with each key (valid only during the call) of a map; fn
// reads the value.
func (r *reader) mapOf(fn func(key []byte)) {
	if !r.expect(tagMap, "a map") {
		return
	}
	for n := r.count(); n > 0 && r.err == nil; n-- {
		k := r.bytes(r.uvarint())
		if r.err == nil {
			fn(k)
		}
	}
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
