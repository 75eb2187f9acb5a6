package demo

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ordo-dev/ordo/producer"
)

// Violations VerifySaga detects (keys of SagaReport.Violations).
const (
	// Global.
	VRepeatedCommandID = "repeated_command_id" // one ordo-id on two command records, anywhere in the command topics
	VMalformedCommand  = "malformed_command"   // a command without ordo-id or ordo-input
	VDuplicateDelivery = "duplicate_delivery_commands"
	// Per order.
	VShipAndCancel        = "ship_and_cancel"        // both terminal commands
	VRepeatedCommand      = "repeated_command"       // a command type the saga emits once per order, twice
	VMissingTerminal      = "missing_terminal"       // the deciding events were processed, no ShipOrder or CancelOrder
	VDeadlineMissed       = "deadline_missed"        // deadline (+ grace) passed, no CancelOrder
	VTimerEarly           = "timer_early"            // a timeout CancelOrder written before the deadline
	VShipWithoutLegs      = "ship_without_legs"      // ShipOrder without authorized payment and reserved stock, or despite a decline/shortage
	VCancelWithoutCause   = "cancel_without_cause"   // CancelOrder caused by an event that cannot cancel
	VCompensationNoCancel = "compensation_no_cancel" // ReleaseInventory/VoidPayment without a CancelOrder
	VCompensationNoLeg    = "compensation_no_leg"    // ReleaseInventory without InventoryReserved, VoidPayment without PaymentAuthorized
	VMissingCompensation  = "missing_compensation"   // cancelled with reserved stock / authorized payment processed, not released / voided
	VMissingReserve       = "missing_reserve"        // a started order without ReserveInventory
	// Dead letters.
	VPoisonNotDeadLettered   = "poison_not_dead_lettered"
	VPoisonDeadLetteredTwice = "poison_dead_lettered_twice"
	VPoisonCommands          = "poison_produced_commands"
	VValidDeadLettered       = "valid_dead_lettered"
	VDeadLetterNoReason      = "dead_letter_without_reason"
)

// maxProblems bounds SagaReport.Problems (Violations counts them all).
const maxProblems = 20

// DefaultGrace is SagaCheck.Grace's default: triggers are looked for every
// 0.5s on caught-up partitions and then travel through the process log.
const DefaultGrace = 10 * time.Second

// SagaCheck says what VerifySaga reads and what it assumes.
type SagaCheck struct {
	// ForwardGroup is stage 1's group (kafka.group): a published record
	// below its committed offset was processed (forwarded or
	// dead-lettered).
	ForwardGroup string
	// ProcessGroup (kafka.group + ".process") and ProcessLog: a forwarded
	// record still in the process log at or past ProcessGroup's committed
	// offset is not processed yet. Empty: only ForwardGroup decides.
	ProcessGroup string
	ProcessLog   string
	// CommandTopics and DeadLetterTopic are read from From (the output's
	// end offsets before the run, see Since) to their end.
	CommandTopics   []string
	DeadLetterTopic string
	From            kadm.ListedOffsets
	// Deadline is the saga's payment deadline after OrderPlaced's record
	// timestamp (0: unknown; an undecided order then counts as in flight).
	Deadline time.Duration
	// Grace is how long after its deadline a timer may take to fire
	// before the order counts as missed (default DefaultGrace).
	Grace time.Duration
	// Now is the verification time (default time.Now).
	Now func() time.Time
}

