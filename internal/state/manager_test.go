package state

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// applyWant applies committed changelog records to the expected state.
func applyWant(want map[int32]map[string]string, recs []*kgo.Record) {
	for _, r := range recs {
		if r.Value == nil {
			delete(want[r.Partition], string(r.Key))
		} else {
			want[r.Partition][string(r.Key)] = string(r.Value)
		}
	}
}

// The restore rebuilds exactly the committed state: committed transactions
// interleaved with aborted ones, tombstones, empty values; one partition's
// log ends in a commit marker, the other's in an abort marker.
func TestRestoreRebuildsCommittedState(t *testing.T) {
	e := newEnv(t, 2)
	cl := e.producer()
	want := map[int32]map[string]string{0: {}, 1: {}}
	committed := map[int32]int64{}
	rng := rand.New(rand.NewPCG(1, 2))
	aborted := 0
	for i := range 40 {
		commit := i%3 != 1
		var recs []*kgo.Record
		for j := range 6 {
			p := int32(rng.IntN(2))
			key := fmt.Sprintf("k%02d", rng.IntN(15))
			if !commit && j < 2 {
				key = fmt.Sprintf("aborted-%d-%d", i, j) // only ever written by aborted transactions
			}
			r := rec(p, key, fmt.Sprintf("v%d-%d", i, j), rng.IntN(4) == 0)
			if rng.IntN(8) == 0 {
				r.Value = []byte{} // empty, not a tombstone
			}
			recs = append(recs, r)
		}
		e.txn(cl, commit, recs...)
		if commit {
			applyWant(want, recs)
			for _, r := range recs {
				committed[r.Partition]++
			}
		} else {
			aborted++
		}
	}
	last := []*kgo.Record{rec(0, "last", "x", false)}
	e.txn(cl, true, last...) // partition 0 ends in a commit marker
	applyWant(want, last)
	committed[0]++
	e.txn(cl, false, rec(1, "aborted-last", "y", false)) // partition 1 ends in an abort marker
	if aborted == 0 || len(want[0]) == 0 || len(want[1]) == 0 {
		t.Fatalf("bad test data: %d aborted, want %v", aborted, want)
	}

	r := newRecorder()
	m := e.open(t.TempDir(), r.hooks())
	m.Assign([]int32{0, 1})
	waitReady(t, m, 30*time.Second, 0, 1)
	if got := m.Restored(); !slices.Equal(got, []int32{0, 1}) {
		t.Errorf("Restored() = %v, want [0 1]", got)
	}
	if got := m.Restored(); len(got) != 0 {
		t.Errorf("second Restored() = %v, want none", got)
	}
	for _, p := range []int32{0, 1} {
		got := dump(t, m, p)
		if d := diffMaps(want[p], got); d != "" {
			t.Errorf("partition %d restored state differs: %s", p, d)
		}
		for k := range got {
			if strings.HasPrefix(k, "aborted-") {
				t.Errorf("partition %d: key %q of an aborted transaction was restored", p, k)
			}
		}
		pr := progressOf(t, m, p)
		if hwm := e.hwm(p); pr.Target != hwm || pr.Applied != hwm-1 || pr.Restoring || pr.From != 0 {
			t.Errorf("partition %d progress %+v: want Target = Applied+1 = HWM %d, From 0, not restoring", p, pr, hwm)
		}
		if pr.Records != committed[p] || r.done[p] != committed[p] {
			t.Errorf("partition %d applied %d records (hook: %d), want the %d committed ones", p, pr.Records, r.done[p], committed[p])
		}
	}
	// An empty value is a value, not a deletion.
	v, _ := m.View(0)
	var empties int
	for _, p := range []int32{0, 1} {
		for k, val := range want[p] {
			if val == "" {
				empties++
				v, _ = m.View(p)
				got, ok, err := v.Get([]byte(k))
				if err != nil || !ok || got == nil || len(got) != 0 {
					t.Errorf("Get(%q) = %q, %v, %v: want a present empty value", k, got, ok, err)
				}
			}
		}
	}
	t.Logf("restored %d+%d keys (%d empty values) from %d+%d committed records, %d aborted transactions",
		len(want[0]), len(want[1]), empties, committed[0], committed[1], aborted+1)
}

