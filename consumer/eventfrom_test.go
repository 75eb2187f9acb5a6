package consumer_test

import (
	"fmt"
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
		if ev.Attrs == nil || ev.Topic != "t" || ev.Partition != 2 || ev.Offset != 9 || string(ev.Key) != "k" {
			t.Fatalf("%d headers: event fields wrong: %+v", n, ev)
		}
	}
}