// SagaReport is the outcome of VerifySaga. OK is true when no invariant is
// broken; in-flight and not yet processed orders are not failures.
type SagaReport struct {
	OK bool `json:"ok"`
	// Orders whose OrderPlaced was processed (started), and their ends.
	Orders            int `json:"orders"`
	Shipped           int `json:"shipped"`
	Cancelled         int `json:"cancelled"`
	CancelledDeclined int `json:"cancelled_declined"`
	CancelledShortage int `json:"cancelled_shortage"`
	CancelledTimeout  int `json:"cancelled_timeout"`
	// InFlight orders have no terminal command yet, legitimately: an event
	// of theirs is not processed yet, or their deadline (+ grace) has not
	// passed and no deciding event was processed.
	InFlight int `json:"in_flight"`
	// NotStarted orders' OrderPlaced was not processed yet.
	NotStarted          int `json:"not_started"`
	Published           int `json:"published"`
	NotYetProcessed     int `json:"not_yet_processed"`
	PoisonPublished     int `json:"poison_published"`
	PoisonDeadLettered  int `json:"poison_dead_lettered"`
	DuplicatesPublished int `json:"duplicates_published"`
	// DuplicatesDropped are processed duplicate deliveries that produced
	// no command and no dead letter.
	DuplicatesDropped int `json:"duplicates_dropped"`
	// CommandRecords are all command records read, CommandIDs their
	// distinct ordo-ids, CommandsSeen those of this run's orders.
	CommandRecords  int            `json:"command_records"`
	CommandIDs      int            `json:"command_ids"`
	CommandsSeen    int            `json:"commands_seen"`
	CommandsByType  map[string]int `json:"commands_by_type,omitempty"`
	ForeignCommands int            `json:"foreign_commands"` // commands of orders this run did not publish
	DeadLetters     int            `json:"dead_letters"`
	Violations      map[string]int `json:"violations,omitempty"`
	Problems        []string       `json:"problems,omitempty"` // the first 20
}

func (r *SagaReport) problem(kind, format string, args ...any) {
	if r.Violations == nil {
		r.Violations = map[string]int{}
	}
	r.Violations[kind]++
	if len(r.Problems) < maxProblems {
		r.Problems = append(r.Problems, kind+": "+fmt.Sprintf(format, args...))
	}
}

// ProblemCount counts every violation.
func (r *SagaReport) ProblemCount() int {
	n := 0
	for _, c := range r.Violations {
		n += c
	}
	return n
}

// VerifySaga checks the committed output of the orders saga against what
// the SagaGenerator published. cl must be a direct consumer created with
// kgo.FetchIsolationLevel(kgo.ReadCommitted()) and kgo.KeepControlRecords().
//
// It checks, across all command topics: no ordo-id twice, no command from a
// duplicate delivery, poison dead-lettered exactly once and without
// commands, no valid record dead-lettered; and per order (correlation id):
// at most one terminal command (ShipOrder xor CancelOrder), exactly one once
// the order is decided, ShipOrder only with authorized payment and reserved
// stock and no decline or shortage, CancelOrder only for a decline, a
// shortage or the deadline (not before it), ReleaseInventory/VoidPayment only
// with a CancelOrder and the leg they undo, and always when that leg was
// processed, ReserveInventory once per started order.
func VerifySaga(ctx context.Context, cl *kgo.Client, adm *kadm.Client, published []Published, c SagaCheck) (*SagaReport, error) {
	committed, err := adm.FetchOffsets(ctx, c.ForwardGroup)
	if err != nil {
		return nil, fmt.Errorf("verify: committed offsets of %s: %w", c.ForwardGroup, err)
	}
	if err := committed.Error(); err != nil {
		return nil, fmt.Errorf("verify: committed offsets of %s: %w", c.ForwardGroup, err)
	}
	waiting := map[inputRef]bool{} // forwarded, not processed by stage 2 yet
	if c.ProcessGroup != "" && c.ProcessLog != "" {
		tail, err := processLogTail(ctx, cl, adm, c.ProcessGroup, c.ProcessLog)
		if err != nil {
			return nil, err
		}
		for _, r := range tail {
			if in, ok := parseInput(headerValue(r, producer.HeaderOrigin)); ok {
				waiting[in] = true
			}
		}
	}
	processed := func(p Published) bool {
		o, ok := committed.Lookup(p.Topic, p.Partition)
		return ok && p.Offset < o.At && !waiting[inputRef{p.Topic, p.Partition, p.Offset}]
	}
	topics := append(slices.Clone(c.CommandTopics), c.DeadLetterTopic)
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("verify: end offsets: %w", err)
	}
	recs, err := readRange(ctx, cl, c.From, ends)
	if err != nil {
		return nil, err
	}
	return checkSaga(published, processed, recs, c), nil
}

