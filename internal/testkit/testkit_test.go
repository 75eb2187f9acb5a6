package testkit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestChoose(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     map[string]string
		docker  bool
		want    choice
		wantErr string
	}{
		{name: "nothing: kfake", env: nil, want: choice{kind: KindKfake}},
		{name: "docker", env: map[string]string{}, docker: true, want: choice{kind: KindDocker}},
		{name: "brokers win over docker", docker: true,
			env:  map[string]string{EnvBrokers: "127.0.0.1:9092"},
			want: choice{kind: KindKafka, brokers: []string{"127.0.0.1:9092"}}},
		{name: "broker list trimmed",
			env:  map[string]string{EnvBrokers: " 127.0.0.1:9092, 127.0.0.1:9094 ,,127.0.0.1:9096,"},
			want: choice{kind: KindKafka, brokers: []string{"127.0.0.1:9092", "127.0.0.1:9094", "127.0.0.1:9096"}}},
		{name: "blank brokers ignored", env: map[string]string{EnvBrokers: "  "}, want: choice{kind: KindKfake}},
		{name: "only commas", env: map[string]string{EnvBrokers: ", ,"}, wantErr: "holds no broker address"},
		{name: "no port", env: map[string]string{EnvBrokers: "localhost"}, wantErr: "not host:port"},
		{name: "require real with brokers",
			env:  map[string]string{EnvBrokers: "h:1", EnvRequireReal: "1"},
			want: choice{kind: KindKafka, brokers: []string{"h:1"}}},
		{name: "require real with docker", docker: true,
			env:  map[string]string{EnvRequireReal: "1"},
			want: choice{kind: KindDocker}},
		{name: "require real, nothing", env: map[string]string{EnvRequireReal: "1"},
			wantErr: "REQUIRE_REAL_KAFKA=1 but KAFKA_BROKERS is unset and no Docker engine"},
		{name: "require real true", env: map[string]string{EnvRequireReal: "true"}, wantErr: "REQUIRE_REAL_KAFKA=true"},
		{name: "require real 0", env: map[string]string{EnvRequireReal: "0"}, want: choice{kind: KindKfake}},
		{name: "require real empty", env: map[string]string{EnvRequireReal: ""}, want: choice{kind: KindKfake}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := choose(tc.env, tc.docker)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestDockerTarget(t *testing.T) {
	for _, tc := range []struct {
		name      string
		env       map[string]string
		sock      bool
		net, addr string
		ok        bool
	}{
		{name: "none", ok: false},
		{name: "default socket", sock: true, net: "unix", addr: "/var/run/docker.sock", ok: true},
		{name: "unix host", env: map[string]string{"DOCKER_HOST": "unix:///run/user/1000/docker.sock"}, sock: true,
			net: "unix", addr: "/run/user/1000/docker.sock", ok: true},
		{name: "tcp host", env: map[string]string{"DOCKER_HOST": "tcp://127.0.0.1:2375"}, net: "tcp", addr: "127.0.0.1:2375", ok: true},
		{name: "ssh host", env: map[string]string{"DOCKER_HOST": "ssh://me@box"}, net: "other", addr: "ssh://me@box", ok: true},
		{name: "disabled", env: map[string]string{EnvDocker: "0", "DOCKER_HOST": "tcp://x:1"}, sock: true, ok: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, a, ok := dockerTarget(tc.env, tc.sock)
			if n != tc.net || a != tc.addr || ok != tc.ok {
				t.Fatalf("got (%q, %q, %v), want (%q, %q, %v)", n, a, ok, tc.net, tc.addr, tc.ok)
			}
		})
	}
}

func TestUniqueName(t *testing.T) {
	a, b := UniqueName(t, "in"), UniqueName(t, "in")
	if a == b {
		t.Fatalf("names not unique: %s", a)
	}
	if !strings.HasPrefix(a, "in-TestUniqueName-") {
		t.Fatalf("unexpected name %s", a)
	}
	t.Run("sub/with spaces.and_dots", func(t *testing.T) {
		n := UniqueName(t, "x")
		for _, r := range n {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				t.Fatalf("illegal rune %q in %s", r, n)
			}
		}
	})
}

