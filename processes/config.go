package processes

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/ordo-dev/ordo/internal/config/yamlcheck"
	"github.com/ordo-dev/ordo/processors"
)

// The `processes:` block (docs/processes.md is the reference):
//
//	processes:
//	  - name: order-fulfilment
//	    version: 1
//	    on_unknown: buffer          # buffer | ignore | dead_letter
//	    early_events_ttl: 1h
//	    on_finished: ignore         # ignore | dead_letter
//	    keep_finished: 24h
//	    timers: {payment_timeout: 20s}
//	    start: {on: ..., when: ..., set: {...}, emit: [...], start_timers: [...], goto: ...}
//	    states:
//	      awaiting:
//	        join: [{on: ..., set: ..., compensation: [...]}, ...]
//	        then: {emit: [...], goto: shipped}
//	        transitions: [{on: ... | timer: ..., when: ..., emit: [...], compensate: true, goto: ...}]
//	      shipped: {terminal: completed}

type defConf struct {
	Name           string               `yaml:"name" json:"name"`
	Version        int                  `yaml:"version" json:"version"`
	OnUnknown      string               `yaml:"on_unknown" json:"-"`
	EarlyEventsTTL duration             `yaml:"early_events_ttl" json:"-"`
	OnFinished     string               `yaml:"on_finished" json:"-"`
	KeepFinished   duration             `yaml:"keep_finished" json:"-"`
	Timers         map[string]duration  `yaml:"timers" json:"timers"`
	Start          *stepConf            `yaml:"start" json:"start"`
	States         map[string]stateConf `yaml:"states" json:"states"`
}

type stateConf struct {
	Terminal    string     `yaml:"terminal" json:"terminal,omitempty"`
	Join        []stepConf `yaml:"join" json:"join,omitempty"`
	Then        *stepConf  `yaml:"then" json:"then,omitempty"`
	Transitions []stepConf `yaml:"transitions" json:"transitions,omitempty"`
}

// stepConf is every kind of step: start, join leg, then, transition. What
// each kind may have is checked after decoding, with messages that say why.
type stepConf struct {
	On           string                  `yaml:"on" json:"on,omitempty"`
	Timer        string                  `yaml:"timer" json:"timer,omitempty"`
	Name         string                  `yaml:"name" json:"name,omitempty"`
	When         string                  `yaml:"when" json:"when,omitempty"`
	Set          map[string]string       `yaml:"set" json:"set,omitempty"`
	Emit         []processors.EmitConfig `yaml:"emit" json:"emit,omitempty"`
	Compensation []processors.EmitConfig `yaml:"compensation" json:"compensation,omitempty"`
	Compensate   bool                    `yaml:"compensate" json:"compensate,omitempty"`
	StartTimers  []string                `yaml:"start_timers" json:"start_timers,omitempty"`
	CancelTimers []string                `yaml:"cancel_timers" json:"cancel_timers,omitempty"`
	Goto         string                  `yaml:"goto" json:"goto,omitempty"`
}

// duration is a time.Duration written as "20s", "15m".
type duration time.Duration

func (d *duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if n.Kind != yaml.ScalarNode || err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %q is not a duration (write e.g. 20s, 15m, 1h)", n.Line, n.Value)}}
	}
	*d = duration(v)
	return nil
}

// YAMLExpect describes a duration for config errors.
func (duration) YAMLExpect() (what, example string) { return "a duration", "15m" }

func (d duration) String() string { return time.Duration(d).String() }

// Defaults of a definition's policy keys.
const (
	DefaultEarlyEventsTTL = time.Hour
	DefaultKeepFinished   = 24 * time.Hour
	DefaultDedupeWindow   = 24 * time.Hour
)

// Limits that keep an instance value far below a Kafka record's 1 MiB
// (notes pitfall 9): checked at Build where the definition decides them,
// and on every write for what the events decide.
const (
	MaxVars          = 64        // distinct `set:` variables per definition
	MaxJoinLegs      = 16        // legs of one join
	MaxTimers        = 16        // timers per definition
	MaxHistory       = 64        // history entries kept per instance
	MaxCompensations = 64        // compensations recorded at once
	MaxBuffered      = 64        // early events buffered per instance
	MaxValueBytes    = 512 << 10 // encoded instance or buffered event
	maxHistoryString = 200       // bytes kept of a history entry's strings
	maxNameLen       = 100       // process, state, timer, variable names
	maxVersion       = 1_000_000 // a sanity bound for `version:`
	maxDuration      = 10 * 8760 * time.Hour
)

