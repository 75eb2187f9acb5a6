package processors

import (
	"context"
	"crypto/sha256"
	"fmt"
	"runtime"
	"testing"
	"time"
)

// refCommandID computes a command id from the file comment's definition,
// independently of commandID: SHA-256 over the documented fields, version
// 8 and RFC 9562 variant bits, formatted as a UUID.
func refCommandID(name string, ev *Event, ri, ei int) string {
	h := sha256.New()
	fmt.Fprintf(h, "ordo.orchestrate.v1\x00%s\x00", name)
	if ev.Envelope.ID != "" {
		fmt.Fprintf(h, "id\x00%s", ev.Envelope.ID)
	} else {
		fmt.Fprintf(h, "kafka\x00%s\x00%d\x00%d", ev.Topic, ev.Partition, ev.Offset)
	}
	fmt.Fprintf(h, "\x00%d\x00%d", ri, ei)
	b := h.Sum(nil)[:16]
	b[6] = b[6]&0x0f | 0x80
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// envOf returns command c's envelope in map form, whichever layout.
func envOf(c Command) map[string]any {
	if c.Record != nil {
		return c.Record.Natural()["envelope"].(map[string]any)
	}
	return c.Value["envelope"].(map[string]any)
}

// TestOrchestrateArenaValuesOutliveNextEvent: the ids and time of an
// event's commands are boxed into that event's arena. They must keep their
// values after later events are processed (each gets its own arena, none is
// reused) and after garbage collections (the boxed values keep the arena
// alive), in both layouts, and the ids must match the documented definition.
func TestOrchestrateArenaValuesOutliveNextEvent(t *testing.T) {
	noFields := demoDeps()
	noFields.Fields = nil
	for name, deps := range map[string]Deps{"slots": demoDeps(), "map": noFields} {
		t.Run(name, func(t *testing.T) {
			p := buildOrchestrate(t, orchestrateDemo, deps)
			type kept struct {
				cmds []Command
				ids  []string
				when time.Time
			}
			var all []kept
			for i := range 50 {
				ev := orderPlaced()
				ev.Envelope.ID = fmt.Sprintf("evt-%d", i)
				ev.Timestamp = testTime.Add(time.Duration(i) * time.Minute)
				cmds, err := p.Process(context.Background(), ev)
				if err != nil {
					t.Fatal(err)
				}
				if len(cmds) != 2 {
					t.Fatalf("event %d: %d commands, want 2", i, len(cmds))
				}
				all = append(all, kept{cmds: cmds, ids: []string{refCommandID("routes", ev, 0, 0), refCommandID("routes", ev, 1, 0)}, when: ev.Timestamp})
				if i%10 == 0 {
					runtime.GC()
				}
			}
			runtime.GC()
			runtime.GC()
			seen := map[string]bool{}
			for i, k := range all {
				for j, c := range k.cmds {
					env := envOf(c)
					id, _ := env["id"].(string)
					if id != k.ids[j] {
						t.Errorf("event %d command %d: id %q, want %q", i, j, id, k.ids[j])
					}
					if seen[id] {
						t.Errorf("event %d command %d: id %q repeated", i, j, id)
					}
					seen[id] = true
					if w, _ := env["time"].(time.Time); !w.Equal(k.when) {
						t.Errorf("event %d command %d: time %v, want %v", i, j, env["time"], k.when)
					}
				}
			}
		})
	}
}

// TestOrchestrateAllocs bounds orchestrate's allocations for a demo
// OrderPlaced (two commands in slots; items has 2 entries). What remains:
// the arena (commands, records, ids, time) and the slots, both carved from
// a block shared by the events that take it in turn (internal/arena: a
// fraction of an allocation per event; two per event before), and the
// items field `event.items.map(i, {"sku": i.sku, "qty": i.qty})`: the
// list's backing array, the list boxed once into the accumulator and once
// more as []any for the command (3). Each item is a record literal carved
// from shared blocks too (a map header and its entries each before: 2 x
// 2). Nothing is allocated per command id.
func TestOrchestrateAllocs(t *testing.T) {
	p := buildOrchestrate(t, orchestrateDemo, demoDeps())
	ev := orderPlaced()
	ev.Attrs = map[string]any{} // as EventFrom makes it
	ctx := context.Background()
	got := testing.AllocsPerRun(200, func() {
		if _, err := p.Process(ctx, ev); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("orchestrate OrderPlaced: %.1f allocs", got)
	if got > 4 {
		t.Errorf("orchestrate OrderPlaced: %.1f allocs per event, want <= 4", got)
	}
}

// Events processed at once by several goroutines take their arenas and
// slots from the same pooled blocks (internal/arena). Every command must still
// hold exactly what the same event gives when processed alone, after all
// the others and a GC.
func TestOrchestrateBlocksSharedAcrossGoroutines(t *testing.T) {
	p := buildOrchestrate(t, orchestrateDemo, demoDeps())
	solo := buildOrchestrate(t, orchestrateDemo, demoDeps())
	const workers, perWorker = 4, 60
	event := func(w, i int) *Event {
		ev := orderPlaced()
		ev.Envelope.ID = fmt.Sprintf("evt-%d-%d", w, i)
		ev.Timestamp = testTime.Add(time.Duration(w*perWorker+i) * time.Second)
		return ev
	}
	got := make([][][]Command, workers)
	errs := make(chan error, workers)
	for w := range workers {
		got[w] = make([][]Command, perWorker)
		go func() {
			var err error
			for i := range perWorker {
				if got[w][i], err = p.Process(context.Background(), event(w, i)); err != nil {
					break
				}
			}
			errs <- err
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	for w := range workers {
		for i := range perWorker {
			want, err := solo.Process(context.Background(), event(w, i))
			if err != nil {
				t.Fatal(err)
			}
			if len(got[w][i]) != len(want) {
				t.Fatalf("worker %d event %d: %d commands, want %d", w, i, len(got[w][i]), len(want))
			}
			for c := range want {
				if g, x := fmt.Sprint(got[w][i][c].Natural()), fmt.Sprint(want[c].Natural()); g != x {
					t.Fatalf("worker %d event %d command %d:\n got %s\nwant %s", w, i, c, g, x)
				}
			}
		}
	}
}