// processLogTail reads the process log from group's committed offsets to
// its last stable offsets: what stage 2 has not processed yet.
func processLogTail(ctx context.Context, cl *kgo.Client, adm *kadm.Client, group, log string) ([]*kgo.Record, error) {
	offs, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return nil, fmt.Errorf("verify: committed offsets of %s: %w", group, err)
	}
	if err := offs.Error(); err != nil {
		return nil, fmt.Errorf("verify: committed offsets of %s: %w", group, err)
	}
	lso, err := adm.ListCommittedOffsets(ctx, log)
	if err != nil {
		return nil, fmt.Errorf("verify: end offsets of %s: %w", log, err)
	}
	from := kadm.ListedOffsets{}
	lso.Each(func(o kadm.ListedOffset) {
		if c, ok := offs.Lookup(o.Topic, o.Partition); ok && c.At >= 0 {
			if from[o.Topic] == nil {
				from[o.Topic] = map[int32]kadm.ListedOffset{}
			}
			from[o.Topic][o.Partition] = kadm.ListedOffset{Topic: o.Topic, Partition: o.Partition, Offset: c.At}
		}
	})
	return readRange(ctx, cl, from, lso)
}

// orderView is what the verifier knows of one order.
type orderView struct {
	id        string
	placed    *Published      // its first OrderPlaced delivery
	started   bool            // OrderPlaced processed
	types     map[string]bool // event types published (valid deliveries)
	done      map[string]bool // event types processed
	events    map[string]string
	pending   []string // events published but not processed yet
	cmds      map[string][]*kgo.Record
	published []string // "Type@topic/p/o" for messages
}

// onceTypes are the commands the saga emits at most once per order.
var onceTypes = []string{CmdReserveInventory, CmdShipOrder, CmdCancelOrder, CmdReleaseInventory, CmdVoidPayment, CmdCapturePayment}

