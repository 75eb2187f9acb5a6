package consumer

import (
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/trace"
)

// Opt configures New. Options are functional, as in franz-go's kgo: each
// says its default and what changing it costs. They apply in order; a later
// option for the same setting replaces the earlier one, except WithHooks and
// WithKgoOpts, which add. Brokers, Group, Topics and TransactionalID are
// required: New refuses a pipeline without them and names the missing
// option. Settings are nouns (CommitInterval); dependencies handed in start
// with With (WithLogger).
type Opt func(*config)

// Brokers are the seed brokers (host:port). Required.
func Brokers(brokers ...string) Opt {
	return func(c *config) { c.Brokers = brokers }
}

// Group is the consumer group shared by all replicas. Required.
func Group(group string) Opt {
	return func(c *config) { c.Group = group }
}

// Topics to consume. Required.
func Topics(topics ...string) Opt {
	return func(c *config) { c.Topics = topics }
}

// TransactionalID must be unique per live replica and stable across its
// restarts: a restarted replica then fences its previous incarnation (a
// zombie) instead of running beside it. ordo derives it as
// "<transactional_id_prefix>-<replica_id>" (see the config reference).
// Required.
func TransactionalID(id string) Opt {
	return func(c *config) { c.TransactionalID = id }
}

// CommitInterval ends the open transaction this long after it began.
// Default 100ms, as Kafka Streams EOS. Shorter lowers latency, longer
// raises throughput (fewer transaction markers). It must be below half the
// TransactionTimeout (processing is cut off there).
func CommitInterval(d time.Duration) Opt {
	return func(c *config) { c.CommitInterval = d }
}

// BatchSize ends the open transaction once it holds this many input
// records. Default 10000: every End is a pause in processing (flush,
// EndTxn, offset commit), so the cap should rarely beat CommitInterval; it
// bounds how much work an abort redoes.
func BatchSize(n int) Opt {
	return func(c *config) { c.BatchSize = n }
}

// PollRecords caps the records taken per poll. 0 (default) paces polls:
// the loop checks the commit deadline only between polls, so it takes as
// many records as it has processed in the time left before the deadline
// (at least 100), which ends transactions close to CommitInterval under a
// backlog without shrinking the early polls.
func PollRecords(n int) Opt {
	return func(c *config) { c.PollRecords = n }
}

// Workers bounds how many partitions are processed in parallel. Default
// 2×GOMAXPROCS (processors may wait on lookups); more helps only when the
// chain waits on I/O, and costs memory for the records in flight.
func Workers(n int) Opt {
	return func(c *config) { c.Workers = n }
}

// SessionTimeout of the group member. Default 45s. Shorter moves a dead
// replica's partitions sooner, but a replica that pauses longer (GC, a
// slow End) is thrown out of the group. Must be above TransactionTimeout.
func SessionTimeout(d time.Duration) Opt {
	return func(c *config) { c.SessionTimeout = d }
}

// TransactionTimeout must be below SessionTimeout so that a stalled
// replica's transaction is aborted by the broker before its partitions
// move. Default 10s. Processing in one transaction is cut off at half of
// it (the rest is End's).
func TransactionTimeout(d time.Duration) Opt {
	return func(c *config) { c.TransactionTimeout = d }
}

// ShutdownTimeout bounds finishing the open transaction and leaving the
// group on shutdown. Default 10s.
func ShutdownTimeout(d time.Duration) Opt {
	return func(c *config) { c.ShutdownTimeout = d }
}

// InstanceID, when set, makes the replica a static group member (KIP-345):
// a replica restarted with the same id gets its partitions back at once
// instead of after a rebalance, but a replica that stops and never returns
// keeps its partitions until SessionTimeout expires (static members do not
// leave the group on shutdown). ordo uses the transactional id, which is
// already unique per replica and stable across its restarts. Default ""
// (dynamic membership).
func InstanceID(id string) Opt {
	return func(c *config) { c.InstanceID = id }
}

