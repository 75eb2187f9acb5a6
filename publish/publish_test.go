package publish_test

import (
	"context"
	"fmt"
	"math/big"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/ordo-dev/ordo/producer"
	"github.com/ordo-dev/ordo/publish"
	"github.com/ordo-dev/ordo/schemas"
)

// demoSerde is the demo schemas against an in-process registry.
func demoSerde(tb testing.TB) *schemas.Serde {
	tb.Helper()
	srv := httptest.NewServer(srfake.New().Handler())
	tb.Cleanup(srv.Close)
	cl, err := sr.NewClient(sr.URLs(srv.URL))
	if err != nil {
		tb.Fatal(err)
	}
	readers, err := schemas.Demo()
	if err != nil {
		tb.Fatal(err)
	}
	return schemas.NewSerde(schemas.NewRegistry(cl), readers, schemas.WithSubjectStrategy(schemas.TopicRecordName))
}

func order(id string) map[string]any {
	return map[string]any{
		"order_id": id, "customer_id": "c-1", "currency": "EUR", "total": big.NewRat(1250, 100),
		"items":            []any{map[string]any{"sku": "sku-1", "qty": int32(1), "unit_price": big.NewRat(1250, 100)}},
		"shipping_country": "DE",
	}
}

// Record fills the envelope, encodes the value in the Confluent wire format
// and sets ordo's envelope headers and a traceparent.
func TestRecordFillsEnvelopeAndHeaders(t *testing.T) {
	ctx := context.Background()
	serde := demoSerde(t)
	pub := publish.New(nil, serde, "checkout")
	const tp = "00-0123456789abcdef0123456789abcdef-0123456789abcdef-01"
	r, err := pub.Record(publish.WithTraceparent(ctx, tp), "checkout.orders.v1", "com.acme.checkout.OrderPlaced", "o-1", order("o-1"))
	if err != nil {
		t.Fatal(err)
	}
	h := map[string]string{}
	for _, x := range r.Headers {
		h[x.Key] = string(x.Value)
	}
	if h[producer.HeaderType] != "com.acme.checkout.OrderPlaced" || h[producer.HeaderSource] != "checkout" || h[producer.HeaderCorrelationID] != "o-1" || len(h[producer.HeaderID]) != 32 {
		t.Errorf("envelope headers = %v", h)
	}
	if h[producer.HeaderTraceparent] != tp {
		t.Errorf("traceparent = %q, want the context's %q", h[producer.HeaderTraceparent], tp)
	}
	d, err := serde.Decode(ctx, r.Topic, r.Value)
	if err != nil {
		t.Fatalf("the record does not decode: %v", err)
	}
	env, _ := d.Value["envelope"].(map[string]any)
	if env["id"] != h[producer.HeaderID] || env["source"] != "checkout" || env["correlation_id"] != "o-1" {
		t.Errorf("decoded envelope = %v, headers %v", env, h)
	}
	if ts, _ := env["time"].(time.Time); time.Since(ts) > time.Minute {
		t.Errorf("envelope time = %v, want now", env["time"])
	}
}

// A value whose envelope names another type is refused before encoding.
func TestRecordRefusesAMismatchedEnvelopeType(t *testing.T) {
	pub := publish.New(nil, demoSerde(t), "checkout")
	v := order("o-2")
	v["envelope"] = map[string]any{"type": "com.acme.payments.PaymentAuthorized"}
	_, err := pub.Record(context.Background(), "checkout.orders.v1", "com.acme.checkout.OrderPlaced", "o-2", v)
	if err == nil || !strings.Contains(err.Error(), "does not match the schema") {
		t.Fatalf("Record with a mismatched envelope type: %v", err)
	}
}

// Build a record without producing it (Publish produces it with the
// publisher's client).
func ExamplePublisher_Record() {
	var tb testing.B
	pub := publish.New(nil, demoSerde(&tb), "checkout")
	r, err := pub.Record(context.Background(), "checkout.orders.v1", "com.acme.checkout.OrderPlaced", "o-1", order("o-1"))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(r.Topic, string(r.Key), r.Value[0] == 0) // Confluent framing: magic byte 0
	// Output: checkout.orders.v1 o-1 true
}
