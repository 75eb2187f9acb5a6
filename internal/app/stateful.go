package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ordo-dev/ordo/consumer"
	"github.com/ordo-dev/ordo/internal/config"
	"github.com/ordo-dev/ordo/internal/state"
	"github.com/ordo-dev/ordo/processes"
	"github.com/ordo-dev/ordo/processors"
	"github.com/ordo-dev/ordo/producer"
)

// A stateful configuration (a state: block) runs two loops per replica,
// each its own consumer group and transactional id (docs/processes.md):
//
//	forward  inputs → pipeline minus orchestrate → process log (keyed by correlation id)
//	process  process log → dedupe → processes → orchestrate → commands + changelog
//
// The suffixes keep the two stages' groups and transactional ids apart.
const (
	processGroupSuffix = ".process"
	processTxnSuffix   = "-process"
)

// splitSpecs puts the pipeline's orchestrate steps into the stateful stage
// (after dedupe, so duplicates emit nothing) and the rest (decode,
// validate, enrich) into the forwarding stage.
func splitSpecs(specs []processors.Spec) (forward, process []processors.Spec) {
	for _, s := range specs {
		if s.Type == "orchestrate" {
			process = append(process, s)
		} else {
			forward = append(forward, s)
		}
	}
	return forward, process
}

// engineAdapter gives the consumer what it needs from the process engine.
type engineAdapter struct {
	e          *processes.Engine
	processLog string
}

func (a engineAdapter) IsTrigger(r *kgo.Record) bool { return processes.IsTrigger(r) }
func (a engineAdapter) TriggerEvent(r *kgo.Record) (*processors.Event, error) {
	return processes.TriggerEvent(r)
}
func (a engineAdapter) DueTriggers(r state.Reader, now time.Time, p int32, limit int) ([]string, []*kgo.Record, error) {
	ts, err := a.e.Due(r, now, limit)
	if err != nil {
		return nil, nil, err
	}
	ids := make([]string, len(ts))
	recs := make([]*kgo.Record, len(ts))
	for i, t := range ts {
		ids[i] = t.ID()
		recs[i] = t.Record(a.processLog, p)
	}
	return ids, recs, nil
}
func (a engineAdapter) Housekeep(tx state.Txn, now time.Time, limit int) (int, error) {
	return a.e.Housekeep(tx, now, limit)
}
func (a engineAdapter) CheckState(r state.Reader) error { return a.e.CheckState(r) }

// stageHook keeps the two stages from counting one event twice: the
// forwarding stage counts events in (its end-to-end latency is not the
// pipeline's), the stateful stage counts commands and measures latency. It
// wraps one hook and passes every other event through unchanged.
type stageHook struct {
	h       consumer.Hook
	forward bool
}

// stageHooks wraps each of hs for one stage.
func stageHooks(hs []consumer.Hook, forward bool) []consumer.Hook {
	out := make([]consumer.Hook, len(hs))
	for i, h := range hs {
		out[i] = stageHook{h: h, forward: forward}
	}
	return out
}

func (o stageHook) OnTxnCommitted(d time.Duration, c consumer.Counts) {
	h, ok := o.h.(consumer.HookTxnCommitted)
	if !ok {
		return
	}
	if o.forward {
		c.EventTimes = nil
	} else {
		c.EventsIn = 0
	}
	h.OnTxnCommitted(d, c)
}

func (o stageHook) OnEventProcessed(ev *processors.Event, n int, d time.Duration) {
	if h, ok := o.h.(consumer.HookEventProcessed); ok {
		h.OnEventProcessed(ev, n, d)
	}
}

func (o stageHook) OnDeadLettered(r *kgo.Record, err error) {
	if h, ok := o.h.(consumer.HookDeadLettered); ok {
		h.OnDeadLettered(r, err)
	}
}

func (o stageHook) OnRetried(r *kgo.Record, err error) {
	if h, ok := o.h.(consumer.HookRetried); ok {
		h.OnRetried(r, err)
	}
}

func (o stageHook) OnProcessorDone(name string, d time.Duration, err error) {
	if h, ok := o.h.(consumer.HookProcessorDone); ok {
		h.OnProcessorDone(name, d, err)
	}
}

func (o stageHook) OnProduced(r *kgo.Record) {
	if h, ok := o.h.(consumer.HookProduced); ok {
		h.OnProduced(r)
	}
}

func (o stageHook) OnTxnAborted(d time.Duration, err error) {
	if h, ok := o.h.(consumer.HookTxnAborted); ok {
		h.OnTxnAborted(d, err)
	}
}

func (o stageHook) OnSessionRestarted(err error) {
	if h, ok := o.h.(consumer.HookSessionRestarted); ok {
		h.OnSessionRestarted(err)
	}
}

// statefulStage is the second loop and what it owns.
type statefulStage struct {
	pipeline *consumer.Pipeline
	// stateful is the stage's consumer.Stateful (its Partitions is set
	// once the process log is known, before Run).
	stateful *consumer.Stateful
	store    *state.Manager
	close    func()
	// restored counts changelog records applied by restores (metrics).
	restored atomic.Uint64
}

