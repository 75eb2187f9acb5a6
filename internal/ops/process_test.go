package ops_test

import (
	"bytes"
	"context"
	"math/big"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"gopkg.in/yaml.v3"

	"github.com/ordo-dev/ordo/internal/ops"
	"github.com/ordo-dev/ordo/internal/state"
	"github.com/ordo-dev/ordo/internal/testkit"
	"github.com/ordo-dev/ordo/processes"
	"github.com/ordo-dev/ordo/processors"
)

// The process tests run the example saga (examples/orders/ordo.yaml) with
// the real engine over in-memory partition states, and write each event's
// state changes to a changelog on the broker the way the stateful stage
// does: one transaction per event, to the partition of the correlation id.
// Some transactions abort. show/list must then see exactly the committed
// state.

// realBrokers is testkit.Brokers, but skips (saying why) on kfake: these
// tests prove read_committed behaviour, which needs a real broker.
func realBrokers(t *testing.T) []string {
	t.Helper()
	if testkit.Kind(t) == testkit.KindKfake {
		t.Skip("needs a real Kafka broker (read_committed over aborted transactions): set KAFKA_BROKERS, e.g. test/kafka/kafka.sh start && eval $(test/kafka/kafka.sh env)")
	}
	return testkit.Brokers(t)
}

const saga = "order-fulfilment"

type sagaWorld struct {
	t         *testing.T
	conn      []kgo.Opt
	changelog string
	parts     int
	engine    *processes.Engine
	chain     processors.Chain
	stores    map[int32]*state.Overlay
	txn       *kgo.Client
	logOffset int64
	// written records the committed changelog records per instance key.
	written map[string][]*kgo.Record
}

