package app

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/ordo-dev/ordo/internal/config"
	"github.com/ordo-dev/ordo/producer"
)

// TestOutputLimits: the wiring reads the dead-letter and output topics'
// max.message.bytes from the cluster (kfake here; producer's tests prove the
// same against Apache Kafka) and leaves inputs out.
func TestOutputLimits(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cfg := config.Defaults()
	cfg.Kafka.Brokers = c.ListenAddrs()
	cfg.Inputs = []string{"in"}
	cfg.DeadLetter = "dlq"
	cfg.Topics = map[string]config.TopicOp{"in": {}, "out-b": {}, "out-a": {}, "dlq": {}}
	if got := knownOutputTopics(&cfg); !slices.Equal(got, []string{"dlq", "out-a", "out-b"}) {
		t.Fatalf("knownOutputTopics = %v", got)
	}

	limits, closeLimits, err := outputLimits(&cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer closeLimits()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	adm := limitsAdmin(t, &cfg)
	for topic, limit := range map[string]int{"dlq": 30000, "out-a": 40000} {
		v := strconv.Itoa(limit)
		if _, err := adm.CreateTopic(ctx, 1, 1, map[string]*string{"max.message.bytes": &v}, topic); err != nil {
			t.Fatal(err)
		}
	}
	describeOutputLimits(ctx, &cfg, limits)
	for topic, want := range map[string]int{"dlq": 30000, "out-a": 40000, "out-b": producer.DefaultMaxRecordBytes} {
		if got := limits.For(ctx, topic); got != want {
			t.Errorf("For(%s) = %d, want %d", topic, got, want)
		}
	}
}

func limitsAdmin(t *testing.T, cfg *config.Config) *kadm.Client {
	t.Helper()
	cl, err := newClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}
