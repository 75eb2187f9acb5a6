package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/ordo-dev/ordo/internal/demo"
	"github.com/ordo-dev/ordo/publish"
	"github.com/ordo-dev/ordo/schemas"
)

// Input topics (the demo config's inputs) and their event types.
var inputTopics = []string{demo.TopicOrders, demo.TopicPayments, demo.TopicWarehouse}

// writerSchemas are the upstream teams' schemas: ordo's reader schema plus
// one field ordo does not know (a string map of request/PSP/warehouse
// metadata), as a producer one version ahead of ordo would write. It pads
// the events to a realistic 300-600 bytes and makes every decode go through
// writer->reader resolution, as in production after an upstream evolution.
func writerSchemas() (map[string]*schemas.Schema, error) {
	readers, err := schemas.Demo()
	if err != nil {
		return nil, err
	}
	out := map[string]*schemas.Schema{}
	for name, r := range readers {
		if strings.Contains(name, ".commands.") {
			continue
		}
		var doc map[string]any
		if err := json.Unmarshal([]byte(r.Text), &doc); err != nil {
			return nil, err
		}
		fields := doc["fields"].([]any)
		doc["fields"] = append(fields, map[string]any{
			"name": "attributes", "type": map[string]any{"type": "map", "values": "string"}, "default": map[string]any{},
		})
		b, _ := json.Marshal(doc)
		s, err := schemas.ParseSchema(0, string(b))
		if err != nil {
			return nil, fmt.Errorf("writer schema %s: %w", name, err)
		}
		out[name] = s
	}
	return out, nil
}

// gen builds realistic demo events (the demo generator's shapes, bigger
// values and the writer-only attributes map).
type gen struct {
	pub  *publish.Publisher
	rng  *mrand.Rand
	seed uint64
}

func newGen(pub *publish.Publisher, seed uint64) *gen {
	return &gen{pub: pub, rng: mrand.New(mrand.NewPCG(seed, 0xbe4c)), seed: seed}
}

func hexID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

var (
	userAgents = []string{
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
		"Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
		"acme-shop-android/8.14.2 (Pixel 8; Android 14)",
	}
	notes = []string{"leave at the door", "ring twice, dog is friendly", "deliver to the neighbour at no. 12 if absent"}
)

// event returns record i (1-based) as (topic, type, key, value).
func (g *gen) event(i int, runTag string) (string, string, string, map[string]any) {
	rng := g.rng
	order := fmt.Sprintf("ord-%s%09d", runTag, i/3)
	var topic, typ string
	var v map[string]any
	attrs := map[string]any{
		"trace_origin": "edge-" + []string{"fra", "ams", "dub"}[rng.IntN(3)], "schema_rev": "2024-11-07",
		"ingest_host": fmt.Sprintf("ip-10-0-%d-%d.eu-central-1.compute.internal", rng.IntN(16), rng.IntN(255)),
	}
	switch i % 3 {
	case 0:
		topic, typ = demo.TopicOrders, demo.OrderPlaced
		n := 1 + rng.IntN(4)
		items := make([]any, n)
		total := new(big.Rat)
		for j := range items {
			price := big.NewRat(int64(199+rng.IntN(20000)), 100)
			qty := int32(1 + rng.IntN(4))
			items[j] = map[string]any{"sku": fmt.Sprintf("SKU-%05d-%s", rng.IntN(5000), []string{"BLK-M", "WHT-L", "RED-S", "STD"}[rng.IntN(4)]), "qty": qty, "unit_price": price}
			total.Add(total, new(big.Rat).Mul(price, big.NewRat(int64(qty), 1)))
		}
		var note any
		if rng.IntN(4) == 0 {
			note = notes[rng.IntN(len(notes))]
		}
		v = map[string]any{
			"order_id": order, "customer_id": fmt.Sprintf("cust-%d", rng.IntN(250)), "total": total,
			"currency": []string{"EUR", "USD", "GBP"}[rng.IntN(3)], "items": items,
			"shipping_country": []string{"DE", "FR", "US", "GB"}[rng.IntN(4)], "note": note,
		}
		attrs["channel"] = []string{"web", "ios", "android"}[rng.IntN(3)]
		attrs["user_agent"] = userAgents[rng.IntN(len(userAgents))]
		attrs["session_id"] = hexID(12)
		attrs["client_ip"] = fmt.Sprintf("203.0.113.%d", rng.IntN(255))
	case 1:
		topic = demo.TopicPayments
		attrs["psp"] = []string{"adyen", "stripe"}[rng.IntN(2)]
		attrs["psp_reference"] = "psp_" + hexID(12)
		attrs["card_brand"] = []string{"visa", "mastercard", "amex"}[rng.IntN(3)]
		attrs["card_last4"] = fmt.Sprintf("%04d", rng.IntN(10000))
		attrs["three_ds"] = []string{"frictionless", "challenge"}[rng.IntN(2)]
		attrs["risk_score"] = fmt.Sprint(rng.IntN(100))
		attrs["merchant_account"] = "AcmeShopEU-ECOM"
		if rng.IntN(5) == 0 {
			typ = demo.PaymentDeclined
			v = map[string]any{"order_id": order, "payment_id": "pay_" + hexID(10), "reason": "insufficient funds (issuer response 51)"}
		} else {
			typ = demo.PaymentAuthorized
			v = map[string]any{"order_id": order, "payment_id": "pay_" + hexID(10), "amount": big.NewRat(int64(1000+rng.IntN(90000)), 100), "currency": "EUR"}
		}
	default:
		topic = demo.TopicWarehouse
		attrs["site"] = []string{"FRA-1", "AMS-2"}[rng.IntN(2)]
		attrs["wave_id"] = fmt.Sprintf("wave-%d", rng.IntN(100000))
		attrs["picker_batch"] = "pb-" + hexID(6)
		attrs["carrier"] = []string{"dhl-express", "ups-standard", "postnl"}[rng.IntN(3)]
		attrs["sla"] = []string{"next-day", "two-day"}[rng.IntN(2)]
		attrs["wms_version"] = "wms-7.3.1"
		if rng.IntN(6) == 0 {
			typ = demo.InventoryShortage
			v = map[string]any{"order_id": order, "missing_skus": []any{fmt.Sprintf("SKU-%05d-STD", rng.IntN(5000))}}
		} else {
			typ = demo.InventoryReserved
			v = map[string]any{"order_id": order, "reservation_id": "res-" + hexID(8), "warehouse": []string{"FRA-1", "AMS-2"}[rng.IntN(2)]}
		}
	}
	source := map[string]string{demo.TopicOrders: "checkout-service", demo.TopicPayments: "payments-gateway", demo.TopicWarehouse: "warehouse-wms"}[topic]
	v["envelope"] = map[string]any{"id": hexID(16), "source": source}
	v["attributes"] = attrs
	return topic, typ, order, v
}

