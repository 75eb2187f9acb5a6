package processors

import (
	"context"
	"errors"
	"testing"
	"time"
)

type hookCall struct {
	name string
	took time.Duration
	err  error
}

// TestChainReportsEachNamedProcessorOnce: the chain times its named
// processors itself (one clock reading per boundary); every named run is
// reported once, with its own duration and the error as the processor
// returned it, and nothing after a failing processor runs or is reported.
func TestChainReportsEachNamedProcessorOnce(t *testing.T) {
	boom := errors.New("boom")
	sleep := func(d time.Duration) Processor {
		return Func(func(context.Context, *Event) ([]Command, error) { time.Sleep(d); return nil, nil })
	}
	var calls []hookCall
	ctx := WithProcessorHook(context.Background(), func(name string, took time.Duration, err error) {
		calls = append(calls, hookCall{name, took, err})
	})
	chain := Chain{
		Named("slow", sleep(30*time.Millisecond)),
		sleep(30 * time.Millisecond), // unnamed: its time is nobody's
		Named("fast", sleep(0)),
		Named("fails", Func(func(context.Context, *Event) ([]Command, error) { return nil, boom })),
		Named("never", sleep(0)),
	}
	_, err := chain.Process(ctx, &Event{Attrs: map[string]any{}})
	var pe *ProcessorError
	if !errors.As(err, &pe) || pe.Processor != "fails" || !errors.Is(err, boom) {
		t.Fatalf("chain error %v; want boom wrapped as processor fails", err)
	}
	if len(calls) != 3 || calls[0].name != "slow" || calls[1].name != "fast" || calls[2].name != "fails" {
		t.Fatalf("hook calls %+v; want slow, fast, fails once each", calls)
	}
	if calls[0].took < 30*time.Millisecond {
		t.Errorf("slow took %v; want ≥ 30ms", calls[0].took)
	}
	if calls[1].took >= 30*time.Millisecond {
		t.Errorf("fast took %v: the unnamed processor's 30ms before it was counted as its time", calls[1].took)
	}
	if calls[0].err != nil || calls[1].err != nil || calls[2].err != boom {
		t.Errorf("errors %v, %v, %v; want nil, nil, the processor's own error", calls[0].err, calls[1].err, calls[2].err)
	}

	// A named processor run on its own (not in a chain) reports itself.
	calls = nil
	if _, err := Named("alone", sleep(0)).Process(ctx, &Event{}); err != nil {
		t.Fatal(err)
	}
	if len(calls) != 1 || calls[0].name != "alone" || calls[0].err != nil {
		t.Errorf("hook calls %+v; want alone once", calls)
	}
}

// BenchmarkChainHook is the timing overhead of a 3-processor chain with a
// metrics hook: "chain" is Chain.Process (the chain times the processors),
// "each" runs the same named processors one by one, each timing itself
// (what the chain did before).
func BenchmarkChainHook(b *testing.B) {
	nop := Func(func(context.Context, *Event) ([]Command, error) { return nil, nil })
	chain := Chain{Named("a", nop), Named("b", nop), Named("c", nop)}
	var n int
	ctx := WithProcessorHook(context.Background(), func(string, time.Duration, error) { n++ })
	// Two more context layers, as ordo's event context has (span, state).
	type k1 struct{}
	type k2 struct{}
	ctx = context.WithValue(context.WithValue(ctx, k1{}, 1), k2{}, 2)
	ev := &Event{}
	b.Run("chain", func(b *testing.B) {
		for b.Loop() {
			if _, err := chain.Process(ctx, ev); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("each", func(b *testing.B) {
		for b.Loop() {
			for _, p := range chain {
				if _, err := p.Process(ctx, ev); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
