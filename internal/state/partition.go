package state

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/twmb/franz-go/pkg/kgo"
)

// fileCacheSize bounds the sstables open at once across every partition's
// store (they share one pebble.FileCache).
const fileCacheSize = 1000

// The store's own keys. They start with 0x00, which user keys cannot (Apply
// refuses them), are never changelogged and are hidden from Get and Range.
var (
	metaApplied = []byte("\x00ordo/applied")  // int64 BE: changelog offset the store holds everything up to
	metaSynced  = []byte("\x00ordo/synced")   // int64 BE unix ms: see meta.synced
	metaTopicID = []byte("\x00ordo/topic-id") // the changelog's topic id when the store was first filled
)

func reserved(key []byte) bool { return len(key) > 0 && key[0] == 0 }

// partition is one owned process-log partition: its store, its share of the
// open transaction and its restore.
type partition struct {
	p   int32
	dir string

	// mu guards db, ready and closed. Readers (views, Apply, Finish) hold it
	// shared while they use db; the restore (while not ready) and close
	// take it exclusively.
	mu     sync.RWMutex
	db     *pebble.DB
	ready  bool
	closed bool

	// txMu guards the open transaction's writes of this partition.
	txMu sync.Mutex
	tx   map[string]*[]byte // nil pointer: delete
	// txFirst counts tx's keys by first byte, so that a Range whose bounds
	// share a first byte no pending key has (the process engine's key
	// spaces are one-letter prefixes) skips scanning tx.
	txFirst [256]int32
	recs    []*kgo.Record // the changelog records last handed out by ChangelogRecords
	dirty   bool          // Apply ran after the last ChangelogRecords

	// rmu guards the restore's control and progress.
	rmu           sync.Mutex
	cancelRestore context.CancelFunc
	restoreDone   chan struct{}
	prog          Progress
}

func newPartition(p int32, dir string) *partition {
	return &partition{
		p: p, dir: dir, tx: map[string]*[]byte{},
		prog: Progress{Partition: p, Restoring: true, From: -1, Applied: -1, Target: -1},
	}
}

func (part *partition) isReady() bool {
	part.mu.RLock()
	defer part.mu.RUnlock()
	return part.ready && !part.closed
}

// stopRestore cancels a running restore and waits for its goroutine.
func (part *partition) stopRestore() {
	part.rmu.Lock()
	cancel, done := part.cancelRestore, part.restoreDone
	part.rmu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// close drops the open transaction's writes and closes the store.
func (part *partition) close() error {
	part.txMu.Lock()
	part.tx, part.recs, part.dirty = map[string]*[]byte{}, nil, false
	part.txFirst = [256]int32{}
	part.txMu.Unlock()
	part.mu.Lock()
	defer part.mu.Unlock()
	part.closed, part.ready = true, false
	if part.db == nil {
		return nil
	}
	err := part.db.Close()
	part.db = nil
	if err != nil {
		return fmt.Errorf("state: closing the store of partition %d: %w", part.p, err)
	}
	return nil
}

func (part *partition) progress() Progress {
	part.rmu.Lock()
	defer part.rmu.Unlock()
	return part.prog
}

func (part *partition) updateProgress(fn func(*Progress)) {
	part.rmu.Lock()
	fn(&part.prog)
	part.rmu.Unlock()
}

// errNotReady is the error of a read or write of a partition that is not
// (or no longer) ready.
func (part *partition) errNotReady() error {
	if part.closed {
		return fmt.Errorf("state: partition %d: %w", part.p, ErrNotOwned)
	}
	return fmt.Errorf("state: partition %d: %w", part.p, ErrNotReady)
}

// meta is what a store knows about itself.
type meta struct {
	applied int64 // -1: nothing applied
	// synced is a time S such that a restore or catch-up that finishes
	// within the changelog's delete.retention.ms of S cannot miss a
	// tombstone: the start of a restore from an empty store, or the time
	// the high watermark a finished restore reached was listed, or the
	// time of the last Finish(true). Zero: unknown.
	synced  time.Time
	topicID [16]byte
	hasKeys bool // the store holds user keys
}

func (md meta) empty() bool { return md.applied < 0 && !md.hasKeys }

func readMeta(db *pebble.DB) (meta, error) {
	md := meta{applied: -1}
	v, ok, err := dbGet(db, metaApplied)
	if err != nil {
		return md, err
	}
	if ok && len(v) == 8 {
		md.applied = int64(binary.BigEndian.Uint64(v))
	}
	if v, ok, err = dbGet(db, metaSynced); err != nil {
		return md, err
	} else if ok && len(v) == 8 {
		md.synced = time.UnixMilli(int64(binary.BigEndian.Uint64(v)))
	}
	if v, ok, err = dbGet(db, metaTopicID); err != nil {
		return md, err
	} else if ok && len(v) == 16 {
		copy(md.topicID[:], v)
	}
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{1}})
	if err != nil {
		return md, err
	}
	md.hasKeys = it.First()
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return md, err
	}
	return md, nil
}

func putInt64(b *pebble.Batch, key []byte, v int64) error {
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], uint64(v))
	return b.Set(key, buf[:], nil)
}

