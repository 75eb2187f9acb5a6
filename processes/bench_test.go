package processes

import (
	"fmt"

	"github.com/ordo-dev/ordo/internal/state"
	"testing"
	"time"
)

// BenchmarkSagaOrder: one order of the example saga per op (OrderPlaced,
// PaymentAuthorized, InventoryReserved: 3 events through dedupe and the
// engine, each in its own state overlay over a small in-memory partition
// state; the in-memory Overlay's Range is linear in its size, so the state
// is reset every 10 orders to measure the engine, not the test store).
func BenchmarkSagaOrder(b *testing.B) {
	h := newHarness(b, sagaEngine(b))
	h.skipEncode = true
	b.ReportAllocs()
	i := 0
	var size int
	for b.Loop() {
		if i%10 == 0 {
			if v, ok, _ := h.store.Get(InstanceKey(fmt.Sprintf("o-%d", i-1), saga)); ok {
				size = len(v)
			}
			h.store = state.NewOverlay(nil)
			h.sent = h.sent[:0]
			h.marks = h.marks[:0]
		}
		cid := fmt.Sprintf("o-%d", i)
		at := t0.Add(time.Duration(i) * time.Millisecond)
		h.mustSend(orderPlaced(cid, at))
		h.mustSend(paymentAuthorized(cid, at.Add(time.Second)))
		h.mustSend(inventoryReserved(cid, at.Add(2*time.Second)))
		i++
	}
	b.ReportMetric(float64(size), "instance-bytes")
}
