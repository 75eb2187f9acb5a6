package state

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ordo-dev/ordo/internal/testkit"
)

// BenchmarkRestore measures a full restore of N process instances (one
// changelog key each) from a real changelog into empty stores: time, rate
// and the process's resident memory afterwards. It is a measurement, not a
// test; run it against a real broker, e.g. for 1M instances:
//
//	KAFKA_BROKERS=127.0.0.1:9600 ORDO_TEST_STATE_BENCH_INSTANCES=1000000 \
//	  go test ./internal/state -run '^$' -bench BenchmarkRestore -benchtime 3x
//
// Environment: ORDO_TEST_STATE_BENCH_INSTANCES (default 100000),
// ORDO_TEST_STATE_BENCH_PARTITIONS (default 1), ORDO_TEST_STATE_BENCH_VALUE_BYTES
// (default 256), ORDO_TEST_STATE_BENCH_TXN_RECORDS (records per producing
// transaction, default 5000), ORDO_TEST_STATE_BENCH_CHANGELOG (reuse this topic
// when it exists and holds data, so repeated runs skip producing).
//
// Metrics: restore-s (ns/op too), records/s, rss-MiB (VmRSS after the
// restore), peak-rss-MiB (VmHWM during the restore: the peak is reset with
// /proc/self/clear_refs after producing), heap-MiB (live Go heap after a GC) and
// store-MiB (the stores' size on disk).
func BenchmarkRestore(b *testing.B) {
	if strings.TrimSpace(os.Getenv(testkit.EnvBrokers)) == "" {
		b.Skip("BenchmarkRestore needs real Kafka: set KAFKA_BROKERS (test/kafka/kafka.sh start)")
	}
	n := envInt(b, "ORDO_TEST_STATE_BENCH_INSTANCES", 100000)
	partitions := envInt(b, "ORDO_TEST_STATE_BENCH_PARTITIONS", 1)
	valueBytes := envInt(b, "ORDO_TEST_STATE_BENCH_VALUE_BYTES", 256)
	perTxn := envInt(b, "ORDO_TEST_STATE_BENCH_TXN_RECORDS", 5000)
	brokers := testkit.Brokers(b)
	adm := testkit.NewAdmin(b, brokers)
	changelog := os.Getenv("ORDO_TEST_STATE_BENCH_CHANGELOG")
	reuse := false
	if changelog == "" {
		changelog = testkit.UniqueName(b, "bench-cl")
	} else {
		los, err := adm.ListEndOffsets(context.Background(), changelog)
		if err == nil && los.Error() == nil {
			var total int64
			los.Each(func(lo kadm.ListedOffset) { total += lo.Offset })
			reuse = total > 0 && len(los[changelog]) == partitions
		}
	}
	e := &env{t: b, brokers: brokers, adm: adm, processLog: changelog + "-pl", changelog: changelog, partitions: partitions}
	if !reuse {
		if err := EnsureTopics(context.Background(), adm, e.processLog, changelog, partitions, -1); err != nil {
			b.Fatal(err)
		}
		e.waitLeaders(changelog)
		start := time.Now()
		produceInstances(b, e, n, valueBytes, perTxn)
		b.Logf("produced %d instances (%d-byte values) to %s in %v", n, valueBytes, changelog, time.Since(start).Round(time.Millisecond))
	} else {
		b.Logf("reusing %s", changelog)
	}
	parts := make([]int32, partitions)
	for i := range parts {
		parts[i] = int32(i)
	}

	// Produce once; the sub-benchmark is what the framework repeats.
	b.Run(fmt.Sprintf("instances=%d/partitions=%d", n, partitions), func(b *testing.B) {
		var records int64
		var rss, peak, heap, disk float64
		for range b.N {
			b.StopTimer()
			dir := b.TempDir()
			runtime.GC()
			debug.FreeOSMemory()
			resetPeakRSS()
			m, err := Open(context.Background(), Options{Dir: dir, Changelog: changelog, KgoOpts: []kgo.Opt{kgo.SeedBrokers(brokers...)}})
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			m.Assign(parts)
			waitReady(b, m, 30*time.Minute, parts...)
			b.StopTimer()
			records = 0
			for _, pr := range m.Progress() {
				records += pr.Records
			}
			rss, peak = procStatusMiB("VmRSS"), procStatusMiB("VmHWM")
			runtime.GC() // live heap, not garbage awaiting collection
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			heap = float64(ms.HeapInuse) / (1 << 20)
			if err := m.Close(); err != nil {
				b.Fatal(err)
			}
			disk = dirMiB(dir)
			b.StartTimer()
		}
		b.StopTimer()
		secs := b.Elapsed().Seconds() / float64(b.N)
		b.ReportMetric(secs, "restore-s")
		b.ReportMetric(float64(records)/secs, "records/s")
		b.ReportMetric(rss, "rss-MiB")
		b.ReportMetric(peak, "peak-rss-MiB")
		b.ReportMetric(heap, "heap-MiB")
		b.ReportMetric(disk, "store-MiB")
		if records < int64(n) && !reuse {
			b.Fatalf("restored %d records, want %d", records, n)
		}
	})
}

// produceInstances writes n instance states ("i/<id>" → value) in
// transactions of perTxn records, spread over the partitions.
func produceInstances(b *testing.B, e *env, n, valueBytes, perTxn int) {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(e.brokers...),
		kgo.TransactionalID(testkit.UniqueName(b, "bench-tx")),
		kgo.RecordPartitioner(Partitioner(e.changelog, e.processLog)),
		kgo.DefaultProduceTopic(e.changelog),
		kgo.ProducerLinger(5*time.Millisecond),
	)
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	value := []byte(strings.Repeat("x", valueBytes))
	ctx := context.Background()
	for start := 0; start < n; start += perTxn {
		if err := cl.BeginTransaction(); err != nil {
			b.Fatal(err)
		}
		end := min(n, start+perTxn)
		recs := make([]*kgo.Record, 0, end-start)
		for i := start; i < end; i++ {
			recs = append(recs, &kgo.Record{Partition: int32(i % e.partitions), Key: []byte(fmt.Sprintf("i/%09d", i)), Value: value})
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			b.Fatal(err)
		}
		if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
			b.Fatal(err)
		}
	}
}

func envInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		b.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// resetPeakRSS resets VmHWM (Linux: "5" to clear_refs).
func resetPeakRSS() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// procStatusMiB reads a kB field of /proc/self/status in MiB (0 if absent).
func procStatusMiB(field string) float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

func dirMiB(dir string) float64 {
	var total int64
	filepath.Walk(dir, func(_ string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			total += info.Size()
		}
		return nil
	})
	return float64(total) / (1 << 20)
}
