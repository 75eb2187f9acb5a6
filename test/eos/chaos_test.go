package eos

import (
	"context"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// zombie is the transaction a replica had open when it was SIGSTOPped.
type zombie struct {
	txnID  string
	pid    int64
	epoch  int16
	state  string
	starts map[tpKey]int64 // output partition → first offset of that transaction
}

func (sc *scenario) admin() (*kadm.Client, func()) {
	sc.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(sc.brokers...))
	if err != nil {
		sc.t.Fatal(err)
	}
	return kadm.NewClient(cl), cl.Close
}

// stopReplica SIGSTOPs r while it has a transaction open on the outputs
// (retrying a few times: SIGCONT, wait, SIGSTOP) and describes that
// transaction.
func (sc *scenario) stopReplica(r *replica) *zombie {
	sc.t.Helper()
	adm, done := sc.admin()
	defer done()
	txnID := sc.group + "-" + r.id // transactional_id_prefix "-" replica id
	var z *zombie
	for attempt := 0; attempt < 10; attempt++ {
		if attempt > 0 {
			_ = r.p.signal(syscall.SIGCONT)
			time.Sleep(time.Duration(100+attempt*37) * time.Millisecond)
		}
		if err := r.p.signal(syscall.SIGSTOP); err != nil {
			sc.t.Fatalf("SIGSTOP %s: %v", r.name, err)
		}
		r.p.stopped = true
		time.Sleep(300 * time.Millisecond) // in-flight produce requests land
		z = sc.describeOpen(adm, txnID)
		if z != nil && len(z.starts) > 0 {
			sc.t.Logf("SIGSTOPped %s (pid %d) with transaction %s open: producer %d epoch %d state %s on %d output partitions",
				r.name, r.p.pid(), txnID, z.pid, z.epoch, z.state, len(z.starts))
			return z
		}
	}
	sc.t.Logf("SIGSTOPped %s, but never caught it with a transaction open on the outputs", r.name)
	return z
}

func (sc *scenario) describeOpen(adm *kadm.Client, txnID string) *zombie {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dts, err := adm.DescribeTransactions(ctx, txnID)
	if err != nil {
		sc.t.Logf("describe transaction %s: %v", txnID, err)
		return nil
	}
	dt, ok := dts[txnID]
	if !ok || dt.Err != nil || dt.State != "Ongoing" {
		return nil
	}
	z := &zombie{txnID: txnID, pid: dt.ProducerID, epoch: dt.ProducerEpoch, state: dt.State, starts: map[tpKey]int64{}}
	set := kadm.TopicsSet{}
	for _, tpc := range sc.tp.outputs() {
		for p := int32(0); p < sc.partitionsOf(tpc); p++ {
			set.Add(tpc, p)
		}
	}
	dp, err := adm.DescribeProducers(ctx, set)
	if err != nil {
		sc.t.Logf("describe producers: %v", err)
		return nil
	}
	dp.EachPartition(func(p kadm.DescribedProducersPartition) {
		for _, pr := range p.ActiveProducers {
			if pr.ProducerID == z.pid && pr.ProducerEpoch == z.epoch && pr.CurrentTxnStartOffset >= 0 {
				z.starts[tpKey{p.Topic, p.Partition}] = pr.CurrentTxnStartOffset
			}
		}
	})
	return z
}

func (sc *scenario) partitionsOf(topic string) int32 {
	switch topic {
	case sc.tp.dlq:
		return sc.tp.dlqPar
	case sc.tp.orders, sc.tp.payments, sc.tp.warehouse:
		return sc.tp.inputPartitions
	}
	return sc.tp.outputPartitions
}

func (sc *scenario) contReplica(r *replica) {
	sc.t.Helper()
	if err := r.p.signal(syscall.SIGCONT); err != nil {
		sc.t.Fatalf("SIGCONT %s: %v", r.name, err)
	}
	r.p.stopped = false
}

// checkZombie asserts that the zombie's transaction wrote records and that
// a read_committed consumer sees none of them.
func (sc *scenario) checkZombie(z *zombie, res *result) {
	sc.t.Helper()
	if z == nil || len(z.starts) == 0 {
		return
	}
	adm, done := sc.admin()
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ends, err := settle(ctx, adm, sc.tp.outputs(), time.Minute)
	if err != nil {
		sc.t.Fatal(err)
	}
	only := map[tpKey]int64{}
	for k := range z.starts {
		only[k] = ends[k]
	}
	count := func(committed bool) int {
		recs, err := readRange(ctx, sc.brokers, z.starts, only, committed)
		if err != nil {
			sc.t.Fatal(err)
		}
		n := 0
		for _, rs := range recs {
			for _, r := range rs {
				if !r.Attrs.IsControl() && r.ProducerID == z.pid && r.ProducerEpoch == z.epoch {
					n++
				}
			}
		}
		return n
	}
	written, visible := count(false), count(true)
	sc.t.Logf("zombie transaction %s (producer %d epoch %d): %d records written, %d visible to read_committed", z.txnID, z.pid, z.epoch, written, visible)
	if written == 0 {
		sc.t.Errorf("the zombie's open transaction left no records: the check proved nothing")
	}
	if visible > 0 {
		res.abortedRead += visible
		res.problem("%d records of the zombie's transaction (producer %d epoch %d) are visible to read_committed", visible, z.pid, z.epoch)
	}
}

// countLog counts lines of r's log containing s.
func (sc *scenario) countLog(r *replica, s string) int {
	b, err := os.ReadFile(sc.logOf(r))
	if err != nil {
		return 0
	}
	return strings.Count(string(b), s)
}