// dbGet returns a copy of key's value.
func dbGet(db *pebble.DB, key []byte) ([]byte, bool, error) {
	v, closer, err := db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	out := bytes.Clone(v)
	if out == nil {
		out = []byte{}
	}
	return out, true, closer.Close()
}

// view reads a partition's committed store and then its share of the open
// transaction. It fails once the partition is revoked or restoring again.
type view struct{ part *partition }

// Get implements Reader.
func (v view) Get(key []byte) ([]byte, bool, error) {
	if reserved(key) {
		return nil, false, nil
	}
	part := v.part
	part.mu.RLock()
	defer part.mu.RUnlock()
	if !part.ready || part.closed {
		return nil, false, part.errNotReady()
	}
	part.txMu.Lock()
	w, ok := part.tx[string(key)]
	part.txMu.Unlock()
	if ok {
		if w == nil {
			return nil, false, nil
		}
		return bytes.Clone(*w), true, nil
	}
	val, ok, err := dbGet(part.db, key)
	if err != nil {
		return nil, false, fmt.Errorf("state: partition %d: get: %w", part.p, err)
	}
	return val, ok, nil
}

// rangeChunk is how many store entries Range copies per visit of the store:
// fn runs without the partition's lock held (it may call the Manager).
const rangeChunk = 256

type kv struct {
	key, value []byte
	del        bool
}

// Range implements Reader: the store's keys merged with the transaction's,
// in key order.
func (v view) Range(lower, upper []byte, fn func(key, value []byte) bool) error {
	if len(lower) == 0 || lower[0] == 0 {
		lower = []byte{1} // skip the store's own keys
	}
	if upper != nil && bytes.Compare(upper, lower) <= 0 {
		return nil
	}
	part := v.part
	// The transaction's writes in range, sorted, snapshotted once.
	part.mu.RLock()
	if !part.ready || part.closed {
		part.mu.RUnlock()
		return part.errNotReady()
	}
	part.txMu.Lock()
	var txs []kv
	skip := upper != nil && len(upper) > 0 && upper[0] == lower[0] && part.txFirst[lower[0]] == 0
	for k, w := range part.tx {
		if skip {
			break
		}
		if keyInRange(k, lower, upper) {
			e := kv{key: []byte(k), del: w == nil}
			if w != nil {
				e.value = *w
			}
			txs = append(txs, e)
		}
	}
	part.txMu.Unlock()
	part.mu.RUnlock()
	sort.Slice(txs, func(i, j int) bool { return bytes.Compare(txs[i].key, txs[j].key) < 0 })

	emit := func(e kv) bool {
		if e.del {
			return true
		}
		return fn(e.key, e.value)
	}
	from := lower
	for {
		chunk, more, err := part.dbChunk(from, upper)
		if err != nil {
			return err
		}
		// Merge the chunk with the transaction's writes up to the chunk's
		// last key (all of them after the last chunk).
		i := 0
		for _, e := range chunk {
			for i < len(txs) && bytes.Compare(txs[i].key, e.key) < 0 {
				if !emit(txs[i]) {
					return nil
				}
				i++
			}
			if i < len(txs) && bytes.Equal(txs[i].key, e.key) {
				e = txs[i] // the transaction's write wins
				i++
			}
			if !emit(e) {
				return nil
			}
		}
		txs = txs[i:]
		if !more {
			for _, e := range txs {
				if !emit(e) {
					return nil
				}
			}
			return nil
		}
		from = append(bytes.Clone(chunk[len(chunk)-1].key), 0) // the next key after it
	}
}

// dbChunk copies up to rangeChunk store entries in [from, upper); more is
// true when there may be further entries.
func (part *partition) dbChunk(from, upper []byte) (out []kv, more bool, err error) {
	part.mu.RLock()
	defer part.mu.RUnlock()
	if !part.ready || part.closed {
		return nil, false, part.errNotReady()
	}
	it, err := part.db.NewIter(&pebble.IterOptions{LowerBound: from, UpperBound: upper})
	if err != nil {
		return nil, false, fmt.Errorf("state: partition %d: range: %w", part.p, err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		if len(out) == rangeChunk {
			more = true
			break
		}
		val, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return nil, false, fmt.Errorf("state: partition %d: range: %w", part.p, err)
		}
		out = append(out, kv{key: bytes.Clone(it.Key()), value: bytes.Clone(val)})
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return nil, false, fmt.Errorf("state: partition %d: range: %w", part.p, err)
	}
	return out, more, nil
}

// pebbleLogger sends Pebble's log lines to slog.
type pebbleLogger struct{ log *slog.Logger }

func (l pebbleLogger) Infof(format string, args ...any) {
	l.log.Debug("pebble: " + fmt.Sprintf(format, args...))
}

func (l pebbleLogger) Errorf(format string, args ...any) {
	l.log.Error("pebble: " + fmt.Sprintf(format, args...))
}

// Fatalf is called by Pebble on an invariant violation it cannot continue
// from; it must not return.
func (l pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.log.Error("pebble: fatal: " + msg)
	panic("pebble: " + msg)
}
