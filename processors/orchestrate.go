package processors

// orchestrate: declarative routes from event types to commands.
//
//	- type: orchestrate
//	  config:
//	    source: ordo                     # envelope.source of emitted commands (default "ordo")
//	    routes:
//	      - on: com.acme.checkout.OrderPlaced       # required: event type (full Avro name)
//	        when: event.total > 0.0                  # optional CEL bool
//	        emit:                                    # required, at least one
//	          - type: com.acme.ordo.commands.ReserveInventory   # required: command type
//	            topic: commands.reserve-inventory.v1             # required
//	            fields:                                          # command field -> CEL expr
//	              order_id: event.order_id
//	              items: 'event.items.map(i, {"sku": i.sku, "qty": i.qty})'
//	              priority: 'has(attrs.customer) ? attrs.customer.tier : "standard"'
//
// Quote expressions that contain `: `, `{`, `#` or start with a quote: in
// YAML `items: event.items.map(i, {"sku": i.sku})` is not a plain string.
// String literals need CEL quotes inside the YAML value: '"standard"'.
//
// Matching: routes are checked in order and every route whose `on` equals the
// event type and whose `when` holds emits its commands (routes are not
// exclusive; there is no "first match wins"). Commands come out in route
// order, then emit order. An event type no route mentions produces no
// commands; that is not an error.
//
// Each command is:
//
//	Topic, Type  from the emit entry
//	Key          the event's envelope.correlation_id (the Kafka key of the
//	             input record when that is empty), so a process's commands
//	             stay ordered on one partition
//	Record       the mapped fields plus the "envelope" record, laid out in
//	             the command schema's field order (a schemas.Record: one
//	             slice per command, no map; unmapped fields take their
//	             default). Without the schema's fields (Deps.Fields nil,
//	             or no envelope field) the command is a Value map instead;
//	             Command.Natural reads either. The envelope:
//	  id             deterministic: a UUID (version 8, RFC 9562) made from the
//	                 SHA-256 of the processor name, the input envelope id (or
//	                 topic/partition/offset when the id is empty), the route
//	                 index and the emit index. Re-running the chain after an
//	                 abort yields the same ids, so consumers can deduplicate.
//	                 Reordering routes or emits changes future ids.
//	  type           the command type
//	  source         `source`
//	  time           the input record's Kafka timestamp (envelope.time of the
//	                 event when the record has none): deterministic on re-runs
//	  correlation_id the event's (or the Kafka key, as for Key)
//	  causation_id   the event's envelope id (null when empty)
//
// Field values: a CEL result is converted to natural Go (int -> int64,
// double -> float64, string, bool, bytes -> []byte, timestamp -> time.Time,
// list -> []any, map -> map[string]any, null -> nil). A field whose
// expression is a plain path into the event or attrs (`event.total`,
// `event.items`, `attrs.customer.tier`, `event["order_id"]`) copies the
// original value instead, so decimals stay exact *big.Rat and ints stay int32;
// a whole record or list that an expression returns unchanged is copied from
// the original as well. Decimals that go through CEL arithmetic or are
// rebuilt inside a CEL map/list literal become float64 (see cel.go).
//
// Build-time checks: every expression compiles and `when` is bool; with
// Deps.KnownType, `on` and emit types must be known; with Deps.Fields, every
// mapped field must exist in the command schema (and "envelope" may not be
// mapped, orchestrate sets it); with Deps.Required, every field without a
// default must be mapped. An expression that fails at run time (e.g. no such
// key) is a permanent error: the event is dead-lettered.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"gopkg.in/yaml.v3"

	"github.com/ordo-dev/ordo/internal/arena"
	"github.com/ordo-dev/ordo/internal/box"
	"github.com/ordo-dev/ordo/schemas"
)

type orchestrateConfig struct {
	Source string                 `yaml:"source"`
	Routes []orchestrateRouteConf `yaml:"routes"`
}

type orchestrateRouteConf struct {
	On   string                `yaml:"on"`
	When string                `yaml:"when"`
	Emit []orchestrateEmitConf `yaml:"emit"`
}

