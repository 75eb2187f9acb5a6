// Package yamlcheck decodes a YAML node into a Go value and reports every
// problem at once, each with its line, its full key and what was expected.
//
// yaml.v3 alone stops at the first unknown key (KnownFields), reports type
// errors as "line 3: cannot unmarshal !!str `lots` into int" without the key,
// and a processor's config block, decoded after re-encoding, loses its lines.
// Check walks the node and the target type side by side instead, so the
// config file and every processor's config block get the same errors:
// unknown keys with did-you-mean and the valid keys, values of the wrong type
// with the expected type and an example, duplicate keys.
package yamlcheck

import (
	"encoding"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Issue is one problem, located by line and full key (e.g.
// processing.batch_size, pipeline[2].config.routes[0].on).
type Issue struct {
	Line int
	Key  string
	Msg  string
	Fix  string
}

// Expecter describes the YAML a type with its own UnmarshalYAML expects, for
// messages: what = "a duration", example = "100ms".
type Expecter interface {
	YAMLExpect() (what, example string)
}

// Decode decodes n into v (a non-nil pointer) and returns every problem.
// Fields that v already holds and n does not mention keep their values
// (defaults). prefix is the key path of n ("" for a file's root); keys below
// it are prefix.key, prefix[i]. On problems the reported entries are left
// out and the rest is decoded, so that checks of the other values still
// work; the caller must not use v as a valid value.
func Decode(n *yaml.Node, v any, prefix string) []Issue {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return []Issue{{Key: prefix, Msg: fmt.Sprintf("yamlcheck: Decode needs a non-nil pointer, got %T", v)}}
	}
	c := &checker{}
	c.check(n, rv.Type().Elem(), rv.Elem(), prefix, lastKey(prefix), 0)
	if root := resolve(n, 0); root == nil {
		return c.issues
	}
	if len(c.bad) > 0 {
		// Decode without what was reported: yaml.v3 would stop at a
		// duplicate key or a custom unmarshaler's error, and zero a field
		// it could not decode; the rest must still decode (so that checks
		// of the other values do not report false errors).
		n = c.without(n, 0)
	}
	if err := n.Decode(v); err != nil {
		c.fallback(n, prefix, err)
	}
	return c.issues
}

// without copies n, leaving out the mapping entries and list items that
// were reported.
func (c *checker) without(n *yaml.Node, depth int) *yaml.Node {
	if n == nil || depth > maxDepth || n.Kind == yaml.AliasNode || len(n.Content) == 0 {
		return n
	}
	cp := *n
	cp.Content = make([]*yaml.Node, 0, len(n.Content))
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if !c.bad[k] && !c.bad[v] {
				cp.Content = append(cp.Content, k, c.without(v, depth+1))
			}
		}
	default:
		for _, e := range n.Content {
			if !c.bad[e] {
				cp.Content = append(cp.Content, c.without(e, depth+1))
			}
		}
	}
	return &cp
}

type checker struct {
	issues []Issue
	bad    map[*yaml.Node]bool // nodes reported (keys and values), left out of the decode
}

// TopLevel is the key of problems with the document itself (e.g. a list
// where a mapping was expected).
const TopLevel = "(top level)"

func (c *checker) add(line int, key, msg, fix string) {
	if key == "" {
		key = TopLevel
	}
	c.issues = append(c.issues, Issue{Line: line, Key: key, Msg: msg, Fix: fix})
}

// drop marks nodes to leave out of the decode.
func (c *checker) drop(ns ...*yaml.Node) {
	if c.bad == nil {
		c.bad = map[*yaml.Node]bool{}
	}
	for _, n := range ns {
		c.bad[n] = true
	}
}

var (
	nodeType        = reflect.TypeFor[yaml.Node]()
	unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()
	textType        = reflect.TypeFor[encoding.TextUnmarshaler]()
	expecterType    = reflect.TypeFor[Expecter]()
)

// maxDepth bounds the walk (aliases can nest deeply, never loop in yaml.v3,
// but a bound costs nothing).
const maxDepth = 100

// resolve steps through document and alias nodes; nil for an empty document.
func resolve(n *yaml.Node, depth int) *yaml.Node {
	for n != nil && depth < maxDepth {
		switch n.Kind {
		case yaml.DocumentNode:
			if len(n.Content) == 0 {
				return nil
			}
			n = n.Content[0]
		case yaml.AliasNode:
			n = n.Alias
		case 0:
			return nil
		default:
			return n
		}
		depth++
	}
	return n
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }

// check walks node n against type t. def is the value already held (for
// examples; may be invalid), path the full key, key the last key name.
func (c *checker) check(n *yaml.Node, t reflect.Type, def reflect.Value, path, key string, depth int) {
	orig := n
	n = resolve(n, depth)
	if n == nil || isNull(n) || depth > maxDepth {
		return // null leaves the value as it is, as yaml.v3 does
	}
	if t == nodeType || t.Kind() == reflect.Interface {
		return // decoded later by whoever owns it (processor configs), or anything goes
	}
	if t.Implements(unmarshalerType) || reflect.PointerTo(t).Implements(unmarshalerType) ||
		(n.Kind == yaml.ScalarNode && (t.Implements(textType) || reflect.PointerTo(t).Implements(textType))) {
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			if t.Implements(expecterType) || reflect.PointerTo(t).Implements(expecterType) {
				what, ex := describe(t, def, key)
				c.add(n.Line, path, fmt.Sprintf("expected %s, got %s", what, got(n)), fix(what, ex))
				c.drop(orig, n)
			} else {
				c.add(n.Line, path, cleanMsg(err.Error()), "see the type's documentation")
				c.drop(orig, n)
			}
		}
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		var d reflect.Value
		if def.IsValid() && !def.IsNil() {
			d = def.Elem()
		}
		c.check(n, t.Elem(), d, path, key, depth+1)
	case reflect.Struct:
		fields := structFields(t)
		if n.Kind != yaml.MappingNode {
			c.add(n.Line, path, fmt.Sprintf("expected a mapping, got %s", got(n)), "write the keys on indented lines below "+orRoot(key)+": "+strings.Join(fieldNames(fields), ", "))
			c.drop(orig, n)
			return
		}
		c.mapping(n, path, depth, func(k, v *yaml.Node) {
			f, ok := fields[k.Value]
			if !ok {
				c.unknown(k, join(path, k.Value), fieldNames(fields))
				return
			}
			var d reflect.Value
			if def.IsValid() {
				d = fieldByIndex(def, f.Index)
			}
			c.check(v, f.Type, d, join(path, k.Value), k.Value, depth+1)
		})
	case reflect.Slice, reflect.Array:
		if n.Kind != yaml.SequenceNode {
			_, ex := describe(t, def, key)
			c.add(n.Line, path, fmt.Sprintf("expected a list, got %s", got(n)), fix("a list", ex))
			c.drop(orig, n)
			return
		}
		for i, e := range n.Content {
			var d reflect.Value
			if def.IsValid() && i < def.Len() {
				d = def.Index(i)
			}
			c.check(e, t.Elem(), d, fmt.Sprintf("%s[%d]", path, i), key, depth+1)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			_, ex := describe(t, def, key)
			c.add(n.Line, path, fmt.Sprintf("expected a mapping, got %s", got(n)), fix("a mapping", ex))
			c.drop(orig, n)
			return
		}
		c.mapping(n, path, depth, func(k, v *yaml.Node) {
			if kt := t.Key(); kt.Kind() != reflect.String && kt.Kind() != reflect.Interface {
				if err := k.Decode(reflect.New(kt).Interface()); err != nil {
					what, _ := describe(kt, reflect.Value{}, "")
					c.add(k.Line, join(path, k.Value), fmt.Sprintf("map key %s is not %s", got(k), what), "use keys of type "+kt.String())
					c.drop(k)
					return
				}
			}
			c.check(v, t.Elem(), reflect.Value{}, join(path, k.Value), k.Value, depth+1)
		})
	case reflect.Bool, reflect.String, reflect.Float32, reflect.Float64,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if n.Kind == yaml.ScalarNode && n.Decode(reflect.New(t).Interface()) == nil {
			return
		}
		what, ex := describe(t, def, key)
		f := fix(what, ex)
		if t.Kind() == reflect.String && n.Kind == yaml.MappingNode {
			f = "quote the value: YAML reads an unquoted `: ` or `{` as a mapping"
		}
		c.add(n.Line, path, fmt.Sprintf("expected %s, got %s", what, got(n)), f)
		c.drop(orig, n)
	}
}

