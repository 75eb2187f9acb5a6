package processors

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/ordo-dev/ordo/schemas"
)

// asRecord turns a natural value's maps into *schemas.Record (fields in
// name order), at any depth, as the decoder's record mode lays them out.
func asRecord(v any) any {
	switch x := v.(type) {
	case map[string]any:
		names := make([]string, 0, len(x))
		for k := range x {
			names = append(names, k)
		}
		slices.Sort(names)
		r := &schemas.Record{Names: names, Values: make([]any, len(names))}
		for i, k := range names {
			r.Values[i] = asRecord(x[k])
		}
		return r
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = asRecord(e)
		}
		return out
	}
	return v
}

// recordEvent is a copy of ev whose value is in Record form.
func recordEvent(ev *Event) *Event {
	c := *ev
	c.cel = vars{}
	if ev.Value != nil {
		c.Record, c.Value = asRecord(ev.Value).(*schemas.Record), nil
	}
	if ev.Attrs != nil {
		// Rows in attrs are records too, as enrich_table sets them.
		c.Attrs = make(map[string]any, len(ev.Attrs))
		for k, v := range ev.Attrs {
			c.Attrs[k] = asRecord(v)
		}
	}
	return &c
}

// cel-go reads attrs with records in it (enrich_table's rows) as maps: an
// expression the fast path does not answer sees the row's fields.
func TestCelGoReadsRecordsInAttrs(t *testing.T) {
	s := testSpec(t, "orchestrate", "p", "x: 1\n")
	c, err := compileCEL(s, nil, "k", `attrs.customer.tier.matches("^go+ld$") && attrs.customer.tier.contains("ol")`, boolResult)
	if err != nil {
		t.Fatal(err)
	}
	ev := recordEvent(fastEvents()[0])
	if _, ok := ev.Attrs["customer"].(*schemas.Record); !ok {
		t.Fatalf("attrs.customer is %T, want a record", ev.Attrs["customer"])
	}
	if c.fast != nil {
		if _, ok := c.fast(newVars(ev)); ok {
			t.Fatal("the fast path answers the expression: pick one only cel-go evaluates")
		}
	}
	got, err := c.evalBool(newVars(ev))
	if err != nil || !got {
		t.Fatalf("cel-go on a record in attrs: %v, %v; want true", got, err)
	}
}

// TestRecordEventsEvaluateLikeMaps: every expression of the fast-path
// suite gives the same natural value (or an error in both) on an event
// whose value is a *schemas.Record as on the same event with a map, through
// evalNatural (plain paths, the fast path, cel-go); the fast path reads the
// record in place (the event keeps its Record form when it answers).
func TestRecordEventsEvaluateLikeMaps(t *testing.T) {
	s := testSpec(t, "orchestrate", "p", "x: 1\n")
	inPlace := 0
	for _, src := range fastExprs {
		c, err := compileCEL(s, nil, "k", src, anyResult)
		if err != nil {
			t.Fatalf("compile %s: %v", src, err)
		}
		for i, ev := range fastEvents() {
			want, werr := c.evalNatural(newVars(ev))
			rev := recordEvent(ev)
			got, gerr := c.evalNatural(newVars(rev))
			if (werr == nil) != (gerr == nil) {
				t.Errorf("%s on event %d: with a map %v (%v), with a record %v (%v)", src, i, want, werr, got, gerr)
				continue
			}
			if werr == nil && !sameNatural(got, want) {
				t.Errorf("%s on event %d: with a map %#v, with a record %#v", src, i, want, got)
			}
			if _, isRec := got.(*schemas.Record); isRec {
				t.Errorf("%s on event %d: a *schemas.Record escaped into a natural result", src, i)
			}
			if c.fast != nil && rev.Record != nil {
				rev2 := recordEvent(ev)
				if _, ok := c.fast(newVars(rev2)); ok {
					if rev2.Record == nil {
						t.Errorf("%s on event %d: the fast path built the map", src, i)
					}
					inPlace++
				}
			}
		}
	}
	if inPlace < 100 {
		t.Fatalf("the fast path answered only %d (expression, record event) pairs in place", inPlace)
	}
}

// readsRecords is a RecordReader that notes the form it was given.
type readsRecords struct{ sawRecord, sawMap *bool }

func (r readsRecords) ReadsRecords() bool { return true }
func (r readsRecords) Process(_ context.Context, ev *Event) ([]Command, error) {
	*r.sawRecord, *r.sawMap = ev.Record != nil, ev.Value != nil
	return nil, nil
}