// buildStateful builds the stateful stage. base is the forwarding stage's
// consumer options (connection, timeouts, tracing) without its hooks,
// reused with the process log as the only topic; hooks are the replica's.
func buildStateful(cfg *config.Config, rs *readerSet, reg *processors.Registry, log *slog.Logger, base []consumer.Opt, hooks []consumer.Hook, dec consumer.Decoder, output *producer.Output, specs []processors.Spec) (*statefulStage, error) {
	st := cfg.StateSettings()
	deps := processorDeps(cfg, rs, log)
	engine, err := processes.Build(&cfg.Processes, cfg.File, deps, processes.DedupeWindow(st.DedupeWindow.D()))
	if err != nil {
		return nil, config.Join(err)
	}
	routes, err := reg.Build(specs, deps)
	if err != nil {
		return nil, config.Join(err)
	}
	chain := append(processors.Chain{processors.Named("dedupe", engine.Dedupe()), processors.Named("processes", engine.Processor())}, routes...)

	kopts, err := clientOpts(cfg)
	if err != nil {
		return nil, err
	}
	stage := &statefulStage{}
	store, err := state.Open(context.Background(), state.Options{
		Hooks:      state.Hooks{RestoreApplied: func(_ int32, n int) { stage.restored.Add(uint64(n)) }},
		Dir:        st.Dir,
		Changelog:  st.Changelog,
		KgoOpts:    kopts,
		CacheBytes: int64(st.CacheMiB) << 20,
		Logger:     log.With("stage", "process"),
	})
	if err != nil {
		return nil, fmt.Errorf("state store in %s: %w", st.Dir, err)
	}
	admCl, err := newClient(cfg)
	if err != nil {
		store.Close()
		return nil, err
	}
	instanceID := ""
	if cfg.StaticMembership() {
		instanceID = cfg.TransactionalID() + processTxnSuffix
	}
	stateful := &consumer.Stateful{
		Changelog: st.Changelog,
		Store:     store,
		Processes: engineAdapter{e: engine, processLog: st.ProcessLog},
		Admin:     kadm.NewClient(admCl),
	}
	// Later options replace base's.
	opts := append(slices.Clip(base),
		consumer.Group(cfg.Kafka.Group+processGroupSuffix),
		consumer.Topics(st.ProcessLog),
		consumer.TransactionalID(cfg.TransactionalID()+processTxnSuffix),
		consumer.InstanceID(instanceID),
		// Partition-serial: the store is safe for key lanes, but that mode is
		// not proven under chaos with state yet (docs/processes.md, limits).
		consumer.KeyParallel(false),
		consumer.SkipTypes(), // filtered in the forwarding stage
		consumer.RateLimits(nil),
		consumer.WithLogger(log.With("stage", "process")),
		consumer.WithHooks(stageHooks(hooks, false)...),
		consumer.State(stateful),
	)
	p, err := consumer.New(dec, chain, output, opts...)
	if err != nil {
		admCl.Close()
		store.Close()
		return nil, err
	}
	stage.pipeline, stage.stateful, stage.store = p, stateful, store
	stage.close = func() { admCl.Close(); _ = store.Close() }
	return stage, nil
}

// ensureStateTopics creates the process log and the changelog when missing,
// checks that they are co-partitioned and tells the stateful stage (when
// built) the process log's partition count.
func ensureStateTopics(ctx context.Context, cfg *config.Config, stage *statefulStage) error {
	st := cfg.StateSettings()
	cl, err := newClient(cfg)
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := state.EnsureTopics(ctx, adm, st.ProcessLog, st.Changelog, st.Partitions, -1); err != nil {
		return err
	}
	// Just-created topics take a moment to appear in every broker's
	// metadata (and kadm caches an "unknown topic" answer): retry the
	// check with fresh clients for a while before calling them missing.
	var adm2 *kadm.Client
	for attempt := 0; ; attempt++ {
		cl2, err := newClient(cfg)
		if err != nil {
			return err
		}
		defer cl2.Close()
		adm2 = kadm.NewClient(cl2)
		err = state.CheckCoPartitioned(ctx, adm2, st.ProcessLog, st.Changelog)
		if err == nil {
			break
		}
		if !errors.Is(err, state.ErrTopicMissing) || attempt >= 40 {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(250 * time.Millisecond):
		}
	}
	adm = adm2
	if stage != nil {
		td, err := adm.ListTopics(ctx, st.ProcessLog)
		if err != nil {
			return fmt.Errorf("describe %s: %w", st.ProcessLog, err)
		}
		stage.stateful.Partitions = len(td[st.ProcessLog].Partitions)
	}
	return nil
}

// runBoth runs the forwarding and the stateful stage until ctx ends or one
// of them fails (then the other is stopped too).
func runBoth(ctx context.Context, a, b *consumer.Pipeline) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, 2)
	go func() { errs <- a.Run(ctx) }()
	go func() { errs <- b.Run(ctx) }()
	first := <-errs
	cancel()
	second := <-errs
	return errors.Join(first, second)
}