var (
	nameRe  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
	identRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// builder collects config errors.
type builder struct {
	file string
	deps processors.Deps
	root *yaml.Node // the `processes:` value (a sequence)
	errs []error
}

func (b *builder) errAt(n *yaml.Node, key, msg, fix string) {
	line := 0
	if n != nil {
		line = n.Line
	}
	if line == 0 && b.root != nil {
		line = b.root.Line
	}
	b.errs = append(b.errs, &processors.ConfigError{File: b.file, Line: line, Key: key, Msg: msg, Fix: fix})
}

func (b *builder) add(err error) {
	if err != nil {
		b.errs = append(b.errs, err)
	}
}

// path renders a key path: processes[0].states.awaiting.join[1].on.
func path(parts ...any) string {
	var sb strings.Builder
	sb.WriteString("processes")
	for _, p := range parts {
		switch x := p.(type) {
		case int:
			sb.WriteString("[" + strconv.Itoa(x) + "]")
		default:
			sb.WriteString("." + fmt.Sprint(x))
		}
	}
	return sb.String()
}

// node returns the value node at parts below root (the deepest existing
// ancestor when a key is missing, so errors still get a useful line).
func (b *builder) node(parts ...any) *yaml.Node {
	n := b.root
	for _, p := range parts {
		var next *yaml.Node
		switch x := p.(type) {
		case string:
			if n.Kind == yaml.MappingNode {
				for i := 0; i+1 < len(n.Content); i += 2 {
					if n.Content[i].Value == x {
						next = n.Content[i+1]
					}
				}
			}
		case int:
			if n.Kind == yaml.SequenceNode && x >= 0 && x < len(n.Content) {
				next = n.Content[x]
			}
		}
		if next == nil {
			return n
		}
		n = next
	}
	return n
}

// keyNode is node for the key node of the last part (the line where the
// user wrote the key).
func (b *builder) keyNode(parts ...any) *yaml.Node {
	if len(parts) == 0 {
		return b.root
	}
	parent := b.node(parts[:len(parts)-1]...)
	if k, ok := parts[len(parts)-1].(string); ok && parent.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(parent.Content); i += 2 {
			if parent.Content[i].Value == k {
				return parent.Content[i]
			}
		}
	}
	return b.node(parts...)
}

// mapKeys lists the keys of the mapping at parts in YAML order.
func (b *builder) mapKeys(parts ...any) []string {
	n := b.node(parts...)
	var out []string
	if n.Kind == yaml.MappingNode && n != b.node(parts[:len(parts)-1]...) {
		for i := 0; i+1 < len(n.Content); i += 2 {
			out = append(out, n.Content[i].Value)
		}
	}
	return out
}

func (b *builder) loc(parts ...any) processors.Location {
	return processors.Location{File: b.file, Node: b.node(parts...), Key: path(parts...)}
}

// oneOf checks an enumerated value with did-you-mean.
func (b *builder) oneOf(v string, valid []string, parts ...any) bool {
	if slices.Contains(valid, v) {
		return true
	}
	fix := "use one of: " + strings.Join(valid, ", ")
	if s := yamlcheck.Suggest(v, valid); s != "" {
		fix = fmt.Sprintf("did you mean %s? Use one of: %s", s, strings.Join(valid, ", "))
	}
	b.errAt(b.node(parts...), path(parts...), fmt.Sprintf("%q is not one of %s", v, strings.Join(valid, ", ")), fix)
	return false
}

