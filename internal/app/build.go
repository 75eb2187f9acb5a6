package app

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/oauth"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/plugin/kotel"
	"github.com/twmb/franz-go/plugin/kslog"
	"go.opentelemetry.io/otel/trace"

	"github.com/ordo-dev/ordo/consumer"
	"github.com/ordo-dev/ordo/internal/config"
	"github.com/ordo-dev/ordo/internal/state"
	"github.com/ordo-dev/ordo/internal/telemetry"
	"github.com/ordo-dev/ordo/processors"
	"github.com/ordo-dev/ordo/producer"
	"github.com/ordo-dev/ordo/schemas"
)

// runtime is everything one replica runs, assembled from a config.
type runtime struct {
	cfg      *config.Config
	pipeline *consumer.Pipeline
	serde    *schemas.Serde
	registry *schemas.Registry
	readers  map[string]*schemas.Schema
	stats    *consumer.Stats
	strategy schemas.SubjectStrategy
	// limits are the output topics' record size limits; close releases
	// the admin client that reads them.
	limits *producer.TopicLimits
	close  func()
	// process is the stateful stage (nil: stateless configuration).
	process *statefulStage
}

// run runs the replica's loops until ctx ends.
func (rt *runtime) run(ctx context.Context) error {
	if rt.process == nil {
		return rt.pipeline.Run(ctx)
	}
	return runBoth(ctx, rt.pipeline, rt.process.pipeline)
}

// live and ready combine the loops' probes.
func (rt *runtime) live(now time.Time) (bool, string) {
	if ok, why := rt.pipeline.Live(now); !ok || rt.process == nil {
		return ok, why
	}
	ok, why := rt.process.pipeline.Live(now)
	return ok, prefixWhy("process stage: ", why)
}

func (rt *runtime) ready(now time.Time) (bool, string) {
	if ok, why := rt.pipeline.Ready(now); !ok || rt.process == nil {
		return ok, why
	}
	ok, why := rt.process.pipeline.Ready(now)
	return ok, prefixWhy("process stage: ", why)
}

func prefixWhy(p, why string) string {
	if why == "" {
		return ""
	}
	return p + why
}

// clientOpts are the connection options shared by every Kafka client ordo
// makes (pipeline, admin, publisher): brokers first (build drops them), then
// TLS and SASL. Secrets in files are read now (the OAUTHBEARER token file on
// every authentication).
func clientOpts(cfg *config.Config) ([]kgo.Opt, error) {
	opts := []kgo.Opt{kgo.SeedBrokers(cfg.Kafka.Brokers...), kgo.ClientID(cfg.Kafka.ClientID)}
	tlsCfg, err := cfg.KafkaTLS()
	if err != nil {
		return nil, err
	}
	if tlsCfg != nil {
		opts = append(opts, kgo.DialTLSConfig(tlsCfg))
	}
	s := cfg.Kafka.SASL
	mech := strings.ToUpper(s.Mechanism)
	switch mech {
	case "":
	case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
		pass, err := cfg.SASLPassword()
		if err != nil {
			return nil, fmt.Errorf("kafka.sasl.password_file: %w", err)
		}
		switch mech {
		case "PLAIN":
			opts = append(opts, kgo.SASL(plain.Auth{User: s.Username, Pass: pass}.AsMechanism()))
		case "SCRAM-SHA-256":
			opts = append(opts, kgo.SASL(scram.Auth{User: s.Username, Pass: pass}.AsSha256Mechanism()))
		default:
			opts = append(opts, kgo.SASL(scram.Auth{User: s.Username, Pass: pass}.AsSha512Mechanism()))
		}
	case "OAUTHBEARER":
		ext := s.Extensions
		opts = append(opts, kgo.SASL(oauth.Oauth(func(context.Context) (oauth.Auth, error) {
			tok, err := cfg.SASLToken()
			if err != nil {
				return oauth.Auth{}, fmt.Errorf("kafka.sasl.token_file: %w", err)
			}
			return oauth.Auth{Token: tok, Extensions: ext}, nil
		})))
	default:
		return nil, fmt.Errorf("kafka.sasl.mechanism %q is not supported", s.Mechanism)
	}
	return opts, nil
}

