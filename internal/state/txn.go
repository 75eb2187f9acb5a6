package state

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/twmb/franz-go/pkg/kgo"
)

// unproduced marks a changelog record's Offset until the producer sets it
// (kgo writes the offset into the record when its produce succeeds).
const unproduced = -1

// Event returns a fresh overlay for one event of partition p: it reads p's
// committed store, then the open transaction's writes (of earlier events),
// then its own. Apply adds its writes to the transaction. It fails when p is
// not Ready.
func (m *Manager) Event(p int32) (*Overlay, error) {
	v, err := m.View(p)
	if err != nil {
		return nil, err
	}
	return NewOverlay(v), nil
}

// View reads p's committed store and the open transaction's writes (the
// loop scans timers with it). The Reader fails once p is revoked.
func (m *Manager) View(p int32) (Reader, error) {
	part := m.get(p)
	if part == nil {
		return nil, fmt.Errorf("state: partition %d: %w", p, ErrNotOwned)
	}
	if !part.isReady() {
		part.mu.RLock()
		defer part.mu.RUnlock()
		return nil, part.errNotReady()
	}
	return view{part}, nil
}

// Apply adds a succeeded event's writes to partition p's share of the open
// transaction, where later events (and View) see them. Keys must not be
// empty nor start with 0x00 (reserved for the store).
func (m *Manager) Apply(p int32, ev *Overlay) error {
	writes := ev.Writes()
	for _, w := range writes {
		if len(w.Key) == 0 {
			return fmt.Errorf("state: partition %d: an event wrote an empty key: state keys need a namespace prefix", p)
		}
		if reserved(w.Key) {
			return fmt.Errorf("state: partition %d: an event wrote key %q: keys starting with 0x00 are reserved for the store", p, w.Key)
		}
	}
	part := m.get(p)
	if part == nil {
		return fmt.Errorf("state: partition %d: %w", p, ErrNotOwned)
	}
	part.mu.RLock()
	defer part.mu.RUnlock()
	if !part.ready || part.closed {
		return part.errNotReady()
	}
	if len(writes) == 0 {
		return nil
	}
	part.txMu.Lock()
	defer part.txMu.Unlock()
	for _, w := range writes {
		if _, seen := part.tx[string(w.Key)]; !seen && len(w.Key) > 0 {
			part.txFirst[w.Key[0]]++
		}
		if w.Value == nil {
			part.tx[string(w.Key)] = nil
		} else {
			v := w.Value // Writes hands out the overlay's copy; nothing else holds it
			part.tx[string(w.Key)] = &v
		}
	}
	part.dirty = true
	return nil
}