// checkSaga is VerifySaga's judgement on records already read.
func checkSaga(published []Published, processed func(Published) bool, recs []*kgo.Record, c SagaCheck) *SagaReport {
	now := time.Now()
	if c.Now != nil {
		now = c.Now()
	}
	grace := c.Grace
	if grace <= 0 {
		grace = DefaultGrace
	}
	rep := &SagaReport{Published: len(published), CommandsByType: map[string]int{}}
	byInput := map[inputRef]Published{}
	done := map[inputRef]bool{}
	orders := map[string]*orderView{}
	order := func(id string) *orderView {
		o := orders[id]
		if o == nil {
			o = &orderView{id: id, types: map[string]bool{}, done: map[string]bool{}, events: map[string]string{}, cmds: map[string][]*kgo.Record{}}
			orders[id] = o
		}
		return o
	}
	for _, p := range published {
		in := inputRef{p.Topic, p.Partition, p.Offset}
		byInput[in] = p
		ok := processed(p)
		done[in] = ok
		if !ok {
			rep.NotYetProcessed++
		}
		switch p.Kind {
		case Valid:
			if p.Order == "" {
				continue
			}
			o := order(p.Order)
			o.types[p.Type] = true
			o.events[p.EventID] = p.Type
			o.published = append(o.published, fmt.Sprintf("%s@%s", short(p.Type), ref(in)))
			if p.Type == OrderPlaced && o.placed == nil {
				pp := p
				o.placed = &pp
			}
			if ok {
				o.done[p.Type] = true
				if p.Type == OrderPlaced {
					o.started = true
				}
			} else {
				o.pending = append(o.pending, short(p.Type))
			}
		case Duplicate:
			if ok {
				rep.DuplicatesPublished++
			}
		case Poison:
			if ok {
				rep.PoisonPublished++
			}
		}
	}

	ids := map[string]*kgo.Record{}
	dead := map[inputRef]int{}
	cmdsOf := map[inputRef]int{}
	for _, r := range recs {
		h := headers(r)
		if r.Topic == c.DeadLetterTopic {
			in, ok := parseInput(h[producer.HeaderOrigin]) // dead-lettered by stage 2: the upstream record
			if !ok {
				part, _ := strconv.Atoi(h[producer.HeaderDLQSourcePartition])
				off, err := strconv.ParseInt(h[producer.HeaderDLQSourceOffset], 10, 64)
				if err != nil {
					continue
				}
				in = inputRef{h[producer.HeaderDLQSourceTopic], int32(part), off}
			}
			if _, ours := byInput[in]; !ours {
				continue
			}
			rep.DeadLetters++
			dead[in]++
			if h[producer.HeaderDLQError] == "" {
				rep.problem(VDeadLetterNoReason, "dead letter %s of %s has no %s header", ref(at(r)), ref(in), producer.HeaderDLQError)
			}
			continue
		}
		rep.CommandRecords++
		id, typ := h[producer.HeaderID], h[producer.HeaderType]
		if id == "" {
			rep.problem(VMalformedCommand, "%s command at %s has no %s header", short(typ), ref(at(r)), producer.HeaderID)
			continue
		}
		if first, seen := ids[id]; seen {
			rep.problem(VRepeatedCommandID, "%s %s at %s repeats the command at %s", producer.HeaderID, id, ref(at(r)), ref(at(first)))
			continue // counted once per order below
		}
		ids[id] = r
		in, ok := parseInput(h[producer.HeaderInput])
		if !ok {
			rep.problem(VMalformedCommand, "%s command %s at %s has no valid %s header (%q)", short(typ), id, ref(at(r)), producer.HeaderInput, h[producer.HeaderInput])
		}
		if p, ours := byInput[in]; ok && ours {
			cmdsOf[in]++
			switch p.Kind {
			case Duplicate:
				rep.problem(VDuplicateDelivery, "the duplicate delivery %s of event %s (%s, order %s) produced %s %s", ref(in), p.EventID, short(p.Type), p.Order, short(typ), id)
			case Poison:
				rep.problem(VPoisonCommands, "poison record %s (%s) produced %s %s", ref(in), p.Why, short(typ), id)
			}
		}
		o := orders[h[producer.HeaderCorrelationID]]
		if o == nil {
			rep.ForeignCommands++
			continue
		}
		rep.CommandsSeen++
		rep.CommandsByType[typ]++
		o.cmds[typ] = append(o.cmds[typ], r)
	}
	rep.CommandIDs = len(ids)

	for _, p := range published {
		in := inputRef{p.Topic, p.Partition, p.Offset}
		if !done[in] {
			continue
		}
		switch p.Kind {
		case Poison:
			switch n := dead[in]; {
			case n == 0:
				rep.problem(VPoisonNotDeadLettered, "poison record %s (%s) is not in %s", ref(in), p.Why, c.DeadLetterTopic)
			case n > 1:
				rep.problem(VPoisonDeadLetteredTwice, "poison record %s (%s) was dead-lettered %d times", ref(in), p.Why, n)
			}
			if dead[in] > 0 {
				rep.PoisonDeadLettered++
			}
		case Valid, Duplicate:
			if dead[in] > 0 {
				rep.problem(VValidDeadLettered, "valid %s %s (event %s, order %s) was dead-lettered", kindName(p.Kind), ref(in), p.EventID, p.Order)
			}
			if p.Kind == Duplicate && dead[in] == 0 && cmdsOf[in] == 0 {
				rep.DuplicatesDropped++
			}
		}
	}

	keys := make([]string, 0, len(orders))
	for k := range orders {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		checkOrder(rep, orders[k], c, now, grace)
	}
	rep.OK = len(rep.Violations) == 0
	return rep
}