// StallTimeout turns readiness false when the loop has had work (polled
// records) for this long without committing any of it: an abort loop, a
// dependency that refuses every request, an output that cannot be written.
// Default 60s. Shorter alerts sooner but flags a legitimately slow
// transaction.
func StallTimeout(d time.Duration) Opt {
	return func(c *config) { c.StallTimeout = d }
}

// LivenessTimeout fails liveness when the loop has not come round for this
// long (a processor or End stuck beyond every timeout). Default
// 2×TransactionTimeout + ShutdownTimeout, at least 30s: shorter risks a
// restart of a replica that is only slow.
func LivenessTimeout(d time.Duration) Opt {
	return func(c *config) { c.LivenessTimeout = d }
}

// TransientRetries is how often one record's transient failure is retried
// inside the transaction before the transaction aborts. Default 3. More
// rides out longer blips without an abort, but holds the transaction (and
// every other record in it) open longer.
func TransientRetries(n int) Opt {
	return func(c *config) { c.TransientRetries = n }
}

// RetryBackoff bounds the exponential backoff for retries and session
// re-creation. Defaults 50ms and 5s; a value <= 0 keeps its default.
func RetryBackoff(min, max time.Duration) Opt {
	return func(c *config) { c.RetryBackoffMin, c.RetryBackoffMax = min, max }
}

// FetchMaxBytes bounds one fetch's memory. Default 8 MiB: a transaction
// holds at most BatchSize records, so a larger fetch only buffers records
// that wait, decompressed in memory. Raise it only together with the soft
// memory limit (processing.memory_limit_mib, 384 MiB by default): at 32 MiB
// under a 192 MiB limit the benchmark's backlog drained 3.4× slower than at 8 MiB
// (50 µs of CPU per event instead of 12: the heap sat at the limit and the
// GC ran without pause); with GOMEMLIMIT at 1 GiB, 32 MiB ran as fast as
// 8 MiB at 4.4× the RSS (bench/findings.md).
func FetchMaxBytes(n int32) Opt {
	return func(c *config) { c.FetchMaxBytes = n }
}

// FetchMaxPartitionBytes bounds one partition's share of a fetch. Default
// 1 MiB (see FetchMaxBytes). It must still exceed the largest record batch.
func FetchMaxPartitionBytes(n int32) Opt {
	return func(c *config) { c.FetchMaxPartitionBytes = n }
}

// ProducerLinger lets outputs batch before a produce request is sent.
// Default 25ms: fewer, larger produce batches, so less broker CPU per event
// (13.7 -> 5.5 µs against 5ms in a benchmark A/B). Outputs are invisible
// until End, and End flushes at once, so linger costs no end-to-end
// latency; it lowered p99 under load. A negative value means no linger
// (every record is sent immediately); 0 keeps the default.
func ProducerLinger(d time.Duration) Opt {
	return func(c *config) { c.ProducerLinger = d }
}

// MetadataMinAge is the least time between two metadata requests of the
// client. Default 100ms (franz-go's own default is 5s). A produce that the
// broker answers with CONCURRENT_TRANSACTIONS (Kafka 4 does while the
// previous transaction's markers on that partition are still being
// written, KIP-890) is retried only after a metadata refresh, so with 5s a
// busy broker stalled a transaction for up to 5s: 4.0s in the test
// TestSlowChainCommitsSteadily. Lower means faster recovery from such
// retries and from leader moves; the cost is at most one small metadata
// request per MetadataMinAge while errors last (Kafka's Java client
// refreshes on errors after retry.backoff.ms, 100ms, too).
func MetadataMinAge(d time.Duration) Opt {
	return func(c *config) { c.MetadataMinAge = d }
}