// ChangelogRecords returns one record per key written in the open
// transaction (the last write wins): Topic = the changelog, Partition = the
// store's partition, Key = the store key, Value = the value or nil for a
// delete (a tombstone). Produce them with a partitioner that honours
// Record.Partition (Partitioner). Call it once per transaction, after the
// last Apply and before End: Finish(true) reads the offsets the producer
// sets on exactly these records.
func (m *Manager) ChangelogRecords() []*kgo.Record {
	var out []*kgo.Record
	for _, part := range m.sortedParts() {
		part.txMu.Lock()
		keys := make([]string, 0, len(part.tx))
		for k := range part.tx {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		recs := make([]*kgo.Record, 0, len(keys))
		for _, k := range keys {
			r := &kgo.Record{Topic: m.o.Changelog, Partition: part.p, Key: []byte(k), Offset: unproduced}
			if w := part.tx[k]; w != nil {
				r.Value = *w
				if r.Value == nil {
					r.Value = []byte{} // an empty value, not a tombstone
				}
			}
			recs = append(recs, r)
		}
		part.recs, part.dirty = recs, false
		part.txMu.Unlock()
		out = append(out, recs...)
	}
	return out
}

// Finish ends the open transaction once End returned. committed (End
// returned true, nil) writes each partition's transaction writes to its
// store, together with the applied changelog offset (the highest offset of
// its records from ChangelogRecords), without fsync: after a crash the
// store catches up from the applied offset it recovers. committed false
// (aborted, or End failed: the outcome is unknown) discards every write.
//
// When a partition's writes cannot be stored (its changelog records were
// not all produced, Apply ran after ChangelogRecords, or the store failed),
// its writes are dropped, the partition stops being Ready and is restored
// again from the changelog in the background (Restored reports it when done),
// and the error names it.
func (m *Manager) Finish(committed bool) error {
	var errs []error
	for _, part := range m.sortedParts() {
		part.txMu.Lock()
		tx, recs, dirty := part.tx, part.recs, part.dirty
		part.tx, part.recs, part.dirty = map[string]*[]byte{}, nil, false
		part.txFirst = [256]int32{}
		part.txMu.Unlock()
		if !committed || len(tx) == 0 {
			continue
		}
		if err := m.commit(part, tx, recs, dirty); err != nil {
			errs = append(errs, err)
			m.restoreAgain(part, err)
		}
	}
	return errors.Join(errs...)
}

func (m *Manager) commit(part *partition, tx map[string]*[]byte, recs []*kgo.Record, dirty bool) error {
	part.mu.RLock()
	defer part.mu.RUnlock()
	if part.closed || !part.ready {
		return nil // revoked meanwhile: its writes are dropped and its next Assign catches up
	}
	if dirty {
		return fmt.Errorf("state: partition %d: Apply ran after ChangelogRecords: its last writes have no changelog records; it is restored from the changelog", part.p)
	}
	applied := int64(-1)
	for _, r := range recs {
		if r.Offset == unproduced {
			return fmt.Errorf("state: partition %d: changelog record for key %q has no offset (not produced in the committed transaction); it is restored from the changelog", part.p, r.Key)
		}
		applied = max(applied, r.Offset)
	}
	if len(recs) != len(tx) {
		return fmt.Errorf("state: partition %d: %d writes but %d changelog records; it is restored from the changelog", part.p, len(tx), len(recs))
	}
	b := part.db.NewBatch()
	defer b.Close()
	for _, r := range recs {
		w, ok := tx[string(r.Key)]
		if !ok || (w == nil) != (r.Value == nil) || (w != nil && !bytes.Equal(*w, r.Value)) {
			return fmt.Errorf("state: partition %d: changelog record for key %q does not match the write; it is restored from the changelog", part.p, r.Key)
		}
		var err error
		if w == nil {
			err = b.Delete(r.Key, nil)
		} else {
			err = b.Set(r.Key, *w, nil)
		}
		if err != nil {
			return fmt.Errorf("state: partition %d: batching a write: %w", part.p, err)
		}
	}
	if err := errors.Join(putInt64(b, metaApplied, applied), putInt64(b, metaSynced, time.Now().UnixMilli())); err != nil {
		return fmt.Errorf("state: partition %d: batching the applied offset: %w", part.p, err)
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("state: partition %d: writing the committed transaction: %w", part.p, err)
	}
	part.updateProgress(func(pr *Progress) { pr.Applied = applied })
	if h := m.o.Hooks.Committed; h != nil {
		h(part.p, len(recs), applied)
	}
	return nil
}

// restoreAgain takes part out of service and restores it from the changelog
// (its store may lack writes the changelog has).
func (m *Manager) restoreAgain(part *partition, why error) {
	if m.get(part.p) != part {
		return
	}
	part.mu.Lock()
	if part.closed {
		part.mu.Unlock()
		return
	}
	part.ready = false
	part.mu.Unlock()
	m.log.Error("state: restoring a partition again", "partition", part.p, "err", why)
	// The previous restore has ended; this waits for its goroutine, which
	// takes m.mu on its way out, so m.mu is not held here.
	part.stopRestore()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed || m.parts[part.p] != part {
		return // revoked meanwhile
	}
	part.updateProgress(func(pr *Progress) { pr.Restoring = true })
	m.startRestore(part)
}

func (m *Manager) sortedParts() []*partition {
	m.mu.Lock()
	parts := make([]*partition, 0, len(m.parts))
	for _, part := range m.parts {
		parts = append(parts, part)
	}
	m.mu.Unlock()
	slices.SortFunc(parts, func(a, b *partition) int { return int(a.p) - int(b.p) })
	return parts
}