// newSchemaRegistry builds the registry client with the configured timeout,
// TLS and credentials. Userinfo in registry.url becomes basic auth: the URL
// the client knows (and puts in every error) carries no password.
func newSchemaRegistry(cfg *config.Config) (*schemas.Registry, error) {
	creds, err := cfg.RegistryCreds()
	if err != nil {
		return nil, err
	}
	tlsCfg, err := cfg.RegistryTLSConfig()
	if err != nil {
		return nil, err
	}
	httpcl := &http.Client{Timeout: cfg.Registry.Timeout.D()}
	if tlsCfg != nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = tlsCfg
		httpcl.Transport = tr
	}
	opts := []sr.ClientOpt{sr.URLs(creds.URL), sr.HTTPClient(httpcl)}
	if creds.Username != "" || creds.Password != "" {
		opts = append(opts, sr.BasicAuth(creds.Username, creds.Password))
	}
	if creds.BearerToken != "" {
		opts = append(opts, sr.BearerToken(creds.BearerToken))
	}
	cl, err := sr.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("registry client for %s: %w", creds.URL, err)
	}
	return schemas.NewRegistry(cl, schemas.FetchTimeout(cfg.Registry.Timeout.D())), nil
}

// observe is the observability a replica is built with; zero = none.
type observe struct {
	metrics *telemetry.Metrics // nil: no Prometheus metrics
	tracing *telemetry.Tracing // nil or off: no spans
	hooks   []consumer.Hook    // an embedder's own loop hooks (ordo.WithHooks)
}

// tracerProvider is the provider for the pipeline and publishers, nil when
// tracing is off.
func (o observe) tracerProvider() trace.TracerProvider {
	if !o.tracing.Enabled() {
		return nil
	}
	return o.tracing.Provider
}

// applyMemoryLimit sets the Go soft memory limit from
// processing.memory_limit_mib unless GOMEMLIMIT is set. A soft limit makes the
// GC work harder near it instead of letting the heap double (GOGC=100), which
// keeps RSS flat in an event storm; it never fails an allocation.
//
// With a state: block, the limit grows by what the state store keeps on the
// Go heap (state.GoHeapBytes: its block cache and memtables in a build
// without cgo, nothing with cgo), so memory_limit_mib is the pipeline's room
// in both builds.
func applyMemoryLimit(cfg *config.Config, log *slog.Logger) {
	if mib := cfg.Processing.MemoryLimitMiB; os.Getenv("GOMEMLIMIT") == "" && mib > 0 {
		limit := int64(mib) << 20
		var store int64
		if cfg.State != nil {
			st := cfg.StateSettings()
			store = state.GoHeapBytes(int64(st.CacheMiB)<<20, st.Partitions)
		}
		debug.SetMemoryLimit(limit + store)
		log.Info("soft memory limit set", "mib", (limit+store)>>20, "memory_limit_mib", mib, "state_store_mib", store>>20)
	}
	// A higher GC target trades heap headroom (bounded by the limit above) for
	// CPU: ordo's live heap is small and its garbage rate high (decoded
	// events, commands), so at GOGC=100 the collector runs constantly. See
	// docs/benchmarks.md for the measured effect.
	if os.Getenv("GOGC") == "" && cfg.Processing.GCPercent != 0 {
		debug.SetGCPercent(cfg.Processing.GCPercent)
		log.Info("GC target set", "gc_percent", cfg.Processing.GCPercent)
	}
}

// compressionCodec maps kafka.producer_compression (validated by config) to
// franz-go's codec.
func compressionCodec(name string) kgo.CompressionCodec {
	switch name {
	case "none":
		return kgo.NoCompression()
	case "lz4":
		return kgo.Lz4Compression()
	case "zstd":
		return kgo.ZstdCompression()
	case "gzip":
		return kgo.GzipCompression()
	}
	return kgo.SnappyCompression()
}

// producerLinger maps kafka.producer_linger to consumer.ProducerLinger, where 0
// means the default and a negative value no linger.
func producerLinger(cfg *config.Config) time.Duration {
	if cfg.Kafka.ProducerLinger <= 0 {
		return -1
	}
	return cfg.Kafka.ProducerLinger.D()
}

