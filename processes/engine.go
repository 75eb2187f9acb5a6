// Package processes is ordo's process engine: long-running processes
// (sagas) defined in the config's `processes:` block, keyed by correlation
// id, with named states, joins, timers, compensation and terminal states;
// and the event-id deduplication of the stateful stage.
//
// Stage 2 of ordo consumes the process log (record key = correlation id)
// and runs, for each event, with a per-event state.Txn in the context:
//
//	engine.Dedupe() → engine.Processor() → the stateless orchestrate routes
//
// Everything the engine decides comes from the event and the state, never
// from the wall clock: timer due times are event time + duration, command
// envelope times are the event's time (a timer's due time), command ids
// derive from (process, correlation id, cause id, emit index). A re-run
// after an aborted transaction therefore writes the same state and emits
// the same commands with the same ids. docs/processes.md explains the model.
package processes

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ordo-dev/ordo/internal/state"
	"github.com/ordo-dev/ordo/processors"
)

// Opt sets one of the engine's settings from outside the `processes:`
// block, for Build. Options apply in order; a later one replaces an earlier.
type Opt func(*Engine)

// DedupeWindow is how long an event id is remembered (state.dedupe_window).
// Default 24h (DefaultDedupeWindow); a value <= 0 keeps it. Longer catches
// later redeliveries (an upstream replay) but keeps a mark per event id in
// the state store for that long.
func DedupeWindow(d time.Duration) Opt {
	return func(e *Engine) { e.window = d }
}

// Source is envelope.source of the commands processes emit. Default "ordo";
// "" keeps it.
func Source(s string) Opt {
	return func(e *Engine) { e.source = s }
}

// Engine runs the configured processes. It is immutable after Build and
// safe for concurrent use (each event brings its own state.Txn).
type Engine struct {
	defs   map[string][]*definition // by process name, ascending versions
	names  []string                 // process names in config order
	byType map[string][]string      // event type -> processes handling it (any version)
	window time.Duration
	source string
}

// Names lists the configured process names (config order).
func (e *Engine) Names() []string { return slices.Clone(e.names) }

// Versions lists the configured versions of process, ascending.
func (e *Engine) Versions(process string) []int {
	var out []int
	for _, d := range e.defs[process] {
		out = append(out, d.version)
	}
	return out
}

func (e *Engine) latest(process string) *definition {
	ds := e.defs[process]
	if len(ds) == 0 {
		return nil
	}
	return ds[len(ds)-1]
}

func (e *Engine) def(process string, version int) *definition {
	for _, d := range e.defs[process] {
		if d.version == version {
			return d
		}
	}
	return nil
}

// Processor returns the engine's processor: it applies each event (or timer
// event, TimerType) to the instances of the processes that handle its type.
// Its marks (ev.Mark(process, outcome)) are listed in docs/processes.md.
func (e *Engine) Processor() processors.Processor { return processors.Func(e.process) }

func txnFrom(ctx context.Context) (state.Txn, error) {
	tx, ok := state.TxnFrom(ctx)
	if !ok {
		// A wiring bug, not the event's fault: stall (and alert) rather
		// than dead-letter every event.
		return nil, processors.Transient(errors.New("processes: no state transaction in the context (the engine must run in ordo's stateful stage)"))
	}
	return tx, nil
}

// correlationID is the process-log record key (stage 1 keys it by the
// envelope's correlation id), else the envelope's correlation id.
func correlationID(ev *processors.Event) string {
	if len(ev.Key) > 0 {
		return string(ev.Key)
	}
	return ev.Envelope.CorrelationID
}

// eventTime is the time an event happened for the engine: a timer's due
// time, else the record timestamp, else envelope.time.
func eventTime(ev *processors.Event) time.Time {
	if ev.Type == TimerType || ev.Timestamp.IsZero() {
		return ev.Envelope.Time.UTC()
	}
	return ev.Timestamp.UTC()
}

func (e *Engine) process(ctx context.Context, ev *processors.Event) ([]processors.Command, error) {
	if ev.Type == TimerType {
		return e.fire(ctx, ev)
	}
	procs := e.byType[ev.Type]
	if len(procs) == 0 {
		return nil, nil
	}
	tx, err := txnFrom(ctx)
	if err != nil {
		return nil, err
	}
	cid := correlationID(ev)
	if cid == "" {
		return nil, processors.Permanent(fmt.Errorf("process %s: event %s (%s) has no correlation id: its record key and envelope.correlation_id are empty", procs[0], ev.Envelope.ID, ev.Type))
	}
	var out []processors.Command
	for _, p := range procs {
		r, err := e.load(tx, ev, p, cid)
		if err != nil {
			return nil, err
		}
		if err := r.onEvent(ev); err != nil {
			return nil, err
		}
		if err := r.save(); err != nil {
			return nil, err
		}
		out = append(out, r.out...)
	}
	return out, nil
}