// Build decodes and checks the `processes:` block (node Kind 0: there is
// none, the engine has no processes and only deduplicates). file names the
// config for errors; deps checks event and command types and field
// mappings as for orchestrate. Every problem is reported, each a
// *processors.ConfigError with file:line, the full key and a fix.
//
// opts set what lies outside the block (DedupeWindow, Source); without them
// the defaults hold.
func Build(node *yaml.Node, file string, deps processors.Deps, opts ...Opt) (*Engine, error) {
	e := &Engine{
		defs:   map[string][]*definition{},
		byType: map[string][]string{},
	}
	for _, o := range opts {
		if o != nil {
			o(e)
		}
	}
	if e.window <= 0 {
		e.window = DefaultDedupeWindow
	}
	if e.source == "" {
		e.source = "ordo"
	}
	if node == nil || node.Kind == 0 {
		return e, nil
	}
	root := node
	if root.Kind == yaml.DocumentNode && len(root.Content) > 0 {
		root = root.Content[0]
	}
	if root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null" {
		return e, nil
	}
	b := &builder{file: file, deps: deps, root: root}
	if root.Kind != yaml.SequenceNode {
		b.errAt(root, "processes", "expected a list of process definitions",
			"write one `- name: ...` entry per process (and per version), see docs/processes.md")
		return nil, errors.Join(b.errs...)
	}
	confs := make([]defConf, len(root.Content))
	for i, n := range root.Content {
		// Defaults before decoding: keys the file leaves out keep them.
		confs[i] = defConf{OnUnknown: "buffer", OnFinished: "ignore",
			EarlyEventsTTL: duration(DefaultEarlyEventsTTL), KeepFinished: duration(DefaultKeepFinished)}
		for _, is := range yamlcheck.Decode(n, &confs[i], path(i)) {
			line := is.Line
			if line == 0 {
				line = n.Line
			}
			b.errs = append(b.errs, &processors.ConfigError{File: file, Line: line, Key: is.Key, Msg: is.Msg, Fix: is.Fix})
		}
	}
	if len(b.errs) > 0 {
		return nil, errors.Join(b.errs...)
	}
	seen := map[string]int{} // name@version -> index
	for i := range confs {
		d := b.definition(i, &confs[i])
		if d == nil {
			continue
		}
		id := d.name + "@" + strconv.Itoa(d.version)
		if j, dup := seen[id]; dup {
			b.errAt(b.node(i, "version"), path(i, "version"),
				fmt.Sprintf("process %s version %d is defined twice (first at processes[%d])", d.name, d.version, j),
				"give the newer definition the next version number; running instances keep the version they started with")
			continue
		}
		seen[id] = i
		e.defs[d.name] = append(e.defs[d.name], d)
		if len(e.defs[d.name]) == 1 {
			e.names = append(e.names, d.name)
		}
	}
	if len(b.errs) > 0 {
		return nil, errors.Join(b.errs...)
	}
	for _, name := range e.names {
		ds := e.defs[name]
		sort.Slice(ds, func(i, j int) bool { return ds[i].version < ds[j].version })
		types := map[string]bool{}
		for _, d := range ds {
			for t := range d.types {
				types[t] = true
			}
		}
		for t := range types {
			e.byType[t] = append(e.byType[t], name)
		}
	}
	return e, nil
}

