package consumer

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/trace"
)

// config is one replica's EOS loop settings, set by the options in
// options.go (each documents its default and trade-off). Zero values take
// the defaults (withDefaults).
type config struct {
	Brokers         []string
	Group           string
	Topics          []string
	TransactionalID string

	CommitInterval time.Duration
	BatchSize      int
	PollRecords    int
	Workers        int

	SessionTimeout     time.Duration
	TransactionTimeout time.Duration
	ShutdownTimeout    time.Duration
	InstanceID         string

	StallTimeout    time.Duration
	LivenessTimeout time.Duration

	TransientRetries                 int
	RetryBackoffMin, RetryBackoffMax time.Duration

	FetchMaxBytes, FetchMaxPartitionBytes int32
	// ProducerLinger: 0 is the default (25ms), negative no linger.
	ProducerLinger time.Duration
	MetadataMinAge time.Duration

	KeyParallel bool
	KeyLanes    int
	SerialLoop  bool

	SkipTypes  []string
	SkipHeader string
	RateLimits map[string]float64

	// Forward and State: at most one; both nil is a stateless pipeline.
	Forward *forward
	State   *Stateful

	KgoOpts        []kgo.Opt
	Logger         *slog.Logger
	Hooks          []Hook
	TracerProvider trace.TracerProvider
	TraceLink      bool
}

func (c config) withDefaults() config {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.CommitInterval, 100*time.Millisecond)
	def(&c.SessionTimeout, 45*time.Second)
	def(&c.TransactionTimeout, 10*time.Second)
	def(&c.ShutdownTimeout, 10*time.Second)
	def(&c.RetryBackoffMin, 50*time.Millisecond)
	def(&c.RetryBackoffMax, 5*time.Second)
	def(&c.StallTimeout, 60*time.Second)
	def(&c.MetadataMinAge, 100*time.Millisecond)
	def(&c.LivenessTimeout, max(30*time.Second, 2*c.TransactionTimeout+c.ShutdownTimeout))
	if c.BatchSize <= 0 {
		c.BatchSize = 10000
	}
	if c.Workers <= 0 {
		c.Workers = 2 * runtime.GOMAXPROCS(0)
	}
	if c.TransientRetries <= 0 {
		c.TransientRetries = 3
	}
	if c.ProducerLinger == 0 {
		c.ProducerLinger = 25 * time.Millisecond
	} else if c.ProducerLinger < 0 {
		c.ProducerLinger = 0
	}
	if c.KeyLanes <= 0 {
		c.KeyLanes = 16
	}
	if c.SkipHeader == "" {
		c.SkipHeader = "ordo-type"
	}
	if c.FetchMaxBytes <= 0 {
		c.FetchMaxBytes = 8 << 20
	}
	if c.FetchMaxPartitionBytes <= 0 {
		c.FetchMaxPartitionBytes = 1 << 20
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func (c config) validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("no brokers: set consumer.Brokers"))
	}
	if c.Group == "" {
		errs = append(errs, errors.New("no consumer group: set consumer.Group"))
	}
	if len(c.Topics) == 0 {
		errs = append(errs, errors.New("no input topics: set consumer.Topics"))
	}
	if c.TransactionalID == "" {
		errs = append(errs, errors.New("no transactional id: set consumer.TransactionalID"))
	}
	if c.State != nil {
		if len(c.Topics) != 1 {
			errs = append(errs, fmt.Errorf("the stateful stage (consumer.State) consumes only the process log, got consumer.Topics %v", c.Topics))
		}
		if c.State.Store == nil || c.State.Processes == nil {
			errs = append(errs, errors.New("the stateful stage (consumer.State) needs a store and the process engine"))
		}
		if c.Forward != nil {
			errs = append(errs, errors.New("a pipeline is either the forwarding stage (consumer.ForwardTo) or the stateful stage (consumer.State), not both"))
		}
	}
	if c.Forward != nil && c.Forward.Topic == "" {
		errs = append(errs, errors.New("forwarding needs the process log topic (consumer.ForwardTo)"))
	}
	if c.TransactionTimeout >= c.SessionTimeout {
		errs = append(errs, fmt.Errorf("transaction timeout %v must be below the session timeout %v (consumer.TransactionTimeout, consumer.SessionTimeout)", c.TransactionTimeout, c.SessionTimeout))
	}
	if c.CommitInterval >= c.TransactionTimeout/2 {
		// Processing is cut off at half the transaction timeout (the rest
		// is End's): a longer interval would abort every busy transaction.
		errs = append(errs, fmt.Errorf("commit interval %v must be below half the transaction timeout %v (consumer.CommitInterval, consumer.TransactionTimeout)", c.CommitInterval, c.TransactionTimeout))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("consumer config: %w", err)
	}
	return nil
}