// run is one process's handling of one consumed event (and of the buffered
// events it releases).
type run struct {
	e       *Engine
	tx      state.Txn
	trigger *processors.Event // the consumed event: marks go on it
	process string
	cid     string
	now     time.Time   // the trigger's event time
	inst    *Instance   // nil: no instance
	def     *definition // the instance's definition; the latest when none
	dirty   bool        // inst must be written
	changed bool        // the instance started or changed state: retry buffered events
	started bool        // the instance started now: its buffer must be read once
	c       cause
	out     []processors.Command
}

// cause is the event (or timer) being applied: the basis of command ids.
type cause struct {
	basis     string // "id:<envelope id>" or "kafka:<topic>/<partition>/<offset>"
	causation string // causation_id of the commands ("" : null)
	base      time.Time
	idx       int // commands emitted for this cause so far
}

func (e *Engine) load(tx state.Txn, ev *processors.Event, process, cid string) (*run, error) {
	r := &run{e: e, tx: tx, trigger: ev, process: process, cid: cid, now: eventTime(ev), def: e.latest(process)}
	v, ok, err := tx.Get(InstanceKey(cid, process))
	if err != nil {
		return nil, processors.Transient(fmt.Errorf("process %s: reading instance %q: %w", process, cid, err))
	}
	if !ok {
		return r, nil
	}
	in, err := DecodeInstance(v)
	if err != nil {
		if errors.Is(err, errNewerFormat) {
			return nil, processors.Transient(fmt.Errorf("process %s instance %q: %w: run the ordo version that wrote it", process, cid, err))
		}
		return nil, processors.Permanent(fmt.Errorf("process %s instance %q is unreadable (%w); its events are dead-lettered until the instance is repaired or removed", process, cid, err))
	}
	r.inst = &in
	r.def = e.def(process, in.Version)
	if r.def == nil && !in.Finished() {
		return nil, processors.Transient(fmt.Errorf("process %s: running instance %q has version %d, which is not configured: add the version %d definition back (CheckState reports this at start)", process, cid, in.Version, in.Version))
	}
	return r, nil
}

func (r *run) mark(outcome string) { r.trigger.Mark(r.process, outcome) }

func (r *run) onEvent(ev *processors.Event) error {
	outcome, keep, err := r.handle(ev, false)
	if err != nil {
		return err
	}
	if keep {
		if err := r.buffer(ev); err != nil {
			return err
		}
	}
	r.mark(outcome)
	return r.replay()
}