// definition checks and compiles processes[i]; nil when it has errors (they
// are recorded).
func (b *builder) definition(i int, c *defConf) *definition {
	before := len(b.errs)
	d := &definition{
		name: c.Name, version: c.Version, onUnknown: c.OnUnknown, onFinished: c.OnFinished,
		earlyTTL: time.Duration(c.EarlyEventsTTL), keepFinished: time.Duration(c.KeepFinished),
		timers: map[string]time.Duration{}, states: map[string]*stateDef{}, types: map[string]bool{},
	}
	switch {
	case c.Name == "":
		b.errAt(b.node(i), path(i, "name"), "process has no name", "add `name:`, e.g. name: order-fulfilment (it names metrics and state keys)")
	case len(c.Name) > maxNameLen || !nameRe.MatchString(c.Name):
		b.errAt(b.node(i, "name"), path(i, "name"), fmt.Sprintf("process name %q is not a plain name", c.Name),
			"use letters, digits, '_', '.', '-' (no '/' or spaces), at most 100 characters, e.g. order-fulfilment")
	}
	if c.Version < 1 || c.Version > maxVersion {
		msg := fmt.Sprintf("version %d is not a positive number", c.Version)
		if b.node(i, "version") == b.node(i) {
			msg = "process has no version"
		}
		b.errAt(b.node(i, "version"), path(i, "version"), msg, "add `version: 1`; change a definition by adding it again with the next version")
	}
	b.oneOf(c.OnUnknown, []string{"buffer", "ignore", "dead_letter"}, i, "on_unknown")
	b.oneOf(c.OnFinished, []string{"ignore", "dead_letter"}, i, "on_finished")
	if d.earlyTTL <= 0 || d.earlyTTL > maxDuration {
		b.errAt(b.node(i, "early_events_ttl"), path(i, "early_events_ttl"), fmt.Sprintf("early_events_ttl %s is not a positive duration up to 10 years", d.earlyTTL), "write e.g. early_events_ttl: 1h")
	}
	if d.keepFinished < 0 || d.keepFinished > maxDuration {
		b.errAt(b.node(i, "keep_finished"), path(i, "keep_finished"), fmt.Sprintf("keep_finished %s is not a duration between 0s and 10 years", d.keepFinished), "write e.g. keep_finished: 24h")
	}

	// Timers.
	if len(c.Timers) > MaxTimers {
		b.errAt(b.keyNode(i, "timers"), path(i, "timers"), fmt.Sprintf("%d timers, at most %d", len(c.Timers), MaxTimers), "use fewer timers")
	}
	for _, name := range b.mapKeys(i, "timers") {
		dur := time.Duration(c.Timers[name])
		switch {
		case len(name) > maxNameLen || !identRe.MatchString(name):
			b.errAt(b.keyNode(i, "timers", name), path(i, "timers", name), fmt.Sprintf("timer name %q is not an identifier", name), "use letters, digits and '_', e.g. payment_timeout")
		case dur <= 0 || dur > maxDuration:
			b.errAt(b.node(i, "timers", name), path(i, "timers", name), fmt.Sprintf("timer %s: %s is not a positive duration up to 10 years", name, dur), "write e.g. "+name+": 15m")
		default:
			d.timers[name] = dur
		}
	}

	// States first (names), then steps (which refer to them).
	stateNames := b.mapKeys(i, "states")
	if len(stateNames) == 0 {
		b.errAt(b.node(i, "states"), path(i, "states"), "process has no states", "add `states:` with at least one state and a terminal state, e.g. done: {terminal: completed}")
	}
	terminals := 0
	for _, sn := range stateNames {
		if len(sn) > maxNameLen || !nameRe.MatchString(sn) {
			b.errAt(b.keyNode(i, "states", sn), path(i, "states", sn), fmt.Sprintf("state name %q is not a plain name", sn), "use letters, digits, '_', '.', '-', e.g. awaiting_payment")
		}
		sc := c.States[sn]
		st := &stateDef{name: sn, terminal: sc.Terminal}
		if sc.Terminal != "" {
			terminals++
			if !identRe.MatchString(sc.Terminal) || sc.Terminal == StatusRunning {
				b.errAt(b.node(i, "states", sn, "terminal"), path(i, "states", sn, "terminal"), fmt.Sprintf("terminal status %q is not a status name", sc.Terminal),
					"name the outcome with letters, digits and '_' (not \"running\"), e.g. terminal: completed or terminal: cancelled")
			}
		}
		d.states[sn] = st
	}
	if len(stateNames) > 0 && terminals == 0 {
		b.errAt(b.keyNode(i, "states"), path(i, "states"), "no terminal state: instances would never finish", "mark the end states, e.g. shipped: {terminal: completed}")
	}

	vars := map[string]bool{}
	used := map[string]bool{}    // timers started
	handled := map[string]bool{} // timers with a transition
	sb := &stepBuilder{b: b, d: d, vars: vars, started: used}

	if c.Start == nil {
		b.errAt(b.node(i), path(i, "start"), "process has no start", "add `start:` with `on:` (the event type that starts an instance) and `goto:` (its first state)")
	} else {
		d.start = sb.step(c.Start, kindStart, i, "start")
		if d.start != nil {
			d.types[d.start.on] = true
		}
	}
	for _, sn := range stateNames {
		sc := c.States[sn]
		st := d.states[sn]
		at := []any{i, "states", sn}
		sub := func(p ...any) []any { return append(slices.Clone(at), p...) }
		if st.terminal != "" {
			if len(sc.Join) > 0 || sc.Then != nil {
				b.errAt(b.keyNode(sub("join")...), path(sub("join")...), "a terminal state cannot wait for a join", "remove `join:`/`then:` from the terminal state, or make it a normal state (remove `terminal:`)")
			}
		} else if len(sc.Join) == 0 && len(sc.Transitions) == 0 {
			b.errAt(b.keyNode(at...), path(at...), fmt.Sprintf("state %s has no way out: no join and no transitions", sn),
				"add `transitions:` (or a `join:`), or mark it `terminal: <status>` if instances end here")
		}
		if len(sc.Join) > 0 {
			if len(sc.Join) < 2 {
				b.errAt(b.node(sub("join")...), path(sub("join")...), "a join needs at least two legs", "use a transition for a single event")
			}
			if len(sc.Join) > MaxJoinLegs {
				b.errAt(b.node(sub("join")...), path(sub("join")...), fmt.Sprintf("%d join legs, at most %d", len(sc.Join), MaxJoinLegs), "split the join over several states")
			}
			names := map[string]bool{}
			for li := range sc.Join {
				leg := sb.step(&sc.Join[li], kindLeg, sub("join", li)...)
				if leg == nil {
					continue
				}
				if names[leg.leg] {
					b.errAt(b.node(sub("join", li)...), path(sub("join", li)...), fmt.Sprintf("join leg %q twice", leg.leg), "give each leg of the same event type its own `name:`")
				}
				names[leg.leg] = true
				st.join = append(st.join, leg)
				d.types[leg.on] = true
			}
			if sc.Then == nil {
				b.errAt(b.keyNode(sub("join")...), path(sub("then")...), "join without `then`", "add `then:` with `goto:` (and `emit:`) for when every leg has arrived")
			}
		}
		if sc.Then != nil {
			if len(sc.Join) == 0 {
				b.errAt(b.keyNode(sub("then")...), path(sub("then")...), "`then` without a join", "`then:` runs when every leg of `join:` has arrived; use `transitions:` for single events")
			} else {
				st.then = sb.step(sc.Then, kindThen, sub("then")...)
			}
		}
		for ti := range sc.Transitions {
			kind := kindTransition
			if st.terminal != "" {
				kind = kindLate
			}
			tr := sb.step(&sc.Transitions[ti], kind, sub("transitions", ti)...)
			if tr == nil {
				continue
			}
			// A transition after an unconditional one of the same
			// trigger never runs: the first match wins.
			for _, prev := range st.transitions {
				if prev.when == nil && prev.on == tr.on && prev.timer == tr.timer {
					b.errAt(b.node(sub("transitions", ti)...), path(sub("transitions", ti)...),
						fmt.Sprintf("transition never runs: an earlier transition of state %s takes every %s", sn, tr.trigger()),
						"transitions are tried in order and the first whose `when` holds wins: give the earlier one a `when:`, or merge them")
					break
				}
			}
			st.transitions = append(st.transitions, tr)
			if tr.on != "" {
				d.types[tr.on] = true
			} else {
				handled[tr.timer] = true
			}
		}
	}
	if len(vars) > MaxVars {
		b.errAt(b.node(i), path(i), fmt.Sprintf("%d variables are set, at most %d", len(vars), MaxVars), "keep fewer variables (they are stored in every instance)")
	}
	for _, name := range b.mapKeys(i, "timers") {
		if _, ok := d.timers[name]; !ok {
			continue
		}
		if !used[name] {
			b.errAt(b.keyNode(i, "timers", name), path(i, "timers", name), fmt.Sprintf("timer %s is never started", name), "add `start_timers: ["+name+"]` to the step that starts the deadline, or remove the timer")
		} else if !handled[name] {
			b.errAt(b.keyNode(i, "timers", name), path(i, "timers", name), fmt.Sprintf("timer %s has no transition", name), "add a transition `- timer: "+name+"` (with goto/emit) to the states it can fire in")
		}
	}
	if len(b.errs) > before {
		return nil
	}
	// Every state must be reachable from the start.
	reach := map[string]bool{}
	var walk func(string)
	walk = func(sn string) {
		st := d.states[sn]
		if st == nil || reach[sn] {
			return
		}
		reach[sn] = true
		for _, tr := range st.transitions {
			walk(tr.gotoState)
		}
		if st.then != nil {
			walk(st.then.gotoState)
		}
	}
	walk(d.start.gotoState)
	for _, sn := range stateNames {
		if !reach[sn] {
			b.errAt(b.keyNode(i, "states", sn), path(i, "states", sn), fmt.Sprintf("state %s is never entered: no goto leads to it from the start", sn), "add a `goto: "+sn+"` or remove the state")
		}
	}
	if len(b.errs) > before {
		return nil
	}
	fp, err := json.Marshal(c)
	if err != nil {
		b.add(fmt.Errorf("processes: fingerprint of %s: %w", c.Name, err))
		return nil
	}
	sum := sha256.Sum256(fp)
	d.fingerprint = hex.EncodeToString(sum[:16])
	return d
}

