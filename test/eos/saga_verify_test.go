package eos

// The saga verifier. Like verify_test.go it knows only the wire contract for
// the commands (goavro + the registry's REST API, the ordo-* headers) and
// what the generator published; it never asks ordo's processes engine what
// should have happened. The one piece of ordo it uses is
// processes.DecodeInstance, to read the changelog's instance values (ordo's
// own encoding) so that the committed state can be compared with the
// committed commands.

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ordo-dev/ordo/internal/demo"
	"github.com/ordo-dev/ordo/processes"
)

// sagaResult is what the saga verifier found.
type sagaResult struct {
	orders, shipped, cancelled                             int
	cancelledDeclined, cancelledShortage, cancelledTimeout int
	happyTimedOut                                          int // all legs published, but the deadline fired first (legs late under chaos)
	timersFired                                            int
	duplicates, duplicatesDropped                          int
	poison, deadLetters                                    int
	commands, changelogKeys                                int
	abortedRecords                                         int // on the outputs and the changelog: left by killed transactions, invisible read_committed
	problemCount                                           int
	ends                                                   map[string]string // order → shipped, declined, shortage or timeout
	problems                                               []string
}

func (r *sagaResult) problem(format string, args ...any) {
	r.problemCount++
	if len(r.problems) < 30 {
		r.problems = append(r.problems, fmt.Sprintf(format, args...))
	} else if len(r.problems) == 30 {
		r.problems = append(r.problems, "... (more problems not shown)")
	}
}

// sagaCmd is one committed command.
type sagaCmd struct {
	at                               inRef
	id, typ, order, causation, input string
	time                             time.Time // envelope time
	ts                               time.Time // record timestamp
	template, reservation            string
}

func (c *sagaCmd) String() string { return fmt.Sprintf("%s %s@%s", shortType(c.typ), c.id, c.at) }

// sagaOrder is what the verifier knows of one order.
type sagaOrder struct {
	id      string
	placed  *demo.Published
	types   map[string]bool   // event types published for it (valid deliveries)
	events  map[string]string // event id → type
	cmds    map[string][]*sagaCmd
	byCause map[string][]*sagaCmd
}

// terminal templates of NotifyCustomer by cancel cause (and for a shipment).
var sagaNotify = map[string]string{"shipped": "order_shipped", "declined": "payment_declined", "shortage": "out_of_stock", "timeout": "payment_timeout"}

