package schemas

import (
	"context"
	"errors"
	"math/big"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"
)

const (
	refMoney = `{"type":"record","name":"Money","namespace":"com.acme","fields":[
		{"name":"amount","type":{"type":"bytes","logicalType":"decimal","precision":12,"scale":2}},
		{"name":"currency","type":{"type":"enum","name":"Currency","symbols":["EUR","USD"]}}]}`
	refAddress = `{"type":"record","name":"Address","namespace":"com.acme","fields":[
		{"name":"street","type":"string"},{"name":"country","type":"string"}]}`
	// refParcel uses Address without defining it: refs may use each other.
	refParcel = `{"type":"record","name":"Parcel","namespace":"com.acme.ship","fields":[
		{"name":"to","type":"com.acme.Address"},{"name":"kg","type":"double"}]}`
	orderWithRefs = `{"type":"record","name":"Order","namespace":"com.acme.checkout","fields":[
		{"name":"id","type":"string"},
		{"name":"total","type":"com.acme.Money"},
		{"name":"shipping","type":["null","com.acme.Money"],"default":null},
		{"name":"billing_currency","type":"com.acme.Currency"},
		{"name":"to","type":{"type":"array","items":"com.acme.Address"}}]}`
)

func TestExpandReferences(t *testing.T) {
	exp, used, err := ExpandReferences(orderWithRefs, []string{refAddress, refMoney, refParcel})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(used, []int{1, 0}) {
		t.Errorf("used = %v, want [1 0] (Money first, then Address; Parcel unused)", used)
	}
	s, err := ParseSchema(0, exp)
	if err != nil {
		t.Fatalf("expanded schema does not parse: %v\n%s", err, exp)
	}
	if s.FullName != "com.acme.checkout.Order" {
		t.Errorf("full name %s", s.FullName)
	}
	// Money is defined once, where it is first used; the union refers to it.
	if n := strings.Count(exp, `"name":"com.acme.Money"`); n != 1 {
		t.Errorf("Money defined %d times:\n%s", n, exp)
	}
	v := map[string]any{
		"id":               "o-1",
		"total":            map[string]any{"amount": big.NewRat(1999, 100), "currency": "EUR"},
		"shipping":         map[string]any{"amount": big.NewRat(5, 1), "currency": "USD"},
		"billing_currency": "USD",
		"to":               []any{map[string]any{"street": "Main St 1", "country": "DE"}},
	}
	body, err := s.EncodeNatural(v)
	if err != nil {
		t.Fatal(err)
	}
	native, err := s.refDecodeNative(body)
	if err != nil {
		t.Fatal(err)
	}
	nat, err := refToNatural(s, native)
	if err != nil {
		t.Fatal(err)
	}
	got := nat.(map[string]any)
	if got["billing_currency"] != "USD" || got["total"].(map[string]any)["amount"].(*big.Rat).Cmp(big.NewRat(1999, 100)) != 0 {
		t.Errorf("round trip: %v", got)
	}
}

func TestExpandReferencesTransitive(t *testing.T) {
	main := `{"type":"record","name":"Shipment","namespace":"com.acme.ship","fields":[{"name":"p","type":"Parcel"}]}`
	exp, used, err := ExpandReferences(main, []string{refParcel, refAddress})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(used, []int{0}) {
		t.Errorf("used = %v, want only Parcel (Address comes through Parcel)", used)
	}
	if _, err := ParseSchema(0, exp); err != nil {
		t.Fatalf("%v\n%s", err, exp)
	}
}

func TestExpandReferencesUnchangedWithoutUse(t *testing.T) {
	text := `{"type":"record","name":"A","fields":[{"name":"x","type":"int"}]}`
	exp, used, err := ExpandReferences(text, []string{refMoney})
	if err != nil || exp != text || len(used) != 0 {
		t.Errorf("ExpandReferences = %q, %v, %v; want the text unchanged", exp, used, err)
	}
}

