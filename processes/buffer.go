package processes

// Early events (notes pitfall 14): an event of a process that arrives
// before its instance exists (a PaymentAuthorized consumed before its
// OrderPlaced), or before the instance reaches a state that takes it, is
// kept in the instance's buffer (on_unknown: buffer) and retried, in
// arrival order, every time the instance starts or changes state, until it
// applies or early_events_ttl has passed since its own time. The decision
// uses event times, never the clock; Housekeep only reclaims the space.

import (
	"errors"
	"fmt"
	"time"

	"github.com/ordo-dev/ordo/processors"
)

var bufferMagic = []byte{'O', 'B', 1}

// encodeBuffered encodes ev with the time it was buffered at: "OB", format
// byte 1, 8 bytes Unix milliseconds big-endian, then one map value (see
// codec.go) with the event's record coordinates, headers, envelope, value
// and attrs.
func encodeBuffered(ev *processors.Event, at time.Time) ([]byte, error) {
	hs := make([]any, len(ev.Headers))
	for i, h := range ev.Headers {
		hs[i] = map[string]any{"key": h.Key, "value": h.Value}
	}
	env := ev.Envelope
	m := map[string]any{
		"topic": ev.Topic, "partition": ev.Partition, "offset": ev.Offset, "key": ev.Key,
		"timestamp": ev.Timestamp, "schema_id": int64(ev.SchemaID), "type": ev.Type, "headers": hs,
		"envelope": map[string]any{"id": env.ID, "type": env.Type, "source": env.Source, "time": env.Time,
			"correlation_id": env.CorrelationID, "causation_id": env.CausationID},
		"value": ev.Value, "attrs": ev.Attrs,
	}
	if ev.Value == nil {
		m["value"] = nil
	}
	if ev.Attrs == nil {
		m["attrs"] = nil
	}
	b := appendMillis(append([]byte(nil), bufferMagic...), at)
	return appendValue(b, m, 0)
}

func decodeBuffered(v []byte) (*processors.Event, time.Time, error) {
	if len(v) < len(bufferMagic)+8 || string(v[:3]) != string(bufferMagic) {
		return nil, time.Time{}, errors.New("not a buffered event")
	}
	at := millisAt(v[3:11])
	raw, err := DecodeValue(v[11:])
	if err != nil {
		return nil, at, err
	}
	f := fields{m: asMap(raw)}
	if f.m == nil {
		return nil, at, errors.New("not a map")
	}
	ev := &processors.Event{Topic: f.str("topic"), Type: f.str("type"), Timestamp: f.time("timestamp"),
		SchemaID: int(f.long("schema_id")), Offset: f.long("offset")}
	ev.Partition, _ = f.m["partition"].(int32)
	ev.Key, _ = f.m["key"].([]byte)
	ev.Value = asMap(f.m["value"])
	ev.Attrs = asMap(f.m["attrs"])
	for _, h := range f.list("headers") {
		hm := asMap(h)
		k, _ := hm["key"].(string)
		val, _ := hm["value"].([]byte)
		ev.Headers = append(ev.Headers, processors.Header{Key: k, Value: val})
	}
	ef := fields{m: asMap(f.m["envelope"])}
	ev.Envelope = processors.Envelope{ID: ef.str("id"), Type: ef.str("type"), Source: ef.str("source"), Time: ef.time("time"),
		CorrelationID: ef.str("correlation_id"), CausationID: ef.str("causation_id")}
	if err := errors.Join(f.err, ef.err); err != nil {
		return nil, at, err
	}
	return ev, at, nil
}

// buffer keeps ev for the instance (see the file comment).
func (r *run) buffer(ev *processors.Event) error {
	d := r.def
	prefix := bufferPrefix(r.cid, r.process)
	n := 0
	if err := r.tx.Range(prefix, prefixEnd(prefix), func(_, _ []byte) bool { n++; return n < MaxBuffered }); err != nil {
		return processors.Transient(fmt.Errorf("process %s: reading the early-event buffer of %q: %w", r.process, r.cid, err))
	}
	if n >= MaxBuffered {
		return processors.Permanent(fmt.Errorf("process %s: %d early events of %q are already waiting for its instance (the most kept); is %s published for it?",
			r.process, n, r.cid, d.start.on))
	}
	at := eventTime(ev)
	v, err := encodeBuffered(ev, at)
	if err != nil {
		return processors.Permanent(fmt.Errorf("process %s: buffering event %s (%s): %w", r.process, ev.Envelope.ID, ev.Type, err))
	}
	if len(v) > MaxValueBytes {
		return processors.Permanent(fmt.Errorf("process %s: event %s (%s) is too large to buffer (%d bytes, at most %d)", r.process, ev.Envelope.ID, ev.Type, len(v), MaxValueBytes))
	}
	k := bufferKey(r.cid, r.process, ev.Offset)
	if err := r.tx.Set(k, v); err != nil {
		return processors.Transient(fmt.Errorf("process %s: buffering: %w", r.process, err))
	}
	if err := r.tx.Set(expiryKey(at.Add(d.earlyTTL), k), nil); err != nil {
		return processors.Transient(fmt.Errorf("process %s: buffering: %w", r.process, err))
	}
	if r.inst != nil {
		r.inst.Waiting++
		r.dirty = true
	}
	return nil
}

// replay retries the buffered events while the instance keeps changing.
// Marks: buffer_applied, buffer_expired, buffer_<outcome> for events that
// no longer fit (buffer_unhandled, buffer_finished_instance, ...).
func (r *run) replay() error {
	for r.changed && r.inst != nil {
		r.changed = false
		if r.inst.Waiting == 0 && !r.started {
			return nil // nothing was buffered for it: skip the scan
		}
		r.started = false
		ttl := r.e.latest(r.process).earlyTTL
		if r.def != nil {
			ttl = r.def.earlyTTL
		}
		type row struct{ k, v []byte }
		var rows []row
		prefix := bufferPrefix(r.cid, r.process)
		err := r.tx.Range(prefix, prefixEnd(prefix), func(k, v []byte) bool {
			rows = append(rows, row{append([]byte(nil), k...), append([]byte(nil), v...)})
			return true
		})
		if err != nil {
			return processors.Transient(fmt.Errorf("process %s: reading the early-event buffer of %q: %w", r.process, r.cid, err))
		}
		r.inst.Waiting = len(rows)
		r.dirty = true
		for _, rw := range rows {
			ev, at, err := decodeBuffered(rw.v)
			outcome, keep := "corrupt", false
			switch {
			case err != nil:
			case !at.Add(ttl).After(r.now):
				outcome = "expired"
			default:
				outcome, keep, err = r.handle(ev, true)
				if err != nil {
					return fmt.Errorf("buffered event %s (%s, %s): %w", ev.Envelope.ID, ev.Type, sourceOf(ev), err)
				}
			}
			if keep {
				continue
			}
			r.inst.Waiting--
			if err := r.tx.Delete(rw.k); err != nil {
				return processors.Transient(fmt.Errorf("process %s: %w", r.process, err))
			}
			r.mark("buffer_" + outcome)
		}
	}
	return nil
}