func sagaVerify(ctx context.Context, brokers []string, regURL string, st *sagaTopics, published []demo.Published) (*sagaResult, error) {
	res := &sagaResult{ends: map[string]string{}}
	orders := map[string]*sagaOrder{}
	firstRef := map[inRef]string{} // first delivery of a valid event → order
	dupRef := map[inRef]demo.Published{}
	poison := map[inRef]demo.Published{}
	seenEvent := map[string]bool{}
	for i := range published {
		p := published[i]
		ref := inRef{p.Topic, p.Partition, p.Offset}
		switch p.Kind {
		case demo.Valid:
			o := orders[p.Order]
			if o == nil {
				o = &sagaOrder{id: p.Order, types: map[string]bool{}, events: map[string]string{}, cmds: map[string][]*sagaCmd{}, byCause: map[string][]*sagaCmd{}}
				orders[p.Order] = o
			}
			o.types[p.Type] = true
			o.events[p.EventID] = p.Type
			if p.Type == demo.OrderPlaced && o.placed == nil {
				o.placed = &p
			}
			if seenEvent[p.EventID] {
				return nil, fmt.Errorf("the generator published event id %s twice as a valid event", p.EventID)
			}
			seenEvent[p.EventID] = true
			firstRef[ref] = p.Order
		case demo.Duplicate:
			dupRef[ref] = p
			res.duplicates++
		case demo.Poison:
			poison[ref] = p
			res.poison++
		}
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	outs := append(st.commands(), st.dlq, st.changelog)
	ends, err := settle(ctx, adm, outs, 90*time.Second)
	if err != nil {
		return nil, err
	}
	recs, err := readAll(ctx, brokers, ends, true)
	if err != nil {
		return nil, fmt.Errorf("read_committed: %w", err)
	}
	// Every transaction has ended, so what read_uncommitted shows beyond
	// read_committed was aborted: the kills' open transactions.
	all, err := readAll(ctx, brokers, ends, false)
	if err != nil {
		return nil, fmt.Errorf("read_uncommitted: %w", err)
	}
	for tpk, rs := range all {
		n := 0
		for _, r := range rs {
			if !r.Attrs.IsControl() {
				n++
			}
		}
		for _, r := range recs[tpk] {
			if !r.Attrs.IsControl() {
				n--
			}
		}
		if n < 0 {
			res.problem("%s/%d: read_committed shows %d more records than read_uncommitted", tpk.topic, tpk.partition, -n)
		}
		res.abortedRecords += max(n, 0)
	}

	// Commands and dead letters.
	dec := newDecoder(regURL)
	ids := map[string]*sagaCmd{}
	type causeType struct{ cause, typ string }
	byCauseType := map[causeType]*sagaCmd{}
	dlq := map[inRef]int{}
	cmdInputs := map[inRef]bool{}
	var changelog []*kgo.Record
	for tpk, rs := range recs {
		for _, r := range rs {
			if r.Attrs.IsControl() {
				continue
			}
			at := inRef{tpk.topic, tpk.partition, r.Offset}
			h := headerMap(r)
			switch tpk.topic {
			case st.changelog:
				changelog = append(changelog, r)
				continue
			case st.dlq:
				res.deadLetters++
				src, ok := dlqSource(h)
				if o, ok2 := parseRef(h["ordo-origin"]); ok2 && (!ok || src.topic == st.processLog) {
					src, ok = o, true // dead-lettered by stage 2: its upstream record
				}
				if !ok {
					res.problem("dead letter %s names no source: %v", at, h)
					continue
				}
				dlq[src]++
				switch {
				case poison[src].Kind == demo.Poison:
				case firstRef[src] != "":
					res.problem("valid event %s (order %s) was dead-lettered: %s", src, firstRef[src], h["ordo-dlq-error"])
				case dupRef[src].Kind == demo.Duplicate:
					res.problem("duplicate delivery %s of event %s was dead-lettered: %s", src, dupRef[src].EventID, h["ordo-dlq-error"])
				default:
					res.problem("dead letter %s names an input %s this run did not publish", at, src)
				}
				if h["ordo-dlq-error"] == "" || h["ordo-dlq-error-class"] != "permanent" {
					res.problem("dead letter %s of %s lacks its reason headers: %v", at, src, h)
				}
				continue
			}
			res.commands++
			m, err := dec.decode(ctx, r.Value)
			if err != nil {
				res.problem("command %s: %v", at, err)
				continue
			}
			env, _ := m["envelope"].(map[string]any)
			c := &sagaCmd{at: at, ts: r.Timestamp, input: h["ordo-input"]}
			c.id, _ = env["id"].(string)
			c.typ, _ = env["type"].(string)
			c.order, _ = m["order_id"].(string)
			c.time, _ = env["time"].(time.Time)
			c.template, _ = m["template"].(string)
			c.reservation, _ = m["reservation_id"].(string)
			switch cz := env["causation_id"].(type) {
			case map[string]any:
				c.causation, _ = cz["string"].(string)
			case string:
				c.causation = cz
			}
			corr, _ := env["correlation_id"].(string)
			if want := st.commandOf[tpk.topic]; c.typ != want || h["ordo-type"] != want {
				res.problem("command %s on %s has type %s (header %s), want %s", at, tpk.topic, c.typ, h["ordo-type"], want)
			}
			if c.id == "" || h["ordo-id"] != c.id || h["ordo-causation-id"] != c.causation || c.causation == "" ||
				string(r.Key) != corr || h["ordo-correlation-id"] != corr || c.order != corr {
				res.problem("command %s: headers and envelope disagree: id %q/%q causation %q/%q key %q correlation %q/%q order %q",
					at, h["ordo-id"], c.id, h["ordo-causation-id"], c.causation, r.Key, h["ordo-correlation-id"], corr, c.order)
			}
			if first, dup := ids[c.id]; dup {
				res.problem("command id %s twice: %s and %s", c.id, first, c)
				continue
			}
			ids[c.id] = c
			ct := causeType{c.causation, c.typ}
			if first, dup := byCauseType[ct]; dup {
				res.problem("cause %s produced %s twice: %s and %s", c.causation, shortType(c.typ), first, c)
			}
			byCauseType[ct] = c
			in, ok := parseRef(c.input)
			cmdInputs[in] = true
			switch {
			case !ok:
				res.problem("command %s has no valid ordo-input header (%q)", c, c.input)
			case dupRef[in].Kind == demo.Duplicate:
				res.problem("command %s was produced by the duplicate delivery %s of event %s", c, in, dupRef[in].EventID)
			case poison[in].Kind == demo.Poison:
				res.problem("command %s was produced by poison input %s (%s)", c, in, poison[in].Why)
			}
			o := orders[c.order]
			if o == nil {
				res.problem("command %s is for order %q, which this run did not publish", c, c.order)
				continue
			}
			o.cmds[c.typ] = append(o.cmds[c.typ], c)
			o.byCause[c.causation] = append(o.byCause[c.causation], c)
			if _, isEvent := o.events[c.causation]; isEvent {
				// Caused by an event: its input is an upstream record of the
				// order (the event's own, or the one that released it from
				// the early-event buffer).
				if ok && firstRef[in] != c.order {
					res.problem("command %s (cause: event %s) names input %s, not a first delivery of an event of order %s", c, c.causation, in, c.order)
				}
			} else if ok && in.topic != st.processLog {
				res.problem("command %s (cause %s: no event of order %s, so a timer) names input %s, not a process-log trigger", c, c.causation, c.order, in)
			}
		}
	}

	// Duplicates added nothing, poison is dead-lettered once each.
	for ref := range dupRef {
		if dlq[ref] == 0 && !cmdInputs[ref] {
			res.duplicatesDropped++
		}
	}
	for ref, p := range poison {
		if n := dlq[ref]; n != 1 {
			res.problem("poison %s (%s) dead-lettered %d times, want once", ref, p.Why, n)
		}
	}

	// Per order.
	keys := make([]string, 0, len(orders))
	for k := range orders {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	terminal := map[string]string{} // order → "shipped" / "cancelled"
	for _, k := range keys {
		o := orders[k]
		if o.placed == nil {
			res.problem("order %s: legs published without an OrderPlaced (generator bug)", o.id)
			continue
		}
		res.orders++
		ship, cancel := o.cmds[cShip], o.cmds[cCancel]
		auth, reserved := o.types[tPaymentAuthorized], o.types[tInventoryReserved]
		declined, shortage := o.types[tPaymentDeclined], o.types[tInventoryShortage]
		for typ, cs := range o.cmds {
			if typ != cNotify && len(cs) > 1 {
				res.problem("order %s: %d %s commands: %v", o.id, len(cs), shortType(typ), cs)
			}
		}
		if n := len(o.cmds[cReserve]); n != 1 {
			res.problem("order %s: %d ReserveInventory, want 1", o.id, n)
		}
		if n := len(o.cmds[cCapture]); n != 0 {
			res.problem("order %s: %d CapturePayment; the saga emits none", o.id, n)
		}
		// The timer: every command not caused by an event of the order.
		var timerIDs []string
		for cause := range o.byCause {
			if _, isEvent := o.events[cause]; !isEvent {
				timerIDs = append(timerIDs, cause)
			}
		}
		if len(timerIDs) > 1 {
			res.problem("order %s: the payment timer fired %d times (causes %v)", o.id, len(timerIDs), timerIDs)
		}
		cause := ""
		switch {
		case len(ship)+len(cancel) == 0:
			res.problem("order %s: no ShipOrder or CancelOrder (published %v)", o.id, typesOf(o))
			continue
		case len(ship) > 0 && len(cancel) > 0:
			res.problem("order %s: both ShipOrder %v and CancelOrder %v", o.id, ship, cancel)
			continue
		case len(ship) > 0:
			cause = "shipped"
			res.shipped++
			terminal[o.id] = "shipped"
			if !auth || !reserved || declined || shortage {
				res.problem("order %s: ShipOrder %v, but its published events are %v", o.id, ship, typesOf(o))
			}
			if len(timerIDs) > 0 {
				res.problem("order %s: shipped, but its timer fired (%v)", o.id, o.byCause[timerIDs[0]])
			}
			if len(o.cmds[cRelease])+len(o.cmds[cVoid]) > 0 {
				res.problem("order %s: shipped, but compensated: %v %v", o.id, o.cmds[cRelease], o.cmds[cVoid])
			}
		default:
			res.cancelled++
			terminal[o.id] = "cancelled"
			c := cancel[0]
			switch o.events[c.causation] {
			case tPaymentDeclined:
				cause = "declined"
				res.cancelledDeclined++
			case tInventoryShortage:
				cause = "shortage"
				res.cancelledShortage++
			case "":
				cause = "timeout"
				res.cancelledTimeout++
				res.timersFired++
				if auth && reserved && !declined && !shortage {
					res.happyTimedOut++
				}
				// Due = OrderPlaced's event time + the deadline; the command
				// carries the due time, and is not written before it.
				due := o.placed.Timestamp.Add(sagaTimeout)
				if d := c.time.Sub(due); d < -time.Millisecond || d > time.Millisecond {
					res.problem("order %s: timeout CancelOrder %s has time %s, want the deadline %s", o.id, c, c.time.UTC().Format(time.RFC3339Nano), due.UTC().Format(time.RFC3339Nano))
				}
				if c.ts.Before(due.Add(-time.Second)) {
					res.problem("order %s: timeout CancelOrder %s written at %s, before the deadline %s", o.id, c, c.ts.UTC().Format(time.RFC3339Nano), due.UTC().Format(time.RFC3339Nano))
				}
			default:
				res.problem("order %s: CancelOrder %s caused by its %s event, which cannot cancel", o.id, c, shortType(o.events[c.causation]))
			}
			if want := btoi(reserved); len(o.cmds[cRelease]) != want {
				res.problem("order %s: cancelled (%s) with InventoryReserved published=%v: %d ReleaseInventory, want %d", o.id, cause, reserved, len(o.cmds[cRelease]), want)
			}
			if want := btoi(auth); len(o.cmds[cVoid]) != want {
				res.problem("order %s: cancelled (%s) with PaymentAuthorized published=%v: %d VoidPayment, want %d", o.id, cause, auth, len(o.cmds[cVoid]), want)
			}
		}
		if !declined && !shortage && !auth && cause != "timeout" {
			res.problem("order %s: no payment leg and no decline/shortage published, but it ended %s: the timer was lost", o.id, cause)
		}
		if !auth && !declined && !shortage && reserved && cause == "shipped" {
			res.problem("order %s: shipped without a payment", o.id)
		}
		// NotifyCustomer: order_received (the stateless route) and the
		// terminal's template, once each.
		templates := map[string]int{}
		for _, c := range o.cmds[cNotify] {
			templates[c.template]++
		}
		want := map[string]int{"order_received": 1, sagaNotify[cause]: 1}
		if !sameCounts(templates, want) {
			res.problem("order %s (%s): NotifyCustomer templates %v, want %v", o.id, cause, templates, want)
		}
		res.ends[o.id] = cause
		if len(timerIDs) == 1 && cause != "timeout" {
			res.problem("order %s: its timer fired (%v) but it ended %s", o.id, o.byCause[timerIDs[0]], cause)
		}
	}

	// The committed changelog against the commands.
	sagaCheckChangelog(res, changelog, orders, terminal)
	return res, nil
}

// sagaCheckChangelog rebuilds the committed state (last value per key) and
// compares every order's instance with its terminal command.
func sagaCheckChangelog(res *sagaResult, recs []*kgo.Record, orders map[string]*sagaOrder, terminal map[string]string) {
	// Records of one key are in one partition, in offset order.
	sort.SliceStable(recs, func(i, j int) bool {
		if recs[i].Partition != recs[j].Partition {
			return recs[i].Partition < recs[j].Partition
		}
		return recs[i].Offset < recs[j].Offset
	})
	state := map[string][]byte{}
	for _, r := range recs {
		if r.Value == nil {
			delete(state, string(r.Key))
			continue
		}
		state[string(r.Key)] = r.Value
	}
	res.changelogKeys = len(state)
	instances := map[string]processes.Instance{}
	timers := map[string][]string{}
	marks := map[string]map[string]bool{}
	for k, v := range state {
		switch {
		case strings.HasPrefix(k, "i/"):
			cid, proc, ok := strings.Cut(k[2:], "/")
			if !ok || proc != processName {
				res.problem("changelog: unexpected instance key %q", k)
				continue
			}
			in, err := processes.DecodeInstance(v)
			if err != nil {
				res.problem("changelog: instance %q: %v", k, err)
				continue
			}
			instances[cid] = in
		case strings.HasPrefix(k, "t/"):
			// t/<due: 8 bytes>/<cid>/<process>/<timer>
			parts := strings.Split(k[min(len(k), 2+8+1):], "/")
			if len(k) < 11 || k[10] != '/' || len(parts) != 3 {
				res.problem("changelog: unexpected timer key %q", k)
				continue
			}
			timers[parts[0]] = append(timers[parts[0]], parts[2])
		case strings.HasPrefix(k, "d/"):
			cid, eid, ok := strings.Cut(k[2:], "/")
			if !ok {
				res.problem("changelog: unexpected dedupe key %q", k)
				continue
			}
			if marks[cid] == nil {
				marks[cid] = map[string]bool{}
			}
			marks[cid][eid] = true
		}
	}
	for cid := range instances {
		if orders[cid] == nil {
			res.problem("changelog: an instance for %q, which this run did not publish", cid)
		}
	}
	keys := make([]string, 0, len(orders))
	for k := range orders {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, id := range keys {
		o := orders[id]
		if o.placed == nil {
			continue
		}
		in, ok := instances[id]
		if !ok {
			res.problem("changelog: order %s has no instance", id)
			continue
		}
		wantStatus, wantState := "", ""
		switch terminal[id] {
		case "shipped":
			wantStatus, wantState = "completed", "shipped"
			if ship := o.cmds[cShip]; len(ship) == 1 && fmt.Sprint(in.Vars["reservation_id"]) != ship[0].reservation {
				res.problem("changelog: order %s: instance reservation_id %v, ShipOrder %s has %q", id, in.Vars["reservation_id"], ship[0], ship[0].reservation)
			}
		case "cancelled":
			wantStatus, wantState = "cancelled", "cancelled"
		}
		if in.Status != wantStatus || in.State != wantState || wantStatus == "" {
			res.problem("changelog: order %s: instance %s/%s, but its commands say %q", id, in.State, in.Status, terminal[id])
		}
		if fmt.Sprint(in.Vars["order_id"]) != id || in.CorrelationID != id {
			res.problem("changelog: order %s: instance of %q with order_id %v", id, in.CorrelationID, in.Vars["order_id"])
		}
		if len(in.Timers) > 0 || len(timers[id]) > 0 {
			res.problem("changelog: order %s (%s) still has timers: instance %v, rows %v", id, in.Status, in.Timers, timers[id])
		}
		if len(in.Compensations) > 0 {
			res.problem("changelog: finished order %s still records %d compensations", id, len(in.Compensations))
		}
		// Every event of the order is remembered (dedupe marks survive
		// kills and the wiped store).
		for eid := range o.events {
			if !marks[id][eid] {
				res.problem("changelog: order %s: no dedupe mark for its event %s (%s)", id, eid, shortType(o.events[eid]))
			}
		}
	}
}

func typesOf(o *sagaOrder) []string {
	var out []string
	for t := range o.types {
		out = append(out, shortType(t))
	}
	sort.Strings(out)
	return out
}

func sameCounts(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// shortType drops the namespace of an event or command type.
func shortType(typ string) string { return typ[strings.LastIndexByte(typ, '.')+1:] }

// sagaVerifierSelfCheck proves that the verifier can fail: it re-judges the
// same committed output against three falsified publication records and
// expects each lie to be caught.
func sagaVerifierSelfCheck(ctx context.Context, t *testing.T, brokers []string, regURL string, st *sagaTopics, published []demo.Published, ends map[string]string) {
	t.Helper()
	pick := func(cause string, n int) string {
		var ids []string
		for id, c := range ends {
			if c == cause {
				ids = append(ids, id)
			}
		}
		if len(ids) <= n {
			return ""
		}
		sort.Strings(ids)
		return ids[n]
	}
	shipped, redelivered, timedOut := pick("shipped", 0), pick("shipped", 1), pick("timeout", 0)
	if shipped == "" || redelivered == "" || timedOut == "" {
		t.Errorf("verifier self-check: need two shipped and a timed-out order (have %q, %q, %q)", shipped, redelivered, timedOut)
		return
	}
	lies := append([]demo.Published(nil), published...)
	var want []string
	for i := range lies {
		p := &lies[i]
		if p.Kind != demo.Valid || p.Type != demo.OrderPlaced {
			continue
		}
		switch p.Order {
		case shipped: // a decline nobody published
			fake := *p
			fake.Type, fake.EventID, fake.Offset = demo.PaymentDeclined, "selfcheck-"+p.EventID, 1<<40
			lies = append(lies, fake)
			want = append(want, "order "+shipped+": ShipOrder")
		case redelivered: // the OrderPlaced claimed to be a re-delivery
			p.Kind = demo.Duplicate
			want = append(want, "produced by the duplicate delivery "+inRef{p.Topic, p.Partition, p.Offset}.String())
		case timedOut:
			p.Timestamp = p.Timestamp.Add(2 * time.Second) // the deadline moves: the timer fired early
			want = append(want, "order "+timedOut+": timeout CancelOrder")
		}
	}
	res, err := sagaVerify(ctx, brokers, regURL, st, lies)
	if err != nil {
		t.Errorf("verifier self-check: %v", err)
		return
	}
	all := strings.Join(res.problems, "\n")
	for _, w := range want {
		if !strings.Contains(all, w) {
			t.Errorf("verifier self-check: a falsified record went unnoticed: no problem mentions %q (found %d: %s)", w, res.problemCount, all)
		}
	}
	t.Logf("verifier self-check: %d planted lies caught (%d problems)", len(want), res.problemCount)
}
