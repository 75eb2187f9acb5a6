package state

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// DefaultCacheBytes is the block cache shared by every partition's store
// when Options.CacheBytes is 0.
const DefaultCacheBytes = 32 << 20

// memTableBytes is each partition store's memtable size. Pebble keeps at most
// memTableStop of them per store (one filling, one flushing), so a store's
// write buffers are bounded by 8 MiB however big its state is.
const (
	memTableBytes = 4 << 20
	memTableStop  = 2
)

// BufferBytes bounds the memory the stores of partitions partitions with a
// cacheBytes block cache (0: DefaultCacheBytes) keep in their block cache
// and memtables: cacheBytes + partitions × memTableStop × memTableBytes.
func BufferBytes(cacheBytes int64, partitions int) int64 {
	if cacheBytes <= 0 {
		cacheBytes = DefaultCacheBytes
	}
	return cacheBytes + int64(partitions)*memTableStop*memTableBytes
}

// GoHeapBytes is the part of BufferBytes on the Go heap: all of it in a
// build without cgo, where Pebble allocates the cache and memtables as Go
// slices, and none with cgo, where they are C memory. The app adds it to
// the Go soft memory limit, so the limit leaves the pipeline the same room
// in both builds: in a cgo-free build they otherwise took up to 80 MiB of
// the then default 192 MiB, and the order saga ran about 1.4x slower than the
// same code built with cgo (bench/findings.md).
func GoHeapBytes(cacheBytes int64, partitions int) int64 {
	if !storeOnGoHeap {
		return 0
	}
	return BufferBytes(cacheBytes, partitions)
}

// Options configure a Manager.
type Options struct {
	// Dir is the state root: partition p's store is Dir/<Changelog>/<p>.
	Dir string
	// Changelog is the compacted changelog topic; partition p of it backs
	// store p (and process-log partition p).
	Changelog string
	// KgoOpts are connection options (seed brokers, TLS, SASL, dialer) for
	// the Manager's admin client and its restore consumers (one short-lived
	// client per restore). They must not configure a group, a transactional
	// id or consumed topics (the Manager adds its own consume options), nor
	// a metrics plugin that registers collectors per client.
	KgoOpts []kgo.Opt
	// CacheBytes is the size of the one Pebble block cache every partition
	// shares (default DefaultCacheBytes).
	CacheBytes int64
	// Logger receives restore and wipe events (default: discarded).
	Logger *slog.Logger
	// Hooks are optional callbacks for metrics.
	Hooks Hooks
}

// Hooks are optional callbacks, called synchronously from the Manager's
// goroutines (restores) or from the caller's (Finish): they must be quick
// and must not call back into the Manager.
type Hooks struct {
	// RestoreStarted: partition p begins reading the changelog at offset
	// from toward target (the high watermark listed at the start).
	RestoreStarted func(p int32, from, target int64)
	// RestoreApplied: a restore of p wrote n more changelog records.
	RestoreApplied func(p int32, n int)
	// RestoreDone: partition p is ready; records were applied in took.
	RestoreDone func(p int32, records int64, took time.Duration)
	// RestoreFailed: a restore attempt of p failed and will be retried.
	RestoreFailed func(p int32, err error)
	// Wiped: partition p's store was deleted to be rebuilt from the
	// changelog, for reason.
	Wiped func(p int32, reason string)
	// Committed: Finish(true) wrote writes keys to p's store, which is now
	// at changelog offset applied.
	Committed func(p int32, writes int, applied int64)
}

// Progress describes one owned partition's store.
type Progress struct {
	Partition int32
	Restoring bool      // not Ready: a restore is running (or waiting to retry)
	From      int64     // first changelog offset the current/last restore read (-1: none yet)
	Applied   int64     // changelog offset the store holds everything up to (-1: nothing)
	Target    int64     // high watermark listed when the current/last restore started (-1: not listed yet)
	Records   int64     // changelog records applied by the current/last restore
	Started   time.Time // when the current/last restore started
	Finished  time.Time // when the last restore finished (zero while restoring)
	Wipes     int       // how often this partition's store was wiped since Assign
	LastError string    // the last restore attempt's error, "" after a success
}

// ErrNotOwned is returned for a partition that is not assigned (or was
// revoked since).
var ErrNotOwned = errors.New("partition is not owned by this state manager")

// ErrNotReady is returned for an owned partition whose restore has not
// finished.
var ErrNotReady = errors.New("partition's state is still restoring")

// Manager owns the stores of the process-log partitions assigned to this
// member: it restores them from the changelog on assignment and keeps the
// open Kafka transaction's writes apart until the transaction commits.
type Manager struct {
	o      Options
	log    *slog.Logger
	base   string // Dir/<Changelog>
	lock   *pebble.Lock
	cache  *pebble.Cache
	fcache *pebble.FileCache
	admCl  *kgo.Client
	adm    *kadm.Client

	// ctx is the parent of every restore; cancelled by Close.
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	closed   bool
	parts    map[int32]*partition
	restored []*partition // finished restores not yet returned by Restored
}