func newSagaWorld(t *testing.T, parts int) *sagaWorld {
	t.Helper()
	brokers := realBrokers(t)
	b, err := os.ReadFile("../../examples/orders/ordo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Processes yaml.Node `yaml:"processes"`
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	e, err := processes.Build(&cfg.Processes, "examples/orders/ordo.yaml", processors.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	w := &sagaWorld{
		t: t, conn: []kgo.Opt{kgo.SeedBrokers(brokers...)}, changelog: testkit.UniqueName(t, "changelog"), parts: parts,
		engine: e, chain: processors.Chain{processors.Named("dedupe", e.Dedupe()), processors.Named("processes", e.Processor())},
		stores: map[int32]*state.Overlay{}, written: map[string][]*kgo.Record{},
	}
	testkit.CreateTopics(t, brokers, int32(parts), w.changelog)
	w.txn, err = kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.TransactionalID(w.changelog+"-txn"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.txn.Close)
	return w
}

func (w *sagaWorld) store(p int32) *state.Overlay {
	if w.stores[p] == nil {
		w.stores[p] = state.NewOverlay(nil)
	}
	return w.stores[p]
}

// event builds a decoded process-log event (key = correlation id) whose
// input record is checkout/payments/warehouse partition 0 at some offset.
func (w *sagaWorld) event(typ, cid, id string, at time.Time, fields map[string]any) *processors.Event {
	env := processors.Envelope{ID: id, Type: typ, Source: "test", Time: at, CorrelationID: cid}
	v := map[string]any{"envelope": env.Map(), "order_id": cid}
	for k, x := range fields {
		v[k] = x
	}
	w.logOffset++
	return &processors.Event{Topic: "orders.process-log", Partition: ops.PartitionOf(cid, w.parts), Offset: w.logOffset, Key: []byte(cid), Timestamp: at,
		Type: typ, Envelope: env, Value: v,
		Headers: []processors.Header{{Key: "ordo-origin", Value: []byte("input." + typ[strings.LastIndexByte(typ, '.')+1:] + "/0/" + big.NewInt(100+w.logOffset).String())}}}
}

func rat(s string) *big.Rat { r, _ := new(big.Rat).SetString(s); return r }

func (w *sagaWorld) placed(cid string, at time.Time) *processors.Event {
	return w.event("com.acme.checkout.OrderPlaced", cid, "placed-"+cid, at, map[string]any{
		"customer_id": "cust-1", "total": rat("1234.56"), "currency": "EUR", "shipping_country": "DE", "note": nil,
		"items": []any{map[string]any{"sku": "SKU-1", "qty": int32(2), "unit_price": rat("617.28")}},
	})
}

func (w *sagaWorld) authorized(cid string, at time.Time) *processors.Event {
	return w.event("com.acme.payments.PaymentAuthorized", cid, "auth-"+cid, at, map[string]any{
		"payment_id": "pay-" + cid, "amount": rat("1234.56"), "currency": "EUR"})
}

func (w *sagaWorld) declined(cid string, at time.Time) *processors.Event {
	return w.event("com.acme.payments.PaymentDeclined", cid, "declined-"+cid, at, map[string]any{
		"payment_id": "pay-" + cid, "reason": "insufficient funds"})
}

func (w *sagaWorld) reserved(cid string, at time.Time) *processors.Event {
	return w.event("com.acme.warehouse.InventoryReserved", cid, "reserved-"+cid, at, map[string]any{
		"reservation_id": "res-" + cid, "warehouse": "FRA-1"})
}

// apply runs ev through dedupe and the engine on its partition's state and
// writes the changes to the changelog in one transaction, committed or
// aborted (then the state is left as it was, as after a crash).
func (w *sagaWorld) apply(ev *processors.Event, commit bool) {
	w.t.Helper()
	p := ops.PartitionOf(string(ev.Key), w.parts)
	ov := state.NewOverlay(w.store(p))
	if _, err := w.chain.Process(state.WithTxn(context.Background(), ov), ev); err != nil {
		w.t.Fatalf("%s %s: %v", ev.Type, ev.Envelope.ID, err)
	}
	var writes []state.Write
	for _, x := range ov.Writes() {
		writes = append(writes, x)
	}
	w.write(p, writes, commit)
}

// write writes changes to changelog partition p in one transaction.
func (w *sagaWorld) write(p int32, writes []state.Write, commit bool) {
	w.t.Helper()
	ctx := context.Background()
	if err := w.txn.BeginTransaction(); err != nil {
		w.t.Fatal(err)
	}
	recs := make([]*kgo.Record, 0, len(writes))
	for _, x := range writes {
		recs = append(recs, &kgo.Record{Topic: w.changelog, Partition: p, Key: x.Key, Value: x.Value})
	}
	if err := w.txn.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		w.t.Fatal(err)
	}
	if err := w.txn.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
		w.t.Fatal(err)
	}
	if !commit {
		return
	}
	for _, r := range recs {
		if bytes.HasPrefix(r.Key, []byte("i/")) {
			w.written[string(r.Key)] = append(w.written[string(r.Key)], r)
		}
	}
	st := w.store(p)
	for _, x := range writes {
		if x.Value == nil {
			_ = st.Delete(x.Key)
		} else {
			_ = st.Set(x.Key, x.Value)
		}
	}
}

// fire fires cid's timer that is due at now, as the loop does.
func (w *sagaWorld) fire(cid string, now time.Time) {
	w.t.Helper()
	p := ops.PartitionOf(cid, w.parts)
	due, err := w.engine.Due(w.store(p), now, 0)
	if err != nil {
		w.t.Fatal(err)
	}
	for _, tm := range due {
		if tm.CorrelationID != cid {
			continue
		}
		ev, err := processes.TriggerEvent(tm.Record("orders.process-log", p))
		if err != nil {
			w.t.Fatal(err)
		}
		w.logOffset++
		ev.Offset = w.logOffset
		w.apply(ev, true)
		return
	}
	w.t.Fatalf("no timer of %s due at %s", cid, now)
}