type orchestrateEmitConf struct {
	Type   string            `yaml:"type"`
	Topic  string            `yaml:"topic"`
	Fields map[string]string `yaml:"fields"`
}

type orchRoute struct {
	on    string
	when  *celExpr
	emits []orchEmit
}

type orchEmit struct {
	typ, topic string
	fields     []orchField // in config order

	// The command's slot layout, when the schema's fields are known and
	// include the envelope (nil: the command is built as a map): the
	// schema's field names in order, and the envelope's slot.
	names   []string
	envSlot int
	typAny  any // typ, boxed once
}

type orchField struct {
	name string
	expr *celExpr
	slot int // index in orchEmit.names (slot layout only)
}

// envelopeNames is the slot layout of a command's envelope, in the order of
// com.acme.common.Envelope (the encoder matches names, so another order
// still encodes, only less directly).
var envelopeNames = []string{"id", "type", "source", "time", "correlation_id", "causation_id"}

type orchestrator struct {
	name   string
	source string
	routes []orchRoute
	byType map[string][]int // event type -> route indexes, in order
	// emitsPerType is the most commands one event of a type can emit, and
	// slotsPerType the most value slots (fields and envelopes) they use.
	emitsPerType map[string]int
	slotsPerType map[string]int
	sourceAny    any // source, boxed once
	// blocks are where events take their arenas and value slots from.
	blocks arena.Blocks[emitArena]
}

func newOrchestrate(spec Spec, deps Deps) (Processor, error) {
	var cfg orchestrateConfig
	if err := spec.Decode(&cfg); err != nil {
		return nil, err
	}
	o := &orchestrator{name: specName(spec), source: cfg.Source, byType: map[string][]int{}, emitsPerType: map[string]int{}, slotsPerType: map[string]int{}}
	if o.source == "" {
		o.source = "ordo"
	}
	o.sourceAny = o.source
	if len(cfg.Routes) == 0 {
		return nil, pathErr(spec, "no routes", "add `routes:` with at least one `on:`/`emit:` entry", "routes")
	}
	for ri, rc := range cfg.Routes {
		if rc.On == "" {
			return nil, pathErr(spec, "route has no `on` event type", "set `on:` to the event's full Avro name, e.g. com.acme.checkout.OrderPlaced", "routes", ri)
		}
		if deps.KnownType != nil && !deps.KnownType(rc.On) {
			return nil, pathErr(spec, fmt.Sprintf("unknown event type %q", rc.On), "use the full Avro name (namespace.Name) of an event type, and give ordo its schema: an .avsc file in schemas.files (or a subject in schemas.subjects)", "routes", ri, "on")
		}
		r := orchRoute{on: rc.On}
		if rc.When != "" {
			var err error
			if r.when, err = compileCEL(spec, nodeAt(spec, "routes", ri, "when"), keyPath(spec, "routes", ri, "when"), rc.When, boolResult); err != nil {
				return nil, err
			}
		}
		if len(rc.Emit) == 0 {
			return nil, pathErr(spec, fmt.Sprintf("route for %s has no emit entries", rc.On), "add `emit:` with at least one command (type, topic, fields)", "routes", ri)
		}
		for ei, ec := range rc.Emit {
			e, err := buildEmit(spec, deps, []any{"routes", ri, "emit", ei}, ec)
			if err != nil {
				return nil, err
			}
			r.emits = append(r.emits, e)
		}
		o.routes = append(o.routes, r)
		o.byType[rc.On] = append(o.byType[rc.On], ri)
		o.emitsPerType[rc.On] += len(r.emits)
		for _, e := range r.emits {
			o.slotsPerType[rc.On] += len(e.names) + len(envelopeNames)
		}
	}
	return o, nil
}