// checkOrder judges one order's commands.
func checkOrder(rep *SagaReport, o *orderView, c SagaCheck, now time.Time, grace time.Duration) {
	if o.started {
		rep.Orders++
	} else {
		rep.NotStarted++
	}
	n := func(t string) int { return len(o.cmds[t]) }
	for _, t := range onceTypes {
		if n(t) > 1 {
			rep.problem(VRepeatedCommand, "order %s: %d %s commands (%s)", o.id, n(t), short(t), describe(o.cmds[t]))
		}
	}
	ship, cancel := n(CmdShipOrder), n(CmdCancelOrder)
	if ship > 0 && cancel > 0 {
		rep.problem(VShipAndCancel, "order %s: both ShipOrder (%s) and CancelOrder (%s)", o.id, describe(o.cmds[CmdShipOrder]), describe(o.cmds[CmdCancelOrder]))
	}
	if ship > 0 && (!o.types[PaymentAuthorized] || !o.types[InventoryReserved] || o.types[PaymentDeclined] || o.types[InventoryShortage]) {
		rep.problem(VShipWithoutLegs, "order %s: ShipOrder %s, but its published events are %s", o.id, describe(o.cmds[CmdShipOrder]), strings.Join(o.published, ", "))
	}
	cause := ""
	if cancel > 0 {
		r := o.cmds[CmdCancelOrder][0]
		causation := headerValue(r, producer.HeaderCausationID)
		switch o.events[causation] {
		case PaymentDeclined:
			cause = "declined"
		case InventoryShortage:
			cause = "shortage"
		case "": // not an event of the order: a timer
			cause = "timeout"
			if c.Deadline > 0 && o.placed != nil && !o.placed.Timestamp.IsZero() {
				// The trigger is produced once the deadline passed;
				// 1s allows for clocks of different hosts.
				if due := o.placed.Timestamp.Add(c.Deadline); r.Timestamp.Before(due.Add(-time.Second)) {
					rep.problem(VTimerEarly, "order %s: timeout CancelOrder %s (causation %s) written at %s, before the deadline %s",
						o.id, headerValue(r, producer.HeaderID), causation, r.Timestamp.UTC().Format(time.RFC3339Nano), due.UTC().Format(time.RFC3339Nano))
				}
			}
		default:
			rep.problem(VCancelWithoutCause, "order %s: CancelOrder %s caused by its %s event %s, which cannot cancel an order", o.id, headerValue(r, producer.HeaderID), short(o.events[causation]), causation)
		}
	}
	switch {
	case ship > 0 && cancel == 0:
		rep.Shipped++
	case cancel > 0 && ship == 0:
		rep.Cancelled++
		switch cause {
		case "declined":
			rep.CancelledDeclined++
		case "shortage":
			rep.CancelledShortage++
		case "timeout":
			rep.CancelledTimeout++
		}
	}
	for _, comp := range []struct{ cmd, leg string }{{CmdReleaseInventory, InventoryReserved}, {CmdVoidPayment, PaymentAuthorized}} {
		if n(comp.cmd) == 0 {
			// Whichever came first, a cancelled order undoes a processed
			// leg: by compensation, or the late leg at once.
			if o.started && cancel > 0 && ship == 0 && o.done[comp.leg] {
				rep.problem(VMissingCompensation, "order %s: cancelled (%s) and its %s was processed, but there is no %s", o.id, describe(o.cmds[CmdCancelOrder]), short(comp.leg), short(comp.cmd))
			}
			continue
		}
		if cancel == 0 {
			rep.problem(VCompensationNoCancel, "order %s: %s %s without a CancelOrder", o.id, short(comp.cmd), describe(o.cmds[comp.cmd]))
		}
		if !o.types[comp.leg] {
			rep.problem(VCompensationNoLeg, "order %s: %s %s, but no %s was published for it", o.id, short(comp.cmd), describe(o.cmds[comp.cmd]), short(comp.leg))
		}
	}
	if !o.started {
		return
	}
	if n(CmdReserveInventory) == 0 {
		rep.problem(VMissingReserve, "order %s: OrderPlaced %s was processed, but there is no ReserveInventory", o.id, ref(inputRef{o.placed.Topic, o.placed.Partition, o.placed.Offset}))
	}
	if ship+cancel > 0 {
		return
	}
	decided := o.done[PaymentAuthorized] && o.done[InventoryReserved] || o.done[PaymentDeclined] || o.done[InventoryShortage]
	switch {
	case len(o.pending) > 0:
		rep.InFlight++ // events not processed yet
	case decided:
		rep.problem(VMissingTerminal, "order %s: no ShipOrder or CancelOrder, although all its events were processed (%s)", o.id, strings.Join(o.published, ", "))
	case o.done[PaymentAuthorized]:
		rep.InFlight++ // the payment cancelled the deadline: waiting for the stock leg
	case c.Deadline > 0 && o.placed != nil && !o.placed.Timestamp.IsZero():
		due := o.placed.Timestamp.Add(c.Deadline)
		if now.Before(due.Add(grace)) {
			rep.InFlight++
			return
		}
		rep.problem(VDeadlineMissed, "order %s: its deadline passed at %s (%s before the check, grace %s) without a CancelOrder (events %s)",
			o.id, due.UTC().Format(time.RFC3339), now.Sub(due).Round(time.Second), grace, strings.Join(o.published, ", "))
	default:
		rep.InFlight++ // deadline unknown
	}
}