// TestChainBuildsValueForProcessorsThatReadIt: processors that are not
// RecordReaders (custom Go processors reading ev.Value) get the map, built
// from the record once, and a non-nil Attrs; RecordReaders before them get
// the record; Named answers for what it wraps.
func TestChainBuildsValueForProcessorsThatReadIt(t *testing.T) {
	var r1, m1, r2, m2 bool
	var custom map[string]any
	chain := Chain{
		Named("reader", readsRecords{&r1, &m1}),
		Named("custom", Func(func(_ context.Context, ev *Event) ([]Command, error) {
			custom = ev.Value
			ev.Value["added"] = "by custom"
			ev.Attrs["score"] = 7 // written without a nil check, as before records
			return nil, nil
		})),
		readsRecords{&r2, &m2},
	}
	if !ReadsRecords(chain) || !ReadsRecords(chain[0]) || ReadsRecords(chain[1]) {
		t.Fatal("ReadsRecords: a Chain and a Named RecordReader are readers, a Named Func is not")
	}
	if ReadsRecords(chain[1:]) {
		t.Fatal("a Chain whose first processor needs the map at once should ask for maps")
	}
	ev := recordEvent(orderPlaced())
	ev.Attrs = nil // as the consumer builds events: the chain makes it for processors that may write it unchecked
	want := orderPlaced().Value
	if _, err := chain.Process(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	if ev.Attrs["score"] != 7 {
		t.Errorf("attrs after the custom processor: %v, want score 7", ev.Attrs)
	}
	if !r1 || m1 {
		t.Errorf("the first RecordReader saw record=%v map=%v, want the record only", r1, m1)
	}
	if custom == nil || fmt.Sprint(custom["order_id"]) != fmt.Sprint(want["order_id"]) {
		t.Fatalf("the custom processor saw Value %v, want the event as a map", custom)
	}
	if r2 || !m2 || ev.Value["added"] != "by custom" {
		t.Errorf("after a processor that uses Value, the next one must see that map (record=%v map=%v)", r2, m2)
	}
}

// TestGetFieldSetReadBothForms: the accessors give the same answers on an
// event in Record form as in map form, without building the map.
func TestGetFieldSetReadBothForms(t *testing.T) {
	for _, form := range []string{"map", "record"} {
		t.Run(form, func(t *testing.T) {
			ev := orderPlaced()
			if form == "record" {
				ev = recordEvent(ev)
			}
			want := orderPlaced().Value
			if v, ok := ev.Get("order_id"); !ok || v != want["order_id"] {
				t.Errorf("Get(order_id) = %v %v, want %v", v, ok, want["order_id"])
			}
			if id, ok := As[string](ev.Get("envelope", "id")); !ok || id != want["envelope"].(map[string]any)["id"] {
				t.Errorf("As[string](Get(envelope, id)) = %q %v", id, ok)
			}
			if _, ok := As[int64](ev.Get("order_id")); ok {
				t.Error("As[int64] of a string field must be false")
			}
			if _, ok := ev.Get("missing"); ok {
				t.Error("Get(missing) must be false")
			}
			if _, ok := ev.Get("order_id", "deeper"); ok {
				t.Error("Get through a string must be false")
			}
			items, _ := As[[]any](ev.Get("items"))
			wantItems := want["items"].([]any)
			if len(items) != len(wantItems) || len(items) == 0 {
				t.Fatalf("items: %d, want %d (> 0)", len(items), len(wantItems))
			}
			for i, it := range items {
				if sku, ok := Field(it, "sku"); !ok || sku != wantItems[i].(map[string]any)["sku"] {
					t.Errorf("Field(item %d, sku) = %v %v", i, sku, ok)
				}
			}
			if !ev.Set("order_id", "o-changed") {
				t.Fatal("Set(order_id) on a field of the value must succeed")
			}
			if v, _ := ev.Get("order_id"); v != "o-changed" {
				t.Errorf("after Set, Get(order_id) = %v", v)
			}
			// Nested setters: a field of a record inside the value, and of
			// each item of a list (through Field), in either form.
			if !ev.SetAt("changed", "envelope", "source") {
				t.Fatal("SetAt(envelope.source) must succeed")
			}
			if v, _ := ev.Get("envelope", "source"); v != "changed" {
				t.Errorf("after SetAt, Get(envelope, source) = %v", v)
			}
			for i, it := range items {
				if !SetField(it, int32(100+i), "qty") {
					t.Fatalf("SetField(item %d, qty) must succeed", i)
				}
			}
			if ev.SetAt(1, "order_id", "deeper") || ev.SetAt(1, "missing", "x") || SetField(ev.Record, 1) {
				t.Error("SetAt through a string, a missing field or an empty path must be false")
			}
			if form == "record" {
				if ev.SetAt(1, "envelope", "not_in_schema") {
					t.Error("SetAt of a field the nested record's schema lacks must be false")
				}
				if ev.Set("not_in_schema", 1) {
					t.Error("Set of a field the record's schema lacks must be false")
				}
				if ev.Record == nil || ev.Value != nil {
					t.Fatal("the accessors built the map")
				}
			}
			m := ev.Map()
			if got := m["order_id"]; got != "o-changed" {
				t.Errorf("Map() after Set: order_id %v", got)
			}
			if got := m["envelope"].(map[string]any)["source"]; got != "changed" {
				t.Errorf("Map() after SetAt: envelope.source %v", got)
			}
			for i, it := range m["items"].([]any) {
				if got := it.(map[string]any)["qty"]; got != int32(100+i) {
					t.Errorf("Map() after SetField: items[%d].qty %v", i, got)
				}
			}
		})
	}
}