// KeyParallel processes different keys of one partition concurrently
// (KeyLanes lanes per partition, each key always in the same lane, so
// per-key order holds). It helps when processors wait on I/O, e.g. an HTTP
// enrichment. Default off: partitions in parallel, records of a partition
// in order.
func KeyParallel(on bool) Opt {
	return func(c *config) { c.KeyParallel = on }
}

// KeyLanes per partition in key-parallel mode. Default 16. More lanes
// spread hot keys less often onto the same lane, at the cost of more
// goroutines per partition.
func KeyLanes(n int) Opt {
	return func(c *config) { c.KeyLanes = n }
}

// SerialLoop turns the pipelined loop off. By default, while a transaction
// ends (flush and commit round trips) the stateless stage already decodes
// and runs the chain on the next poll's records and produces their outputs
// once the next transaction has begun (see pipeline.go for why no
// unprocessed offset is ever committed). Serial is simpler to reason about
// but idles during every End. The stateful stage is always serial.
func SerialLoop(on bool) Opt {
	return func(c *config) { c.SerialLoop = on }
}

// SkipTypes are event types dropped before decoding, by the value of the
// SkipHeader record header. Skipped events are committed and counted,
// never processed. Default none.
func SkipTypes(types ...string) Opt {
	return func(c *config) { c.SkipTypes = types }
}

// SkipHeader is the record header SkipTypes matches. Default "ordo-type",
// which publish.Publisher sets.
func SkipHeader(header string) Opt {
	return func(c *config) { c.SkipHeader = header }
}

// RateLimits caps events per second per input topic (token bucket with a
// one-second burst). A topic over its rate is paused, not buffered.
// Default: no limit.
func RateLimits(perTopic map[string]float64) Opt {
	return func(c *config) { c.RateLimits = perTopic }
}

// ForwardTo makes this pipeline the first stage of a stateful configuration
// (stateful.go): accepted events are forwarded to the process log topic
// keyed by correlation id. Default: stateless.
func ForwardTo(processLog string) Opt {
	return func(c *config) { c.Forward = &forward{Topic: processLog} }
}

// State makes this pipeline the stateful stage: Topics must be the process
// log alone. Default (nil): stateless.
func State(s *Stateful) Opt {
	return func(c *config) { c.State = s }
}

// WithKgoOpts adds client options (TLS, SASL, hooks) to ordo's. The
// exactly-once options (group, transactional id, isolation level, balancer,
// timeouts) are applied after them, so they cannot weaken them. Repeated
// calls add.
func WithKgoOpts(opts ...kgo.Opt) Opt {
	return func(c *config) { c.KgoOpts = append(c.KgoOpts, opts...) }
}

// WithLogger sets the loop's logger. Default slog.Default().
func WithLogger(l *slog.Logger) Opt {
	return func(c *config) { c.Logger = l }
}

// WithHooks adds hooks called on the loop's events (see Hook): metrics,
// progress output. Each implements any subset of the Hook* interfaces; a
// value implementing none is an error at New. They run on the loop's path:
// count or hand off, never block. Repeated calls add.
func WithHooks(hooks ...Hook) Opt {
	return func(c *config) { c.Hooks = append(c.Hooks, hooks...) }
}

// WithTracerProvider, when tp is not nil (and not a no-op provider), traces
// every event: a span "ordo process <type>" continuing the W3C trace
// context of the record's headers, child spans per processor, registry
// fetch and produced record, and a span per transaction end. The
// processing span's context is injected into every output. Spans cost CPU
// and allocations per event. Default: no spans, and the input's trace
// headers are copied to the outputs unchanged.
func WithTracerProvider(tp trace.TracerProvider) Opt {
	return func(c *config) { c.TracerProvider = tp }
}

// TraceLink starts each processing span as a new root linked to the
// producer's span instead of as its child (tracing.parent: link). Default
// off: one trace end to end, from the producer through ordo to the
// commands; with it, a trace per event, reached from the producer's span by
// its link.
func TraceLink(on bool) Opt {
	return func(c *config) { c.TraceLink = on }
}
