package processes

// Idempotency (notes §4 "Dedupe window", "Dead letters"): the first
// delivery of an event id marks d/<cid>/<event id> = its record time, in
// the same state transaction as its effects; a later delivery of the same
// id within the window is dropped before any processor runs, so it emits no
// second set of commands, for processes and stateless routes alike. The
// window is decided on record timestamps, so a re-run decides the same;
// deleting expired marks (Housekeep) only reclaims space. A dead-lettered
// or failed event leaves no mark (the pipeline discards its writes), so a
// redrive of it is processed.

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/ordo-dev/ordo/internal/state"
	"github.com/ordo-dev/ordo/processors"
)

// Dedupe returns the deduplicating processor (run it first in the stage-2
// chain). A duplicate is marked ev.Mark("", "duplicate"), recorded on the
// span, and returns an error wrapping processors.ErrDrop. Events without an
// envelope id pass (mark "no_event_id"), as do events without a
// correlation id ("no_correlation_id"); timer events pass (the timer row
// decides whether they fire).
func (e *Engine) Dedupe() processors.Processor { return processors.Func(e.dedupe) }

func (e *Engine) dedupe(ctx context.Context, ev *processors.Event) ([]processors.Command, error) {
	if ev.Type == TimerType {
		return nil, nil
	}
	id := ev.Envelope.ID
	cid := correlationID(ev)
	switch {
	case id == "":
		ev.Mark("", "no_event_id")
		return nil, nil
	case cid == "": // nothing to scope the mark by (stage 1 keys every record by it)
		ev.Mark("", "no_correlation_id")
		return nil, nil
	}
	tx, err := txnFrom(ctx)
	if err != nil {
		return nil, err
	}
	k := dedupeKey(cid, id)
	v, seen, err := tx.Get(k)
	if err != nil {
		return nil, processors.Transient(fmt.Errorf("dedupe: reading the mark of event %s: %w", id, err))
	}
	now := eventTime(ev)
	if seen && len(v) == 8 {
		first := millisAt(v)
		// A mark older than the window is absent; one from an event time
		// after this one (out-of-order timestamps) is within it.
		if now.Sub(first) < e.window {
			ev.Mark("", "duplicate")
			trace.SpanFromContext(ctx).AddEvent("ordo.duplicate", trace.WithAttributes(
				attribute.String("ordo.event.id", id),
				attribute.String("ordo.correlation_id", cid),
				attribute.String("ordo.duplicate.first_seen", first.Format(time.RFC3339Nano))))
			return nil, fmt.Errorf("duplicate of event %s (first seen at %s, dedupe window %s): %w", id, first.Format(time.RFC3339Nano), e.window, processors.ErrDrop)
		}
	}
	if err := tx.Set(k, appendMillis(nil, now)); err != nil {
		return nil, processors.Transient(fmt.Errorf("dedupe: marking event %s: %w", id, err))
	}
	if err := tx.Set(expiryKey(now.Add(e.window), k), nil); err != nil {
		return nil, processors.Transient(fmt.Errorf("dedupe: marking event %s: %w", id, err))
	}
	return nil, nil
}

// Housekeep deletes, through the expiry index, up to limit expired
// entries: dedupe marks older than the window, early events older than
// their TTL, finished instances older than keep_finished. It returns how
// many index entries it handled. The loop calls it in transactions that
// also commit the partition's input offsets (notes §4, the fencing
// caveat). now should be the partition's stream time (its largest
// processed record time) or the wall clock once caught up: decisions never
// depend on it (they use event times), only how soon space is reclaimed.
func (e *Engine) Housekeep(tx state.Txn, now time.Time, limit int) (int, error) {
	var keys [][]byte
	upper := appendMillis([]byte(prefixExpiry), time.UnixMilli(now.UnixMilli()+1))
	err := tx.Range([]byte(prefixExpiry), upper, func(k, _ []byte) bool {
		keys = append(keys, append([]byte(nil), k...))
		return limit <= 0 || len(keys) < limit
	})
	if err != nil {
		return 0, fmt.Errorf("processes: housekeeping: %w", err)
	}
	for _, xk := range keys {
		if err := e.expire(tx, xk, now); err != nil {
			return 0, fmt.Errorf("processes: housekeeping: %w", err)
		}
	}
	return len(keys), nil
}

// expire handles one expiry entry: delete its target if it expired under
// the current settings, else index it again at its new expiry.
func (e *Engine) expire(tx state.Txn, xk []byte, now time.Time) error {
	if err := tx.Delete(xk); err != nil {
		return err
	}
	pk, err := ParseKey(xk)
	if err != nil {
		return nil // not ours: the entry is gone, nothing else to do
	}
	target := pk.Target
	v, ok, err := tx.Get(target)
	if err != nil || !ok {
		return err
	}
	var at time.Time // when the target expires now
	tk, err := ParseKey(target)
	if err != nil {
		return nil
	}
	switch tk.Kind {
	case "dedupe":
		if len(v) != 8 {
			return tx.Delete(target)
		}
		at = millisAt(v).Add(e.window)
	case "buffer":
		d := e.latest(tk.Process)
		if d == nil || len(v) < 11 {
			return tx.Delete(target)
		}
		at = millisAt(v[3:11]).Add(d.earlyTTL)
	case "instance":
		in, err := DecodeInstance(v)
		if err != nil || !in.Finished() {
			return nil // running instances never expire; unreadable ones stay for inspection
		}
		d := e.def(in.Process, in.Version)
		if d == nil {
			d = e.latest(in.Process)
		}
		if d == nil {
			return tx.Delete(target)
		}
		at = in.Updated.Add(d.keepFinished)
	default:
		return nil
	}
	if !at.After(now) {
		return tx.Delete(target)
	}
	return tx.Set(expiryKey(at, target), nil)
}