// handle decides what ev does to the instance. keep means: buffer it (a
// new event) or leave it buffered (replay). Errors are dead letters of the
// trigger (Permanent) or stalls (Transient).
func (r *run) handle(ev *processors.Event, replay bool) (outcome string, keep bool, err error) {
	if r.inst == nil {
		d := r.def
		if ev.Type == d.start.on {
			ok, err := r.guard(d.start, ev)
			if err != nil || !ok {
				return "not_started", false, err
			}
			return "started", false, r.start(d, ev)
		}
		switch d.onUnknown {
		case "buffer":
			return "buffered", true, nil
		case "dead_letter":
			if !replay {
				return "", false, processors.Permanent(fmt.Errorf("process %s: no instance for correlation id %q: event %s (%s) came before %s started it, or after the finished instance was removed (on_unknown: dead_letter)",
					r.process, r.cid, ev.Envelope.ID, ev.Type, d.start.on))
			}
		}
		return "unknown_instance", false, nil
	}
	if r.inst.Finished() {
		if r.def != nil {
			st := r.def.states[r.inst.State]
			tr, err := r.match(st.transitions, ev, "")
			if err != nil {
				return "", false, err
			}
			if tr != nil {
				r.begin(ev)
				return "applied", false, r.apply(tr, ev)
			}
		}
		policy := r.def
		if policy == nil {
			policy = r.e.latest(r.process)
		}
		if policy.onFinished == "dead_letter" && !replay {
			return "", false, processors.Permanent(fmt.Errorf("process %s: instance %q has finished (%s in state %s); event %s (%s) came too late (on_finished: dead_letter)",
				r.process, r.cid, r.inst.Status, r.inst.State, ev.Envelope.ID, ev.Type))
		}
		return "finished_instance", false, nil
	}
	st := r.def.states[r.inst.State]
	if st == nil {
		return "", false, processors.Permanent(fmt.Errorf("process %s version %d: instance %q is in state %q, which the definition does not have", r.process, r.def.version, r.cid, r.inst.State))
	}
	for _, leg := range st.join {
		if leg.on != ev.Type || slices.Contains(r.inst.Joined, leg.leg) {
			continue
		}
		ok, err := r.guard(leg, ev)
		if err != nil {
			return "", false, err
		}
		if !ok {
			continue
		}
		r.begin(ev)
		if err := r.apply(leg, ev); err != nil {
			return "", false, err
		}
		r.inst.Joined = append(r.inst.Joined, leg.leg)
		if len(r.inst.Joined) == len(st.join) {
			if err := r.apply(st.then, ev); err != nil {
				return "", false, err
			}
		}
		return "applied", false, nil
	}
	tr, err := r.match(st.transitions, ev, "")
	if err != nil {
		return "", false, err
	}
	if tr != nil {
		r.begin(ev)
		return "applied", false, r.apply(tr, ev)
	}
	if r.def.onUnknown == "buffer" && r.def.handledLater(ev.Type, st.name) {
		return "buffered", true, nil
	}
	return "unhandled", false, nil
}

// match returns the first transition for ev (or for the firing of timer)
// whose `when` holds.
func (r *run) match(trs []*step, ev *processors.Event, timer string) (*step, error) {
	for _, tr := range trs {
		if timer != "" && tr.timer != timer || timer == "" && tr.on != ev.Type {
			continue
		}
		ok, err := r.guard(tr, ev)
		if err != nil {
			return nil, err
		}
		if ok {
			return tr, nil
		}
	}
	return nil, nil
}

func (r *run) activation(ev *processors.Event) *processors.Activation {
	a := processors.NewActivation(ev)
	if r.inst != nil {
		a.SetVars(r.inst.Vars)
	}
	return a
}

func (r *run) guard(s *step, ev *processors.Event) (bool, error) {
	if s.when == nil {
		return true, nil
	}
	ok, err := s.when.Bool(r.activation(ev))
	if err != nil {
		return false, r.stepErr(s, "when", ev, err)
	}
	return ok, nil
}

func (r *run) stepErr(s *step, what string, ev *processors.Event, err error) error {
	return processors.Permanent(fmt.Errorf("process %s (instance %q): %s.%s on event %s (%s): %v", r.process, r.cid, s.key, what, ev.Envelope.ID, ev.Type, err))
}

// begin starts applying ev (or a timer event) as the cause of what follows.
func (r *run) begin(ev *processors.Event) {
	r.c = cause{base: eventTime(ev), causation: ev.Envelope.ID}
	if ev.Envelope.ID != "" {
		r.c.basis = "id:" + ev.Envelope.ID
	} else {
		r.c.basis = "kafka:" + ev.Topic + "/" + strconv.Itoa(int(ev.Partition)) + "/" + strconv.FormatInt(ev.Offset, 10)
	}
	if r.c.base.After(r.inst.Updated) {
		r.inst.Updated = r.c.base
	}
	kind, src := "event", sourceOf(ev)
	if ev.Type == TimerType {
		kind, src = "timer_fired", ""
		if name, _ := ev.Value["name"].(string); name != "" {
			r.history(kind, name, ev.Envelope.ID, src)
			r.dirty = true
			return
		}
	}
	r.history(kind, ev.Type, ev.Envelope.ID, src)
	r.dirty = true
}

func (r *run) start(d *definition, ev *processors.Event) error {
	k := defKey(d.name, d.version)
	v, ok, err := r.tx.Get(k)
	if err != nil {
		return processors.Transient(fmt.Errorf("process %s: reading the definition fingerprint: %w", d.name, err))
	}
	switch {
	case !ok:
		if err := r.tx.Set(k, []byte(d.fingerprint)); err != nil {
			return processors.Transient(fmt.Errorf("process %s: %w", d.name, err))
		}
	case string(v) != d.fingerprint:
		return processors.Transient(fmt.Errorf("process %s version %d: the configured definition differs from the one stored at its first use (%s): give the changed definition a new version (CheckState reports this at start)", d.name, d.version, v))
	}
	t := eventTime(ev)
	r.def = d
	r.inst = &Instance{Process: d.name, Version: d.version, CorrelationID: r.cid, Status: StatusRunning,
		Vars: map[string]any{}, Started: t, Updated: t}
	r.changed, r.started = true, true
	r.begin(ev)
	return r.apply(d.start, ev)
}