// buildEmit compiles the emit entry at path `at` of spec's config (the
// process engine compiles its emit entries with it too, see celapi.go).
func buildEmit(spec Spec, deps Deps, at []any, ec orchestrateEmitConf) (orchEmit, error) {
	sub := func(p ...any) []any { return append(slices.Clone(at), p...) }
	if ec.Type == "" {
		return orchEmit{}, pathErr(spec, "emit has no command `type`", "set `type:` to the command's full Avro name, e.g. com.acme.ordo.commands.ReserveInventory", at...)
	}
	if ec.Topic == "" {
		return orchEmit{}, pathErr(spec, fmt.Sprintf("emit of %s has no `topic`", ec.Type), "set `topic:` to the command topic, e.g. commands.reserve-inventory.v1", at...)
	}
	if deps.KnownType != nil && !deps.KnownType(ec.Type) {
		return orchEmit{}, pathErr(spec, fmt.Sprintf("unknown command type %q", ec.Type), "use the full Avro name (namespace.Name) of a command type, and give ordo its schema: an .avsc file in schemas.files (or a subject in schemas.subjects)", sub("type")...)
	}
	var schemaFields []string
	if deps.Fields != nil {
		fs, ok := deps.Fields(ec.Type)
		if !ok {
			return orchEmit{}, pathErr(spec, fmt.Sprintf("no schema fields known for command type %q", ec.Type), "add the command's .avsc file to schemas.files", sub("type")...)
		}
		schemaFields = fs
	}
	e := orchEmit{typ: ec.Type, topic: ec.Topic, typAny: ec.Type, envSlot: slices.Index(schemaFields, "envelope")}
	if e.envSlot >= 0 {
		e.names = slices.Clone(schemaFields)
	}
	// Compile in YAML order so errors and evaluation order are stable.
	fieldsNode := nodeAt(spec, sub("fields")...)
	var names []string
	if fieldsNode.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(fieldsNode.Content); i += 2 {
			names = append(names, fieldsNode.Content[i].Value)
		}
	}
	if len(names) != len(ec.Fields) { // defensive: fall back to sorted order
		names = names[:0]
		for n := range ec.Fields {
			names = append(names, n)
		}
		slices.Sort(names)
	}
	for _, name := range names {
		src := ec.Fields[name]
		if name == "envelope" {
			return orchEmit{}, cfgErr(spec, keyNodeAt(spec, sub("fields", name)...), keyPath(spec, sub("fields", name)...),
				"the envelope is set by ordo and cannot be mapped", "remove the `envelope:` mapping; ordo fills in the envelope (id, type, source, time, correlation_id, causation_id)")
		}
		if schemaFields != nil && !slices.Contains(schemaFields, name) {
			return orchEmit{}, cfgErr(spec, keyNodeAt(spec, sub("fields", name)...), keyPath(spec, sub("fields", name)...),
				fmt.Sprintf("%s has no field %q", ec.Type, name), "map only fields of the command schema: "+strings.Join(withoutEnvelope(schemaFields), ", "))
		}
		x, err := compileCEL(spec, nodeAt(spec, sub("fields", name)...), keyPath(spec, sub("fields", name)...), src, anyResult)
		if err != nil {
			return orchEmit{}, err
		}
		e.fields = append(e.fields, orchField{name: name, expr: x, slot: slices.Index(e.names, name)})
	}
	if deps.Required != nil {
		req, ok := deps.Required(ec.Type)
		if ok {
			var missing []string
			for _, f := range req {
				if f == "envelope" {
					continue
				}
				if _, mapped := ec.Fields[f]; !mapped {
					missing = append(missing, f)
				}
			}
			if len(missing) > 0 {
				return orchEmit{}, pathErr(spec, fmt.Sprintf("%s requires field(s) %s, which have no default, but they are not mapped", ec.Type, strings.Join(missing, ", ")),
					"add them under `fields:`, e.g. "+missing[0]+": event."+missing[0], at...)
			}
		}
	}
	return e, nil
}

func withoutEnvelope(fs []string) []string {
	out := make([]string, 0, len(fs))
	for _, f := range fs {
		if f != "envelope" {
			out = append(out, f)
		}
	}
	return out
}

// ReadsRecords: the event is read through CEL only (see RecordReader).
func (o *orchestrator) ReadsRecords() bool { return true }

