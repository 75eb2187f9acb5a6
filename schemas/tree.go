package schemas

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/big"
	"strings"
	"sync"
)

// kind is the Avro type of a node in the parsed schema tree.
type kind uint8

const (
	kNull kind = iota
	kBoolean
	kInt
	kLong
	kFloat
	kDouble
	kBytes
	kString
	kRecord
	kEnum
	kArray
	kMap
	kFixed
	kUnion
)

var kindNames = [...]string{"null", "boolean", "int", "long", "float", "double", "bytes", "string", "record", "enum", "array", "map", "fixed", "union"}

func (k kind) String() string { return kindNames[k] }

// logical is the subset of Avro logical types that goavro maps to a
// different Go native type. Unknown logical types are ignored, like goavro.
type logical uint8

const (
	lNone logical = iota
	lDecimal
	lTimestampMillis
	lTimestampMicros
	lDate
	lTimeMillis
	lTimeMicros
)

// node is one type of a parsed schema. Named types are shared by pointer, so
// recursive schemas form cycles; walkers must memoize on *node.
type node struct {
	kind    kind
	logical logical
	name    string   // full name (named types)
	aliases []string // full names of aliases (named types)
	// branchName is the key goavro uses when this node is a union member.
	branchName string

	precision, scale int      // decimal
	decLimit         *big.Int // decimal: 10^precision (exclusive bound on |unscaled|)
	decSafeLen       int      // decimal: encodings up to this many bytes cannot exceed decLimit
	size             int      // fixed

	fields   []*field       // record
	fieldIdx map[string]int // record: field name -> index

	symbols    []string       // enum
	symbolIdx  map[string]int // enum
	enumDef    string         // enum default symbol
	hasEnumDef bool

	items    *node   // array items / map values
	branches []*node // union

	// minSize is a lower bound of the encoded size in bytes; 0 means a value
	// may encode to nothing, which matters for block-count bombs.
	minSize int
}

type field struct {
	name       string
	aliases    []string
	typ        *node
	hasDefault bool
	def        any // raw JSON default (json.Number for numbers)

	// The default's binary encoding, built on first use by encodedDefault.
	defOnce sync.Once
	defEnc  []byte
	defErr  error
}

func (n *node) shortName() string {
	if i := strings.LastIndexByte(n.name, '.'); i >= 0 {
		return n.name[i+1:]
	}
	return n.name
}

// describe renders a node for error messages.
func (n *node) describe() string {
	switch n.kind {
	case kRecord, kEnum, kFixed:
		return n.kind.String() + " " + n.name
	case kArray:
		return "array<" + n.items.describe() + ">"
	case kMap:
		return "map<" + n.items.describe() + ">"
	case kUnion:
		parts := make([]string, len(n.branches))
		for i, b := range n.branches {
			parts[i] = b.branchName
		}
		return "union[" + strings.Join(parts, ",") + "]"
	}
	if n.logical != lNone {
		return n.branchName
	}
	return n.kind.String()
}

// treeParser builds a node tree from schema JSON, following the same naming
// rules goavro uses so that union branch names agree with goavro natives.
type treeParser struct {
	named map[string]*node
}

func parseTree(text string) (*node, error) {
	dec := json.NewDecoder(strings.NewReader(text))
	dec.UseNumber()
	var raw any
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("schema JSON: %w", err)
	}
	p := &treeParser{named: map[string]*node{}}
	root, err := p.parse(raw, "")
	if err != nil {
		return nil, err
	}
	computeMinSize(root)
	return root, nil
}

var primitiveKinds = map[string]kind{
	"null": kNull, "boolean": kBoolean, "int": kInt, "long": kLong,
	"float": kFloat, "double": kDouble, "bytes": kBytes, "string": kString,
}

func fullName(name, namespace, enclosing string) string {
	if strings.Contains(name, ".") {
		return name
	}
	ns := namespace
	if ns == "" {
		ns = enclosing
	}
	if ns == "" {
		return name
	}
	return ns + "." + name
}

func namespaceOf(full string) string {
	if i := strings.LastIndexByte(full, '.'); i >= 0 {
		return full[:i]
	}
	return ""
}