// apply runs a step's effects, in this order: set (every expression sees
// the variables before the step), emit (sees the new variables),
// compensate (emit the recorded compensations, newest first), record the
// step's compensation, cancel_timers, start_timers, goto.
func (r *run) apply(s *step, ev *processors.Event) error {
	a := r.activation(ev)
	if len(s.set) > 0 {
		vals := make([]any, len(s.set))
		for i, sv := range s.set {
			v, err := sv.expr.Value(a)
			if err != nil {
				return r.stepErr(s, "set."+sv.name, ev, err)
			}
			vals[i] = v
		}
		for i, sv := range s.set {
			r.inst.Vars[sv.name] = vals[i]
		}
		a.SetVars(r.inst.Vars)
	}
	for i, em := range s.emit {
		f, err := em.Fields(a)
		if err != nil {
			return r.stepErr(s, "emit["+strconv.Itoa(i)+"]", ev, err)
		}
		r.emit(em.Type(), em.Topic(), f)
	}
	if s.compensate && len(r.inst.Compensations) > 0 {
		for i := len(r.inst.Compensations) - 1; i >= 0; i-- {
			c := r.inst.Compensations[i]
			f := make(map[string]any, len(c.Fields)+1)
			for k, v := range c.Fields {
				f[k] = v
			}
			r.emit(c.Type, c.Topic, f)
		}
		r.inst.Compensations = nil
		r.mark("compensated")
	}
	for i, em := range s.compensation {
		f, err := em.Fields(a)
		if err != nil {
			return r.stepErr(s, "compensation["+strconv.Itoa(i)+"]", ev, err)
		}
		if len(r.inst.Compensations) >= MaxCompensations {
			return r.stepErr(s, "compensation", ev, fmt.Errorf("more than %d compensations recorded; a step that records one should not run that often", MaxCompensations))
		}
		r.inst.Compensations = append(r.inst.Compensations, Compensation{Step: s.key, Type: em.Type(), Topic: em.Topic(), Fields: f})
	}
	for _, t := range s.cancelTimers {
		if err := r.cancelTimer(t); err != nil {
			return err
		}
	}
	for _, t := range s.startTimers {
		if err := r.startTimer(t); err != nil {
			return err
		}
	}
	if s.gotoState != "" && s.gotoState != r.inst.State {
		if err := r.enter(s.gotoState); err != nil {
			return err
		}
	}
	r.dirty = true
	return nil
}

func (r *run) emit(typ, topic string, fields map[string]any) {
	id := commandID(r.process, r.cid, r.c.basis, r.c.idx)
	r.c.idx++
	var causation any
	if r.c.causation != "" {
		causation = r.c.causation
	}
	fields["envelope"] = map[string]any{
		"id": id, "type": typ, "source": r.e.source, "time": r.c.base,
		"correlation_id": r.cid, "causation_id": causation,
	}
	r.out = append(r.out, processors.Command{Topic: topic, Type: typ, Key: []byte(r.cid), Value: fields})
	r.history("command", typ, id, "")
}

func (r *run) enter(name string) error {
	r.inst.State = name
	r.inst.Joined = nil
	r.changed = true
	r.history("state", name, "", "")
	st := r.def.states[name]
	if st.terminal == "" {
		return nil
	}
	r.inst.Status = st.terminal
	for len(r.inst.Timers) > 0 {
		if err := r.cancelTimer(r.inst.Timers[0].Name); err != nil {
			return err
		}
	}
	r.inst.Compensations = nil // the process finished: nothing left to undo
	r.mark(st.terminal)
	return nil
}

