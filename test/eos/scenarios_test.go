package eos

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"
)

// drainTimeout bounds waiting for ordo to commit everything after the
// faults stop.
func drainTimeout(n int) time.Duration { return 2*time.Minute + time.Duration(n/500)*time.Second }

// Scenario 1: SIGKILL replicas at random points, ≥20 times, restarting the
// same replica id after a short random delay. Invariant: no loss, no
// duplicate, no aborted record read, per-key order, offsets == end of input;
// the kills did leave aborted output in the log (read_uncommitted).
func TestSIGKILLedReplicasLoseAndDuplicateNothing(t *testing.T) {
	sc := newScenario(t, "sigkill-replicas", scenarioOpts{})
	sc.createTopics()
	rs := []*replica{sc.start("r1", "r1"), sc.start("r2", "r2")}
	kills, n := killCount(), events(0.28)
	meanGap := 2 * time.Second
	rate := float64(n) / (float64(kills) * meanGap.Seconds())
	g := sc.newGenerator(genOpts{poisonEvery: 499})
	ctx := context.Background()
	foreign := sc.foreign(ctx, g)
	bg := g.goPublish(ctx, n, rate)
	rng := rand.New(rand.NewPCG(rand.Uint64(), 1))
	for range kills {
		sleepRand(rng, meanGap/2, meanGap*3/2)
		r := rs[rng.IntN(len(rs))]
		sc.kill(r)
		sleepRand(rng, 50*time.Millisecond, 800*time.Millisecond)
		sc.start(r.name, r.id)
	}
	if err := bg.wait(); err != nil {
		t.Fatal(err)
	}
	foreign()
	sc.waitProcessed(g, drainTimeout(n))
	sc.checkAlive(rs...)
	sc.stopAll()
	res := sc.verify(g)
	sc.report(res)
	if res.abortedOutput == 0 {
		t.Errorf("%d SIGKILLs left no aborted output in the log: the kills never hit an open transaction, so this run proved nothing about them", kills)
	}
}

// Scenario 10: poison records of every kind (garbage, wrong magic byte,
// unknown schema id, truncated body, business-rule violation) mixed into
// valid traffic. Invariant: the dead-letter topic holds exactly the poison
// inputs, byte-equal, with reason headers; valid events are unaffected.
func TestPoisonRecordsAreDeadLetteredExactlyOnceByteEqual(t *testing.T) {
	sc := newScenario(t, "poison-records", scenarioOpts{})
	sc.createTopics()
	rs := []*replica{sc.start("r1", "r1"), sc.start("r2", "r2")}
	n := events(0.06)
	g := sc.newGenerator(genOpts{poisonEvery: 20})
	ctx := context.Background()
	foreign := sc.foreign(ctx, g)
	if err := g.publish(ctx, n, 0); err != nil {
		t.Fatal(err)
	}
	foreign()
	sc.waitProcessed(g, drainTimeout(n))
	sc.checkAlive(rs...)
	sc.stopAll()
	res := sc.verify(g)
	sc.report(res)
	if res.poison < len(poisonKinds) {
		t.Errorf("only %d poison records published; want every kind", res.poison)
	}
}
