// Command passthrough is benchmark contender (a), the limit: a raw franz-go
// GroupTransactSession that copies every input record (key, value, headers, plus ordo's
// ordo-input header naming the input topic/partition/offset)
// to one output topic, with ordo's session settings (read_committed,
// cooperative-sticky, RequireStableFetchOffsets, linger 0) and ordo's loop
// shape (poll at most what the transaction has room for, begin, produce
// through an aborting promise, end at 10000 records or 100 ms: ordo's
// default batch_size and commit_interval; BENCH_TXN_BATCH and
// BENCH_COMMIT_INTERVAL_MS change them). No decoding, no processing.
//
// With BENCH_SHAPE (a file ordobench writes) it is contender (a'), the
// limit at ordo's output shape: instead of a copy it produces, for each
// input record, the records ordo's pipeline made of one of the benchmark's
// events (templates: topics, values and headers as ordo writes them), with
// the input's key and its own ordo-input header. Still no decoding.
//
// Environment: BENCH_BROKERS, BENCH_GROUP, BENCH_TXN_ID, BENCH_INPUTS (comma
// list), BENCH_OUTPUT (comma list: copies spread over them), BENCH_LINGER (default 0, as ordo),
// BENCH_SHAPE (optional: the templates file; BENCH_OUTPUT is then unused),
// BENCH_SHAPE_HEADERS (with BENCH_SHAPE: all, the default, or trace: the
// templates' headers cut to the trace context, an experiment),
// BENCH_BURN_NS (optional: busy CPU per input record, contender passthrough-burn),
// BENCH_METADATA_MIN_AGE (default 100ms, as ordo), BENCH_KGO_LOG (optional:
// franz-go's info log goes to BENCH_KGO_LOG.<group>, e.g. to count produce
// retries).
package main

import (
	"context"
	"encoding/gob"
	"fmt"
	"math"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Transaction size and interval: ordobench passes ordo's defaults
// (BENCH_TXN_BATCH, BENCH_COMMIT_INTERVAL_MS) so that the limit ends its
// transactions exactly as often as ordo does.
var (
	batchSize      = envInt("BENCH_TXN_BATCH", 10000)
	commitInterval = time.Duration(envInt("BENCH_COMMIT_INTERVAL_MS", 100)) * time.Millisecond
)

func envInt(k string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(k)); err == nil && n > 0 {
		return n
	}
	return def
}

// envDuration reads a duration variable (e.g. 5ms); def when unset.
func envDuration(k string, def time.Duration) (time.Duration, error) {
	v := os.Getenv(k)
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", k, err)
	}
	return d, nil
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "passthrough:", err)
		os.Exit(1)
	}
}

// shapeEvent and shapeRecord are the templates' gob types, as
// bench/cmd/ordobench/shape.go writes them.
type shapeEvent struct{ Records []shapeRecord }

type shapeRecord struct {
	Topic   string
	Value   []byte
	Headers []kgo.RecordHeader
}

func loadShape(path string) ([]shapeEvent, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var evs []shapeEvent
	if err := gob.NewDecoder(f).Decode(&evs); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(evs) == 0 {
		return nil, fmt.Errorf("%s: no events", path)
	}
	return evs, nil
}

// burner returns a function that spends about ns nanoseconds of CPU on
// busy arithmetic (nil for ns ≤ 0): with BENCH_BURN_NS the pass-through
// costs about what ordo's processing does per event, to see what that CPU
// alone does to the latency tail on a shared machine (contender
// passthrough-burn). The loop is calibrated once at start on the best of
// five runs of 2^20 iterations, so a busy moment at start does not skew it.
func burner(ns int) func() {
	if ns <= 0 {
		return nil
	}
	var x uint64 = 88172645463325252
	spin := func(n int) {
		for range n {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
		}
	}
	const probe = 1 << 20
	best := time.Duration(math.MaxInt64)
	for range 5 {
		start := time.Now()
		spin(probe)
		best = min(best, time.Since(start))
	}
	iters := max(1, int(float64(probe)*float64(ns)/float64(best.Nanoseconds())))
	fmt.Fprintf(os.Stderr, "passthrough: burning %d iterations (~%d ns) per event\n", iters, ns)
	return func() { spin(iters); runtime.KeepAlive(x) }
}

