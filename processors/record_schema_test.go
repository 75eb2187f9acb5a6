package processors

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/http/httptest"
	"testing"

	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/ordo-dev/ordo/schemas"
)

// A writer/reader pair with what record mode must get right: a nullable
// nested record, an array of records, an Avro map of records, a recursive
// field, a field read through an alias, and reader defaults that are a
// record and an array of records.
const (
	recWriter = `{"type":"record","name":"Ev","namespace":"t","fields":[
 {"name":"envelope","type":{"type":"record","name":"Envelope","fields":[
   {"name":"id","type":"string"},{"name":"type","type":"string"},{"name":"correlation_id","type":"string"}]}},
 {"name":"customer","type":["null",{"type":"record","name":"Customer","fields":[{"name":"tier","type":"string"},{"name":"n","type":"int"}]}]},
 {"name":"items","type":{"type":"array","items":{"type":"record","name":"Item","fields":[{"name":"sku","type":"string"},{"name":"qty","type":"int"}]}}},
 {"name":"bysku","type":{"type":"map","values":"Item"}},
 {"name":"next","type":["null","Ev"],"default":null},
 {"name":"old","type":"string"}
]}`
	recReader = `{"type":"record","name":"Ev","namespace":"t","fields":[
 {"name":"envelope","type":{"type":"record","name":"Envelope","fields":[
   {"name":"id","type":"string"},{"name":"type","type":"string"},{"name":"correlation_id","type":"string"}]}},
 {"name":"customer","type":["null",{"type":"record","name":"Customer","fields":[{"name":"tier","type":"string"},{"name":"n","type":"int"}]}]},
 {"name":"items","type":{"type":"array","items":{"type":"record","name":"Item","fields":[{"name":"sku","type":"string"},{"name":"qty","type":"int"}]}}},
 {"name":"bysku","type":{"type":"map","values":"Item"}},
 {"name":"next","type":["null","Ev"],"default":null},
 {"name":"renamed","type":"string","aliases":["old"]},
 {"name":"extra","type":{"type":"record","name":"Extra","fields":[{"name":"a","type":"long"}]},"default":{"a":5}},
 {"name":"extras","type":{"type":"array","items":"Extra"},"default":[{"a":1}]}
]}`
)

