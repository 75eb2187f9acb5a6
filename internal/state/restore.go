package state

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// DefaultDeleteRetention is Kafka's default delete.retention.ms, used when
// the changelog's value cannot be read.
const DefaultDeleteRetention = 24 * time.Hour

// restoreBatchBytes bounds one restore write: a restore commits its
// records to the store in batches of about this size (with the applied
// offset), so its memory does not grow with the changelog.
const restoreBatchBytes = 4 << 20

// Restore retry backoff after a failed attempt.
const (
	retryMin = time.Second
	retryMax = 30 * time.Second
)

// errNeedWipe: the store cannot be caught up and must be rebuilt.
type errNeedWipe struct{ reason string }

func (e errNeedWipe) Error() string { return e.reason }

// topicInfo is what a restore needs to know about the changelog partition.
type topicInfo struct {
	hwm, logStart int64
	retention     time.Duration
	id            [16]byte
}

// restoreLoop restores part until it succeeds (true) or ctx ends (false),
// retrying failures with backoff: a broker that is down or refuses is a
// transient fault, the partition just stays not Ready.
func (m *Manager) restoreLoop(ctx context.Context, part *partition) bool {
	backoff := retryMin
	for {
		err := m.restore(ctx, part)
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		part.updateProgress(func(pr *Progress) { pr.LastError = err.Error() })
		m.log.Warn("state: restore failed; retrying", "partition", part.p, "err", err, "retry_in", backoff)
		if h := m.o.Hooks.RestoreFailed; h != nil {
			h(part.p, err)
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
		backoff = min(2*backoff, retryMax)
	}
}

// restore opens part's store (wiping it when it cannot be caught up) and
// applies the changelog from its applied offset + 1 (or the log start) up
// to the high watermark listed now, then makes part Ready.
func (m *Manager) restore(ctx context.Context, part *partition) error {
	started := time.Now()
	info, err := m.describe(ctx, part.p)
	if err != nil {
		return err
	}
	part.updateProgress(func(pr *Progress) {
		pr.Restoring, pr.Started, pr.Finished, pr.Target, pr.Records, pr.From = true, started, time.Time{}, info.hwm, 0, -1
	})
	for attempt := 0; ; attempt++ {
		err := m.catchUp(ctx, part, info, started)
		var wipe errNeedWipe
		if !errors.As(err, &wipe) {
			if err != nil {
				return err
			}
			break
		}
		if attempt > 0 {
			return fmt.Errorf("state: partition %d: the store still cannot be caught up after a wipe: %w", part.p, err)
		}
		if err := m.wipe(part, wipe.reason); err != nil {
			return err
		}
		// The log may have moved on (an out-of-range start): list again.
		if info, err = m.describe(ctx, part.p); err != nil {
			return err
		}
		started = time.Now()
		part.updateProgress(func(pr *Progress) { pr.Target, pr.Records, pr.Started = info.hwm, 0, started })
	}
	part.mu.Lock()
	if part.closed {
		part.mu.Unlock()
		return context.Canceled
	}
	part.ready = true
	part.mu.Unlock()
	var records int64
	took := time.Since(started)
	part.updateProgress(func(pr *Progress) {
		pr.Restoring, pr.Finished, pr.LastError = false, time.Now(), ""
		records = pr.Records
	})
	m.log.Info("state: partition restored", "partition", part.p, "records", records, "took", took)
	if h := m.o.Hooks.RestoreDone; h != nil {
		h(part.p, records, took)
	}
	return nil
}

// catchUp is one attempt: open, check, read the changelog up to info.hwm.
// listed is when info was listed.
func (m *Manager) catchUp(ctx context.Context, part *partition, info topicInfo, listed time.Time) error {
	db, err := m.openStore(part)
	if err != nil {
		return err
	}
	md, err := readMeta(db)
	if err != nil {
		return errNeedWipe{fmt.Sprintf("reading the store's metadata failed: %v", err)}
	}
	if reason := wipeReason(md, info, time.Now()); reason != "" {
		return errNeedWipe{reason}
	}
	from := md.applied + 1
	if md.empty() {
		// A restore from scratch: it must finish within delete.retention.ms
		// of now, and the store belongs to this incarnation of the topic.
		from = info.logStart
		b := db.NewBatch()
		err := errors.Join(putInt64(b, metaSynced, listed.UnixMilli()), b.Set(metaTopicID, info.id[:], nil), b.Commit(pebble.NoSync), b.Close())
		if err != nil {
			return fmt.Errorf("state: partition %d: writing the store's metadata: %w", part.p, err)
		}
	}
	part.updateProgress(func(pr *Progress) { pr.From, pr.Applied = from, md.applied })
	if h := m.o.Hooks.RestoreStarted; h != nil {
		h(part.p, from, info.hwm)
	}
	m.log.Info("state: restoring partition", "partition", part.p, "from", from, "target", info.hwm)
	if from < info.hwm {
		if err := m.consume(ctx, part, db, from, md.empty(), info.hwm); err != nil {
			return err
		}
	}
	// Every record below the listed high watermark is in the store, and
	// every later one was appended after listed.
	b := db.NewBatch()
	if err := errors.Join(putInt64(b, metaSynced, listed.UnixMilli()), b.Commit(pebble.NoSync), b.Close()); err != nil {
		return fmt.Errorf("state: partition %d: writing the store's metadata: %w", part.p, err)
	}
	return nil
}

// wipeReason says why a store cannot be caught up from its applied offset,
// or "" when it can.
func wipeReason(md meta, info topicInfo, now time.Time) string {
	if md.empty() {
		return ""
	}
	var zero [16]byte
	switch {
	case md.applied < 0:
		return "the store holds keys but no applied changelog offset"
	case md.topicID != zero && info.id != zero && md.topicID != info.id:
		return fmt.Sprintf("the changelog topic was recreated (topic id %s, the store was filled from %s)", kadm.TopicID(info.id), kadm.TopicID(md.topicID))
	case md.applied >= info.hwm:
		return fmt.Sprintf("the store's applied offset %d is beyond the changelog's end (high watermark %d): the topic was recreated or truncated", md.applied, info.hwm)
	case md.applied+1 < info.logStart:
		return fmt.Sprintf("the changelog starts at offset %d, after the store's next offset %d: records the store never saw were deleted", info.logStart, md.applied+1)
	case md.synced.IsZero():
		return "the store has no sync time"
	case now.Sub(md.synced) > info.retention:
		return fmt.Sprintf("the store was last in sync with the changelog %s ago, longer than its delete.retention.ms (%s): tombstones it never saw may be gone", now.Sub(md.synced).Round(time.Second), info.retention)
	}
	return ""
}

// openStore opens part's store if it is not open; a store that fails to
// open is wiped and created anew.
func (m *Manager) openStore(part *partition) (*pebble.DB, error) {
	part.mu.Lock()
	defer part.mu.Unlock()
	if part.closed {
		return nil, context.Canceled
	}
	if part.db != nil {
		return part.db, nil
	}
	db, err := m.openDB(part.dir)
	if err != nil {
		reason := fmt.Sprintf("the store failed to open: %v", err)
		if err := m.wipeLocked(part, reason); err != nil {
			return nil, err
		}
		if db, err = m.openDB(part.dir); err != nil {
			return nil, fmt.Errorf("state: partition %d: opening a new store in %s: %w", part.p, part.dir, err)
		}
	}
	part.db = db
	return db, nil
}

func (m *Manager) openDB(dir string) (*pebble.DB, error) {
	o := &pebble.Options{
		Cache:                       m.cache,
		FileCache:                   m.fcache,
		MemTableSize:                memTableBytes,
		MemTableStopWritesThreshold: memTableStop,
		FormatMajorVersion:          pebble.FormatNewest,
		Logger:                      pebbleLogger{m.log},
	}
	// Bloom filters on every level (the later levels inherit L0's): most
	// of the engine's point reads miss (a new event id in the dedupe set, a
	// new instance), and without a filter each miss reads an index and a
	// data block of every overlapping table (pebble's block reads were 14 %
	// of the saga's CPU). 10 bits per key: ~1 % false positives.
	o.Levels[0].FilterPolicy = bloom.FilterPolicy(10)
	return pebble.Open(dir, o)
}

// wipe closes part's store and deletes its directory; the next open starts
// empty.
func (m *Manager) wipe(part *partition, reason string) error {
	part.mu.Lock()
	defer part.mu.Unlock()
	if part.closed {
		return context.Canceled
	}
	return m.wipeLocked(part, reason)
}

func (m *Manager) wipeLocked(part *partition, reason string) error {
	m.log.Warn("state: wiping a partition store to restore it from the changelog", "partition", part.p, "reason", reason)
	if part.db != nil {
		if err := part.db.Close(); err != nil {
			m.log.Warn("state: closing the store to wipe it", "partition", part.p, "err", err)
		}
		part.db = nil
	}
	if err := os.RemoveAll(part.dir); err != nil {
		return fmt.Errorf("state: partition %d: wiping %s: %w", part.p, part.dir, err)
	}
	part.updateProgress(func(pr *Progress) { pr.Wipes++; pr.Applied = -1 })
	if h := m.o.Hooks.Wiped; h != nil {
		h(part.p, reason)
	}
	return nil
}

// consume reads changelog partition p read_committed from offset from (the
// log start when fromStart) and applies every record below target.
//
// KeepControlRecords: transaction markers are returned, so a log ending in
// a commit (or abort) marker still reaches the target; they are not applied.
func (m *Manager) consume(ctx context.Context, part *partition, db *pebble.DB, from int64, fromStart bool, target int64) error {
	start := kgo.NewOffset().At(from)
	if fromStart {
		start = kgo.NewOffset().AtStart()
	}
	opts := append(slices.Clone(m.o.KgoOpts),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{m.o.Changelog: {part.p: start}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
		// A start below the log start is a gap the store cannot bridge:
		// report it instead of skipping silently.
		kgo.ConsumeResetOffset(kgo.NoResetOffset()),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("state: partition %d: creating the restore client: %w", part.p, err)
	}
	defer cl.Close()

	next := from // the offset after the last record seen
	for next < target {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return err
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) { ferr = errors.Join(ferr, err) })
		if errors.Is(ferr, kerr.OffsetOutOfRange) {
			return errNeedWipe{fmt.Sprintf("changelog offset %d is out of range (deleted while the store was behind)", next)}
		}
		if ferr != nil {
			return fmt.Errorf("state: partition %d: reading the changelog: %w", part.p, ferr)
		}
		var recs []*kgo.Record
		fs.EachPartition(func(ftp kgo.FetchTopicPartition) {
			if ftp.Partition == part.p {
				recs = append(recs, ftp.Records...)
			}
		})
		n, err := m.applyRecords(part, db, recs)
		if err != nil {
			return err
		}
		if len(recs) > 0 {
			next = max(next, recs[len(recs)-1].Offset+1)
		}
		if n > 0 {
			if h := m.o.Hooks.RestoreApplied; h != nil {
				h(part.p, n)
			}
		}
	}
	return nil
}

