// Package state is ordo's per-partition process state: an embedded on-disk
// store per process-log partition, backed by a compacted changelog topic that
// is written in the same Kafka transaction as the commands and the input
// offsets, so the store only ever holds effects of committed transactions.
//
// This file holds the small interfaces processors use. A stateful processor
// (processes, dedupe) reads and writes the state of the event's partition
// through the Txn the pipeline puts into its context:
//
//	tx, ok := state.TxnFrom(ctx)
//
// Keys are namespaced by their first bytes (see the processes package); every
// key of an instance is prefixed by its correlation id's namespace so that it
// lives in the instance's partition. Keys starting with 0x00 are reserved for
// the store itself (applied changelog offset, metadata) and are never
// changelogged.
package state

import (
	"bytes"
	"context"
	"sort"
	"sync"
)

// Reader reads a partition's state.
type Reader interface {
	// Get returns the value of key; ok is false when key is absent.
	Get(key []byte) (value []byte, ok bool, err error)
	// Range calls fn for every key in [lower, upper) in key order until fn
	// returns false. upper nil means no upper bound. fn must not keep key or
	// value after it returns.
	Range(lower, upper []byte, fn func(key, value []byte) bool) error
}

// Txn is one event's view of its partition's state: reads see the committed
// state, then the open Kafka transaction's writes, then its own writes. The
// pipeline applies an event's writes to the transaction only when the event
// was processed without error (a dead-lettered or failed event leaves no
// state behind).
type Txn interface {
	Reader
	Set(key, value []byte) error
	Delete(key []byte) error
}

type txnKey struct{}

// WithTxn returns ctx carrying tx for the processors of one event.
func WithTxn(ctx context.Context, tx Txn) context.Context {
	return context.WithValue(ctx, txnKey{}, tx)
}

// TxnFrom returns the event's state Txn; ok is false when the pipeline runs
// without state (a stateless stage).
func TxnFrom(ctx context.Context) (Txn, bool) {
	tx, ok := ctx.Value(txnKey{}).(Txn)
	return tx, ok
}

// Overlay is a Txn that buffers writes in memory over a parent Reader. It is
// the per-event layer the pipeline uses (Writes applies it to the
// transaction), and with a nil parent it is a complete in-memory state for
// tests. It is safe for concurrent use.
type Overlay struct {
	parent Reader
	mu     sync.Mutex
	w      map[string]*[]byte // nil pointer value: deleted
}

// NewOverlay returns an empty overlay over parent (nil: empty state).
func NewOverlay(parent Reader) *Overlay {
	return &Overlay{parent: parent, w: map[string]*[]byte{}}
}

// Get implements Reader.
func (o *Overlay) Get(key []byte) ([]byte, bool, error) {
	o.mu.Lock()
	v, ok := o.w[string(key)]
	o.mu.Unlock()
	if ok {
		if v == nil {
			return nil, false, nil
		}
		return *v, true, nil
	}
	if o.parent == nil {
		return nil, false, nil
	}
	return o.parent.Get(key)
}

// Set implements Txn. The value is copied.
func (o *Overlay) Set(key, value []byte) error {
	v := bytes.Clone(value)
	if v == nil {
		v = []byte{}
	}
	o.mu.Lock()
	o.w[string(key)] = &v
	o.mu.Unlock()
	return nil
}

// Delete implements Txn.
func (o *Overlay) Delete(key []byte) error {
	o.mu.Lock()
	o.w[string(key)] = nil
	o.mu.Unlock()
	return nil
}

// Range implements Reader: the parent's keys merged with the overlay's.
func (o *Overlay) Range(lower, upper []byte, fn func(key, value []byte) bool) error {
	o.mu.Lock()
	merged := map[string]*[]byte{}
	for k, v := range o.w {
		if keyInRange(k, lower, upper) {
			merged[k] = v
		}
	}
	o.mu.Unlock()
	if o.parent != nil {
		err := o.parent.Range(lower, upper, func(k, v []byte) bool {
			if _, ok := merged[string(k)]; !ok {
				c := bytes.Clone(v)
				merged[string(k)] = &c
			}
			return true
		})
		if err != nil {
			return err
		}
	}
	keys := make([]string, 0, len(merged))
	for k, v := range merged {
		if v != nil {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !fn([]byte(k), *merged[k]) {
			break
		}
	}
	return nil
}

// Write is one buffered write: Value nil means delete.
type Write struct {
	Key   []byte
	Value []byte // nil: delete
}

// Writes returns the overlay's writes in key order.
func (o *Overlay) Writes() []Write {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]Write, 0, len(o.w))
	for k, v := range o.w {
		w := Write{Key: []byte(k)}
		if v != nil {
			w.Value = *v
		}
		out = append(out, w)
	}
	sort.Slice(out, func(i, j int) bool { return bytes.Compare(out[i].Key, out[j].Key) < 0 })
	return out
}

// Len is the number of buffered writes.
func (o *Overlay) Len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.w)
}

// keyInRange reports lower <= k < upper (nil upper: no bound) for a map
// key, byte-wise as bytes.Compare: Range scans every pending write of a
// transaction, and converting each key to []byte (an allocation and a copy
// per key per Range) was 14 % of the saga's CPU. Comparing with string(b)
// does not allocate.
func keyInRange(k string, lower, upper []byte) bool {
	return k >= string(lower) && (upper == nil || k < string(upper))
}