// build assembles a replica from cfg and its schemas (see readers). It
// connects to nothing.
func build(cfg *config.Config, rs *readerSet, reg *processors.Registry, log *slog.Logger, ob observe) (*runtime, error) {
	readers := rs.byName
	strategy, err := schemas.ParseSubjectStrategy(cfg.Registry.SubjectStrategy)
	if err != nil {
		return nil, err
	}
	registry, err := newSchemaRegistry(cfg)
	if err != nil {
		return nil, err
	}
	autoRegister := cfg.Registry.AutoRegister == nil || *cfg.Registry.AutoRegister
	serde := schemas.NewSerde(registry, readers, schemas.WithSubjectStrategy(strategy), schemas.WithAutoRegister(autoRegister))

	specs, processSpecs := cfg.Specs(), []processors.Spec(nil)
	if cfg.State != nil {
		specs, processSpecs = splitSpecs(specs)
	}
	chain, err := reg.Build(specs, processorDeps(cfg, rs, log))
	if err != nil {
		return nil, config.Join(err) // every processor's errors, one per line, by line
	}

	kopts, err := clientOpts(cfg)
	if err != nil {
		return nil, err
	}
	// Outputs larger than their topic accepts would abort every
	// transaction: they become permanent errors and bounded dead letters.
	limits, closeLimits, err := outputLimits(cfg, log)
	if err != nil {
		return nil, err
	}
	stats := &consumer.Stats{}
	hooks := append([]consumer.Hook{stats}, ob.hooks...)
	// franz-go's own logs go through the same slog logger.
	kgoOpts := append(kopts[1:], kgo.WithLogger(kslog.New(kgoLogger(log)))) // brokers are set by the pipeline
	kgoOpts = append(kgoOpts, kgo.ProducerBatchCompression(compressionCodec(cfg.Kafka.ProducerCompression)))
	kgoOpts = append(kgoOpts, kgo.WithHooks(newAuthzHook(cfg, log))) // names a refused topic/group/transactional id
	if ob.metrics != nil {
		hooks = append(hooks, ob.metrics)
		kgoOpts = append(kgoOpts, ob.metrics.KgoOpts()...)
		ob.metrics.RegistryStats(registry.Stats)
		ob.metrics.RegistryNegativeHits(registry.NegativeHits)
	}
	if tp := ob.tracerProvider(); tp != nil && cfg.Tracing.ClientSpans {
		k := kotel.NewKotel(kotel.WithTracer(kotel.NewTracer(kotel.TracerProvider(tp), kotel.TracerPropagator(producer.Propagator),
			kotel.ClientID(cfg.Kafka.ClientID), kotel.ConsumerGroup(cfg.Kafka.Group))))
		kgoOpts = append(kgoOpts, kgo.WithHooks(k.Hooks()...))
	}
	instanceID := ""
	if cfg.StaticMembership() {
		instanceID = cfg.TransactionalID()
	}
	// base is what both stages of a stateful configuration share; the
	// stateful stage replaces some of it (buildStateful).
	base := []consumer.Opt{
		consumer.Brokers(cfg.Kafka.Brokers...),
		consumer.Group(cfg.Kafka.Group),
		consumer.Topics(cfg.Inputs...),
		consumer.TransactionalID(cfg.TransactionalID()),
		consumer.CommitInterval(cfg.Processing.CommitInterval.D()),
		consumer.BatchSize(cfg.Processing.BatchSize),
		consumer.PollRecords(cfg.Processing.PollRecords),
		consumer.Workers(cfg.Processing.Workers),
		consumer.SessionTimeout(cfg.Kafka.SessionTimeout.D()),
		consumer.TransactionTimeout(cfg.Kafka.TransactionTimeout.D()),
		consumer.ShutdownTimeout(cfg.Processing.ShutdownTimeout.D()),
		consumer.InstanceID(instanceID),
		consumer.StallTimeout(cfg.Processing.StallTimeout.D()),
		consumer.LivenessTimeout(cfg.Processing.LivenessTimeout.D()),
		consumer.TransientRetries(cfg.Processing.TransientRetries),
		consumer.ProducerLinger(producerLinger(cfg)),
		consumer.KeyParallel(cfg.Processing.KeyParallel),
		consumer.KeyLanes(cfg.Processing.KeyLanes),
		consumer.SerialLoop(cfg.Processing.Pipeline != nil && !*cfg.Processing.Pipeline),
		consumer.SkipTypes(cfg.Processing.SkipTypes...),
		consumer.SkipHeader(cfg.Processing.SkipHeader),
		consumer.RateLimits(cfg.Processing.RateLimits),
		consumer.WithKgoOpts(kgoOpts...),
		consumer.WithLogger(log),
		consumer.WithTracerProvider(ob.tracerProvider()),
		consumer.TraceLink(cfg.Tracing.Parent == "link"),
	}
	output := producer.NewOutput(serde, cfg.DeadLetter, cfg.Kafka.Group, producer.WithMaxRecordBytes(limits.For))
	opts := append(slices.Clip(base), consumer.WithHooks(hooks...))
	if cfg.State != nil {
		opts = append(slices.Clip(base), consumer.WithHooks(stageHooks(hooks, true)...), consumer.ForwardTo(cfg.StateSettings().ProcessLog))
	}
	if ob.metrics != nil {
		opts = append(opts, consumer.WithKgoOpts(ob.metrics.ClientHooks("pipeline")...))
	}
	p, err := consumer.New(serde, chain, output, opts...)
	if err != nil {
		closeLimits()
		return nil, err
	}
	rt := &runtime{cfg: cfg, pipeline: p, serde: serde, registry: registry, readers: readers, stats: stats, strategy: strategy,
		limits: limits, close: closeLimits}
	if cfg.State != nil {
		stageBase := slices.Clip(base)
		if ob.metrics != nil {
			stageBase = append(stageBase, consumer.WithKgoOpts(ob.metrics.ClientHooks("process")...))
		}
		stage, err := buildStateful(cfg, rs, reg, log, stageBase, hooks, serde, output, processSpecs)
		if err != nil {
			closeLimits()
			return nil, err
		}
		rt.process = stage
		rt.close = func() { stage.close(); closeLimits() }
		if ob.metrics != nil {
			ob.metrics.StateRestore(stage.store.Restoring, stage.restored.Load)
		}
	}
	if ob.metrics != nil {
		ob.metrics.Health.LoopProbes(rt.live, rt.ready)
		ob.metrics.LoopProgress(func() (time.Duration, int) {
			pr := p.Progress()
			if rt.process != nil {
				if q := rt.process.pipeline.Progress(); !q.PendingSince.IsZero() && (pr.PendingSince.IsZero() || q.PendingSince.Before(pr.PendingSince)) {
					pr.PendingSince = q.PendingSince
				}
				pr.ConsecutiveAborts = max(pr.ConsecutiveAborts, rt.process.pipeline.Progress().ConsecutiveAborts)
			}
			if pr.PendingSince.IsZero() {
				return 0, pr.ConsecutiveAborts
			}
			return time.Since(pr.PendingSince), pr.ConsecutiveAborts
		})
	}
	return rt, nil
}