func (p *treeParser) parse(raw any, ns string) (*node, error) {
	switch v := raw.(type) {
	case string:
		return p.parseName(v, ns)
	case []any:
		u := &node{kind: kUnion, branchName: "union"}
		seen := map[string]bool{}
		for i, b := range v {
			bn, err := p.parse(b, ns)
			if err != nil {
				return nil, fmt.Errorf("union branch %d: %w", i, err)
			}
			if bn.kind == kUnion {
				return nil, fmt.Errorf("union branch %d: unions may not immediately contain unions", i)
			}
			if seen[bn.branchName] {
				return nil, fmt.Errorf("union branch %d: duplicate type %s", i, bn.branchName)
			}
			seen[bn.branchName] = true
			u.branches = append(u.branches, bn)
		}
		return u, nil
	case map[string]any:
		return p.parseMap(v, ns)
	default:
		return nil, fmt.Errorf("unexpected schema JSON %T", raw)
	}
}

func (p *treeParser) parseName(name, ns string) (*node, error) {
	if k, ok := primitiveKinds[name]; ok {
		return &node{kind: k, branchName: name}, nil
	}
	if ns != "" && !strings.Contains(name, ".") {
		if n, ok := p.named[ns+"."+name]; ok {
			return n, nil
		}
	}
	if n, ok := p.named[name]; ok {
		return n, nil
	}
	return nil, fmt.Errorf("unknown type name %q", name)
}

func str(m map[string]any, k string) string {
	s, _ := m[k].(string)
	return s
}

func intAttr(m map[string]any, k string) (int, bool) {
	n, ok := m[k].(json.Number)
	if !ok {
		return 0, false
	}
	i, err := n.Int64()
	if err != nil {
		return 0, false
	}
	return int(i), true
}

func (p *treeParser) register(n *node, m map[string]any, ns string) error {
	name := str(m, "name")
	if name == "" {
		return fmt.Errorf("%s without name", n.kind)
	}
	n.name = fullName(name, str(m, "namespace"), ns)
	n.branchName = n.name
	if _, dup := p.named[n.name]; dup {
		return fmt.Errorf("type %s defined twice", n.name)
	}
	p.named[n.name] = n
	if al, ok := m["aliases"].([]any); ok {
		for _, a := range al {
			if s, ok := a.(string); ok {
				n.aliases = append(n.aliases, fullName(s, "", namespaceOf(n.name)))
			}
		}
	}
	return nil
}

func (p *treeParser) parseMap(m map[string]any, ns string) (*node, error) {
	t, ok := m["type"]
	if !ok {
		return nil, fmt.Errorf("schema object without type")
	}
	ts, isStr := t.(string)
	if !isStr {
		// {"type": {...}} or {"type": [...]}: nested definition.
		return p.parse(t, ns)
	}
	lt := str(m, "logicalType")
	switch ts {
	case "record", "error":
		n := &node{kind: kRecord}
		if err := p.register(n, m, ns); err != nil {
			return nil, err
		}
		inner := namespaceOf(n.name)
		fs, _ := m["fields"].([]any)
		if _, ok := m["fields"]; !ok {
			return nil, fmt.Errorf("record %s without fields", n.name)
		}
		n.fieldIdx = make(map[string]int, len(fs))
		for i, fr := range fs {
			fm, ok := fr.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("record %s: field %d is not an object", n.name, i)
			}
			f := &field{name: str(fm, "name")}
			if f.name == "" {
				return nil, fmt.Errorf("record %s: field %d without name", n.name, i)
			}
			if _, dup := n.fieldIdx[f.name]; dup {
				return nil, fmt.Errorf("record %s: duplicate field %s", n.name, f.name)
			}
			ft, ok := fm["type"]
			if !ok {
				return nil, fmt.Errorf("record %s: field %s without type", n.name, f.name)
			}
			typ, err := p.parse(ft, inner)
			if err != nil {
				return nil, fmt.Errorf("record %s: field %s: %w", n.name, f.name, err)
			}
			f.typ = typ
			f.def, f.hasDefault = fm["default"]
			if al, ok := fm["aliases"].([]any); ok {
				for _, a := range al {
					if s, ok := a.(string); ok {
						f.aliases = append(f.aliases, s)
					}
				}
			}
			n.fieldIdx[f.name] = i
			n.fields = append(n.fields, f)
		}
		return n, nil
	case "enum":
		n := &node{kind: kEnum}
		if err := p.register(n, m, ns); err != nil {
			return nil, err
		}
		syms, _ := m["symbols"].([]any)
		n.symbolIdx = make(map[string]int, len(syms))
		for i, s := range syms {
			ss, ok := s.(string)
			if !ok {
				return nil, fmt.Errorf("enum %s: symbol %d is not a string", n.name, i)
			}
			if _, dup := n.symbolIdx[ss]; dup {
				return nil, fmt.Errorf("enum %s: duplicate symbol %s", n.name, ss)
			}
			n.symbolIdx[ss] = i
			n.symbols = append(n.symbols, ss)
		}
		if d, ok := m["default"].(string); ok {
			if _, ok := n.symbolIdx[d]; !ok {
				return nil, fmt.Errorf("enum %s: default %q is not a symbol", n.name, d)
			}
			n.enumDef, n.hasEnumDef = d, true
		}
		return n, nil
	case "fixed":
		n := &node{kind: kFixed}
		if err := p.register(n, m, ns); err != nil {
			return nil, err
		}
		size, ok := intAttr(m, "size")
		if !ok || size < 0 {
			return nil, fmt.Errorf("fixed %s: invalid size", n.name)
		}
		n.size = size
		if lt == "decimal" {
			if err := setDecimal(n, m); err != nil {
				return nil, fmt.Errorf("fixed %s: %w", n.name, err)
			}
		}
		return n, nil
	case "array", "map":
		n := &node{kind: kArray, branchName: "array"}
		key := "items"
		if ts == "map" {
			n.kind, n.branchName, key = kMap, "map", "values"
		}
		it, ok := m[key]
		if !ok {
			return nil, fmt.Errorf("%s without %s", ts, key)
		}
		items, err := p.parse(it, ns)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", ts, key, err)
		}
		n.items = items
		return n, nil
	}
	k, ok := primitiveKinds[ts]
	if !ok {
		// Reference to a named type written as {"type": "Name"}.
		return p.parseName(ts, ns)
	}
	n := &node{kind: k, branchName: ts}
	switch {
	case k == kBytes && lt == "decimal":
		if err := setDecimal(n, m); err != nil {
			return nil, err
		}
		n.branchName = "bytes.decimal"
	case k == kLong && lt == "timestamp-millis":
		n.logical = lTimestampMillis
	case k == kLong && lt == "timestamp-micros":
		n.logical = lTimestampMicros
	case k == kLong && lt == "time-micros":
		n.logical = lTimeMicros
	case k == kInt && lt == "time-millis":
		n.logical = lTimeMillis
	case k == kInt && lt == "date":
		n.logical = lDate
	}
	if n.logical != lNone && n.logical != lDecimal {
		n.branchName = ts + "." + lt
	}
	return n, nil
}