// mapping calls fn for each key/value pair of n, expanding merge keys (<<)
// and reporting duplicate keys.
func (c *checker) mapping(n *yaml.Node, path string, depth int, fn func(k, v *yaml.Node)) {
	type seenKey struct {
		line   int
		merged bool
	}
	seen := map[string]seenKey{}
	var walk func(n *yaml.Node, merged bool, depth int)
	walk = func(n *yaml.Node, merged bool, depth int) {
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
				switch m := resolve(v, depth); {
				case m == nil:
				case m.Kind == yaml.MappingNode:
					walk(m, true, depth+1)
				case m.Kind == yaml.SequenceNode:
					for _, e := range m.Content {
						if e = resolve(e, depth); e != nil && e.Kind == yaml.MappingNode {
							walk(e, true, depth+1)
						}
					}
				}
				continue
			}
			if prev, dup := seen[k.Value]; dup {
				switch {
				case !merged && !prev.merged:
					c.drop(k)
					c.add(k.Line, join(path, k.Value), fmt.Sprintf("duplicate key (first at line %d)", prev.line), "remove one of them")
				case !merged:
					// The mapping's own key overrides a merged one, by design.
					seen[k.Value] = seenKey{k.Line, false}
					fn(k, v)
				}
				continue
			}
			seen[k.Value] = seenKey{k.Line, merged}
			fn(k, v)
		}
	}
	walk(n, false, depth)
}

// unknown reports key k, which is not one of valid.
func (c *checker) unknown(k *yaml.Node, path string, valid []string) {
	fix := "remove it; valid keys: " + strings.Join(valid, ", ")
	if s := Suggest(k.Value, valid); s != "" {
		fix = fmt.Sprintf("did you mean %q? Valid keys: %s", s, strings.Join(valid, ", "))
	}
	c.add(k.Line, path, "unknown key", fix)
	c.drop(k)
}

// typeErrLine is one message of a *yaml.TypeError.
var typeErrLine = regexp.MustCompile(`^line (\d+): (.*)$`)

// fallback maps what yaml.v3 still reports after the walk (it should be
// nothing) to keys through a line index, so no error is lost.
func (c *checker) fallback(n *yaml.Node, prefix string, err error) {
	covered := map[int]bool{}
	for _, is := range c.issues {
		covered[is.Line] = true
	}
	lines := map[int]string{}
	IndexLines(n, prefix, func(key string, line int) {
		if _, ok := lines[line]; !ok || len(key) > len(lines[line]) {
			lines[line] = key
		}
	})
	te, ok := err.(*yaml.TypeError)
	if !ok {
		c.add(0, prefix, cleanMsg(err.Error()), "check the value's type against docs/config.md")
		return
	}
	for _, m := range te.Errors {
		line := 0
		msg := m
		if sm := typeErrLine.FindStringSubmatch(m); sm != nil {
			line, _ = strconv.Atoi(sm[1])
			msg = sm[2]
		}
		if covered[line] {
			continue
		}
		key := prefix
		if k, ok := lines[line]; ok {
			key = k
		}
		c.add(line, key, cleanMsg(msg), "check the value's type against docs/config.md")
	}
}

// IndexLines calls fn with the full key and line of every mapping key and
// sequence item below n (prefix is n's key path).
func IndexLines(n *yaml.Node, prefix string, fn func(key string, line int)) {
	indexLines(n, prefix, fn, 0)
}

func indexLines(n *yaml.Node, path string, fn func(string, int), depth int) {
	if n == nil || depth > maxDepth {
		return
	}
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			indexLines(c, path, fn, depth+1)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			p := join(path, k.Value)
			fn(p, k.Line)
			indexLines(n.Content[i+1], p, fn, depth+1)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			fn(p, c.Line)
			indexLines(c, p, fn, depth+1)
		}
	}
}

// cleanMsg strips yaml.v3's prefixes and tags from a message.
func cleanMsg(s string) string {
	s = strings.TrimPrefix(s, "yaml: unmarshal errors:\n")
	s = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(s), "yaml: "))
	if sm := typeErrLine.FindStringSubmatch(s); sm != nil {
		s = sm[2]
	}
	return s
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func lastKey(path string) string {
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		path = path[i+1:]
	}
	if i := strings.IndexByte(path, '['); i >= 0 {
		path = path[:i]
	}
	return path
}

func orRoot(key string) string {
	if key == "" {
		return "the top level"
	}
	return key
}

// got describes what node n is, for "expected X, got Y".
func got(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	v := n.Value
	if len(v) > 40 {
		v = v[:37] + "..."
	}
	return strconv.Quote(v)
}

// fix renders "write <what>, e.g. <example>".
func fix(what, example string) string {
	if what == "" {
		what = "a value of the right type"
	}
	if example == "" {
		return "write " + what + " (see docs/config.md)"
	}
	return "write " + what + ", e.g. " + example
}

