package schemas

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func envelopeRecord() (*Record, map[string]any) {
	t := time.UnixMilli(1_700_000_000_123).UTC()
	names := []string{"id", "type", "source", "time", "correlation_id", "causation_id"}
	vals := []any{"c-1", "com.acme.ordo.commands.NotifyCustomer", "ordo", t, "o-1", "e-1"}
	m := map[string]any{}
	for i, n := range names {
		m[n] = vals[i]
	}
	return &Record{Names: names, Values: vals}, m
}

// TestRecordEncodesAsItsMap: a Record, in schema order or not, with Unset
// slots or not, encodes to exactly the bytes of its Natural map, and the
// checks (unknown field, required field missing) are the map's.
func TestRecordEncodesAsItsMap(t *testing.T) {
	rs, err := Demo()
	if err != nil {
		t.Fatal(err)
	}
	s := rs["com.acme.ordo.commands.NotifyCustomer"]
	env, envMap := envelopeRecord()
	cases := []struct {
		name string
		rec  *Record
		want map[string]any
	}{
		{"schema order", &Record{Names: []string{"envelope", "order_id", "template", "detail"}, Values: []any{env, "o-1", "hi", "x"}},
			map[string]any{"envelope": envMap, "order_id": "o-1", "template": "hi", "detail": "x"}},
		{"other order", &Record{Names: []string{"detail", "template", "order_id", "envelope"}, Values: []any{"x", "hi", "o-1", env}},
			map[string]any{"envelope": envMap, "order_id": "o-1", "template": "hi", "detail": "x"}},
		{"unset takes the default", &Record{Names: []string{"envelope", "order_id", "template", "detail"}, Values: []any{env, "o-1", "hi", Unset}},
			map[string]any{"envelope": envMap, "order_id": "o-1", "template": "hi"}},
		{"absent takes the default", &Record{Names: []string{"envelope", "order_id", "template"}, Values: []any{env, "o-1", "hi"}},
			map[string]any{"envelope": envMap, "order_id": "o-1", "template": "hi"}},
	}
	for _, c := range cases {
		got, err := s.AppendRecord(nil, c.rec)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		want, err := s.EncodeNatural(c.want)
		if err != nil {
			t.Fatalf("%s: map: %v", c.name, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: record %x, map %x", c.name, got, want)
		}
		nat, err := s.EncodeNatural(c.rec.Natural())
		if err != nil || !bytes.Equal(nat, want) {
			t.Errorf("%s: Natural() encodes to %x (%v), want %x", c.name, nat, err, want)
		}
	}
	for _, c := range []struct {
		name string
		rec  *Record
		frag string
	}{
		{"unknown field", &Record{Names: []string{"envelope", "order_id", "template", "colour"}, Values: []any{env, "o-1", "hi", "red"}}, `has no field "colour"`},
		{"required unset", &Record{Names: []string{"envelope", "order_id", "template"}, Values: []any{env, "o-1", Unset}}, "template: required field missing"},
		{"length mismatch", &Record{Names: []string{"envelope", "order_id"}, Values: []any{env}}, "2 names but 1 values"},
		{"wrong type", &Record{Names: []string{"envelope", "order_id", "template"}, Values: []any{env, 7, "hi"}}, "order_id"},
	} {
		_, err := s.AppendRecord(nil, c.rec)
		if err == nil || !strings.Contains(err.Error(), c.frag) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.frag)
		}
		_, merr := s.EncodeNatural(c.rec.Natural())
		if c.name != "length mismatch" && merr == nil {
			t.Errorf("%s: the map form encodes but the record does not", c.name)
		}
	}
}

func TestRecordGetAndNatural(t *testing.T) {
	env, envMap := envelopeRecord()
	r := &Record{Names: []string{"envelope", "a", "b"}, Values: []any{env, Unset, nil}}
	if _, ok := r.Get("a"); ok {
		t.Error("an Unset slot reads as set")
	}
	if v, ok := r.Get("b"); !ok || v != nil {
		t.Errorf("b = %v %v, want nil true", v, ok)
	}
	if _, ok := r.Get("zzz"); ok {
		t.Error("a missing name reads as set")
	}
	m := r.Natural()
	if _, has := m["a"]; has || len(m) != 2 {
		t.Errorf("Natural %v: want envelope and b only", m)
	}
	if e := m["envelope"].(map[string]any); e["id"] != envMap["id"] || len(e) != len(envMap) {
		t.Errorf("nested envelope %v, want %v", e, envMap)
	}
}

// A record marshals to JSON as its natural map (attrs forwarded in a
// header hold enrich_table rows as records).
func TestRecordMarshalsAsItsMap(t *testing.T) {
	r := &Record{Names: []string{"tier", "limit", "gone"}, Values: []any{"gold", int64(5), Unset}}
	b, err := json.Marshal(map[string]any{"customer": r})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"customer":{"limit":5,"tier":"gold"}}`; string(b) != want {
		t.Fatalf("got %s, want %s", b, want)
	}
}
