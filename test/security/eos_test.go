package security

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ordo-dev/ordo/internal/demo"
	"github.com/ordo-dev/ordo/internal/testkit"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// TestExactlyOnceWithMinimumACLs runs ordo over TLS (mTLS) + SCRAM-SHA-512
// as a user that has exactly the ACLs docs/security.md lists, on a backlog
// and on live traffic with poison records, and verifies the committed
// output: every input's commands exactly once, every poison record in the
// dead-letter topic exactly once.
func TestExactlyOnceWithMinimumACLs(t *testing.T) {
	sc := newScenario(t, "ordo-eos-"+randHex(3))
	sc.grant(minimumACLs...)
	cfg, _ := sc.writeConfig("ordo.yaml", cfgOpts{})
	pub := sc.newPublisher()
	backlog := envInt("SECURITY_EVENTS", 6000)
	live := backlog / 3

	t0 := time.Now()
	pub.publish(backlog, 50)
	p := sc.startOrdo("ordo", baseEnv(), "run", "--config", cfg)
	waitLog(t, p, "kafka preflight ok", 30*time.Second)
	sc.waitProcessed(p, 3*time.Minute)
	pub.publish(live, 50)
	sc.waitProcessed(p, 3*time.Minute)
	p.stop(20 * time.Second)
	if c := p.exitCode(); c != 0 {
		t.Fatalf("ordo exited %d after SIGTERM:\n%s", c, tail(p.output(t), 30))
	}
	rep := sc.verify(pub)
	t.Logf("exactly once over SASL_SSL as User:%s with the minimum ACLs: %d events (%d valid, %d poison), %d commands, %d dead letters, %.1fs",
		sc.user, rep.Published, rep.ValidPublished, rep.PoisonPublished, rep.CommandsSeen, rep.DeadLettersSeen, time.Since(t0).Seconds())
	out := p.output(t)
	for _, want := range []string{`"principal":"User:` + sc.user + `"`, `"tls":true`} {
		if !strings.Contains(out, want) {
			t.Errorf("the preflight log line lacks %s", want)
		}
	}
	if strings.Contains(out, sc.pass) {
		t.Error("ordo's output contains its SASL password")
	}
}

// TestRevokedACLLosesNothing revokes WRITE on the dead-letter topic while
// ordo runs, then publishes poison records: ordo must report the
// authorization failure naming the topic, commit nothing past a poison
// record it could not dead-letter, and, once the ACL is back, deliver
// everything exactly once.
func TestRevokedACLLosesNothing(t *testing.T) {
	sc := newScenario(t, "ordo-revoke-"+randHex(3))
	sc.grant(minimumACLs...)
	cfg, adminAddr := sc.writeConfig("ordo.yaml", cfgOpts{})
	pub := sc.newPublisher()
	p := sc.startOrdo("ordo", baseEnv(), "run", "--config", cfg)
	pub.publish(600, 50)
	sc.waitProcessed(p, 2*time.Minute)
	dlqBefore := sc.countCommitted(sc.dlq)

	sc.revoke(aclDLQ)
	batch := pub.publish(600, 50)
	firstPoison := map[string]map[int32]int64{} // per input partition
	for _, r := range batch {
		if r.Kind != demo.Poison {
			continue
		}
		if firstPoison[r.Topic] == nil {
			firstPoison[r.Topic] = map[int32]int64{}
		}
		if o, ok := firstPoison[r.Topic][r.Partition]; !ok || r.Offset < o {
			firstPoison[r.Topic][r.Partition] = r.Offset
		}
	}
	if len(firstPoison) == 0 {
		t.Fatal("the second batch has no poison record")
	}
	waitLog(t, p, "TOPIC_AUTHORIZATION_FAILED", 60*time.Second)
	// Let it retry for a while: nothing may be committed past the poison.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		c := sc.committedOffsets()
		for topic, parts := range firstPoison {
			for part, off := range parts {
				if at := c[topic][part]; at > off {
					t.Fatalf("%s/%d committed to %d past the poison record at %d that could not be dead-lettered", topic, part, at, off)
				}
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	if n := sc.countCommitted(sc.dlq); n != dlqBefore {
		t.Fatalf("the dead-letter topic grew from %d to %d records without the WRITE ACL", dlqBefore, n)
	}
	if !p.alive() {
		t.Fatalf("ordo exited (code %d) on a revoked ACL instead of waiting for it:\n%s", p.exitCode(), tail(p.output(t), 30))
	}
	out := p.output(t)
	if !strings.Contains(out, sc.dlq) {
		t.Errorf("no log line names the dead-letter topic %s whose WRITE ACL is missing:\n%s", sc.dlq, grepLines(out, "AUTHORIZATION", 5))
	}
	code, body := httpGet(t, "http://"+adminAddr+"/readyz")
	t.Logf("/readyz while the ACL is missing: %d %s", code, strings.TrimSpace(body))

	sc.grant(aclDLQ)
	sc.waitProcessed(p, 2*time.Minute)
	p.stop(20 * time.Second)
	rep := sc.verify(pub)
	t.Logf("revoked and re-granted WRITE on %s: %d events, %d commands, %d dead letters, all exactly once", sc.dlq, rep.Published, rep.CommandsSeen, rep.DeadLettersSeen)
}

// countCommitted is the number of records a read_committed reader sees in
// topic.
func (sc *scenario) countCommitted(topic string) int {
	sc.settle(topic)
	t := sc.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ends, err := sc.adm.ListCommittedOffsets(ctx, topic) // read_committed ends (LSO)
	if err != nil {
		t.Fatal(err)
	}
	starts, err := sc.adm.ListStartOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	assign := map[int32]kgo.Offset{}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		s, _ := starts.Lookup(o.Topic, o.Partition)
		if o.Offset > s.Offset {
			assign[o.Partition] = kgo.NewOffset().At(s.Offset)
			want[o.Partition] = o.Offset
		}
	})
	if len(assign) == 0 {
		return 0
	}
	cl := adminClient(t, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: assign}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())
	n := 0
	for len(want) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("reading %s: %v", topic, ctx.Err())
		}
		fs.EachRecord(func(r *kgo.Record) {
			end, ok := want[r.Partition]
			if !ok || r.Offset >= end {
				return
			}
			if !r.Attrs.IsControl() {
				n++
			}
			if r.Offset+1 >= end {
				delete(want, r.Partition)
			}
		})
	}
	return n
}

func grepLines(s, sub string, max int) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
			if len(out) == max {
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

// settle waits until no transaction is open on topic, so a read_committed
// count is final.
func (sc *scenario) settle(topic string) {
	sc.t.Helper()
	testkit.WaitSettled(sc.t, sc.adm, topic, 60*time.Second)
}
