package processes

import (
	"bytes"
	"math"
	"math/big"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ordo-dev/ordo/schemas"
)

func sampleInstance() *Instance {
	huge, _ := new(big.Rat).SetString("-123456789012345678901234567890.123456789")
	return &Instance{
		Process: "order-fulfilment", Version: 3, CorrelationID: "o/1%x", State: "awaiting", Status: StatusRunning,
		Vars: map[string]any{
			"total": rat("1234.56"), "neg": rat("-0.01"), "zero": rat("0"), "huge": huge, "nilrat": (*big.Rat)(nil),
			"qty": int32(-7), "count": int64(math.MaxInt64), "min": int64(math.MinInt64),
			"f32": float32(1.5), "f64": -2.25, "nan": math.Inf(1),
			"s": "ünïcode", "empty": "", "b": []byte{0, 1, 0xff}, "nobytes": []byte{},
			"t": time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC), "old": time.Date(1969, 12, 31, 23, 59, 59, 1, time.UTC),
			"null": nil, "yes": true, "no": false,
			"items":  []any{map[string]any{"sku": "A", "qty": int32(2), "price": rat("9.99")}, []any{}, nil},
			"nested": map[string]any{"a": map[string]any{"b": []any{"c"}}},
		},
		Joined:        []string{"PaymentAuthorized"},
		Compensations: []Compensation{{Step: "processes[0].states.x.join[0]", Type: "com.acme.ordo.commands.VoidPayment", Topic: "commands.void-payment.v1", Fields: map[string]any{"amount": rat("1234.56"), "payment_id": "p"}}},
		Timers:        []TimerSet{{Name: "payment_timeout", Due: t0.Add(20 * time.Second)}},
		Started:       t0, Updated: t0.Add(time.Second),
		History: []HistoryEntry{{At: t0, Kind: "event", Type: "com.acme.checkout.OrderPlaced", ID: "e1", Source: "checkout.orders.v1/3/17"}},
	}
}