// record builds record i through the Publisher SDK (Confluent framing,
// envelope headers, traceparent), on topicPrefix+topic.
func (g *gen) record(ctx context.Context, i int, topicPrefix, runTag string) (*kgo.Record, error) {
	topic, typ, key, v := g.event(i, runTag)
	return g.pub.Record(ctx, topicPrefix+topic, typ, key, v)
}

// registerWriters registers the writer schemas under every subject the
// publisher will use (topic_record_name: one record type per subject, as
// the registry's BACKWARD check requires), so encode never races.
func registerWriters(ctx context.Context, reg *schemas.Registry, ws map[string]*schemas.Schema, topicPrefix string) error {
	for name, s := range ws {
		for _, t := range inputTopics {
			subj := schemas.TopicRecordName.Subject(topicPrefix+t, name, false)
			if _, err := reg.Register(ctx, subj, s.Text); err != nil {
				return fmt.Errorf("register %s: %w", subj, err)
			}
		}
	}
	return nil
}

// preload publishes n events as fast as possible and returns the value-size
// stats.
func preload(ctx context.Context, cl *kgo.Client, g *gen, n int) (sizes sizeStats, err error) {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		ferr error
	)
	start := time.Now()
	for i := 1; i <= n; i++ {
		r, err := g.record(ctx, i, "", "")
		if err != nil {
			return sizes, err
		}
		sizes.add(len(r.Value))
		wg.Add(1)
		cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				ferr = err
				mu.Unlock()
			}
			wg.Done()
		})
	}
	wg.Wait()
	logf("preloaded %d events in %s (value bytes: min %d, mean %.0f, max %d)", n, time.Since(start).Round(time.Millisecond), sizes.Min, sizes.mean(), sizes.Max)
	return sizes, ferr
}

// wholeOrders is how many orders of n preloaded events (event(i), i = 1..n)
// have all three events: order k is events 3k (OrderPlaced), 3k+1 (payment)
// and 3k+2 (warehouse), so order 0 has only its two legs (the saga buffers
// them as early events that never start) and the last order may be cut.
// Every whole order reaches a terminal state in the saga: a payment leg
// (authorized or declined) and a stock leg (reserved or shortage) each.
func wholeOrders(n int) int64 {
	return int64(max(0, (n-2)/3))
}

type sizeStats struct {
	N, Min, Max int
	Sum         int64
}

func (s *sizeStats) add(v int) {
	if s.N == 0 || v < s.Min {
		s.Min = v
	}
	if v > s.Max {
		s.Max = v
	}
	s.N++
	s.Sum += int64(v)
}

func (s sizeStats) mean() float64 {
	if s.N == 0 {
		return 0
	}
	return float64(s.Sum) / float64(s.N)
}

var _ = sr.Schema{}