// TestRecordModeAgreesOnARealSchemaPair: the same framed bytes decoded by
// Serde.Decode (maps) and Serde.DecodeRecord (records) give events on which
// every expression below has the same result or error, through evalNatural,
// evalBool and evalKey (plain paths, the fast path, cel-go); and the same
// envelope, value (Map) and accessors.
func TestRecordModeAgreesOnARealSchemaPair(t *testing.T) {
	ctx := context.Background()
	fake := srfake.New()
	srv := httptest.NewServer(fake.Handler())
	defer srv.Close()
	cl, err := sr.NewClient(sr.URLs(srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	reg := schemas.NewRegistry(cl)
	id, err := reg.Register(ctx, "t-value", recWriter)
	if err != nil {
		t.Fatal(err)
	}
	w, err := schemas.ParseSchema(id, recWriter)
	if err != nil {
		t.Fatal(err)
	}
	r, err := schemas.ParseSchema(0, recReader)
	if err != nil {
		t.Fatal(err)
	}
	serde := schemas.NewSerde(reg, map[string]*schemas.Schema{"t.Ev": r})
	item := func(s string, q int32) map[string]any { return map[string]any{"sku": s, "qty": q} }
	body, err := w.EncodeNatural(map[string]any{
		"envelope": map[string]any{"id": "e1", "type": "t.Ev", "correlation_id": "c1"},
		"customer": map[string]any{"tier": "gold", "n": int32(3)},
		"items":    []any{item("A", 1), item("B", 2)},
		"bysku":    map[string]any{"A": item("A", 1)},
		"next": map[string]any{
			"envelope": map[string]any{"id": "e0", "type": "t.Ev", "correlation_id": "c0"},
			"customer": nil, "items": []any{}, "bysku": map[string]any{}, "next": nil, "old": "o0",
		},
		"old": "o1",
	})
	if err != nil {
		t.Fatal(err)
	}
	framed := binary.BigEndian.AppendUint32([]byte{0}, uint32(id))
	framed = append(framed, body...)
	events := func() (*Event, *Event) {
		m, err := serde.Decode(ctx, "t", framed)
		if err != nil {
			t.Fatal(err)
		}
		d, err := serde.DecodeRecord(ctx, "t", framed)
		if err != nil {
			t.Fatal(err)
		}
		if m.Record != nil || d.Value != nil || d.Record == nil {
			t.Fatal("Decode must give Value only, DecodeRecord Record only")
		}
		return &Event{Type: "t.Ev", Value: m.Value}, &Event{Type: "t.Ev", Record: d.Record}
	}

	mev, rev := events()
	if got, want := fmt.Sprint(rev.Map()), fmt.Sprint(mev.Value); got != want {
		t.Fatalf("Map() of the record form:\n%s\nwant the map form:\n%s", got, want)
	}
	mev, rev = events()
	for _, path := range [][]string{{"customer", "tier"}, {"next", "envelope", "id"}, {"extra", "a"}, {"renamed"}, {"bysku", "A", "qty"}} {
		mv, mok := mev.Get(path...)
		rv, rok := rev.Get(path...)
		if mok != rok || !sameNatural(rv, mv) {
			t.Errorf("Get(%v): map %v %v, record %v %v", path, mv, mok, rv, rok)
		}
	}
	if rev.Record == nil {
		t.Fatal("Get built the map")
	}

	spec := testSpec(t, "orchestrate", "p", "x: 1\n")
	for _, src := range []string{
		`event`, `event.customer`, `event.customer.tier`, `has(event.customer)`, `has(event.customer.tier)`, `has(event.nope)`,
		`size(event)`, `size(event.customer)`, `event.items`, `event.items[0]`, `event.items[1].sku`, `event.items.map(i, i)`,
		`event.items.map(i, i.qty)`, `event.items.filter(i, i.qty > 1)`, `event.items.exists(i, i.sku == "B")`,
		`"sku" in event.items[0]`, `"x" in event.items[0]`, `event.bysku`, `event.bysku.A`, `event.bysku["A"].qty`, `"A" in event.bysku`,
		`event.next`, `event.next.next`, `event.next.customer == null`, `has(event.next.next)`, `event.renamed`, `event.extra`,
		`event.extra.a`, `event.extras`, `event.extras[0].a + 1`, `size(event.extras)`, `[event.customer, event.extra]`,
		`{"c": event.customer}`, `event.items.map(i, {"s": i.sku})`, `string(event.customer.n)`, `string(size(event.items))`,
		`event.customer == event.customer`, `event.items[0] in event.items`, `event.customer.all(k, k != "")`,
		`event.items[0].qty + 1 > 1`, `type`, `event.envelope.id`, `event.bysku.map(k, k)`, `event.nope`, `event.items[5]`,
		`event.customer.tier.size()`, `event.items.map(i, i.sku).size()`, `event.extra == {"a": 5}`, `event.extras == [{"a": 1}]`,
	} {
		c, err := compileCEL(spec, nil, "k", src, anyResult)
		if err != nil {
			t.Fatalf("compile %s: %v", src, err)
		}
		mev, rev := events()
		want, werr := c.evalNatural(newVars(mev))
		got, gerr := c.evalNatural(newVars(rev))
		if fmt.Sprint(werr) != fmt.Sprint(gerr) || !sameNatural(got, want) {
			t.Errorf("%s: map %#v (%v), record %#v (%v)", src, want, werr, got, gerr)
		}
		if _, isBool := want.(bool); isBool {
			mev, rev := events()
			mb, merr := c.evalBool(newVars(mev))
			rb, rerr := c.evalBool(newVars(rev))
			if mb != rb || fmt.Sprint(merr) != fmt.Sprint(rerr) {
				t.Errorf("%s evalBool: map %v (%v), record %v (%v)", src, mb, merr, rb, rerr)
			}
		}
		mev, rev = events()
		mk, mok, merr := c.evalKey(newVars(mev))
		rk, rok, rerr := c.evalKey(newVars(rev))
		if mk != rk || mok != rok || fmt.Sprint(merr) != fmt.Sprint(rerr) {
			t.Errorf("%s evalKey: map %q %v (%v), record %q %v (%v)", src, mk, mok, merr, rk, rok, rerr)
		}
	}
}