// sagaScenario writes the instances the tests look at; t0 is the first
// event's time.
//
//	o-done     placed, authorized, reserved     completed (shipped), 3+ versions
//	o-abort    placed; a decline ABORTED        running (the abort is invisible)
//	o-timeout  placed, reserved, timer fired    cancelled, compensated
//	o-gone     placed, then its key deleted     absent (removed)
//	o-run      placed, reserved (an hour later) running, 1 compensation, 1 timer
//	o-early    authorized only                  no instance; 1 early event buffered
func sagaScenario(w *sagaWorld, t0 time.Time) {
	w.apply(w.placed("o-done", t0), true)
	w.apply(w.authorized("o-done", t0.Add(time.Second)), true)
	w.apply(w.reserved("o-done", t0.Add(2*time.Second)), true)

	w.apply(w.placed("o-abort", t0.Add(time.Minute)), true)
	w.apply(w.declined("o-abort", t0.Add(time.Minute+time.Second)), false)

	w.apply(w.placed("o-timeout", t0.Add(2*time.Minute)), true)
	w.apply(w.reserved("o-timeout", t0.Add(2*time.Minute+time.Second)), true)
	w.fire("o-timeout", t0.Add(3*time.Minute))

	w.apply(w.placed("o-gone", t0.Add(3*time.Minute)), true)
	w.write(ops.PartitionOf("o-gone", w.parts), []state.Write{{Key: processes.InstanceKey("o-gone", saga)}}, true)

	w.apply(w.placed("o-run", t0.Add(time.Hour)), true)
	w.apply(w.reserved("o-run", t0.Add(time.Hour+time.Second)), true)

	w.apply(w.authorized("o-early", t0.Add(time.Minute)), true)
}