// A restart catches up from the applied offset + 1: it reads only the
// records committed since.
func TestCatchUpReadsOnlyFromAppliedOffset(t *testing.T) {
	e := newEnv(t, 1)
	cl := e.producer()
	want := map[int32]map[string]string{0: {}}
	for i := range 10 {
		var recs []*kgo.Record
		for j := range 5 {
			recs = append(recs, rec(0, fmt.Sprintf("a%d", j), fmt.Sprint(i), i == 9 && j == 0))
		}
		e.txn(cl, true, recs...)
		applyWant(want, recs)
	}
	dir := t.TempDir()
	m := e.open(dir, Hooks{})
	m.Assign([]int32{0})
	waitReady(t, m, 30*time.Second, 0)
	first := progressOf(t, m, 0)
	if first.Records != 50 || first.From != 0 {
		t.Fatalf("first restore %+v: want 50 records from offset 0", first)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}

	more := []*kgo.Record{rec(0, "b1", "x", false), rec(0, "b2", "y", false), rec(0, "a1", "", true)}
	e.txn(cl, true, more...)
	applyWant(want, more)
	e.txn(cl, false, rec(0, "never", "z", false))
	more2 := []*kgo.Record{rec(0, "b3", "w", false), rec(0, "a2", "v", false), rec(0, "b1", "x2", false), rec(0, "b4", "", false)}
	e.txn(cl, true, more2...)
	applyWant(want, more2)

	r := newRecorder()
	m2 := e.open(dir, r.hooks())
	m2.Assign([]int32{0})
	waitReady(t, m2, 30*time.Second, 0)
	pr := progressOf(t, m2, 0)
	if pr.From != first.Applied+1 {
		t.Errorf("catch-up started at %d, want applied offset + 1 = %d", pr.From, first.Applied+1)
	}
	if pr.Records != 7 || r.applied[0] != 7 {
		t.Errorf("catch-up applied %d records (hook %d), want the 7 committed since", pr.Records, r.applied[0])
	}
	if w := r.wipes(0); len(w) != 0 {
		t.Errorf("catch-up wiped the store: %v", w)
	}
	if d := diffMaps(want[0], dump(t, m2, 0)); d != "" {
		t.Errorf("state after catch-up differs: %s", d)
	}
}