// publisherSerde is the serde the publishing commands (produce, demo) use:
// the config's schemas (see readers) plus extra, registered on first use.
func publisherSerde(ctx context.Context, cfg *config.Config, log *slog.Logger, extra ...*schemas.Schema) (*schemas.Serde, map[string]*schemas.Schema, error) {
	registry, err := newSchemaRegistry(cfg)
	if err != nil {
		return nil, nil, err
	}
	rs, err := readers(ctx, cfg, log)
	if err != nil {
		return nil, nil, err
	}
	readers := maps.Clone(rs.byName)
	for _, s := range extra {
		readers[s.FullName] = s
	}
	strategy, err := schemas.ParseSubjectStrategy(cfg.Registry.SubjectStrategy)
	if err != nil {
		return nil, nil, err
	}
	return schemas.NewSerde(registry, readers, schemas.WithSubjectStrategy(strategy)), readers, nil
}

// newClient is a Kafka client with cfg's connection options plus extra.
func newClient(cfg *config.Config, extra ...kgo.Opt) (*kgo.Client, error) {
	kopts, err := clientOpts(cfg)
	if err != nil {
		return nil, err
	}
	return kgo.NewClient(append(kopts, extra...)...)
}

// createTopics creates cfg.Topics that do not exist yet.
func createTopics(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	cl, err := newClient(cfg)
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	names := make([]string, 0, len(cfg.Topics))
	for t := range cfg.Topics {
		names = append(names, t)
	}
	slices.Sort(names)
	for _, t := range names {
		parts := cfg.Topics[t].Partitions
		if parts <= 0 {
			parts = 3
		}
		resp, err := adm.CreateTopic(ctx, parts, -1, nil, t)
		if err == nil {
			err = resp.Err
		}
		if err != nil && !strings.Contains(err.Error(), "TOPIC_ALREADY_EXISTS") {
			return fmt.Errorf("create topic %s: %w", t, err)
		}
		if err == nil {
			log.Info("created topic", "topic", t, "partitions", parts)
		}
	}
	return nil
}

// fieldNames lists a record schema's top-level field names (only those
// without a default when requiredOnly).
func fieldNames(schemaText string, requiredOnly bool) []string {
	// Raw maps, because a "default": null must count as a default.
	var rec struct {
		Fields []map[string]json.RawMessage `json:"fields"`
	}
	if json.Unmarshal([]byte(schemaText), &rec) != nil {
		return nil
	}
	out := make([]string, 0, len(rec.Fields))
	for _, f := range rec.Fields {
		if _, hasDefault := f["default"]; requiredOnly && hasDefault {
			continue
		}
		var name string
		_ = json.Unmarshal(f["name"], &name)
		out = append(out, name)
	}
	return out
}
