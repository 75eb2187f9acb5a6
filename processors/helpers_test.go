package processors

import (
	"errors"
	"math/big"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// testSpec parses a config block as it would appear in ordo.yaml. Line 1 of
// the block is line 1 of "ordo.yaml".
func testSpec(t testing.TB, typ, name, block string) Spec {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(block), &doc); err != nil {
		t.Fatalf("bad test yaml: %v", err)
	}
	s := Spec{Name: name, Type: typ, File: "ordo.yaml"}
	if len(doc.Content) > 0 {
		s.Config = *doc.Content[0]
	}
	return s
}

func rat(s string) *big.Rat {
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		panic(s)
	}
	return r
}

var testTime = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// orderPlaced is a demo OrderPlaced event in natural form.
func orderPlaced() *Event {
	env := map[string]any{
		"id": "evt-1", "type": "com.acme.checkout.OrderPlaced", "source": "checkout",
		"time": testTime.Add(-time.Second), "correlation_id": "order-42", "causation_id": nil,
	}
	return &Event{
		Topic: "checkout.orders.v1", Partition: 3, Offset: 1017, Key: []byte("order-42"),
		Timestamp: testTime, SchemaID: 7, Type: "com.acme.checkout.OrderPlaced",
		Envelope: Envelope{ID: "evt-1", Type: "com.acme.checkout.OrderPlaced", Source: "checkout",
			Time: testTime.Add(-time.Second), CorrelationID: "order-42"},
		Value: map[string]any{
			"envelope":    env,
			"order_id":    "order-42",
			"customer_id": "cust-7",
			"total":       rat("1234.56"),
			"currency":    "EUR",
			"items": []any{
				map[string]any{"sku": "SKU-1", "qty": int32(2), "unit_price": rat("600.00")},
				map[string]any{"sku": "SKU-2", "qty": int32(1), "unit_price": rat("34.56")},
			},
			"shipping_country": "DE",
			"note":             nil,
		},
	}
}

// wantConfigError asserts err is a ConfigError at file:line naming key and
// containing every fragment.
func wantConfigError(t *testing.T, err error, line int, key string, frags ...string) {
	t.Helper()
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("want *ConfigError, got %T: %v", err, err)
	}
	msg := err.Error()
	loc := "ordo.yaml:" + strconv.Itoa(line) + ": "
	if !strings.HasPrefix(msg, loc) {
		t.Errorf("error %q does not start with %q", msg, loc)
	}
	if ce.Key != key {
		t.Errorf("key = %q, want %q (error %q)", ce.Key, key, msg)
	}
	for _, f := range frags {
		if !strings.Contains(msg, f) {
			t.Errorf("error %q does not contain %q", msg, f)
		}
	}
}