// Finish(true) makes the transaction's writes durable with the right
// applied offset; Finish(false) leaves the store as it was; reads inside a
// transaction see its earlier events; the changelog rebuilds the same state.
func TestFinish(t *testing.T) {
	e := newEnv(t, 2)
	dir := t.TempDir()
	m := e.open(dir, Hooks{})
	m.Assign([]int32{0, 1})
	waitReady(t, m, 30*time.Second, 0, 1)
	prod := e.producer()

	set := func(ev *Overlay, k, v string) {
		if err := ev.Set([]byte(k), []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	event := func(p int32, fn func(ev *Overlay)) {
		t.Helper()
		ev, err := m.Event(p)
		if err != nil {
			t.Fatal(err)
		}
		fn(ev)
		if err := m.Apply(p, ev); err != nil {
			t.Fatal(err)
		}
	}
	stored := func(p int32, k string) (string, bool) {
		t.Helper()
		part := m.get(p)
		v, ok, err := dbGet(part.db, []byte(k))
		if err != nil {
			t.Fatal(err)
		}
		return string(v), ok
	}
	produce := func(recs []*kgo.Record, commit bool) {
		t.Helper()
		if err := prod.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		if err := prod.ProduceSync(ctx(t), recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		if err := prod.EndTransaction(ctx(t), kgo.TransactionEndTry(commit)); err != nil {
			t.Fatal(err)
		}
	}

	// Transaction 1, committed.
	event(0, func(ev *Overlay) { set(ev, "a", "1"); set(ev, "b", "2") })
	event(1, func(ev *Overlay) { set(ev, "c", "3") })
	event(0, func(ev *Overlay) {
		if v, ok, err := ev.Get([]byte("a")); err != nil || !ok || string(v) != "1" {
			t.Errorf("a later event reads a = %q, %v, %v: want the transaction's 1", v, ok, err)
		}
		ev.Delete([]byte("b"))
		set(ev, "e", "")
	})
	if _, ok := stored(0, "a"); ok {
		t.Error("an uncommitted write reached the store")
	}
	recs := m.ChangelogRecords()
	var got []string
	for _, r := range recs {
		if r.Topic != e.changelog {
			t.Errorf("record topic %q, want %q", r.Topic, e.changelog)
		}
		val := "<tombstone>"
		if r.Value != nil {
			val = string(r.Value)
		}
		got = append(got, fmt.Sprintf("%d/%s=%s", r.Partition, r.Key, val))
	}
	if want := []string{"0/a=1", "0/b=<tombstone>", "0/e=", "1/c=3"}; !slices.Equal(got, want) {
		t.Fatalf("ChangelogRecords = %v, want %v", got, want)
	}
	produce(recs, true)
	if err := m.Finish(true); err != nil {
		t.Fatal(err)
	}
	state0 := map[string]string{"a": "1", "e": ""}
	if d := diffMaps(state0, dump(t, m, 0)); d != "" {
		t.Errorf("partition 0 after commit: %s", d)
	}
	if d := diffMaps(map[string]string{"c": "3"}, dump(t, m, 1)); d != "" {
		t.Errorf("partition 1 after commit: %s", d)
	}
	if v, ok := stored(0, "a"); !ok || v != "1" {
		t.Errorf("store of partition 0 has a = %q, %v after the commit", v, ok)
	}
	for _, p := range []int32{0, 1} {
		var wantApplied int64 = -1
		for _, r := range recs {
			if r.Partition == p {
				wantApplied = max(wantApplied, r.Offset)
			}
		}
		md, err := readMeta(m.get(p).db)
		if err != nil {
			t.Fatal(err)
		}
		if md.applied != wantApplied || progressOf(t, m, p).Applied != wantApplied || wantApplied < 0 {
			t.Errorf("partition %d applied offset %d (progress %d), want %d (its last changelog record)", p, md.applied, progressOf(t, m, p).Applied, wantApplied)
		}
	}
	applied0, _ := readMeta(m.get(0).db)

	// Transaction 2, aborted: reads inside it see it, the store never does.
	event(0, func(ev *Overlay) { set(ev, "a", "changed"); set(ev, "z", "9") })
	if st := dump(t, m, 0); st["a"] != "changed" || st["z"] != "9" {
		t.Errorf("View inside the transaction = %v: want its writes", st)
	}
	produce(m.ChangelogRecords(), false)
	if err := m.Finish(false); err != nil {
		t.Fatal(err)
	}
	if d := diffMaps(state0, dump(t, m, 0)); d != "" {
		t.Errorf("partition 0 after an aborted transaction: %s", d)
	}
	if md, _ := readMeta(m.get(0).db); md.applied != applied0.applied {
		t.Errorf("an aborted transaction moved the applied offset from %d to %d", applied0.applied, md.applied)
	}
	if len(m.ChangelogRecords()) != 0 {
		t.Error("Finish(false) left writes in the transaction")
	}

	// Transaction 3: Finish(true) whose records were never produced: the
	// partition is restored from the changelog (which lacks the write).
	event(1, func(ev *Overlay) { set(ev, "lost", "1") })
	m.ChangelogRecords()
	err := m.Finish(true)
	if err == nil || !strings.Contains(err.Error(), "partition 1") {
		t.Fatalf("Finish(true) with unproduced records: %v, want an error naming partition 1", err)
	}
	waitReady(t, m, 30*time.Second, 1)
	if got := m.Restored(); !slices.Contains(got, 1) {
		t.Errorf("Restored() = %v after the re-restore, want 1 in it", got)
	}
	if d := diffMaps(map[string]string{"c": "3"}, dump(t, m, 1)); d != "" {
		t.Errorf("partition 1 after the re-restore: %s", d)
	}

	// Apply after ChangelogRecords is caught too.
	event(1, func(ev *Overlay) { set(ev, "x", "1") })
	recs = m.ChangelogRecords()
	event(1, func(ev *Overlay) { set(ev, "y", "1") })
	produce(recs, true)
	if err := m.Finish(true); err == nil || !strings.Contains(err.Error(), "Apply ran after ChangelogRecords") {
		t.Errorf("Finish(true) after a late Apply: %v", err)
	}
	waitReady(t, m, 30*time.Second, 1)
	if d := diffMaps(map[string]string{"c": "3", "x": "1"}, dump(t, m, 1)); d != "" {
		t.Errorf("partition 1 after the late-Apply re-restore (the changelog has x only): %s", d)
	}

	// The changelog alone rebuilds the committed state.
	m2 := e.open(t.TempDir(), Hooks{})
	m2.Assign([]int32{0, 1})
	waitReady(t, m2, 30*time.Second, 0, 1)
	for p, want := range map[int32]map[string]string{0: state0, 1: {"c": "3", "x": "1"}} {
		if d := diffMaps(want, dump(t, m2, p)); d != "" {
			t.Errorf("partition %d restored from the changelog: %s", p, d)
		}
	}
}

// A store ahead of the changelog (the topic was deleted and created again)
// is wiped and rebuilt from the new topic.
func TestWipeWhenChangelogRecreated(t *testing.T) {
	e := newEnv(t, 1)
	cl := e.producer()
	for i := range 4 {
		e.txn(cl, true, rec(0, fmt.Sprint("old", i), "1", false), rec(0, "shared", fmt.Sprint(i), false))
	}
	dir := t.TempDir()
	m := e.open(dir, Hooks{})
	m.Assign([]int32{0})
	waitReady(t, m, 30*time.Second, 0)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}

	e.recreateChangelog()
	cl2 := e.producer()
	e.txn(cl2, true, rec(0, "new", "1", false))

	r := newRecorder()
	m2 := e.open(dir, r.hooks())
	m2.Assign([]int32{0})
	waitReady(t, m2, 60*time.Second, 0)
	w := r.wipes(0)
	if len(w) != 1 || !strings.Contains(w[0], "recreated") {
		t.Errorf("wipes = %q, want one saying the changelog was recreated", w)
	}
	if d := diffMaps(map[string]string{"new": "1"}, dump(t, m2, 0)); d != "" {
		t.Errorf("state after the wipe: %s", d)
	}
	if pr := progressOf(t, m2, 0); pr.Wipes != 1 {
		t.Errorf("progress %+v: want 1 wipe", pr)
	}
}

// A store directory Pebble cannot open is wiped and rebuilt.
func TestWipeCorruptStore(t *testing.T) {
	e := newEnv(t, 1)
	cl := e.producer()
	want := map[int32]map[string]string{0: {}}
	for i := range 5 {
		recs := []*kgo.Record{rec(0, fmt.Sprint("k", i), fmt.Sprint(i), false)}
		e.txn(cl, true, recs...)
		applyWant(want, recs)
	}
	dir := t.TempDir()
	m := e.open(dir, Hooks{})
	m.Assign([]int32{0})
	waitReady(t, m, 30*time.Second, 0)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	pdir := filepath.Join(dir, e.changelog, "0")
	manifests, _ := filepath.Glob(filepath.Join(pdir, "MANIFEST-*"))
	if len(manifests) == 0 {
		t.Fatalf("no MANIFEST in %s", pdir)
	}
	for _, f := range manifests {
		if err := os.WriteFile(f, bytes.Repeat([]byte("garbage!"), 100), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	r := newRecorder()
	m2 := e.open(dir, r.hooks())
	m2.Assign([]int32{0})
	waitReady(t, m2, 30*time.Second, 0)
	if w := r.wipes(0); len(w) != 1 || !strings.Contains(w[0], "failed to open") {
		t.Errorf("wipes = %q, want one saying the store failed to open", w)
	}
	if d := diffMaps(want[0], dump(t, m2, 0)); d != "" {
		t.Errorf("state after the wipe: %s", d)
	}
}

// A store last in sync longer ago than the changelog's delete.retention.ms
// may have missed tombstones: it is wiped.
func TestWipeWhenOlderThanDeleteRetention(t *testing.T) {
	e := newEnv(t, 1)
	resp, err := e.adm.AlterTopicConfigs(ctx(t), []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "delete.retention.ms", Value: kadm.StringPtr("3000")}}, e.changelog)
	if err == nil {
		_, err = resp.On(e.changelog, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	cl := e.producer()
	e.txn(cl, true, rec(0, "k", "v", false))
	r := newRecorder()
	m := e.open(t.TempDir(), r.hooks())
	m.Assign([]int32{0})
	waitReady(t, m, 30*time.Second, 0)
	// Within the retention a revoke and assign only catch up.
	m.Revoke([]int32{0})
	m.Assign([]int32{0})
	waitReady(t, m, 30*time.Second, 0)
	if w := r.wipes(0); len(w) != 0 {
		t.Fatalf("a store in sync less than 3s ago was wiped: %v", w)
	}
	m.Revoke([]int32{0})
	time.Sleep(3500 * time.Millisecond)
	m.Assign([]int32{0})
	waitReady(t, m, 30*time.Second, 0)
	if w := r.wipes(0); len(w) != 1 || !strings.Contains(w[0], "delete.retention.ms") {
		t.Errorf("wipes = %q, want one about delete.retention.ms", w)
	}
	if d := diffMaps(map[string]string{"k": "v"}, dump(t, m, 0)); d != "" {
		t.Errorf("state after the wipe: %s", d)
	}
}

// Every wipe rule, without a broker.
func TestWipeReason(t *testing.T) {
	now := time.Now()
	id := [16]byte{1}
	info := topicInfo{hwm: 100, logStart: 10, retention: time.Hour, id: id}
	ok := meta{applied: 50, synced: now.Add(-time.Minute), topicID: id, hasKeys: true}
	cases := []struct {
		name string
		md   meta
		info topicInfo
		want string // substring; "" means no wipe
	}{
		{"in sync", ok, info, ""},
		{"empty store", meta{applied: -1}, info, ""},
		{"caught up exactly", meta{applied: 99, synced: ok.synced, topicID: id}, info, ""},
		{"applied at the end", meta{applied: 100, synced: ok.synced, topicID: id}, info, "beyond the changelog's end"},
		{"applied beyond the end", meta{applied: 150, synced: ok.synced, topicID: id}, info, "beyond the changelog's end"},
		{"new topic id", ok, topicInfo{hwm: 100, retention: time.Hour, id: [16]byte{2}}, "recreated"},
		{"no topic id stored", meta{applied: 50, synced: ok.synced, hasKeys: true}, info, ""},
		{"log start past next", meta{applied: 5, synced: ok.synced, topicID: id}, info, "never saw were deleted"},
		{"log start at next", meta{applied: 9, synced: ok.synced, topicID: id}, info, ""},
		{"stale", meta{applied: 50, synced: now.Add(-2 * time.Hour), topicID: id}, info, "delete.retention.ms"},
		{"no sync time", meta{applied: 50, topicID: id}, info, "no sync time"},
		{"keys without offset", meta{applied: -1, hasKeys: true}, info, "no applied changelog offset"},
	}
	for _, c := range cases {
		got := wipeReason(c.md, c.info, now)
		if (c.want == "") != (got == "") || !strings.Contains(got, c.want) {
			t.Errorf("%s: wipeReason = %q, want %q", c.name, got, c.want)
		}
	}
}

// Key-parallel lanes share the open transaction: concurrent Event, Apply
// and View under -race, and every lane sees its own earlier writes.
func TestConcurrentEventApply(t *testing.T) {
	e := newEnv(t, 1)
	m := e.open(t.TempDir(), Hooks{})
	m.Assign([]int32{0})
	waitReady(t, m, 30*time.Second, 0)
	const lanes, steps = 8, 200
	var wg sync.WaitGroup
	errs := make(chan error, lanes+1)
	stop := make(chan struct{})
	for l := range lanes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := []byte(fmt.Sprintf("lane%d", l))
			for i := range steps {
				ev, err := m.Event(0)
				if err != nil {
					errs <- err
					return
				}
				v, ok, err := ev.Get(key)
				if err != nil || (i > 0 && (!ok || string(v) != fmt.Sprint(i-1))) || (i == 0 && ok) {
					errs <- fmt.Errorf("lane %d step %d read %q, %v, %v", l, i, v, ok, err)
					return
				}
				ev.Set(key, []byte(fmt.Sprint(i)))
				ev.Set([]byte(fmt.Sprintf("lane%d/%03d", l, i)), []byte("x"))
				if err := m.Apply(0, ev); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	var reads sync.WaitGroup
	reads.Add(1)
	go func() { // a timer scan running alongside
		defer reads.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			v, err := m.View(0)
			if err != nil {
				errs <- err
				return
			}
			if err := v.Range([]byte("lane"), nil, func(k, _ []byte) bool { return true }); err != nil {
				errs <- err
				return
			}
		}
	}()
	wg.Wait()
	close(stop)
	reads.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	recs := m.ChangelogRecords()
	if len(recs) != lanes*(steps+1) {
		t.Errorf("%d changelog records, want %d (one per key)", len(recs), lanes*(steps+1))
	}
	for _, r := range recs {
		if strings.Count(string(r.Key), "/") == 0 && string(r.Value) != fmt.Sprint(steps-1) {
			t.Errorf("changelog record %s=%s: want the last write %d", r.Key, r.Value, steps-1)
		}
	}
}

// Revoke during a restore that cannot finish (an open transaction holds
// the changelog's last stable offset below its high watermark) stops it
// promptly, leaves no goroutine behind and releases the directory.
func TestRevokeStopsSlowRestore(t *testing.T) {
	e := newEnv(t, 1)
	cl := e.producer()
	e.txn(cl, true, rec(0, "k", "v", false))
	hang := e.producer()
	if err := hang.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := hang.ProduceSync(ctx(t), rec(0, "open", "1", false)).FirstErr(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hang.EndTransaction(ctx(t), kgo.TryAbort) })

	dir := t.TempDir()
	m := e.open(dir, Hooks{})
	// Warm the admin client's connections: they outlive the restore.
	if _, err := m.describe(ctx(t), 0); err != nil {
		t.Fatal(err)
	}
	before := runtime.NumGoroutine()
	m.Assign([]int32{0})
	part := m.get(0)
	part.rmu.Lock()
	done := part.restoreDone
	part.rmu.Unlock()
	// Wait until the restore is reading (it has listed its target).
	deadline := time.Now().Add(20 * time.Second)
	for progressOf(t, m, 0).From < 0 {
		if time.Now().After(deadline) {
			t.Fatalf("restore did not start: %+v", m.Progress())
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	if m.Ready(0) {
		t.Fatal("restore finished although an open transaction holds the changelog below its high watermark")
	}
	pr := progressOf(t, m, 0)
	if !pr.Restoring || pr.Target != e.hwm(0) {
		t.Errorf("progress %+v: want restoring toward the high watermark %d", pr, e.hwm(0))
	}
	start := time.Now()
	m.Revoke([]int32{0})
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Revoke took %v", took)
	}
	select {
	case <-done:
	default:
		t.Fatal("the restore goroutine is still running after Revoke")
	}
	if len(m.Progress()) != 0 || m.Ready(0) {
		t.Errorf("after Revoke: progress %+v, ready %v", m.Progress(), m.Ready(0))
	}
	if _, err := m.Event(0); !errors.Is(err, ErrNotOwned) {
		t.Errorf("Event after Revoke: %v, want ErrNotOwned", err)
	}
	// No goroutine of the restore (or its client) is left.
	deadline = time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines after Revoke, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The directory is free: assign again, end the transaction, it finishes.
	m.Assign([]int32{0})
	if err := hang.EndTransaction(ctx(t), kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	waitReady(t, m, 30*time.Second, 0)
	if d := diffMaps(map[string]string{"k": "v", "open": "1"}, dump(t, m, 0)); d != "" {
		t.Errorf("state after the transaction committed: %s", d)
	}
	// Close during a restore stops it too.
	m.Revoke([]int32{0})
	e.txn(hang, true, rec(0, "more", "1", false))
	if err := hang.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := hang.ProduceSync(ctx(t), rec(0, "open2", "1", false)).FirstErr(); err != nil {
		t.Fatal(err)
	}
	m.Assign([]int32{0})
	time.Sleep(300 * time.Millisecond)
	start = time.Now()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Close during a restore took %v", took)
	}
}

// Ownership and key errors, and one Manager per directory.
func TestErrors(t *testing.T) {
	e := newEnv(t, 1)
	dir := t.TempDir()
	m := e.open(dir, Hooks{})
	if _, err := m.Event(0); !errors.Is(err, ErrNotOwned) {
		t.Errorf("Event of an unassigned partition: %v, want ErrNotOwned", err)
	}
	if err := m.Apply(0, NewOverlay(nil)); !errors.Is(err, ErrNotOwned) {
		t.Errorf("Apply to an unassigned partition: %v, want ErrNotOwned", err)
	}
	m.Assign([]int32{0})
	waitReady(t, m, 30*time.Second, 0)
	ev, _ := m.Event(0)
	ev.Set([]byte("\x00ordo/applied"), []byte("x"))
	if err := m.Apply(0, ev); err == nil || !strings.Contains(err.Error(), "reserved") {
		t.Errorf("Apply of a 0x00 key: %v, want a reserved-key error", err)
	}
	ev, _ = m.Event(0)
	ev.Set(nil, []byte("x"))
	if err := m.Apply(0, ev); err == nil || !strings.Contains(err.Error(), "empty key") {
		t.Errorf("Apply of an empty key: %v", err)
	}
	if len(m.ChangelogRecords()) != 0 {
		t.Error("a refused Apply left writes behind")
	}
	v, _ := m.View(0)
	if _, ok, _ := v.Get([]byte("\x00ordo/applied")); ok {
		t.Error("the store's own keys are visible")
	}
	if _, err := Open(ctx(t), Options{Dir: dir, Changelog: e.changelog}); err == nil || !strings.Contains(err.Error(), "another ordo process") {
		t.Errorf("second Open of one directory: %v", err)
	}
	if _, err := Open(ctx(t), Options{Changelog: "x"}); err == nil || !strings.Contains(err.Error(), "Dir") {
		t.Errorf("Open without Dir: %v", err)
	}

	// A missing changelog: the restore keeps failing, naming the fix.
	r := newRecorder()
	m2, err := Open(ctx(t), Options{Dir: t.TempDir(), Changelog: "no-such-" + e.changelog,
		KgoOpts: []kgo.Opt{kgo.SeedBrokers(e.brokers...)}, Hooks: r.hooks()})
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	m2.Assign([]int32{0})
	deadline := time.Now().Add(10 * time.Second)
	for progressOf(t, m2, 0).LastError == "" && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if msg := progressOf(t, m2, 0).LastError; !strings.Contains(msg, "does not exist") || !strings.Contains(msg, "EnsureTopics") {
		t.Errorf("restore error for a missing changelog: %q", msg)
	}
	r.mu.Lock()
	if len(r.failed[0]) == 0 || !errors.Is(r.failed[0][0], ErrTopicMissing) {
		t.Errorf("RestoreFailed hook got %v, want ErrTopicMissing", r.failed[0])
	}
	r.mu.Unlock()
}

// Range merges the store and the transaction across chunk boundaries.
func TestViewRangeMergesStoreAndTransaction(t *testing.T) {
	e := newEnv(t, 1)
	cl := e.producer()
	want := map[string]string{}
	var recs []*kgo.Record
	for i := range 3 * rangeChunk {
		k := fmt.Sprintf("k%04d", 2*i) // even keys in the store
		recs = append(recs, rec(0, k, "store", false))
		want[k] = "store"
	}
	recs = append(recs, rec(0, "s-store", "store", false)) // a first byte no pending key has
	want["s-store"] = "store"
	e.txn(cl, true, recs...)
	m := e.open(t.TempDir(), Hooks{})
	m.Assign([]int32{0})
	waitReady(t, m, 30*time.Second, 0)
	ev, _ := m.Event(0)
	for i := 0; i < 3*rangeChunk; i += 7 {
		k := fmt.Sprintf("k%04d", i)
		switch i % 3 {
		case 0:
			ev.Delete([]byte(k))
			delete(want, k)
		default:
			ev.Set([]byte(k), []byte("txn"))
			want[k] = "txn"
		}
	}
	ev.Set([]byte("z-after"), []byte("txn"))
	want["z-after"] = "txn"
	if err := m.Apply(0, ev); err != nil {
		t.Fatal(err)
	}
	if d := diffMaps(want, dump(t, m, 0)); d != "" {
		t.Errorf("Range over store + transaction: %s", d)
	}
	// Bounds and early stop.
	v, _ := m.View(0)
	var got []string
	v.Range([]byte("k0300"), []byte("k0320"), func(k, _ []byte) bool { got = append(got, string(k)); return true })
	var exp []string
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if k >= "k0300" && k < "k0320" {
			exp = append(exp, k)
		}
	}
	if !slices.Equal(got, exp) {
		t.Errorf("Range [k0300, k0320) = %v, want %v", got, exp)
	}
	// A range whose bounds share a first byte: pending keys of that byte
	// are seen, and a first byte with no pending key skips only the
	// transaction's keys, never the store's.
	got = got[:0]
	v.Range([]byte("z"), []byte("{"), func(k, _ []byte) bool { got = append(got, string(k)); return true })
	if !slices.Equal(got, []string{"z-after"}) {
		t.Errorf("Range [z, {) = %v, want [z-after] (pending only)", got)
	}
	got = got[:0]
	v.Range([]byte("s"), []byte("t"), func(k, _ []byte) bool { got = append(got, string(k)); return true })
	if !slices.Equal(got, []string{"s-store"}) {
		t.Errorf("Range [s, t) = %v, want [s-store] (store only)", got)
	}
	got = got[:0]
	v.Range([]byte("y"), []byte("z"), func(k, _ []byte) bool { got = append(got, string(k)); return true })
	if len(got) != 0 {
		t.Errorf("Range [y, z) = %v, want nothing", got)
	}
	n := 0
	v.Range(nil, nil, func(_, _ []byte) bool { n++; return n < 3 })
	if n != 3 {
		t.Errorf("Range went on after fn returned false: %d calls", n)
	}
	// The overlay of an event merges too (state.Overlay over the view).
	ev2, _ := m.Event(0)
	ev2.Set([]byte("k0001"), []byte("ev"))
	cnt := 0
	ev2.Range([]byte("k"), []byte("l"), func(k, v []byte) bool {
		cnt++
		if string(k) == "k0001" && string(v) != "ev" {
			t.Errorf("overlay Range k0001 = %q", v)
		}
		return true
	})
	inKL := 1 // k0001 is new
	for k := range want {
		if k >= "k" && k < "l" {
			inKL++
		}
	}
	if cnt != inKL {
		t.Errorf("overlay Range saw %d keys, want %d", cnt, inKL)
	}
}

// EnsureTopics creates both topics with the right configs; CheckCoPartitioned
// refuses different partition counts and a non-compacted changelog.
func TestTopics(t *testing.T) {
	e := newEnv(t, 3)
	if err := CheckCoPartitioned(ctx(t), e.adm, e.processLog, e.changelog); err != nil {
		t.Fatalf("topics from EnsureTopics: %v", err)
	}
	rcs, err := e.adm.DescribeTopicConfigs(ctx(t), e.changelog, e.processLog)
	if err != nil {
		t.Fatal(err)
	}
	wantCfg := map[string]map[string]string{
		e.changelog:  {"cleanup.policy": "compact", "segment.ms": "3600000", "min.compaction.lag.ms": "3600000"},
		e.processLog: {"cleanup.policy": "delete", "retention.ms": "604800000"},
	}
	for _, rc := range rcs {
		for _, c := range rc.Configs {
			if w, ok := wantCfg[rc.Name][c.Key]; ok && (c.Value == nil || *c.Value != w) {
				t.Errorf("%s %s = %v, want %s", rc.Name, c.Key, c.Value, w)
			}
		}
	}
	// Idempotent.
	if err := EnsureTopics(ctx(t), e.adm, e.processLog, e.changelog, 3, -1); err != nil {
		t.Errorf("EnsureTopics on existing topics: %v", err)
	}

	other := e.changelog + "-4"
	if _, err := e.adm.CreateTopic(ctx(t), 4, -1, map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}, other); err != nil {
		t.Fatal(err)
	}
	e.waitTopic(other)
	err = CheckCoPartitioned(ctx(t), e.adm, e.processLog, other)
	if err == nil || !strings.Contains(err.Error(), "has 3 partitions but changelog") || !strings.Contains(err.Error(), "has 4") {
		t.Errorf("different partition counts: %v", err)
	}
	deleting := e.changelog + "-del"
	if _, err := e.adm.CreateTopic(ctx(t), 3, -1, nil, deleting); err != nil {
		t.Fatal(err)
	}
	e.waitTopic(deleting)
	err = CheckCoPartitioned(ctx(t), e.adm, e.processLog, deleting)
	if err == nil || !strings.Contains(err.Error(), "cleanup.policy=delete") || !strings.Contains(err.Error(), "add-config cleanup.policy=compact") {
		t.Errorf("non-compacted changelog: %v", err)
	}
	err = CheckCoPartitioned(ctx(t), e.adm, e.processLog, "no-such-"+e.changelog)
	if !errors.Is(err, ErrTopicMissing) {
		t.Errorf("missing changelog: %v", err)
	}
	if err := EnsureTopics(ctx(t), e.adm, "a", "a", 1, 1); err == nil {
		t.Error("EnsureTopics accepted one name for both topics")
	}
	if err := EnsureTopics(ctx(t), e.adm, "a", "b", 0, 1); err == nil {
		t.Error("EnsureTopics accepted 0 partitions")
	}
}

// The partitioner keeps Record.Partition for the two state topics and
// hashes keys for every other topic.
func TestPartitioner(t *testing.T) {
	p := Partitioner("cl", "pl")
	def := kgo.StickyKeyPartitioner(nil)
	for _, topic := range []string{"cl", "pl"} {
		tp := p.ForTopic(topic)
		for part := range int32(5) {
			if got := tp.Partition(&kgo.Record{Topic: topic, Key: []byte("k"), Partition: part}, 5); got != int(part) {
				t.Errorf("%s: record for partition %d went to %d", topic, part, got)
			}
		}
	}
	tp, dp := p.ForTopic("out"), def.ForTopic("out")
	for i := range 50 {
		r := &kgo.Record{Topic: "out", Key: []byte(fmt.Sprint("key", i)), Partition: 99}
		if got, want := tp.Partition(r, 12), dp.Partition(r, 12); got != want {
			t.Errorf("key %s: partition %d, want %d (key hash)", r.Key, got, want)
		}
	}
}