func TestProcessShowAndList(t *testing.T) {
	w := newSagaWorld(t, 3)
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	sagaScenario(w, t0)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	src := ops.ProcessSource{Changelog: w.changelog}

	t.Run("show completed", func(t *testing.T) {
		res, err := ops.ShowProcess(ctx, w.conn, ops.ShowOptions{ProcessSource: src, CorrelationID: "o-done", Versions: true})
		if err != nil {
			t.Fatal(err)
		}
		want := ops.PartitionOf("o-done", 3)
		if res.Partition != want || len(res.Source.Read) != 1 || res.Source.Read[0].Partition != want {
			t.Fatalf("read %+v, partition %d; want only partition %d", res.Source.Read, res.Partition, want)
		}
		if len(res.Instances) != 1 {
			t.Fatalf("instances %+v", res.Instances)
		}
		in := res.Instances[0]
		if in.Process != saga || in.Version != 1 || in.State != "shipped" || in.Status != "completed" || !in.Started.Equal(t0) || !in.Updated.Equal(t0.Add(2*time.Second)) {
			t.Errorf("instance %+v", in)
		}
		if tot, ok := in.Vars["total"].(*big.Rat); !ok || tot.Cmp(rat("1234.56")) != 0 || in.Vars["payment_id"] != "pay-o-done" || in.Vars["warehouse"] != "FRA-1" {
			t.Errorf("vars %#v", in.Vars)
		}
		if len(in.Timers) != 0 || len(in.Compensations) != 0 {
			t.Errorf("a shipped order keeps timers %v compensations %v", in.Timers, in.Compensations)
		}
		recs := w.written[string(processes.InstanceKey("o-done", saga))]
		last := recs[len(recs)-1]
		if in.Origin.Topic != w.changelog || in.Origin.Partition != want || in.Origin.Offset != last.Offset || in.Origin.Earlier != len(recs)-1 || len(recs) < 3 {
			t.Errorf("origin %+v; committed versions at %v", in.Origin, offsets(recs))
		}
		if got := versionOffsets(in.Versions); !slices.Equal(got, offsets(recs)) {
			t.Errorf("versions at %v, committed %v", got, offsets(recs))
		}
		if v := in.Versions[0]; v.State != "awaiting_payment_and_stock" || v.Status != "running" || v.Last == nil {
			t.Errorf("first version %+v", v)
		}
		// History: what the engine did, with the input records.
		var kinds []string
		sources := map[string]string{}
		for _, h := range in.History {
			kinds = append(kinds, h.Kind+" "+h.Type)
			if h.Kind == "event" {
				sources[h.Type] = h.Source
			}
		}
		for _, k := range []string{"event com.acme.checkout.OrderPlaced", "command com.acme.ordo.commands.ReserveInventory", "timer_set payment_timeout",
			"timer_cancelled payment_timeout", "command com.acme.ordo.commands.ShipOrder", "state shipped"} {
			if !slices.Contains(kinds, k) {
				t.Errorf("history lacks %q: %v", k, kinds)
			}
		}
		if s := sources["com.acme.checkout.OrderPlaced"]; !strings.HasPrefix(s, "input.OrderPlaced/0/") {
			t.Errorf("OrderPlaced source %q", s)
		}

		var b strings.Builder
		ops.WriteProcessShow(&b, res, t0.Add(time.Hour))
		out := b.String()
		for _, s := range []string{"order-fulfilment@1", "state    shipped", "status   completed", "age 1h0m",
			"total          = 1234.56", `currency       = "EUR"`, "timers: none pending", "compensations: none recorded",
			in.Origin.Coordinates(), "versions in the changelog", "from input.OrderPlaced/0/"} {
			if !strings.Contains(out, s) {
				t.Errorf("text lacks %q:\n%s", s, out)
			}
		}
	})

	t.Run("aborted change never shown", func(t *testing.T) {
		res, err := ops.ShowProcess(ctx, w.conn, ops.ShowOptions{ProcessSource: src, CorrelationID: "o-abort", Versions: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Instances) != 1 {
			t.Fatalf("instances %+v", res.Instances)
		}
		in := res.Instances[0]
		if in.State != "awaiting_payment_and_stock" || in.Status != "running" || in.Origin.Earlier != 0 || len(in.Versions) != 1 {
			t.Errorf("the aborted decline shows: state %s status %s earlier %d versions %+v", in.State, in.Status, in.Origin.Earlier, in.Versions)
		}
		// The aborted version is in the log: a read_uncommitted reader sees it.
		if raw := w.rawStatuses(ctx, "o-abort"); !slices.Contains(raw, "cancelled") {
			t.Fatalf("the scenario wrote no aborted cancelled version (read_uncommitted sees %v)", raw)
		}
		for _, h := range in.History {
			if strings.Contains(h.Type, "Declined") || strings.Contains(h.Type, "CancelOrder") {
				t.Errorf("history has the aborted %+v", h)
			}
		}
	})

	t.Run("timer fired and compensated", func(t *testing.T) {
		res, err := ops.ShowProcess(ctx, w.conn, ops.ShowOptions{ProcessSource: src, CorrelationID: "o-timeout", Process: saga})
		if err != nil {
			t.Fatal(err)
		}
		in := res.Instances[0]
		if in.Status != "cancelled" || in.State != "cancelled" {
			t.Errorf("state %s status %s", in.State, in.Status)
		}
		var fired, released bool
		for _, h := range in.History {
			fired = fired || (h.Kind == "timer_fired" && h.Type == "payment_timeout")
			released = released || (h.Kind == "command" && h.Type == "com.acme.ordo.commands.ReleaseInventory")
		}
		if !fired || !released {
			t.Errorf("history lacks the firing (%v) or the compensation (%v): %+v", fired, released, in.History)
		}
	})

	t.Run("running with timer and compensation", func(t *testing.T) {
		res, err := ops.ShowProcess(ctx, w.conn, ops.ShowOptions{ProcessSource: src, CorrelationID: "o-run"})
		if err != nil {
			t.Fatal(err)
		}
		in := res.Instances[0]
		if len(in.Timers) != 1 || in.Timers[0].Name != "payment_timeout" || !in.Timers[0].Due.Equal(t0.Add(time.Hour+20*time.Second)) {
			t.Errorf("timers %+v", in.Timers)
		}
		if len(in.Compensations) != 1 || in.Compensations[0].Type != "com.acme.ordo.commands.ReleaseInventory" || in.Compensations[0].Fields["reservation_id"] != "res-o-run" {
			t.Errorf("compensations %+v", in.Compensations)
		}
		var b strings.Builder
		ops.WriteProcessShow(&b, res, t0.Add(time.Hour+10*time.Second))
		for _, s := range []string{"timers (1 pending)", "payment_timeout  due 2026-03-01T13:00:20.000Z  due in 10s", "ReleaseInventory -> commands.release-inventory.v1", "joined   InventoryReserved"} {
			if !strings.Contains(b.String(), s) {
				t.Errorf("text lacks %q:\n%s", s, b.String())
			}
		}
	})

	t.Run("removed and buffered", func(t *testing.T) {
		res, err := ops.ShowProcess(ctx, w.conn, ops.ShowOptions{ProcessSource: src, CorrelationID: "o-gone"})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Instances) != 0 || len(res.Removed) != 1 || res.Removed[0].Last == nil || res.Removed[0].Last.State != "awaiting_payment_and_stock" {
			t.Errorf("tombstoned instance: %+v removed %+v", res.Instances, res.Removed)
		}
		res, err = ops.ShowProcess(ctx, w.conn, ops.ShowOptions{ProcessSource: src, CorrelationID: "o-early"})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Instances) != 0 || res.Buffered[saga] != 1 {
			t.Errorf("early event: instances %+v buffered %v", res.Instances, res.Buffered)
		}
		if msg := res.NoInstance(); !strings.Contains(msg, "1 early events waiting") || !strings.Contains(msg, `"o-early"`) {
			t.Errorf("message %q", msg)
		}
		res, err = ops.ShowProcess(ctx, w.conn, ops.ShowOptions{ProcessSource: src, CorrelationID: "o-done", Process: "other"})
		if err != nil || len(res.Instances) != 0 || !strings.Contains(res.NoInstance(), "no instance of process other") {
			t.Errorf("--process other: %+v %v", res, err)
		}
	})

	t.Run("list", func(t *testing.T) {
		now := t0.Add(90 * time.Minute)
		list := func(o ops.ListOptions) []string {
			t.Helper()
			o.ProcessSource, o.Now = src, now
			res, err := ops.ListProcesses(ctx, w.conn, o)
			if err != nil {
				t.Fatal(err)
			}
			if res.Scanned != 4 || len(res.Source.Read) != 3 {
				t.Errorf("scanned %d instances in %+v, want 4 in 3 partitions", res.Scanned, res.Source.Read)
			}
			var ids []string
			for _, e := range res.Instances {
				ids = append(ids, e.CorrelationID+":"+e.State)
			}
			return ids
		}
		all := list(ops.ListOptions{})
		if want := []string{"o-done:shipped", "o-abort:awaiting_payment_and_stock", "o-timeout:cancelled", "o-run:awaiting_payment_and_stock"}; !slices.Equal(all, want) {
			t.Errorf("all: %v, want %v (oldest first, no aborted change, no tombstoned instance)", all, want)
		}
		for _, c := range []struct {
			o    ops.ListOptions
			want []string
		}{
			{ops.ListOptions{Status: "running"}, []string{"o-abort:awaiting_payment_and_stock", "o-run:awaiting_payment_and_stock"}},
			{ops.ListOptions{Status: "completed"}, []string{"o-done:shipped"}},
			{ops.ListOptions{State: "cancelled"}, []string{"o-timeout:cancelled"}},
			{ops.ListOptions{OlderThan: time.Hour}, []string{"o-done:shipped", "o-abort:awaiting_payment_and_stock", "o-timeout:cancelled"}},
			{ops.ListOptions{NewerThan: time.Hour}, []string{"o-run:awaiting_payment_and_stock"}},
			{ops.ListOptions{OlderThan: 88 * time.Minute, NewerThan: 89*time.Minute + 30*time.Second}, []string{"o-abort:awaiting_payment_and_stock"}},
			{ops.ListOptions{Process: "other"}, nil},
		} {
			if got := list(c.o); !slices.Equal(got, c.want) {
				t.Errorf("%s: %v, want %v", c.o, got, c.want)
			}
		}
		res, err := ops.ListProcesses(ctx, w.conn, ops.ListOptions{ProcessSource: src, Now: now})
		if err != nil {
			t.Fatal(err)
		}
		var tot []string
		for _, x := range res.Totals {
			tot = append(tot, x.Status+"="+big.NewInt(int64(x.Count)).String())
		}
		if !slices.Equal(tot, []string{"cancelled=1", "completed=1", "running=2"}) {
			t.Errorf("totals %v", tot)
		}
		var b strings.Builder
		ops.WriteProcessList(&b, res, 2)
		out := b.String()
		for _, s := range []string{"o-done", "order-fulfilment@1", "1h30m", "state shipped", "... 2 more (--limit 2", "4 instance(s) match of 4", "running    2"} {
			if !strings.Contains(out, s) {
				t.Errorf("list text lacks %q:\n%s", s, out)
			}
		}
		if strings.Contains(out, "o-run") {
			t.Errorf("--limit 2 printed the newest:\n%s", out)
		}
		if err := (ops.ListOptions{OlderThan: time.Hour, NewerThan: time.Minute}).Validate(); err == nil {
			t.Error("an empty age range is accepted")
		}
	})
}