// Summary is the one-line verdict `ordo dev` prints.
func (r *SagaReport) Summary() string {
	var b strings.Builder
	if r.OK {
		b.WriteString("verify OK: ")
	} else {
		fmt.Fprintf(&b, "verify FAILED (%d violations: %s): ", r.ProblemCount(), r.violationList())
	}
	fmt.Fprintf(&b, "orders %s · shipped %s · cancelled %s (declined %s, shortage %s, timeout %s) · in flight %s",
		num(r.Orders), num(r.Shipped), num(r.Cancelled), num(r.CancelledDeclined), num(r.CancelledShortage), num(r.CancelledTimeout), num(r.InFlight))
	if r.NotStarted > 0 {
		fmt.Fprintf(&b, " · not started %s", num(r.NotStarted))
	}
	fmt.Fprintf(&b, " · duplicates dropped %s", num(r.DuplicatesDropped))
	if r.DuplicatesDropped != r.DuplicatesPublished {
		fmt.Fprintf(&b, "/%s", num(r.DuplicatesPublished))
	}
	if r.PoisonDeadLettered == r.PoisonPublished {
		fmt.Fprintf(&b, " · poison %s dead-lettered", num(r.PoisonPublished))
	} else {
		fmt.Fprintf(&b, " · poison %s/%s dead-lettered", num(r.PoisonDeadLettered), num(r.PoisonPublished))
	}
	if rep := r.Violations[VRepeatedCommandID]; rep > 0 {
		fmt.Fprintf(&b, " · command ids REPEATED %s times (%s distinct)", num(rep), num(r.CommandIDs))
	} else {
		fmt.Fprintf(&b, " · command ids unique (%s)", num(r.CommandIDs))
	}
	return b.String()
}

func (r *SagaReport) violationList() string {
	kinds := make([]string, 0, len(r.Violations))
	for k := range r.Violations {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	for i, k := range kinds {
		kinds[i] = fmt.Sprintf("%s %d", k, r.Violations[k])
	}
	return strings.Join(kinds, ", ")
}

// num formats n with thousands separators (4,211).
func num(n int) string {
	s := strconv.Itoa(n)
	neg := strings.HasPrefix(s, "-")
	if neg {
		s = s[1:]
	}
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func headerValue(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

func at(r *kgo.Record) inputRef { return inputRef{r.Topic, r.Partition, r.Offset} }

func ref(in inputRef) string {
	return in.topic + "/" + strconv.Itoa(int(in.part)) + "/" + strconv.FormatInt(in.off, 10)
}

// short drops the namespace of an event or command type.
func short(typ string) string {
	if i := strings.LastIndexByte(typ, '.'); i >= 0 {
		return typ[i+1:]
	}
	return typ
}

func describe(rs []*kgo.Record) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = headerValue(r, producer.HeaderID) + "@" + ref(at(r))
	}
	return strings.Join(parts, ", ")
}

func kindName(k Kind) string {
	switch k {
	case Duplicate:
		return "duplicate delivery"
	case Poison:
		return "poison record"
	}
	return "event"
}