// applyRecords writes recs (in offset order) to db in bounded batches, each
// with the offset of its last record as the applied offset, and returns how
// many records it applied. Committed records past the restore's target are
// applied too: they are as valid as the ones before it.
func (m *Manager) applyRecords(part *partition, db *pebble.DB, recs []*kgo.Record) (int, error) {
	applied, last := 0, int64(-1)
	b := db.NewBatch()
	defer func() { b.Close() }()
	flush := func() error {
		if last < 0 {
			return nil
		}
		if err := errors.Join(putInt64(b, metaApplied, last), b.Commit(pebble.NoSync)); err != nil {
			return fmt.Errorf("state: partition %d: writing restored records: %w", part.p, err)
		}
		b.Close()
		b = db.NewBatch()
		part.updateProgress(func(pr *Progress) { pr.Applied = last })
		return nil
	}
	for _, r := range recs {
		last = r.Offset
		if r.Attrs.IsControl() {
			continue
		}
		if reserved(r.Key) || len(r.Key) == 0 {
			m.log.Warn("state: skipping a changelog record with a reserved key", "partition", part.p, "offset", r.Offset)
			continue
		}
		var err error
		if r.Value == nil {
			err = b.Delete(r.Key, nil)
		} else {
			err = b.Set(r.Key, r.Value, nil)
		}
		if err != nil {
			return applied, fmt.Errorf("state: partition %d: batching restored records: %w", part.p, err)
		}
		applied++
		part.updateProgress(func(pr *Progress) { pr.Records++ })
		if b.Len() >= restoreBatchBytes {
			if err := flush(); err != nil {
				return applied, err
			}
		}
	}
	return applied, flush()
}

