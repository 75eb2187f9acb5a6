package consumer_test

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ordo-dev/ordo/consumer"
	"github.com/ordo-dev/ordo/processors"
	"github.com/ordo-dev/ordo/schemas"
)

// EventFrom keeps a few headers next to the event (one allocation): the
// headers must be the record's, in order, and an append by a processor
// must not reach memory the event owns.
func TestEventFromHeaders(t *testing.T) {
	for _, n := range []int{0, 1, 8, 9, 20} {
		r := &kgo.Record{Topic: "t", Partition: 2, Offset: 9, Key: []byte("k")}
		for i := range n {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: fmt.Sprintf("h%d", i), Value: []byte{byte(i)}})
		}
		ev := consumer.EventFrom(r, schemas.Decoded{Type: "x", Value: map[string]any{}})
		if len(ev.Headers) != n {
			t.Fatalf("%d headers: event has %d", n, len(ev.Headers))
		}
		for i, h := range ev.Headers {
			if h.Key != fmt.Sprintf("h%d", i) || h.Value[0] != byte(i) {
				t.Fatalf("%d headers: header %d is %s=%v", n, i, h.Key, h.Value)
			}
		}
		if n > 0 && cap(ev.Headers) != len(ev.Headers) {
			t.Fatalf("%d headers: capacity %d > length: an append would write into the event's memory", n, cap(ev.Headers))
		}
		grown := append(ev.Headers, processors.Header{Key: "added"})
		grown[0].Key = "changed"
		if n > 0 && ev.Headers[0].Key != "h0" {
			t.Fatalf("%d headers: appending to the headers changed the event's", n)
		}
		if ev.Attrs != nil || ev.Topic != "t" || ev.Partition != 2 || ev.Offset != 9 || string(ev.Key) != "k" {
			t.Fatalf("%d headers: event fields wrong: %+v", n, ev)
		}
	}
}

// An EventBuilder takes events from blocks that several events share, from
// several goroutines at once: every event must keep its own fields and
// headers after the others are built, changed and garbage collected, and
// an append to one event's headers must not reach its neighbour's.
func TestEventBuilderEventsAreIndependent(t *testing.T) {
	var b consumer.EventBuilder
	const workers, per = 4, 50
	record := func(w, i int) *kgo.Record {
		r := &kgo.Record{Topic: fmt.Sprintf("t%d", w), Partition: int32(w), Offset: int64(i), Key: []byte(fmt.Sprintf("k%d-%d", w, i))}
		for h := range i % 4 {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: fmt.Sprintf("h%d-%d-%d", w, i, h)})
		}
		return r
	}
	got := make([][]*processors.Event, workers)
	done := make(chan struct{})
	for w := range workers {
		got[w] = make([]*processors.Event, per)
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range per {
				ev := b.From(record(w, i), schemas.Decoded{Type: "x", Value: map[string]any{"i": i}})
				// A processor writing its event and appending headers.
				ev.Attrs = map[string]any{"w": w} // nil until a processor sets it
				ev.Headers = append(ev.Headers, processors.Header{Key: "added"})
				got[w][i] = ev
			}
		}()
	}
	for range workers {
		<-done
	}
	runtime.GC()
	seen := map[*processors.Event]bool{}
	for w := range workers {
		for i, ev := range got[w] {
			if seen[ev] {
				t.Fatalf("worker %d event %d: the same *Event was handed out twice", w, i)
			}
			seen[ev] = true
			r := record(w, i)
			if ev.Topic != r.Topic || ev.Partition != r.Partition || ev.Offset != r.Offset || string(ev.Key) != string(r.Key) ||
				ev.Value["i"] != i || ev.Attrs["w"] != w || len(ev.Attrs) != 1 {
				t.Fatalf("worker %d event %d: fields changed: %+v", w, i, ev)
			}
			if len(ev.Headers) != len(r.Headers)+1 || ev.Headers[len(r.Headers)].Key != "added" {
				t.Fatalf("worker %d event %d: headers %v", w, i, ev.Headers)
			}
			for h, rh := range r.Headers {
				if ev.Headers[h].Key != rh.Key {
					t.Fatalf("worker %d event %d: header %d is %q, want %q", w, i, h, ev.Headers[h].Key, rh.Key)
				}
			}
		}
	}
}