func TestProcessMissingChangelog(t *testing.T) {
	brokers := realBrokers(t)
	_, err := ops.ShowProcess(context.Background(), []kgo.Opt{kgo.SeedBrokers(brokers...)}, ops.ShowOptions{
		ProcessSource: ops.ProcessSource{Changelog: "no-such-changelog", Fix: "start ordo run"}, CorrelationID: "x"})
	if err == nil || !strings.Contains(err.Error(), `changelog "no-such-changelog" does not exist`) || !strings.Contains(err.Error(), "start ordo run") {
		t.Fatalf("error %v", err)
	}
}

// TestPartitionOfIsKafkasDefault: PartitionOf is the partition Kafka's
// default partitioner (murmur2, as the forwarding stage's keyed producer
// uses) gives a correlation id; murmur2 is re-implemented here from Kafka's
// Utils.murmur2.
func TestPartitionOfIsKafkasDefault(t *testing.T) {
	for _, cid := range []string{"o-1", "o-2", "ORDER-1234", "a/b%c", "x", "long-correlation-id-0123456789"} {
		for _, n := range []int{1, 3, 6, 12} {
			want := int32((murmur2([]byte(cid)) & 0x7fffffff) % int32(n))
			if got := ops.PartitionOf(cid, n); got != want {
				t.Errorf("PartitionOf(%q, %d) = %d, want %d", cid, n, got, want)
			}
		}
	}
}