func TestExpandReferencesErrors(t *testing.T) {
	if _, err := ParseSchemaWithReferences(0, orderWithRefs, []string{refAddress}); err == nil || !strings.Contains(err.Error(), "com.acme.Money") {
		t.Errorf("missing Money: %v", err)
	}
	bare := `{"type":"record","name":"Bare","fields":[{"name":"x","type":"int"}]}`
	main := `{"type":"record","name":"M","namespace":"ns","fields":[{"name":"b","type":"Bare"}]}`
	if _, _, err := ExpandReferences(main, []string{bare}); err == nil || !strings.Contains(err.Error(), "null namespace") {
		t.Errorf("null namespace: %v", err)
	}
	if _, _, err := ExpandReferences(`{"type":`, nil); err == nil {
		t.Error("bad JSON accepted")
	}
	// a null-namespace ref used from a null-namespace schema is fine
	nullMain := `{"type":"record","name":"M","fields":[{"name":"b","type":"Bare"}]}`
	if _, err := ParseSchemaWithReferences(0, nullMain, []string{bare}); err != nil {
		t.Error(err)
	}
}

// TestCompatibilityWithReferences: a change inside a referenced type is
// found through the schema that references it.
func TestCompatibilityWithReferences(t *testing.T) {
	old, err := ParseSchemaWithReferences(1, orderWithRefs, []string{refAddress, refMoney})
	if err != nil {
		t.Fatal(err)
	}
	money2 := strings.Replace(refMoney, `"symbols":["EUR","USD"]`, `"symbols":["EUR"]`, 1)
	nw, err := ParseSchemaWithReferences(0, orderWithRefs, []string{refAddress, money2})
	if err != nil {
		t.Fatal(err)
	}
	got := CanRead(old, nw)
	if len(got) == 0 || got[0].Rule != RuleMissingEnumSymbols || !slices.Contains([]string{"total.currency", "billing_currency"}, got[0].Path) {
		t.Errorf("CanRead = %v", got)
	}
}

func TestNamedTypes(t *testing.T) {
	got, err := NamedTypes(refMoney)
	if err != nil || !reflect.DeepEqual(got, []string{"com.acme.Money", "com.acme.Currency"}) {
		t.Errorf("NamedTypes = %v, %v", got, err)
	}
}

// TestReferencedSchemas: a writer schema registered with references (Order
// -> Parcel -> Address, and Money) is fetched, expanded and parsed.
func TestReferencedSchemas(t *testing.T) {
	fake := srfake.New()
	defer fake.Close()
	fake.SeedSchema("com.acme.Address", 1, 1, sr.Schema{Schema: refAddress})
	fake.SeedSchema("com.acme.Money", 1, 2, sr.Schema{Schema: refMoney})
	fake.SeedSchema("com.acme.ship.Parcel", 1, 3, sr.Schema{Schema: refParcel,
		References: []sr.SchemaReference{{Name: "com.acme.Address", Subject: "com.acme.Address", Version: 1}}})
	order := `{"type":"record","name":"Order","namespace":"com.acme.checkout","fields":[
		{"name":"total","type":"com.acme.Money"},{"name":"parcel","type":"com.acme.ship.Parcel"}]}`
	refs := []sr.SchemaReference{
		{Name: "com.acme.Money", Subject: "com.acme.Money", Version: 1},
		{Name: "com.acme.ship.Parcel", Subject: "com.acme.ship.Parcel", Version: 1},
	}
	fake.SeedSchema("orders-value", 1, 4, sr.Schema{Schema: order, References: refs})
	cl, err := sr.NewClient(sr.URLs(fake.URL()))
	if err != nil {
		t.Fatal(err)
	}
	reg := NewRegistry(cl)
	texts, err := reg.ReferencedSchemas(context.Background(), refs)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ParseSchemaWithReferences(4, order, texts)
	if err != nil {
		t.Fatal(err)
	}
	v := map[string]any{
		"total":  map[string]any{"amount": big.NewRat(5, 1), "currency": "EUR"},
		"parcel": map[string]any{"to": map[string]any{"street": "s", "country": "DE"}, "kg": 1.5},
	}
	if _, err := s.EncodeNatural(v); err != nil {
		t.Fatal(err)
	}
	_, err = reg.ReferencedSchemas(context.Background(), []sr.SchemaReference{{Name: "x", Subject: "nope", Version: 1}})
	var re *RegistryError
	if !errors.As(err, &re) || !strings.Contains(err.Error(), "subject nope version 1") {
		t.Errorf("missing reference: %v", err)
	}
}
