package testkit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ordo-dev/ordo/internal/settle"
)

// UniqueName returns a name for a topic, group or transactional id that is
// unique to this test run: prefix, the test name and a random suffix, using
// only characters legal in Kafka topic names.
func UniqueName(t testing.TB, prefix string) string {
	t.Helper()
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("testkit: rand: %v", err)
	}
	name := sanitize(t.Name())
	if len(name) > 120 {
		name = name[:120]
	}
	parts := []string{}
	if p := sanitize(prefix); p != "" {
		parts = append(parts, p)
	}
	parts = append(parts, name, hex.EncodeToString(b[:]))
	return strings.Join(parts, "-")
}

func sanitize(s string) string {
	var sb strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-':
			sb.WriteRune(r)
		default:
			sb.WriteByte('-') // '.' and '_' collide in Kafka metric names
		}
	}
	return strings.Trim(sb.String(), "-")
}

// NewAdmin returns a kadm client for brokers, closed when the test ends.
func NewAdmin(t testing.TB, brokers []string) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatalf("testkit: kgo.NewClient: %v", err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

// CreateTopics creates topics with the given partition count and the
// cluster's default replication factor (1 on one node, 3 on three), ignoring
// TopicAlreadyExists, and waits until every partition has a leader: a real
// broker creates topics asynchronously, kfake immediately.
func CreateTopics(t testing.TB, brokers []string, partitions int32, topics ...string) {
	t.Helper()
	CreateTopicsWithConfig(t, brokers, partitions, nil, topics...)
}

// CreateTopicsWithConfig is CreateTopics with topic configs (e.g.
// cleanup.policy=compact).
func CreateTopicsWithConfig(t testing.TB, brokers []string, partitions int32, configs map[string]*string, topics ...string) {
	t.Helper()
	if len(topics) == 0 {
		return
	}
	adm := NewAdmin(t, brokers)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := adm.CreateTopics(ctx, partitions, -1, configs, topics...)
	if err != nil {
		t.Fatalf("testkit: create topics %v: %v", topics, err)
	}
	for _, r := range resp.Sorted() {
		if r.Err != nil && !errors.Is(r.Err, kerr.TopicAlreadyExists) {
			t.Fatalf("testkit: create topic %s: %v (%s)", r.Topic, r.Err, r.ErrMessage)
		}
	}
	for {
		md, err := adm.Metadata(ctx, topics...)
		if err == nil && topicsReady(md, topics) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("testkit: topics %v have no leaders after 30s (last error: %v)", topics, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func topicsReady(md kadm.Metadata, topics []string) bool {
	for _, name := range topics {
		td, ok := md.Topics[name]
		if !ok || td.Err != nil || len(td.Partitions) == 0 {
			return false
		}
		for _, p := range td.Partitions {
			if p.Err != nil || p.Leader < 0 {
				return false
			}
		}
	}
	return true
}

// WaitSettled waits until no transaction is open on topic (see package
// settle: the markers land after EndTxn returns), failing the test after
// timeout.
func WaitSettled(t testing.TB, adm *kadm.Client, topic string, timeout time.Duration) {
	t.Helper()
	if _, err := settle.Wait(context.Background(), adm, timeout, topic); err != nil {
		t.Fatalf("testkit: %v", err)
	}
}