func murmur2(b []byte) int32 {
	const seed, m, r = uint32(0x9747b28c), uint32(0x5bd1e995), 24
	h := seed ^ uint32(len(b))
	n := len(b) / 4
	for i := 0; i < n; i++ {
		k := uint32(b[4*i]) | uint32(b[4*i+1])<<8 | uint32(b[4*i+2])<<16 | uint32(b[4*i+3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	rest := b[4*n:]
	switch len(rest) {
	case 3:
		h ^= uint32(rest[2]) << 16
		fallthrough
	case 2:
		h ^= uint32(rest[1]) << 8
		fallthrough
	case 1:
		h ^= uint32(rest[0])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return int32(h)
}

// rawStatuses reads cid's changelog partition read_uncommitted (aborted
// records included) and returns the status of every version of its
// instance.
func (w *sagaWorld) rawStatuses(ctx context.Context, cid string) []string {
	w.t.Helper()
	p := ops.PartitionOf(cid, w.parts)
	cl, err := kgo.NewClient(append(w.conn, kgo.FetchIsolationLevel(kgo.ReadUncommitted()), kgo.KeepControlRecords(),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{w.changelog: {p: kgo.NewOffset().AtStart()}}))...)
	if err != nil {
		w.t.Fatal(err)
	}
	defer cl.Close()
	key := processes.InstanceKey(cid, saga)
	var out []string
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			w.t.Fatal(ctx.Err())
		}
		done := false
		fs.EachPartition(func(ftp kgo.FetchTopicPartition) {
			for _, r := range ftp.Records {
				if !r.Attrs.IsControl() && bytes.Equal(r.Key, key) && r.Value != nil {
					in, err := processes.DecodeInstance(r.Value)
					if err != nil {
						w.t.Fatal(err)
					}
					out = append(out, in.Status)
				}
			}
			done = done || ftp.HighWatermark > 0 && len(ftp.Records) > 0 && ftp.Records[len(ftp.Records)-1].Offset+1 >= ftp.HighWatermark
		})
		if done {
			return out
		}
	}
}

func offsets(rs []*kgo.Record) []int64 {
	out := make([]int64, len(rs))
	for i, r := range rs {
		out[i] = r.Offset
	}
	return out
}

func versionOffsets(vs []ops.InstanceVersion) []int64 {
	out := make([]int64, len(vs))
	for i, v := range vs {
		out[i] = v.Offset
	}
	return out
}