func (r *run) startTimer(name string) error {
	if err := r.cancelTimer(name); err != nil { // a restarted timer replaces the running one
		return err
	}
	due := time.UnixMilli(r.c.base.Add(r.def.timers[name]).UnixMilli()).UTC()
	if err := r.tx.Set(timerKey(due, r.cid, r.process, name), []byte(strconv.Itoa(r.inst.Version))); err != nil {
		return processors.Transient(fmt.Errorf("process %s: setting timer %s: %w", r.process, name, err))
	}
	r.inst.Timers = append(r.inst.Timers, TimerSet{Name: name, Due: due})
	r.history("timer_set", name, Timer{Process: r.process, Version: r.inst.Version, CorrelationID: r.cid, Name: name, Due: due}.ID(), "")
	r.mark("timer_set")
	return nil
}

func (r *run) cancelTimer(name string) error {
	i := slices.IndexFunc(r.inst.Timers, func(t TimerSet) bool { return t.Name == name })
	if i < 0 {
		return nil
	}
	t := r.inst.Timers[i]
	if err := r.tx.Delete(timerKey(t.Due, r.cid, r.process, name)); err != nil {
		return processors.Transient(fmt.Errorf("process %s: cancelling timer %s: %w", r.process, name, err))
	}
	r.inst.Timers = slices.Delete(r.inst.Timers, i, i+1)
	r.history("timer_cancelled", name, "", "")
	return nil
}

func (r *run) history(kind, typ, id, source string) {
	cut := func(s string) string {
		if len(s) > maxHistoryString {
			return s[:maxHistoryString]
		}
		return s
	}
	if len(r.inst.History) >= MaxHistory {
		r.inst.History = slices.Delete(r.inst.History, 0, len(r.inst.History)-MaxHistory+1)
	}
	r.inst.History = append(r.inst.History, HistoryEntry{At: r.c.base, Kind: kind, Type: cut(typ), ID: cut(id), Source: cut(source)})
}

func (r *run) save() error {
	if !r.dirty || r.inst == nil {
		return nil
	}
	b, err := EncodeInstance(r.inst)
	if err != nil {
		return processors.Permanent(fmt.Errorf("process %s instance %q: %w (variables must hold event values or CEL results)", r.process, r.cid, err))
	}
	if len(b) > MaxValueBytes {
		return processors.Permanent(fmt.Errorf("process %s instance %q would be %d bytes, more than %d: keep fewer or smaller variables and compensations", r.process, r.cid, len(b), MaxValueBytes))
	}
	k := InstanceKey(r.cid, r.process)
	if err := r.tx.Set(k, b); err != nil {
		return processors.Transient(fmt.Errorf("process %s: writing instance %q: %w", r.process, r.cid, err))
	}
	if r.inst.Finished() {
		keep := r.e.latest(r.process).keepFinished
		if r.def != nil {
			keep = r.def.keepFinished
		}
		if err := r.tx.Set(expiryKey(r.inst.Updated.Add(keep), k), nil); err != nil {
			return processors.Transient(fmt.Errorf("process %s: %w", r.process, err))
		}
	}
	return nil
}

// commandID is a deterministic UUID (version 8, RFC 9562) from the SHA-256
// of the process, the correlation id, the cause (event id, or the input
// record when the event has none, or the timer ID) and the emit index.
func commandID(process, cid, basis string, idx int) string {
	return uuid8("ordo.process.v1", process, cid, basis, strconv.Itoa(idx))
}

func uuid8(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	b := h.Sum(nil)[:16]
	b[6] = b[6]&0x0f | 0x80 // version 8
	b[8] = b[8]&0x3f | 0x80 // RFC 9562 variant
	x := hex.EncodeToString(b)
	return x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
}

// sourceOf names ev's input record as topic/partition/offset: the header
// ordo-origin (producer.HeaderOrigin) that the forwarding stage sets, else
// the record the engine consumed.
func sourceOf(ev *processors.Event) string {
	for _, name := range []string{"ordo-origin"} {
		for _, h := range ev.Headers {
			if h.Key == name && looksLikeRecord(string(h.Value)) {
				return string(h.Value)
			}
		}
	}
	return ev.Topic + "/" + strconv.Itoa(int(ev.Partition)) + "/" + strconv.FormatInt(ev.Offset, 10)
}

func looksLikeRecord(s string) bool {
	i := strings.LastIndexByte(s, '/')
	if i <= 0 {
		return false
	}
	j := strings.LastIndexByte(s[:i], '/')
	if j <= 0 {
		return false
	}
	_, e1 := strconv.ParseInt(s[j+1:i], 10, 32)
	_, e2 := strconv.ParseInt(s[i+1:], 10, 64)
	return e1 == nil && e2 == nil
}