func TestInstanceRoundTrip(t *testing.T) {
	in := sampleInstance()
	b, err := EncodeInstance(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := DecodeInstance(b)
	if err != nil {
		t.Fatal(err)
	}
	// A nil *big.Rat is stored as null (Avro has no typed null decimal).
	want := *in
	want.Vars = map[string]any{}
	for k, v := range in.Vars {
		want.Vars[k] = v
	}
	want.Vars["nilrat"] = nil
	if !reflect.DeepEqual(out, want) {
		t.Fatalf("round trip differs:\n got %#v\nwant %#v", out, want)
	}
	// Exactness, explicitly: the decimal is the same rational, the int32 an int32.
	if r := out.Vars["huge"].(*big.Rat); r.Cmp(in.Vars["huge"].(*big.Rat)) != 0 {
		t.Errorf("decimal %s != %s", r.RatString(), in.Vars["huge"].(*big.Rat).RatString())
	}
	if _, ok := out.Vars["qty"].(int32); !ok {
		t.Errorf("int32 came back as %T", out.Vars["qty"])
	}
	// Deterministic: the same instance encodes to the same bytes.
	b2, _ := EncodeInstance(&out)
	if !bytes.Equal(b, b2) {
		t.Error("re-encoding the decoded instance gives other bytes")
	}
}

func TestCodecRejectsCorruptValues(t *testing.T) {
	b, err := EncodeInstance(sampleInstance())
	if err != nil {
		t.Fatal(err)
	}
	for i := range len(b) {
		if _, err := DecodeInstance(b[:i]); err == nil {
			t.Fatalf("a value truncated to %d of %d bytes decoded", i, len(b))
		}
	}
	bad := slices.Clone(b)
	bad[2] = 9
	if _, err := DecodeInstance(bad); err == nil {
		t.Fatal("a newer format decoded")
	}
	if _, err := DecodeValue([]byte{0x7f}); err == nil {
		t.Fatal("an unknown tag decoded")
	}
	if _, err := DecodeValue([]byte{tagList, 0xff, 0xff, 0xff, 0xff, 0x0f}); err == nil {
		t.Fatal("a huge list count decoded")
	}
	if _, err := EncodeValue(struct{}{}); err == nil {
		t.Fatal("encoded a struct")
	}
	if v, err := EncodeValue(uint(math.MaxUint64)); err == nil {
		t.Fatalf("encoded an overflowing uint: %v", v)
	}
}

func TestBufferedEventRoundTrip(t *testing.T) {
	ev := paymentAuthorized("o/1", t0)
	ev.Partition, ev.Offset, ev.SchemaID = 4, 99, 12
	ev.Attrs = map[string]any{"customer": map[string]any{"tier": "gold"}}
	b, err := encodeBuffered(ev, t0)
	if err != nil {
		t.Fatal(err)
	}
	got, at, err := decodeBuffered(b)
	if err != nil || !at.Equal(t0) {
		t.Fatal(err, at)
	}
	if !reflect.DeepEqual(got, ev) {
		t.Fatalf("buffered event differs:\n got %#v\nwant %#v", got, ev)
	}
	// A row in attrs as enrich_table sets it (a record) is buffered as
	// its map: the buffered event reads the same either way.
	ev.Attrs = map[string]any{"customer": &schemas.Record{Names: []string{"tier"}, Values: []any{"gold"}}}
	if b, err = encodeBuffered(ev, t0); err != nil {
		t.Fatal(err)
	}
	if got, _, err = decodeBuffered(b); err != nil {
		t.Fatal(err)
	}
	if want := map[string]any{"customer": map[string]any{"tier": "gold"}}; !reflect.DeepEqual(got.Attrs, want) {
		t.Fatalf("buffered attrs with a record: got %#v, want %#v", got.Attrs, want)
	}
}

func TestKeys(t *testing.T) {
	for _, cid := range []string{"o-1", "a/b", "50%/x%2F", ""} {
		k, err := ParseKey(InstanceKey(cid, "p"))
		if err != nil || k.Kind != "instance" || k.CorrelationID != cid || k.Process != "p" {
			t.Errorf("instance key of %q: %+v %v", cid, k, err)
		}
		k, err = ParseKey(timerKey(t0, cid, "p", "deadline"))
		if err != nil || k.Kind != "timer" || k.CorrelationID != cid || k.Name != "deadline" || !k.Time.Equal(t0) {
			t.Errorf("timer key of %q: %+v %v", cid, k, err)
		}
		k, err = ParseKey(bufferKey(cid, "p", 1<<40))
		if err != nil || k.Kind != "buffer" || k.CorrelationID != cid || k.Offset != 1<<40 {
			t.Errorf("buffer key of %q: %+v %v", cid, k, err)
		}
		k, err = ParseKey(dedupeKey(cid, "id/1"))
		if err != nil || k.Kind != "dedupe" || k.CorrelationID != cid || k.EventID != "id/1" {
			t.Errorf("dedupe key of %q: %+v %v", cid, k, err)
		}
		lo, hi := InstancesRange(cid)
		if cid != "" && (bytes.Compare(InstanceKey(cid, "p"), lo) < 0 || bytes.Compare(InstanceKey(cid, "p"), hi) >= 0 ||
			bytes.Compare(InstanceKey(cid+"/x", "p"), lo) >= 0 && bytes.Compare(InstanceKey(cid+"/x", "p"), hi) < 0) {
			t.Errorf("InstancesRange(%q) is wrong", cid)
		}
	}
	x := expiryKey(t0, dedupeKey("c", "e"))
	if k, err := ParseKey(x); err != nil || k.Kind != "expiry" || !bytes.Equal(k.Target, dedupeKey("c", "e")) || !k.Time.Equal(t0) {
		t.Errorf("expiry key: %+v %v", k, err)
	}
	if k, err := ParseKey(defKey("p", 12)); err != nil || k.Kind != "definition" || k.Version != 12 {
		t.Errorf("definition key: %+v %v", k, err)
	}
	if _, err := ParseKey([]byte("zz")); err == nil {
		t.Error("parsed a foreign key")
	}
	// Timer keys sort by due time.
	if bytes.Compare(timerKey(t0, "z", "p", "a"), timerKey(t0.Add(time.Millisecond), "a", "p", "a")) >= 0 {
		t.Error("timer keys do not sort by due time")
	}
}

func TestTriggerRecord(t *testing.T) {
	tm := Timer{Process: "order-fulfilment", Version: 2, CorrelationID: "o/1", Name: "payment_timeout", Due: t0.Add(20 * time.Second)}
	rec := tm.Record("ordo-orders.process-log", 3)
	if rec.Topic != "ordo-orders.process-log" || rec.Partition != 3 || string(rec.Key) != "o/1" || !IsTrigger(rec) {
		t.Fatalf("record %+v", rec)
	}
	if IsTrigger(&kgo.Record{Headers: []kgo.RecordHeader{{Key: "ordo-kind", Value: []byte("event")}}}) || IsTrigger(&kgo.Record{}) {
		t.Fatal("IsTrigger accepts other records")
	}
	rec.Offset = 7
	ev, err := TriggerEvent(rec)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Type != TimerType || ev.Envelope.ID != tm.ID() || !ev.Envelope.Time.Equal(tm.Due) || string(ev.Key) != "o/1" || ev.Offset != 7 {
		t.Fatalf("event %+v", ev)
	}
	back, ok := timerOf(ev)
	if !ok || back != tm {
		t.Fatalf("timer from event %+v, want %+v", back, tm)
	}
	if tm.ID() == (Timer{Process: tm.Process, CorrelationID: tm.CorrelationID, Name: tm.Name, Due: tm.Due.Add(time.Millisecond)}).ID() {
		t.Fatal("timer ids ignore the due time")
	}
	rec.Key = []byte("other")
	if _, err := TriggerEvent(rec); err == nil {
		t.Fatal("a trigger keyed by another correlation id was accepted")
	}
	if _, err := TriggerEvent(&kgo.Record{Headers: rec.Headers, Value: []byte("{")}); err == nil {
		t.Fatal("a malformed trigger was accepted")
	}
	// A trigger event never counts as a duplicate and never reaches routes.
	e := sagaEngine(t)
	ev.Key = []byte("o/1")
	if cmds, err := e.Dedupe().Process(t.Context(), ev); err != nil || cmds != nil || len(ev.Marks) != 0 {
		t.Fatalf("dedupe on a timer event: %v %v %v", cmds, err, ev.Marks)
	}
}

// encodeInstanceViaMap is the documented format built the slow, obvious
// way: one map value of the codec. EncodeInstance must write the same bytes.
func encodeInstanceViaMap(in *Instance) ([]byte, error) {
	comps := make([]any, len(in.Compensations))
	for i, c := range in.Compensations {
		comps[i] = map[string]any{"step": c.Step, "type": c.Type, "topic": c.Topic, "fields": c.Fields}
	}
	timers := make([]any, len(in.Timers))
	for i, t := range in.Timers {
		timers[i] = map[string]any{"name": t.Name, "due": t.Due}
	}
	hist := make([]any, len(in.History))
	for i, h := range in.History {
		hist[i] = map[string]any{"at": h.At, "kind": h.Kind, "type": h.Type, "id": h.ID, "source": h.Source}
	}
	joined := make([]any, len(in.Joined))
	for i, j := range in.Joined {
		joined[i] = j
	}
	m := map[string]any{
		"process": in.Process, "version": int64(in.Version), "correlation_id": in.CorrelationID,
		"state": in.State, "status": in.Status, "vars": in.Vars, "joined": joined,
		"compensations": comps, "timers": timers, "started": in.Started, "updated": in.Updated,
		"history": hist, "waiting": int64(in.Waiting),
	}
	return appendValue(append([]byte(nil), instanceMagic...), m, 0)
}

func TestInstanceEncodingIsTheDocumentedMap(t *testing.T) {
	in := sampleInstance()
	in.Waiting = 3
	fast, err := EncodeInstance(in)
	if err != nil {
		t.Fatal(err)
	}
	slow, err := encodeInstanceViaMap(in)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(fast, slow) {
		t.Fatal("EncodeInstance does not write the documented map encoding")
	}
	// A key a newer ordo adds is skipped by DecodeInstance.
	v, _ := DecodeValue(slow[3:])
	v.(map[string]any)["zz_future"] = []any{"x", int64(1)}
	withNew, _ := appendValue(append([]byte(nil), instanceMagic...), v, 0)
	out, err := DecodeInstance(withNew)
	if err != nil || out.Waiting != 3 || out.Process != in.Process {
		t.Fatalf("unknown key: %v %+v", err, out)
	}
	// A missing known key is an error.
	delete(v.(map[string]any), "state")
	without, _ := appendValue(append([]byte(nil), instanceMagic...), v, 0)
	if _, err := DecodeInstance(without); err == nil {
		t.Fatal("an instance without its state decoded")
	}
}