// describe lists what a restore of partition p needs: the high watermark
// (not the last stable offset: a read_committed read up to it waits for
// open transactions, so nothing committed below it is missed), the log
// start, delete.retention.ms and the topic id.
func (m *Manager) describe(ctx context.Context, p int32) (topicInfo, error) {
	info := topicInfo{retention: DefaultDeleteRetention}
	topic := m.o.Changelog
	tds, err := m.adm.ListTopics(ctx, topic)
	if err != nil {
		return info, fmt.Errorf("state: describing changelog %q: %w", topic, err)
	}
	td, ok := tds[topic]
	if !ok || errors.Is(td.Err, kerr.UnknownTopicOrPartition) {
		return info, missingTopic("changelog", topic)
	}
	if td.Err != nil {
		return info, fmt.Errorf("state: describing changelog %q: %w", topic, td.Err)
	}
	if _, ok := td.Partitions[p]; !ok {
		return info, fmt.Errorf("state: changelog %q has %d partitions, so no partition %d: it needs as many partitions as the process log (see state.CheckCoPartitioned)", topic, len(td.Partitions), p)
	}
	info.id = td.ID
	if info.hwm, err = m.listOffset(ctx, p, m.adm.ListEndOffsets); err != nil {
		return info, err
	}
	if info.logStart, err = m.listOffset(ctx, p, m.adm.ListStartOffsets); err != nil {
		return info, err
	}
	rcs, err := m.adm.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		return info, fmt.Errorf("state: reading changelog %q's config: %w", topic, err)
	}
	rc, err := rcs.On(topic, nil)
	if err == nil {
		err = rc.Err
	}
	if err != nil {
		return info, fmt.Errorf("state: reading changelog %q's config: %w", topic, err)
	}
	for _, c := range rc.Configs {
		if c.Key == "delete.retention.ms" && c.Value != nil {
			ms, err := strconv.ParseInt(*c.Value, 10, 64)
			if err != nil || ms < 0 {
				return info, fmt.Errorf("state: changelog %q has delete.retention.ms=%q, not a number of milliseconds", topic, *c.Value)
			}
			info.retention = time.Duration(ms) * time.Millisecond
		}
	}
	return info, nil
}

func (m *Manager) listOffset(ctx context.Context, p int32, list func(context.Context, ...string) (kadm.ListedOffsets, error)) (int64, error) {
	topic := m.o.Changelog
	los, err := list(ctx, topic)
	if err != nil {
		return 0, fmt.Errorf("state: listing offsets of changelog %q: %w", topic, err)
	}
	lo, ok := los.Lookup(topic, p)
	if !ok {
		return 0, fmt.Errorf("state: listing offsets of changelog %q: no answer for partition %d", topic, p)
	}
	if lo.Err != nil {
		return 0, fmt.Errorf("state: listing offsets of changelog %q partition %d: %w", topic, p, lo.Err)
	}
	return lo.Offset, nil
}