// describe returns what type t expects and an example "key: value", taken
// from the value already held (the default) when it is not zero.
func describe(t reflect.Type, def reflect.Value, key string) (what, example string) {
	ex := func(v string) string {
		if key == "" {
			return v
		}
		return key + ": " + v
	}
	if def.IsValid() && def.Kind() == reflect.Pointer {
		if def.IsNil() {
			def = reflect.Value{}
		} else {
			def = def.Elem()
		}
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Implements(expecterType) || reflect.PointerTo(t).Implements(expecterType) {
		w, e := reflect.New(t).Interface().(Expecter).YAMLExpect()
		if def.IsValid() && !def.IsZero() {
			if s, ok := def.Interface().(fmt.Stringer); ok {
				e = s.String()
			}
		}
		return w, ex(e)
	}
	nonZero := def.IsValid() && !def.IsZero()
	switch t.Kind() {
	case reflect.Bool:
		return "true or false", ex("true")
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if nonZero {
			return "an integer", ex(strconv.FormatInt(def.Int(), 10))
		}
		return "an integer", ex("10")
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if nonZero {
			return "a non-negative integer", ex(strconv.FormatUint(def.Uint(), 10))
		}
		return "a non-negative integer", ex("10")
	case reflect.Float32, reflect.Float64:
		if nonZero {
			return "a number", ex(strconv.FormatFloat(def.Float(), 'g', -1, 64))
		}
		return "a number", ex("0.5")
	case reflect.String:
		return "a string", ex("text")
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.String && nonZero && def.Len() > 0 {
			items := make([]string, def.Len())
			for i := range items {
				items[i] = def.Index(i).String()
			}
			return "a list", ex("[" + strings.Join(items, ", ") + "]")
		}
		return "a list", ex("[a, b]")
	case reflect.Map:
		return "a mapping", ex("{name: value}")
	case reflect.Struct:
		return "a mapping with keys " + strings.Join(fieldNames(structFields(t)), ", "), ""
	}
	return "", ""
}

type field struct {
	Index []int
	Type  reflect.Type
	Order int
}

// structFields maps the YAML keys of struct t to its fields, as yaml.v3
// does: the tag name, else the lower-cased field name; ",inline" structs
// contribute their keys; "-" and unexported fields are skipped.
func structFields(t reflect.Type) map[string]field {
	out := map[string]field{}
	var walk func(t reflect.Type, index []int)
	walk = func(t reflect.Type, index []int) {
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() && !f.Anonymous {
				continue
			}
			tag := f.Tag.Get("yaml")
			if tag == "-" {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			idx := append(append([]int{}, index...), i)
			if strings.Contains(","+opts+",", ",inline,") {
				ft := f.Type
				if ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				if ft.Kind() == reflect.Struct {
					walk(ft, idx)
				}
				continue
			}
			if !f.IsExported() {
				continue
			}
			if name == "" {
				name = strings.ToLower(f.Name)
			}
			if _, dup := out[name]; !dup {
				out[name] = field{Index: idx, Type: f.Type, Order: len(out)}
			}
		}
	}
	walk(t, nil)
	return out
}

// fieldNames lists the keys in declaration order.
func fieldNames(fields map[string]field) []string {
	names := make([]string, 0, len(fields))
	for n := range fields {
		names = append(names, n)
	}
	slices.SortFunc(names, func(a, b string) int { return fields[a].Order - fields[b].Order })
	return names
}

// Keys lists the YAML keys of struct type t in declaration order.
func Keys(t reflect.Type) []string { return fieldNames(structFields(t)) }

// fieldByIndex is Value.FieldByIndex that stops (invalid) at a nil pointer.
func fieldByIndex(v reflect.Value, index []int) reflect.Value {
	for i, x := range index {
		if i > 0 && v.Kind() == reflect.Pointer {
			if v.IsNil() {
				return reflect.Value{}
			}
			v = v.Elem()
		}
		v = v.Field(x)
	}
	return v
}

// Suggest returns the candidate closest to s, or "" when none is close:
// equal ignoring case and _/-, else within an edit distance that grows with
// the length (1 for short names, up to a third of the name).
func Suggest(s string, candidates []string) string {
	norm := func(x string) string {
		return strings.NewReplacer("_", "", "-", "").Replace(strings.ToLower(x))
	}
	ns := norm(s)
	best, bestD := "", max(2, len(s)/3)+1
	for _, c := range candidates {
		if norm(c) == ns {
			return c
		}
		if d := editDistance(strings.ToLower(s), strings.ToLower(c)); d < bestD {
			best, bestD = c, d // ties: the first candidate (declaration order)
		}
	}
	return best
}

// editDistance is the Damerau-Levenshtein distance (optimal string
// alignment: a swap of two neighbours counts once, the commonest typo).
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}