func (o *orchestrator) Process(_ context.Context, ev *Event) ([]Command, error) {
	idx := o.byType[ev.Type]
	if len(idx) == 0 {
		return nil, nil
	}
	a := newVars(ev)
	var out []Command
	// What every command of the event shares is built (and boxed) once:
	// the key (never modified downstream), the correlation and causation
	// ids and the time. Commands laid out in slots share two slabs: their
	// values and their records (capacities are the type's maximum, so
	// pointers into them stay valid).
	corr := ev.Envelope.CorrelationID
	if corr == "" {
		corr = string(ev.Key)
	}
	var key []byte
	var corrAny, causation, when any
	var ar *emitArena // the event's commands, records, boxed time and ids; set with key, corrAny, causation and when
	var slots []any
	var recs []schemas.Record
	for _, ri := range idx {
		r := &o.routes[ri]
		if r.when != nil {
			ok, err := r.when.evalBool(a)
			if err != nil {
				return nil, Permanent(fmt.Errorf("route %d (%s) when: %v", ri, r.on, err))
			}
			if !ok {
				continue
			}
		}
		for ei := range r.emits {
			e := &r.emits[ei]
			if ar == nil {
				// A nil input key stays a non-nil empty key, as []byte("")
				// gives: Kafka keeps null and empty keys apart.
				if ev.Key != nil && string(ev.Key) == corr {
					key = ev.Key // usually: producers key by correlation id
				} else {
					key = []byte(corr)
				}
				// The decoded envelope already holds the ids boxed.
				corrAny = boxedString(envelopeField(ev, "correlation_id"), corr)
				if ev.Envelope.ID != "" {
					causation = boxedString(envelopeField(ev, "id"), ev.Envelope.ID)
				}
				ar, slots = o.arena(ev.Type)
				ar.when = ev.Timestamp
				if ar.when.IsZero() {
					ar.when = ev.Envelope.Time
				}
				when = box.In(&ar.when)
				// Up to arenaCmds commands (and their records) live in
				// the arena; more take one allocation each slice.
				if n := o.emitsPerType[ev.Type]; n <= arenaCmds {
					out = ar.out[:0:n]
				} else {
					out = make([]Command, 0, n)
				}
			}
			// The field values go into a map when the schema's fields are
			// unknown, else into the emit's slots.
			var v map[string]any
			var vals, env []any
			if e.names == nil {
				v = make(map[string]any, len(e.fields)+1)
			} else {
				if recs == nil {
					if n := 2 * o.emitsPerType[ev.Type]; n <= len(ar.recs) {
						recs = ar.recs[:0:n]
					} else {
						recs = make([]schemas.Record, 0, n)
					}
				}
				n := len(slots)
				slots = slots[:n+len(e.names)+len(envelopeNames)]
				vals = slots[n : n+len(e.names) : n+len(e.names)]
				env = slots[n+len(e.names) : len(slots) : len(slots)]
				for i := range vals {
					vals[i] = schemas.Unset
				}
			}
			for _, f := range e.fields {
				// In slots the encoder takes records: map literals
				// (`{"sku": i.sku}`) stay records (no map per value).
				x, err := f.expr.evalOut(a, v == nil)
				if err != nil {
					return nil, Permanent(fmt.Errorf("route %d (%s) emit %d (%s) field %s: %v", ri, r.on, ei, e.typ, f.name, err))
				}
				if v != nil {
					v[f.name] = x
				} else {
					vals[f.slot] = x
				}
			}
			if v != nil {
				v["envelope"] = map[string]any{
					"id":             ar.commandID(o, ev, ri, ei),
					"type":           e.typAny,
					"source":         o.sourceAny,
					"time":           when,
					"correlation_id": corrAny,
					"causation_id":   causation,
				}
				out = append(out, Command{Topic: e.topic, Type: e.typ, Key: key, Value: v})
				continue
			}
			env[0], env[1], env[2], env[3], env[4], env[5] = ar.commandID(o, ev, ri, ei), e.typAny, o.sourceAny, when, corrAny, causation
			recs = append(recs, schemas.Record{Names: envelopeNames, Values: env})
			vals[e.envSlot] = &recs[len(recs)-1]
			recs = append(recs, schemas.Record{Names: e.names, Values: vals})
			out = append(out, Command{Topic: e.topic, Type: e.typ, Key: key, Record: &recs[len(recs)-1]})
		}
	}
	return out, nil
}