func run() error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// BENCH_OUTPUT may list several topics (an experiment: spread the
	// copies over as many output partitions as ordo writes to).
	outs := strings.Split(os.Getenv("BENCH_OUTPUT"), ",")
	// BENCH_LINGER (e.g. 5ms) overrides ordo's linger 0, for experiments.
	linger, err := envDuration("BENCH_LINGER", 0)
	if err != nil {
		return err
	}
	// BENCH_METADATA_MIN_AGE (default 100ms, ordo's consumer.MetadataMinAge
	// default): franz-go's own 5s makes a produce retried after
	// CONCURRENT_TRANSACTIONS wait up to 5s for a metadata refresh; the
	// pass-through gets the same client setting as ordo. 5s gives franz-go's
	// default back, for experiments.
	minAge, err := envDuration("BENCH_METADATA_MIN_AGE", 100*time.Millisecond)
	if err != nil {
		return err
	}
	var logOpt []kgo.Opt
	if path := os.Getenv("BENCH_KGO_LOG"); path != "" {
		f, err := os.Create(path + "." + os.Getenv("BENCH_GROUP")) // one file per run
		if err != nil {
			return err
		}
		defer f.Close()
		logOpt = append(logOpt, kgo.WithLogger(kgo.BasicLogger(f, kgo.LogLevelInfo, func() string {
			return time.Now().Format("15:04:05.000000 ")
		})))
	}
	burn := burner(envInt("BENCH_BURN_NS", 0))
	var shape []shapeEvent
	if p := os.Getenv("BENCH_SHAPE"); p != "" {
		var err error
		if shape, err = loadShape(p); err != nil {
			return err
		}
		// BENCH_SHAPE_HEADERS=trace keeps only the trace context of
		// ordo's headers (ordo-input is added below anyway): what ordo's
		// output would cost without its envelope headers (an experiment;
		// ordo always writes them).
		switch h := os.Getenv("BENCH_SHAPE_HEADERS"); h {
		case "", "all":
		case "trace":
			for i := range shape {
				for j := range shape[i].Records {
					r := &shape[i].Records[j]
					r.Headers = slices.DeleteFunc(r.Headers, func(h kgo.RecordHeader) bool {
						return h.Key != "traceparent" && h.Key != "tracestate" && h.Key != "baggage"
					})
				}
			}
		default:
			return fmt.Errorf("BENCH_SHAPE_HEADERS=%q: want all or trace", h)
		}
	}
	sess, err := kgo.NewGroupTransactSession(append([]kgo.Opt{
		kgo.SeedBrokers(strings.Split(os.Getenv("BENCH_BROKERS"), ",")...),
		kgo.ConsumerGroup(os.Getenv("BENCH_GROUP")),
		kgo.ConsumeTopics(strings.Split(os.Getenv("BENCH_INPUTS"), ",")...),
		kgo.TransactionalID(os.Getenv("BENCH_TXN_ID")),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.RequireStableFetchOffsets(),
		kgo.SessionTimeout(45 * time.Second),
		kgo.TransactionTimeout(10 * time.Second),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.ProducerLinger(linger),
		kgo.MetadataMinAge(minAge),
	}, logOpt...)...,
	)
	if err != nil {
		return err
	}
	defer sess.Close()
	var (
		open    bool
		started time.Time
		records int
		promise *kgo.FirstErrPromise
	)
	end := func(c context.Context) error {
		if !open {
			return nil
		}
		try := kgo.TryCommit
		if promise.Err() != nil {
			try = kgo.TryAbort
		}
		open, records = false, 0
		_, err := sess.End(c, try)
		return err
	}
	for {
		pollCtx, cancel := ctx, context.CancelFunc(func() {})
		if open {
			pollCtx, cancel = context.WithDeadline(ctx, started.Add(commitInterval))
		}
		fs := sess.PollRecords(pollCtx, batchSize-records)
		cancel()
		if ctx.Err() != nil {
			if open {
				// Polled-but-unproduced records would be committed: abort.
				c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, _ = sess.End(c, kgo.TryAbort)
				cancel()
			}
			return nil
		}
		fs.EachError(func(t string, p int32, err error) {
			if err != context.DeadlineExceeded && err != context.Canceled {
				fmt.Fprintf(os.Stderr, "fetch %s/%d: %v\n", t, p, err)
			}
		})
		if !fs.Empty() {
			if !open {
				if err := sess.Begin(); err != nil {
					return err
				}
				open, started, promise = true, time.Now(), kgo.AbortingFirstErrPromise(sess.Client())
			}
			fs.EachRecord(func(r *kgo.Record) {
				records++
				if burn != nil {
					burn()
				}
				// Like ordo, record where the output came from (ordo-input).
				input := kgo.RecordHeader{Key: "ordo-input", Value: []byte(r.Topic + "/" + strconv.Itoa(int(r.Partition)) + "/" + strconv.FormatInt(r.Offset, 10))}
				if shape != nil {
					for _, t := range shape[int(r.Offset)%len(shape)].Records {
						h := append(t.Headers[:len(t.Headers):len(t.Headers)], input)
						sess.Produce(context.WithoutCancel(ctx), &kgo.Record{Topic: t.Topic, Key: r.Key, Value: t.Value, Headers: h}, promise.Promise())
					}
					return
				}
				h := append(r.Headers[:len(r.Headers):len(r.Headers)], input)
				out := outs[int(r.Offset)%len(outs)]
				sess.Produce(context.WithoutCancel(ctx), &kgo.Record{Topic: out, Key: r.Key, Value: r.Value, Headers: h}, promise.Promise())
			})
		}
		if open && (records >= batchSize || time.Since(started) >= commitInterval) {
			if err := end(ctx); err != nil {
				return err
			}
		}
	}
}
