package processes

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math/big"
	"os"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/ordo-dev/ordo/internal/state"
	"github.com/ordo-dev/ordo/processors"
	"github.com/ordo-dev/ordo/schemas"
)

// The tests run the real example config (examples/orders/ordo.yaml) with
// the real example schemas: every command a test sees has been encoded with
// its Avro schema.

var demo = sync.OnceValues(schemas.Demo)

func demoSchemas(t testing.TB) map[string]*schemas.Schema {
	t.Helper()
	m, err := demo()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// fieldNames mirrors internal/app's: top-level fields (without a default
// when requiredOnly).
func fieldNames(text string, requiredOnly bool) []string {
	var rec struct {
		Fields []map[string]json.RawMessage `json:"fields"`
	}
	if json.Unmarshal([]byte(text), &rec) != nil {
		return nil
	}
	var out []string
	for _, f := range rec.Fields {
		if _, hasDefault := f["default"]; requiredOnly && hasDefault {
			continue
		}
		var name string
		_ = json.Unmarshal(f["name"], &name)
		out = append(out, name)
	}
	return out
}

func demoDeps(t testing.TB) processors.Deps {
	m := demoSchemas(t)
	return processors.Deps{
		KnownType: func(n string) bool { _, ok := m[n]; return ok },
		Fields: func(n string) ([]string, bool) {
			s, ok := m[n]
			if !ok {
				return nil, false
			}
			return fieldNames(s.Text, false), true
		},
		Required: func(n string) ([]string, bool) {
			s, ok := m[n]
			if !ok {
				return nil, false
			}
			return fieldNames(s.Text, true), true
		},
	}
}

const exampleFile = "../examples/orders/ordo.yaml"

// exampleProcesses is the `processes:` node of the example config.
func exampleProcesses(t testing.TB) *yaml.Node {
	t.Helper()
	b, err := os.ReadFile(exampleFile)
	if err != nil {
		t.Fatal(err)
	}
	return processesNode(t, string(b))
}

// processesNode parses a config text and returns its `processes:` value
// (Kind 0 when absent), with the text's line numbers.
func processesNode(t testing.TB, text string) *yaml.Node {
	t.Helper()
	var cfg struct {
		Processes yaml.Node `yaml:"processes"`
	}
	if err := yaml.Unmarshal([]byte(text), &cfg); err != nil {
		t.Fatal(err)
	}
	return &cfg.Processes
}

func sagaEngine(t testing.TB) *Engine {
	t.Helper()
	e, err := Build(exampleProcesses(t), exampleFile, demoDeps(t))
	if err != nil {
		t.Fatalf("the example's processes do not build: %v", err)
	}
	return e
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func rat(s string) *big.Rat {
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		panic(s)
	}
	return r
}

var eventTopics = map[string]string{
	"com.acme.checkout.OrderPlaced":        "checkout.orders.v1",
	"com.acme.payments.PaymentAuthorized":  "payments.v1",
	"com.acme.payments.PaymentDeclined":    "payments.v1",
	"com.acme.warehouse.InventoryReserved": "warehouse.v1",
	"com.acme.warehouse.InventoryShortage": "warehouse.v1",
}

// event builds a decoded event as stage 2 sees it (key = correlation id).
func event(typ, cid, id string, at time.Time, fields map[string]any) *processors.Event {
	env := processors.Envelope{ID: id, Type: typ, Source: "test", Time: at, CorrelationID: cid}
	v := map[string]any{"envelope": env.Map(), "order_id": cid}
	for k, x := range fields {
		v[k] = x
	}
	return &processors.Event{Topic: "ordo-orders.process-log", Key: []byte(cid), Timestamp: at, Type: typ, Envelope: env, Value: v,
		Headers: []processors.Header{{Key: "ordo-input", Value: []byte(eventTopics[typ] + "/0/1")}}}
}

func orderPlaced(cid string, at time.Time) *processors.Event {
	return event("com.acme.checkout.OrderPlaced", cid, "placed-"+cid, at, map[string]any{
		"customer_id": "cust-1", "total": rat("1234.56"), "currency": "EUR", "shipping_country": "DE", "note": nil,
		"items": []any{map[string]any{"sku": "SKU-1", "qty": int32(2), "unit_price": rat("617.28")}},
	})
}

func paymentAuthorized(cid string, at time.Time) *processors.Event {
	return event("com.acme.payments.PaymentAuthorized", cid, "auth-"+cid, at, map[string]any{
		"payment_id": "pay-" + cid, "amount": rat("1234.56"), "currency": "EUR"})
}

func paymentDeclined(cid string, at time.Time) *processors.Event {
	return event("com.acme.payments.PaymentDeclined", cid, "declined-"+cid, at, map[string]any{
		"payment_id": "pay-" + cid, "reason": "insufficient funds"})
}

func inventoryReserved(cid string, at time.Time) *processors.Event {
	return event("com.acme.warehouse.InventoryReserved", cid, "reserved-"+cid, at, map[string]any{
		"reservation_id": "res-" + cid, "warehouse": "FRA-1"})
}

func inventoryShortage(cid string, at time.Time) *processors.Event {
	return event("com.acme.warehouse.InventoryShortage", cid, "short-"+cid, at, map[string]any{
		"missing_skus": []any{"SKU-1", "SKU-9"}})
}

// harness is the stage-2 pipeline over an in-memory partition state: each
// event runs in its own overlay, whose writes are committed only when the
// chain returns no error (as the consumer does).
type harness struct {
	t      testing.TB
	e      *Engine
	store  *state.Overlay
	chain  processors.Chain
	offset int64
	sent   []processors.Command
	marks  []processors.Mark
	// skipEncode skips encoding every command with its schema (benchmarks).
	skipEncode bool
}

func newHarness(t testing.TB, e *Engine, more ...processors.Processor) *harness {
	chain := processors.Chain{processors.Named("dedupe", e.Dedupe()), processors.Named("processes", e.Processor())}
	chain = append(chain, more...)
	return &harness{t: t, e: e, store: state.NewOverlay(nil), chain: chain}
}

// send processes ev (assigning the next process-log offset) and commits.
func (h *harness) send(ev *processors.Event) ([]processors.Command, error) {
	ev.Offset = h.offset
	h.offset++
	return h.commit(ev)
}

func (h *harness) commit(ev *processors.Event) ([]processors.Command, error) {
	cmds, writes, err := h.try(ev)
	if err != nil {
		return nil, err
	}
	for _, w := range writes {
		if w.Value == nil {
			_ = h.store.Delete(w.Key)
		} else {
			_ = h.store.Set(w.Key, w.Value)
		}
	}
	h.sent = append(h.sent, cmds...)
	h.marks = append(h.marks, ev.Marks...)
	return cmds, nil
}

// try runs the chain without committing (an aborted transaction).
func (h *harness) try(ev *processors.Event) ([]processors.Command, []state.Write, error) {
	ev.Marks = nil
	ov := state.NewOverlay(h.store)
	cmds, err := h.chain.Process(state.WithTxn(context.Background(), ov), ev)
	if err != nil {
		return nil, nil, err
	}
	for _, c := range cmds {
		if h.skipEncode {
			break
		}
		s, ok := demoSchemas(h.t)[c.Type]
		if !ok {
			h.t.Fatalf("command type %s has no schema", c.Type)
		}
		body, err := s.EncodeNatural(c.Natural())
		if err != nil {
			h.t.Fatalf("command %s does not encode with its schema: %v\n%#v", c.Type, err, c.Natural())
		}
		if c.Record != nil { // laid out in slots: the same bytes as its map
			if slots, err := s.AppendRecord(nil, c.Record); err != nil || !bytes.Equal(slots, body) {
				h.t.Fatalf("command %s: slot encoding %x (%v) differs from its map's %x", c.Type, slots, err, body)
			}
		}
	}
	return cmds, ov.Writes(), nil
}

// mustSend is send that fails the test on an error.
func (h *harness) mustSend(ev *processors.Event) []processors.Command {
	h.t.Helper()
	cmds, err := h.send(ev)
	if err != nil {
		h.t.Fatalf("%s %s: %v", ev.Type, ev.Envelope.ID, err)
	}
	return cmds
}

// fire produces the triggers of every timer due at now and processes them,
// as the loop does; it returns the commands of the firings.
func (h *harness) fire(now time.Time) []processors.Command {
	h.t.Helper()
	due, err := h.e.Due(h.store, now, 0)
	if err != nil {
		h.t.Fatal(err)
	}
	var out []processors.Command
	for _, tm := range due {
		out = append(out, h.trigger(tm, now)...)
	}
	return out
}

func (h *harness) trigger(tm Timer, now time.Time) []processors.Command {
	h.t.Helper()
	rec := tm.Record("ordo-orders.process-log", 0)
	rec.Offset = h.offset
	rec.Timestamp = now
	h.offset++
	ev, err := TriggerEvent(rec)
	if err != nil {
		h.t.Fatal(err)
	}
	cmds, err := h.commit(ev)
	if err != nil {
		h.t.Fatalf("timer %s: %v", tm.Name, err)
	}
	return cmds
}

func (h *harness) instance(cid, process string) (Instance, bool) {
	h.t.Helper()
	v, ok, err := h.store.Get(InstanceKey(cid, process))
	if err != nil || !ok {
		return Instance{}, false
	}
	in, err := DecodeInstance(v)
	if err != nil {
		h.t.Fatal(err)
	}
	return in, true
}

func types(cmds []processors.Command) []string {
	out := make([]string, len(cmds))
	for i, c := range cmds {
		out[i] = c.Type[len("com.acme.ordo.commands."):]
	}
	return out
}

func hasMark(marks []processors.Mark, process, outcome string) bool {
	for _, m := range marks {
		if m.Process == process && m.Outcome == outcome {
			return true
		}
	}
	return false
}

func isDrop(err error) bool { return errors.Is(err, processors.ErrDrop) }