// arena returns a fresh arena and room for the type's most value slots
// (length 0; pointers into them stay valid), both carved from blocks the
// events that take them in turn share (internal/arena: a fraction of an
// allocation per event instead of two).
func (o *orchestrator) arena(typ string) (*emitArena, []any) {
	ar, slots := o.blocks.Take(o.slotsPerType[typ])
	return ar, slots[:0]
}

// emitArena holds what an event's commands need, in one allocation: the
// boxed envelope time and first arenaIDs command ids (bytes, string
// headers), and, for an event type emitting at most arenaCmds commands,
// the command slice and their records (a command's and its envelope's).
// The boxed parts (when, ids, idb) are not written after they are boxed
// (internal/box); the commands and records are the caller's, like any
// returned slice. The arena lives as long as anything points into it.
type emitArena struct {
	when time.Time
	n    int
	ids  [arenaIDs]string
	idb  [arenaIDs][36]byte
	out  [arenaCmds]Command
	recs [2 * arenaCmds]schemas.Record
}

// arenaIDs and arenaCmds are 2: the demo routes emit at most two commands
// per event type; a larger arena costs its bytes on every event.
const (
	arenaIDs  = 2
	arenaCmds = 2
)

// commandID returns the command's id boxed, from the arena while it has room.
func (a *emitArena) commandID(o *orchestrator, ev *Event, ri, ei int) any {
	if a.n == arenaIDs {
		return o.commandID(ev, ri, ei)
	}
	k := a.n
	a.n++
	o.putCommandID(&a.idb[k], ev, ri, ei)
	a.ids[k] = unsafe.String(&a.idb[k][0], len(a.idb[k]))
	return box.In(&a.ids[k])
}

// boxedString returns x when it is the string s (no allocation), else s
// boxed.
func boxedString(x any, s string) any {
	if v, ok := x.(string); ok && v == s {
		return x
	}
	return s
}

// envelopeField returns field k of the event's decoded "envelope" record,
// boxed as the decoder left it, in either form of the value; nil when
// there is none.
func envelopeField(ev *Event, k string) any {
	var env any
	if ev.Record != nil && ev.Value == nil {
		env, _ = ev.Record.Get("envelope")
	} else {
		env = ev.Value["envelope"]
	}
	switch e := env.(type) {
	case *schemas.Record:
		x, _ := e.Get(k)
		return x
	case map[string]any:
		return e[k]
	}
	return nil
}

// commandID derives a command's envelope id (see the file comment).
func (o *orchestrator) commandID(ev *Event, ri, ei int) string {
	var s [36]byte
	o.putCommandID(&s, ev, ri, ei)
	return string(s[:])
}

// putCommandID writes a command's envelope id into s.
func (o *orchestrator) putCommandID(s *[36]byte, ev *Event, ri, ei int) {
	// One stack buffer and one Sum256: no hasher or string allocations.
	var in [256]byte
	buf := append(in[:0], "ordo.orchestrate.v1\x00"...)
	buf = append(buf, o.name...)
	buf = append(buf, 0)
	if ev.Envelope.ID != "" {
		buf = append(buf, "id\x00"...)
		buf = append(buf, ev.Envelope.ID...)
	} else {
		buf = append(buf, "kafka\x00"...)
		buf = append(buf, ev.Topic...)
		buf = append(buf, 0)
		buf = strconv.AppendInt(buf, int64(ev.Partition), 10)
		buf = append(buf, 0)
		buf = strconv.AppendInt(buf, ev.Offset, 10)
	}
	buf = append(buf, 0)
	buf = strconv.AppendInt(buf, int64(ri), 10)
	buf = append(buf, 0)
	buf = strconv.AppendInt(buf, int64(ei), 10)
	sum := sha256.Sum256(buf)
	b := sum[:16]
	b[6] = b[6]&0x0f | 0x80 // version 8
	b[8] = b[8]&0x3f | 0x80 // RFC 9562 variant
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:36], b[10:16])
}