type stepKind int

const (
	kindStart stepKind = iota
	kindLeg
	kindThen
	kindTransition
	kindLate // a transition of a terminal state
)

type stepBuilder struct {
	b       *builder
	d       *definition
	vars    map[string]bool
	started map[string]bool
}

// step checks and compiles one step; nil when it has errors.
func (sb *stepBuilder) step(c *stepConf, kind stepKind, at ...any) *step {
	b, d := sb.b, sb.d
	before := len(b.errs)
	sub := func(p ...any) []any { return append(slices.Clone(at), p...) }
	bad := func(key, msg, fix string) { b.errAt(b.keyNode(sub(key)...), path(sub(key)...), msg, fix) }
	s := &step{key: path(at...), on: c.On, timer: c.Timer, compensate: c.Compensate, gotoState: c.Goto,
		startTimers: c.StartTimers, cancelTimers: c.CancelTimers}

	// Trigger.
	switch kind {
	case kindStart, kindLeg:
		if c.Timer != "" {
			bad("timer", "a timer cannot "+map[stepKind]string{kindStart: "start an instance", kindLeg: "be a join leg"}[kind], "use `on:` with an event type")
		}
		if c.On == "" {
			b.errAt(b.node(at...), path(sub("on")...), "no `on` event type", "set `on:` to the event's full Avro name, e.g. com.acme.checkout.OrderPlaced")
		}
	case kindThen:
		for _, k := range []struct{ key, v string }{{"on", c.On}, {"timer", c.Timer}, {"when", c.When}} {
			if k.v != "" {
				bad(k.key, "`then` runs when the join completes and has no `"+k.key+"`", "remove `"+k.key+":`; put conditions on the legs or on transitions")
			}
		}
	default:
		if (c.On == "") == (c.Timer == "") {
			b.errAt(b.node(at...), path(at...), "a transition needs exactly one of `on` (an event type) and `timer` (a timer name)", "write `on: <event type>` or `timer: <name of a timer under timers:>`")
		}
	}
	if c.On != "" {
		switch {
		case c.On == TimerType:
			bad("on", "timers fire through `timer: <name>`, not `on: "+TimerType+"`", "write `timer: <name>`")
		case b.deps.KnownType != nil && !b.deps.KnownType(c.On):
			bad("on", fmt.Sprintf("unknown event type %q", c.On), "use the full Avro name (namespace.Name) of an event type, and give ordo its schema: an .avsc file in schemas.files (or a subject in schemas.subjects)")
		}
	}
	if c.Timer != "" {
		if _, ok := d.timers[c.Timer]; !ok {
			bad("timer", fmt.Sprintf("no timer %q", c.Timer), sb.timerFix(c.Timer))
		}
	}
	if c.Name != "" && kind != kindLeg {
		bad("name", "only join legs have a `name`", "remove `name:`")
	}
	s.leg = c.Name
	if kind == kindLeg && s.leg == "" {
		s.leg = c.On[strings.LastIndexByte(c.On, '.')+1:]
	}

	// What the kind may do.
	switch kind {
	case kindStart:
		if c.Goto == "" {
			b.errAt(b.node(at...), path(sub("goto")...), "start has no `goto`", "set `goto:` to the instance's first state")
		}
		if c.Compensate {
			bad("compensate", "nothing to compensate when an instance starts", "remove `compensate:`")
		}
	case kindLeg:
		if c.Goto != "" {
			bad("goto", "a join leg cannot `goto`: the join's `then.goto` decides where the instance goes", "move the goto to `then:`")
		}
		if c.Compensate {
			bad("compensate", "a join leg cannot compensate", "compensate in a transition (e.g. on a failure event or a timer)")
		}
	case kindThen:
		if c.Goto == "" {
			b.errAt(b.node(at...), path(sub("goto")...), "`then` has no `goto`", "set `goto:` to the state after the join")
		}
	case kindLate:
		if c.Timer != "" {
			bad("timer", "a terminal state has no timers: they are cancelled when the instance finishes", "handle the timer in the states it can fire in")
		}
		if c.Goto != "" && c.Goto != at[2] {
			bad("goto", "a terminal state cannot be left", "remove `goto:`; transitions of a terminal state handle late events (e.g. undo a step that completed after the end)")
		}
		s.gotoState = ""
		for _, k := range []struct {
			key string
			set bool
		}{{"compensate", c.Compensate}, {"compensation", len(c.Compensation) > 0}, {"start_timers", len(c.StartTimers) > 0}} {
			if k.set {
				bad(k.key, "a terminal state has no `"+k.key+"`: the instance has finished", "remove `"+k.key+":`; emit what undoes a late step with `emit:`")
			}
		}
	}
	if s.gotoState != "" {
		if _, ok := d.states[s.gotoState]; !ok {
			names := make([]string, 0, len(d.states))
			for n := range d.states {
				names = append(names, n)
			}
			sort.Strings(names)
			fix := "use one of the states: " + strings.Join(names, ", ")
			if sug := yamlcheck.Suggest(s.gotoState, names); sug != "" {
				fix = fmt.Sprintf("did you mean %s? States: %s", sug, strings.Join(names, ", "))
			}
			b.errAt(b.node(sub("goto")...), path(sub("goto")...), fmt.Sprintf("no state %q", s.gotoState), fix)
		}
	}
	for _, list := range []struct {
		key   string
		names []string
	}{{"start_timers", c.StartTimers}, {"cancel_timers", c.CancelTimers}} {
		for ti, name := range list.names {
			if _, ok := d.timers[name]; !ok {
				b.errAt(b.node(sub(list.key, ti)...), path(sub(list.key, ti)...), fmt.Sprintf("no timer %q", name), sb.timerFix(name))
			}
			if list.key == "start_timers" {
				sb.started[name] = true
			}
		}
	}

	// Expressions.
	if c.When != "" {
		x, err := processors.CompileExpr(b.loc(sub("when")...), c.When, processors.BoolExpr)
		b.add(err)
		s.when = x
	}
	for _, v := range b.mapKeys(sub("set")...) {
		if len(v) > maxNameLen || !identRe.MatchString(v) {
			b.errAt(b.keyNode(sub("set", v)...), path(sub("set", v)...), fmt.Sprintf("variable name %q is not an identifier", v), "use letters, digits and '_', e.g. payment_id (read it as vars.payment_id)")
			continue
		}
		x, err := processors.CompileExpr(b.loc(sub("set", v)...), c.Set[v], processors.AnyExpr)
		b.add(err)
		sb.vars[v] = true
		s.set = append(s.set, setVar{name: v, expr: x})
	}
	sort.Slice(s.set, func(i, j int) bool { return s.set[i].name < s.set[j].name })
	for _, list := range []struct {
		key   string
		confs []processors.EmitConfig
		out   *[]*processors.Emit
	}{{"emit", c.Emit, &s.emit}, {"compensation", c.Compensation, &s.compensation}} {
		for ei, ec := range list.confs {
			em, err := processors.CompileEmit(b.loc(sub(list.key, ei)...), b.deps, ec)
			b.add(err)
			*list.out = append(*list.out, em)
		}
	}
	if len(b.errs) > before {
		return nil
	}
	return s
}

func (sb *stepBuilder) timerFix(name string) string {
	names := make([]string, 0, len(sb.d.timers))
	for n := range sb.d.timers {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(names) == 0 {
		return "declare it under the process's `timers:`, e.g. timers: {" + name + ": 15m}"
	}
	if sug := yamlcheck.Suggest(name, names); sug != "" {
		return fmt.Sprintf("did you mean %s? Timers: %s", sug, strings.Join(names, ", "))
	}
	return "declare it under the process's `timers:` (declared: " + strings.Join(names, ", ") + ")"
}