// Open checks the options, locks Dir/<Changelog> against a second Manager
// (another process on the same directory) and creates the admin client. It
// does no Kafka I/O: restores start with Assign.
func Open(ctx context.Context, o Options) (*Manager, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if o.Dir == "" {
		return nil, errors.New("state: Options.Dir is empty: set the directory that holds the partition stores")
	}
	if o.Changelog == "" {
		return nil, errors.New("state: Options.Changelog is empty: set the compacted changelog topic")
	}
	if o.CacheBytes < 0 {
		return nil, fmt.Errorf("state: Options.CacheBytes is %d: use 0 for the default (%d) or a positive size", o.CacheBytes, DefaultCacheBytes)
	}
	if o.CacheBytes == 0 {
		o.CacheBytes = DefaultCacheBytes
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	base := filepath.Join(o.Dir, o.Changelog)
	if err := os.MkdirAll(base, 0o755); err != nil {
		return nil, fmt.Errorf("state: creating %s: %w", base, err)
	}
	lock, err := pebble.LockDirectory(base, vfs.Default)
	if err != nil {
		return nil, fmt.Errorf("state: locking %s: %w (is another ordo process using this state directory?)", base, err)
	}
	admCl, err := kgo.NewClient(o.KgoOpts...)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("state: creating the admin client: %w", err)
	}
	m := &Manager{
		o:      o,
		log:    log.With("changelog", o.Changelog),
		base:   base,
		lock:   lock,
		cache:  pebble.NewCache(o.CacheBytes),
		fcache: pebble.NewFileCache(runtime.GOMAXPROCS(0), fileCacheSize),
		admCl:  admCl,
		adm:    kadm.NewClient(admCl),
		parts:  map[int32]*partition{},
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	return m, nil
}

// Close stops every restore, closes every store (discarding the open
// transaction's writes) and the admin client. The directories are kept.
func (m *Manager) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	m.mu.Unlock()
	m.cancel()
	err := m.revoke(m.owned())
	m.admCl.Close()
	m.fcache.Unref()
	m.cache.Unref()
	if lerr := m.lock.Close(); lerr != nil && err == nil {
		err = fmt.Errorf("state: unlocking %s: %w", m.base, lerr)
	}
	return err
}

// Assign starts restoring each partition, on goroutines the Manager owns; it
// does not block on Kafka (it is called from the group's
// OnPartitionsAssigned; a partition it still held is closed first). A partition becomes Ready when its restore has
// caught up; Restored reports it once.
func (m *Manager) Assign(parts []int32) {
	// A partition assigned while we think we still own it was revoked
	// without our hearing of it (franz-go's transact session skips the
	// user's revoke callback while an earlier revoke is pending): another
	// replica may have changed its state since, so it is closed and
	// caught up again like any new assignment.
	var stale []int32
	m.mu.Lock()
	for _, p := range parts {
		if _, ok := m.parts[p]; ok {
			stale = append(stale, p)
		}
	}
	m.mu.Unlock()
	if len(stale) > 0 {
		m.Revoke(stale)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	for _, p := range parts {
		if _, ok := m.parts[p]; ok {
			continue
		}
		part := newPartition(p, filepath.Join(m.base, fmt.Sprint(p)))
		m.parts[p] = part
		m.startRestore(part)
	}
}

// startRestore runs a restore of part on a new goroutine. The caller holds
// m.mu (or owns part exclusively).
func (m *Manager) startRestore(part *partition) {
	ctx, cancel := context.WithCancel(m.ctx)
	done := make(chan struct{})
	part.rmu.Lock()
	part.cancelRestore, part.restoreDone = cancel, done
	part.rmu.Unlock()
	go func() {
		defer close(done)
		if m.restoreLoop(ctx, part) {
			m.mu.Lock()
			m.restored = append(m.restored, part)
			m.mu.Unlock()
		}
	}()
}

// Revoke stops the partitions' restores, drops their share of the open
// transaction and closes their stores. It waits for the restores to exit
// (a Pebble directory can be open once), which takes as long as one
// changelog fetch or store write. The directories are kept so that a later
// Assign only catches up.
func (m *Manager) Revoke(parts []int32) {
	if err := m.revoke(parts); err != nil {
		m.log.Warn("state: closing revoked stores", "err", err)
	}
}

// Reset revokes every owned partition: the session ended (End failed, a
// crash, shutdown), so the open transaction's writes are dropped and every
// store is caught up again by the next Assign.
func (m *Manager) Reset() { m.Revoke(m.owned()) }

func (m *Manager) owned() []int32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]int32, 0, len(m.parts))
	for p := range m.parts {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

func (m *Manager) revoke(parts []int32) error {
	var errs []error
	for _, p := range parts {
		m.mu.Lock()
		part, ok := m.parts[p]
		delete(m.parts, p)
		m.mu.Unlock()
		if !ok {
			continue
		}
		part.stopRestore()
		if err := part.close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Restored returns the partitions whose restore finished since the last
// call (the loop resumes their fetches), in partition order.
func (m *Manager) Restored() []int32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []int32
	for _, part := range m.restored {
		if m.parts[part.p] == part && part.isReady() && !slices.Contains(out, part.p) {
			out = append(out, part.p)
		}
	}
	m.restored = m.restored[:0]
	slices.Sort(out)
	return out
}

// Ready reports whether p is owned and restored.
func (m *Manager) Ready(p int32) bool {
	part := m.get(p)
	return part != nil && part.isReady()
}

// Progress returns every owned partition's progress, in partition order.
func (m *Manager) Progress() []Progress {
	m.mu.Lock()
	parts := make([]*partition, 0, len(m.parts))
	for _, part := range m.parts {
		parts = append(parts, part)
	}
	m.mu.Unlock()
	out := make([]Progress, 0, len(parts))
	for _, part := range parts {
		out = append(out, part.progress())
	}
	slices.SortFunc(out, func(a, b Progress) int { return int(a.Partition) - int(b.Partition) })
	return out
}

func (m *Manager) get(p int32) *partition {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.parts[p]
}

// Restoring is how many owned partitions are not ready yet (readiness).
func (m *Manager) Restoring() int {
	n := 0
	for _, pr := range m.Progress() {
		if pr.Restoring {
			n++
		}
	}
	return n
}