// TestBrokersUnreachable: a dead KAFKA_BROKERS must fail, not fall back.
func TestBrokersUnreachable(t *testing.T) {
	err := checkReachable([]string{"127.0.0.1:1"}, time.Second)
	if err == nil {
		t.Fatal("expected an error for a closed port")
	}
}

// TestTransactionalRoundTrip is the smoke test of the selected broker:
// committed, aborted and still-open transactions, read back read_committed.
// With KAFKA_BROKERS set it runs against that cluster and fails if it is
// broken; without it, against Docker or kfake.
func TestTransactionalRoundTrip(t *testing.T) {
	start := time.Now()
	brokers := Brokers(t)
	t.Logf("broker kind %s: %v", Kind(t), brokers)
	topic := UniqueName(t, "rt")
	CreateTopics(t, brokers, 3, topic)
	CreateTopics(t, brokers, 3, topic) // idempotent

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(brokers...),
		kgo.TransactionalID(UniqueName(t, "txid")),
		kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	txn := func(prefix string, n int, end string) { // end: commit, abort or open
		t.Helper()
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for i := range n {
			r := &kgo.Record{Partition: int32(i % 3), Value: fmt.Appendf(nil, "%s-%d", prefix, i)}
			if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatalf("produce %s: %v", prefix, err)
			}
		}
		if end != "open" {
			if err := cl.EndTransaction(ctx, kgo.TransactionEndTry(end == "commit")); err != nil {
				t.Fatalf("end %s: %v", prefix, err)
			}
		}
	}
	txn("c1", 9, "commit")
	txn("ab", 6, "abort")
	txn("c2", 3, "commit")

	t0 := time.Now()
	got := values(ReadCommitted(t, brokers, topic, 30*time.Second))
	t.Logf("ReadCommitted after 3 txns: %d records in %v", len(got), time.Since(t0))
	want := []string{
		"c1-0", "c1-3", "c1-6", "c2-0",
		"c1-1", "c1-4", "c1-7", "c2-1",
		"c1-2", "c1-5", "c1-8", "c2-2",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("read committed:\n got %v\nwant %v", got, want)
	}

	// An open transaction holds the last stable offset back: ReadCommitted
	// must return the committed records without waiting for it.
	txn("open", 3, "open")
	t0 = time.Now()
	got = values(ReadCommitted(t, brokers, topic, 30*time.Second))
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("with an open txn:\n got %v\nwant %v", got, want)
	}
	t.Logf("ReadCommitted with an open txn: %v", time.Since(t0))
	if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	got = values(ReadCommitted(t, brokers, topic, 30*time.Second))
	if len(got) != 15 {
		t.Fatalf("after committing the open txn: %d records, want 15: %v", len(got), got)
	}
	t.Logf("round trip on %s took %v", Kind(t), time.Since(start))
}

func values(rs []*kgo.Record) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = string(r.Value)
	}
	return out
}