func setDecimal(n *node, m map[string]any) error {
	prec, ok := intAttr(m, "precision")
	if !ok || prec < 1 {
		return fmt.Errorf("decimal: precision must be a positive integer")
	}
	scale := 0
	if _, has := m["scale"]; has {
		if scale, ok = intAttr(m, "scale"); !ok || scale < 0 || scale > prec {
			return fmt.Errorf("decimal: scale must be an integer in [0, precision]")
		}
	}
	n.logical, n.precision, n.scale = lDecimal, prec, scale
	n.decLimit = pow10(prec)
	// n bytes of two's complement hold magnitudes up to 2^(8n-1); those
	// below 10^precision need no big-number check when decoding.
	for n.decSafeLen = 0; 8*(n.decSafeLen+1)-1 < n.decLimit.BitLen(); n.decSafeLen++ {
	}
	return nil
}

// computeMinSize fills minSize bottom-up. Cycles are treated as size 0
// (conservative: it only makes the bomb guard stricter).
func computeMinSize(root *node) {
	state := map[*node]uint8{} // 1 = in progress, 2 = done
	var walk func(n *node) int
	walk = func(n *node) int {
		switch state[n] {
		case 1:
			return 0
		case 2:
			return n.minSize
		}
		state[n] = 1
		s := 0
		switch n.kind {
		case kNull:
		case kBoolean, kInt, kLong, kBytes, kString, kEnum, kArray, kMap, kUnion:
			s = 1
		case kFloat:
			s = 4
		case kDouble:
			s = 8
		case kFixed:
			s = n.size
		case kRecord:
			for _, f := range n.fields {
				s += walk(f.typ)
			}
		}
		switch n.kind {
		case kArray, kMap:
			walk(n.items)
		case kUnion:
			for _, b := range n.branches {
				walk(b)
			}
		}
		n.minSize = s
		state[n] = 2
		return s
	}
	walk(root)
}

// jsonEqualText reports whether two JSON documents are identical after
// compaction; used to skip resolution when writer == reader.
func jsonEqualText(a, b string) bool {
	var ca, cb bytes.Buffer
	if json.Compact(&ca, []byte(a)) != nil || json.Compact(&cb, []byte(b)) != nil {
		return false
	}
	return bytes.Equal(ca.Bytes(), cb.Bytes())
}
