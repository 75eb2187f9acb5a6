package consumer

import (
	"log/slog"
	"runtime"
	"strings"
	"testing"
	"time"
)

var required = []Opt{Brokers("127.0.0.1:1"), Group("g"), Topics("t"), TransactionalID("g-a")}

// TestOptionDefaults: with only the required options, every setting has the
// default its option documents.
func TestOptionDefaults(t *testing.T) {
	p, err := New(nil, nil, nil, required...)
	if err != nil {
		t.Fatal(err)
	}
	c := p.cfg
	for _, d := range []struct {
		name      string
		got, want any
	}{
		{"CommitInterval", c.CommitInterval, 100 * time.Millisecond},
		{"BatchSize", c.BatchSize, 10000},
		{"PollRecords", c.PollRecords, 0},
		{"Workers", c.Workers, 2 * runtime.GOMAXPROCS(0)},
		{"SessionTimeout", c.SessionTimeout, 45 * time.Second},
		{"TransactionTimeout", c.TransactionTimeout, 10 * time.Second},
		{"ShutdownTimeout", c.ShutdownTimeout, 10 * time.Second},
		{"InstanceID", c.InstanceID, ""},
		{"StallTimeout", c.StallTimeout, 60 * time.Second},
		{"LivenessTimeout", c.LivenessTimeout, 30 * time.Second},
		{"TransientRetries", c.TransientRetries, 3},
		{"RetryBackoffMin", c.RetryBackoffMin, 50 * time.Millisecond},
		{"RetryBackoffMax", c.RetryBackoffMax, 5 * time.Second},
		{"FetchMaxBytes", c.FetchMaxBytes, int32(8 << 20)},
		{"FetchMaxPartitionBytes", c.FetchMaxPartitionBytes, int32(1 << 20)},
		{"ProducerLinger", c.ProducerLinger, 25 * time.Millisecond},
		{"MetadataMinAge", c.MetadataMinAge, 100 * time.Millisecond},
		{"KeyParallel", c.KeyParallel, false},
		{"KeyLanes", c.KeyLanes, 16},
		{"SerialLoop", c.SerialLoop, false},
		{"SkipHeader", c.SkipHeader, "ordo-type"},
		{"Logger", c.Logger, slog.Default()},
		{"TraceLink", c.TraceLink, false},
	} {
		if d.got != d.want {
			t.Errorf("%s default = %v, want %v", d.name, d.got, d.want)
		}
	}
	if c.Forward != nil || c.State != nil || c.TracerProvider != nil || len(c.Hooks) != 0 || len(c.KgoOpts) != 0 {
		t.Errorf("stateless, untraced, no hooks expected: %+v", c)
	}
	// LivenessTimeout follows the timeouts it must outlast.
	p, err = New(nil, nil, nil, append(required, SessionTimeout(60*time.Second), TransactionTimeout(20*time.Second))...)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.cfg.LivenessTimeout; got != 50*time.Second {
		t.Errorf("LivenessTimeout with a 20s transaction timeout = %v, want 2×20s+10s", got)
	}
}

// TestOptionsApplyInOrder: a later option replaces an earlier one for the
// same setting, except WithHooks and WithKgoOpts, which add; a negative
// linger means none; a nil option is ignored.
func TestOptionsApplyInOrder(t *testing.T) {
	a, b := &Stats{}, &Stats{}
	p, err := New(nil, nil, nil, append(required,
		BatchSize(5), BatchSize(7),
		Topics("x", "y"), Topics("t"),
		WithHooks(a), WithHooks(b),
		WithKgoOpts(), WithKgoOpts(nil, nil),
		ProducerLinger(-1),
		nil,
	)...)
	if err != nil {
		t.Fatal(err)
	}
	c := p.cfg
	if c.BatchSize != 7 || len(c.Topics) != 1 || c.Topics[0] != "t" {
		t.Errorf("later options must replace: BatchSize %d, Topics %v", c.BatchSize, c.Topics)
	}
	if len(c.Hooks) != 2 || len(c.KgoOpts) != 2 {
		t.Errorf("WithHooks and WithKgoOpts must add: %d hooks, %d client options", len(c.Hooks), len(c.KgoOpts))
	}
	if c.ProducerLinger != 0 {
		t.Errorf("ProducerLinger(-1) = %v, want no linger", c.ProducerLinger)
	}
}

// TestMissingOptionsAreNamed: the error names each missing required option
// and the options of a contradictory setting.
func TestMissingOptionsAreNamed(t *testing.T) {
	_, err := New(nil, nil, nil, Brokers("127.0.0.1:1"))
	if err == nil {
		t.Fatal("no group, topics or transactional id accepted")
	}
	for _, want := range []string{"consumer.Group", "consumer.Topics", "consumer.TransactionalID"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if strings.Contains(err.Error(), "consumer.Brokers") {
		t.Errorf("error %q names consumer.Brokers, which is set", err)
	}
	_, err = New(nil, nil, nil, append(required, ForwardTo("log"), State(&Stateful{}))...)
	if err == nil || !strings.Contains(err.Error(), "consumer.ForwardTo") || !strings.Contains(err.Error(), "consumer.State") {
		t.Errorf("forwarding and stateful stage together: %v", err)
	}
}