// TestGroupTransactSessionRoundTrip consumes an input topic with a
// GroupTransactSession and writes each record to an output topic in the same
// transaction as the offset commit: the exactly-once loop ordo is built on.
func TestGroupTransactSessionRoundTrip(t *testing.T) {
	start := time.Now()
	brokers := Brokers(t)
	in, out := UniqueName(t, "in"), UniqueName(t, "out")
	group := UniqueName(t, "grp")
	CreateTopics(t, brokers, 3, in, out)

	const n = 30
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	prod, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(in))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	for i := range n {
		prod.Produce(ctx, &kgo.Record{Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, "v%d", i)}, nil)
	}
	if err := prod.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	sess, err := kgo.NewGroupTransactSession(
		kgo.SeedBrokers(brokers...),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(in),
		kgo.TransactionalID(UniqueName(t, "gts")),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.DefaultProduceTopic(out),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()

	seen := 0
	batches := 0
	var firstBatch time.Duration
	for seen < n {
		fs := sess.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("timed out: %d of %d records processed", seen, n)
		}
		if err := fs.Err0(); err != nil {
			t.Fatalf("poll: %v", err)
		}
		if fs.NumRecords() == 0 {
			continue
		}
		if err := sess.Begin(); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var perr error
		var mu sync.Mutex
		fs.EachRecord(func(r *kgo.Record) {
			wg.Add(1)
			sess.Produce(ctx, &kgo.Record{Key: r.Key, Value: append([]byte("out-"), r.Value...)}, func(_ *kgo.Record, err error) {
				defer wg.Done()
				if err != nil {
					mu.Lock()
					perr = errors.Join(perr, err)
					mu.Unlock()
				}
			})
		})
		wg.Wait()
		t0 := time.Now()
		committed, err := sess.End(ctx, perr == nil)
		if err != nil || perr != nil {
			t.Fatalf("end txn: committed=%v err=%v produce err=%v", committed, err, perr)
		}
		if !committed {
			t.Logf("transaction aborted (rebalance); retrying")
			continue
		}
		if batches == 0 {
			firstBatch = time.Since(t0)
		}
		batches++
		seen += fs.NumRecords()
	}
	t.Logf("%d records in %d transactions; first End took %v", seen, batches, firstBatch)

	got := ReadCommitted(t, brokers, out, 30*time.Second)
	if len(got) != n {
		t.Fatalf("output has %d committed records, want %d", len(got), n)
	}
	// The group's committed offsets must cover the whole input. On real
	// Kafka a transactional offset commit becomes visible only once the
	// commit marker lands in __consumer_offsets, after EndTxn returned:
	// RequireStable makes the broker answer UNSTABLE_OFFSET_COMMIT (retried
	// by the client) until then. kfake applies it inside EndTxn.
	adm := NewAdmin(t, brokers)
	offs, err := adm.FetchOffsets(kadm.RequireStable(ctx), group)
	if err != nil {
		t.Fatal(err)
	}
	ends, err := adm.ListEndOffsets(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	ends.Each(func(lo kadm.ListedOffset) {
		o, ok := offs.Lookup(in, lo.Partition)
		if lo.Offset > 0 && (!ok || o.At != lo.Offset) {
			t.Errorf("partition %d: committed %+v, end %d", lo.Partition, o, lo.Offset)
		}
		total += lo.Offset
	})
	if total != n {
		t.Errorf("input end offsets sum to %d, want %d", total, n)
	}
	t.Logf("group transact round trip on %s took %v", Kind(t), time.Since(start))
}

// TestFreeAddrIsBelowTheEphemeralRange: ports handed to child processes
// are not ones the kernel gives to outgoing connections, and are bindable.
func TestFreeAddrIsBelowTheEphemeralRange(t *testing.T) {
	start := ephemeralStart()
	if start < 16000 {
		t.Skipf("ephemeral range starts at %d: FreeAddr falls back to ':0' ports", start)
	}
	for range 20 {
		addr, err := FreeAddr()
		if err != nil {
			t.Fatal(err)
		}
		_, port, _ := net.SplitHostPort(addr)
		p, _ := strconv.Atoi(port)
		if p < 15000 || p >= start {
			t.Fatalf("FreeAddr() = %s, want a port in [15000, %d)", addr, start)
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("FreeAddr() = %s is not bindable: %v", addr, err)
		}
		ln.Close()
	}
	p, err := FreePortPair()
	if err != nil {
		t.Fatal(err)
	}
	if !free(p, 2) {
		t.Fatalf("FreePortPair() = %d: %d and %d are not both free", p, p, p+1)
	}
}
