package schemas

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/sr"
)

// Compatibility rules: the Avro/Confluent errorType names, so that ordo's
// explanations line up with a Confluent registry's. DECIMAL_NARROWED and
// INVALID_DEFAULT are ordo's: its resolver refuses those values at run time.
const (
	RuleMissingDefault     = "READER_FIELD_MISSING_DEFAULT_VALUE"
	RuleTypeMismatch       = "TYPE_MISMATCH"
	RuleNameMismatch       = "NAME_MISMATCH"
	RuleFixedSizeMismatch  = "FIXED_SIZE_MISMATCH"
	RuleMissingEnumSymbols = "MISSING_ENUM_SYMBOLS"
	RuleMissingUnionBranch = "MISSING_UNION_BRANCH"
	RuleDecimalNarrowed    = "DECIMAL_NARROWED"
	RuleInvalidDefault     = "INVALID_DEFAULT"
)

// Direction says which way a compatibility check reads.
type Direction int

const (
	// Plain: CanRead with no version context (writer -> reader).
	Plain Direction = iota
	// Backward: the new schema reads data written with a previous version.
	Backward
	// Forward: a previous version reads data written with the new schema.
	Forward
)

func (d Direction) String() string {
	switch d {
	case Backward:
		return "backward"
	case Forward:
		return "forward"
	}
	return "plain"
}

// Incompatibility is one reason a reader schema cannot read everything a
// writer schema can write, under ordo's resolution rules (Resolve).
type Incompatibility struct {
	Rule    string // one of the Rule* constants
	Path    string // field path in the reader, e.g. "items[].qty"; "" is the top-level type
	Message string // what breaks, in terms of the schemas involved
	Fix     string // how to change the new schema so that it passes

	Direction Direction // set by CheckCompatibility
	Version   int       // the previous version checked against (0 when not known)
}

// Where renders Path for humans: "field 'items[].qty'" or "the top-level type".
func (i Incompatibility) Where() string {
	if i.Path == "" {
		return "the top-level type"
	}
	return "field '" + i.Path + "'"
}

func (i Incompatibility) String() string {
	return fmt.Sprintf("%s [%s] (fix: %s)", i.Message, i.Rule, i.Fix)
}

// ConfluentDetail renders i the way a Confluent registry lists an
// incompatibility in a 409 answer or a verbose compatibility check.
func (i Incompatibility) ConfluentDetail() string {
	path := "/"
	if i.Path != "" {
		path = "/" + strings.ReplaceAll(i.Path, ".", "/")
	}
	info := i.Path
	if info == "" {
		info = "(root)"
	}
	desc := fmt.Sprintf("%s (path '%s'; fix: %s)", i.Message, path, i.Fix)
	return fmt.Sprintf("{errorType:'%s', description:'%s', additionalInfo:'%s'}", i.Rule, desc, info)
}

// Version is one registered version of a subject.
type Version struct {
	Version int
	Schema  *Schema
}

// CanRead reports every reason reader cannot read all data written with
// writer under ordo's resolution rules; none means refResolve(writer, reader, v)
// succeeds for every value writer can encode. It is stricter than compiling
// a resolver, which only fails on what every value would hit (a writer
// union branch or enum symbol that data may never use still counts here).
func CanRead(writer, reader *Schema) []Incompatibility {
	return canRead(writer, reader, Plain, 0)
}

func canRead(writer, reader *Schema, dir Direction, version int) []Incompatibility {
	c := &compatChecker{seen: map[[2]*node]bool{}}
	c.check(writer.root, reader.root, "", nil)
	out := make([]Incompatibility, 0, len(c.out))
	for _, f := range c.out {
		in := f.render(dir, version)
		in.Direction, in.Version = dir, version
		out = append(out, in)
	}
	return out
}

// CheckCompatibility checks next against previous (oldest first) under a
// Confluent compatibility level with ordo's resolution rules: BACKWARD means
// next can read data written with the latest previous version, FORWARD that
// the latest previous version can read data written with next, FULL both;
// the _TRANSITIVE forms check every previous version, newest first. NONE
// (or no previous version) is always compatible. A zero level means
// BACKWARD, a registry's default.
func CheckCompatibility(level sr.CompatibilityLevel, next *Schema, previous []Version) []Incompatibility {
	if level == sr.CompatNone || len(previous) == 0 {
		return nil
	}
	backward, forward, transitive := LevelChecks(level)
	against := previous
	if !transitive {
		against = previous[len(previous)-1:]
	}
	var out []Incompatibility
	for i := len(against) - 1; i >= 0; i-- {
		p := against[i]
		if backward {
			out = append(out, canRead(p.Schema, next, Backward, p.Version)...)
		}
		if forward {
			out = append(out, canRead(next, p.Schema, Forward, p.Version)...)
		}
	}
	return out
}

// LevelChecks says what a compatibility level checks.
func LevelChecks(level sr.CompatibilityLevel) (backward, forward, transitive bool) {
	switch level {
	case sr.CompatNone:
		return false, false, false
	case sr.CompatForward:
		return false, true, false
	case sr.CompatForwardTransitive:
		return false, true, true
	case sr.CompatFull:
		return true, true, false
	case sr.CompatFullTransitive:
		return true, true, true
	case sr.CompatBackwardTransitive:
		return true, false, true
	}
	return true, false, false
}

// CheckDefaults reports the first field default that is not a valid value
// of its field's type (a registry refuses such a schema; ordo's resolver
// would fail on the first record that needs the default).
func (s *Schema) CheckDefaults() error {
	seen := map[*node]bool{}
	var walk func(n *node, path string) error
	walk = func(n *node, path string) error {
		if seen[n] {
			return nil
		}
		seen[n] = true
		switch n.kind {
		case kRecord:
			for _, f := range n.fields {
				fp := joinPath(path, f.name)
				if f.hasDefault {
					if _, err := defaultNative(f.typ, f.def); err != nil {
						return fmt.Errorf("field '%s': invalid default for %s: %v (fix: use a valid default, e.g. \"default\": %s)", fp, f.typ.describe(), err, exampleDefault(f.typ))
					}
				}
				if err := walk(f.typ, fp); err != nil {
					return err
				}
			}
		case kArray:
			return walk(n.items, path+"[]")
		case kMap:
			return walk(n.items, path+"{}")
		case kUnion:
			for _, b := range n.branches {
				if err := walk(b, path); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return walk(s.root, "")
}

// finding is one raw incompatibility before it is phrased for a direction.
type finding struct {
	rule    string
	path    string
	w, r    *node
	field   *field   // RuleMissingDefault, RuleInvalidDefault: the reader field
	symbols []string // RuleMissingEnumSymbols
	wUnion  *node    // the writer union w is a branch of, if any
	detail  string
}

type compatChecker struct {
	// seen holds the (writer, reader) pairs already checked, so recursive
	// types end and a shared named type is reported once.
	seen map[[2]*node]bool
	out  []finding
}

func joinPath(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func (c *compatChecker) add(f finding) { c.out = append(c.out, f) }

// check mirrors resolverBuilder.compile (resolve.go) without its run-time
// leniency: every writer union branch and every writer enum symbol must be
// readable.
func (c *compatChecker) check(w, r *node, path string, wUnion *node) {
	key := [2]*node{w, r}
	if c.seen[key] {
		return
	}
	c.seen[key] = true
	if w.kind == kUnion {
		for _, wb := range w.branches {
			c.check(wb, r, path, w)
		}
		return
	}
	if r.kind == kUnion {
		// compileReaderUnion: the first branch of the same kind, else the
		// first branch w promotes to.
		for _, rb := range r.branches {
			if sameKind(w, rb) {
				c.check(w, rb, path, wUnion)
				return
			}
		}
		for _, rb := range r.branches {
			if promotable(w.kind, rb.kind) {
				return
			}
		}
		c.add(finding{rule: RuleMissingUnionBranch, path: path, w: w, r: r, wUnion: wUnion})
		return
	}
	if w.kind != r.kind {
		if !promotable(w.kind, r.kind) {
			c.add(finding{rule: RuleTypeMismatch, path: path, w: w, r: r, wUnion: wUnion})
		}
		return
	}
	switch w.kind {
	case kRecord, kEnum:
		if !namesMatch(w, r) {
			c.add(finding{rule: RuleNameMismatch, path: path, w: w, r: r, wUnion: wUnion})
			return
		}
	case kFixed:
		if !namesMatch(w, r) {
			c.add(finding{rule: RuleNameMismatch, path: path, w: w, r: r, wUnion: wUnion})
			return
		}
		if w.size != r.size {
			c.add(finding{rule: RuleFixedSizeMismatch, path: path, w: w, r: r, wUnion: wUnion})
			return
		}
	}
	switch w.kind {
	case kRecord:
		for _, rf := range r.fields {
			fp := joinPath(path, rf.name)
			if wf := findWriterField(w, rf); wf != nil {
				c.check(wf.typ, rf.typ, fp, nil)
				continue
			}
			if !rf.hasDefault {
				c.add(finding{rule: RuleMissingDefault, path: fp, w: w, r: r, field: rf})
				continue
			}
			if _, err := defaultNative(rf.typ, rf.def); err != nil {
				c.add(finding{rule: RuleInvalidDefault, path: fp, w: w, r: r, field: rf, detail: err.Error()})
			}
		}
	case kEnum:
		if r.hasEnumDef {
			return
		}
		var missing []string
		for _, s := range w.symbols {
			if _, ok := r.symbolIdx[s]; !ok {
				missing = append(missing, s)
			}
		}
		if len(missing) > 0 {
			c.add(finding{rule: RuleMissingEnumSymbols, path: path, w: w, r: r, symbols: missing})
		}
	case kArray:
		c.check(w.items, r.items, path+"[]", nil)
	case kMap:
		c.check(w.items, r.items, path+"{}", nil)
	default:
		if w.logical == lDecimal && r.logical == lDecimal &&
			(r.scale < w.scale || r.precision-r.scale < w.precision-w.scale) {
			c.add(finding{rule: RuleDecimalNarrowed, path: path, w: w, r: r, wUnion: wUnion})
		}
	}
}

// render phrases a finding for a direction: in a backward check the reader
// is the new schema and the writer the previous version, in a forward check
// the other way round.
func (f finding) render(dir Direction, version int) Incompatibility {
	in := Incompatibility{Rule: f.rule, Path: f.path}
	old := "the previous schema"
	if version > 0 {
		old = "version " + strconv.Itoa(version)
	}
	where := "the top-level type"
	if f.path != "" {
		where = "field '" + f.path + "'"
	}
	wt, rt := f.w.describe(), f.r.describe()
	switch f.rule {
	case RuleMissingDefault:
		name := f.path
		switch dir {
		case Backward:
			in.Message = fmt.Sprintf("field '%s' (%s) is new and has no default: the new schema cannot read records written with %s, which lack it", name, f.field.typ.describe(), old)
			in.Fix = defaultFix(f.field.typ, name)
		case Forward:
			in.Message = fmt.Sprintf("field '%s' was removed (or renamed), but %s reads it and declares no default: consumers still on %s cannot read records written with the new schema", name, old, old)
			in.Fix = fmt.Sprintf("keep field '%s' in the new schema (stop filling it instead of removing it), or first register a version in which '%s' has a default", name, name)
		default:
			in.Message = fmt.Sprintf("reader field '%s' (%s) is missing in the writer and has no default", name, f.field.typ.describe())
			in.Fix = defaultFix(f.field.typ, name)
		}
	case RuleInvalidDefault:
		in.Message = fmt.Sprintf("field '%s' is missing in the writer and its default is not a valid %s: %s", f.path, f.field.typ.describe(), f.detail)
		in.Fix = fmt.Sprintf(`use a valid default for field '%s', e.g. "default": %s`, f.path, exampleDefault(f.field.typ))
	case RuleTypeMismatch:
		switch {
		case dir == Backward && f.wUnion != nil:
			in.Message = fmt.Sprintf("%s changed type from %s (in %s) to %s, which cannot read the union's branch %s", where, f.wUnion.describe(), old, rt, wt)
			in.Fix = fmt.Sprintf("keep branch %s in the type (records written with %s may hold it), e.g. keep %s", wt, old, f.wUnion.describe())
		case dir == Backward:
			in.Message = fmt.Sprintf("%s changed type from %s (in %s) to %s, which cannot read %s", where, wt, old, rt, wt)
			in.Fix = fmt.Sprintf("keep %s, or change it only to a type %s promotes to (int→long→float→double, string↔bytes) or to a union that contains %s; to change the type, add a new field with a default instead", wt, wt, wt)
		case dir == Forward && f.wUnion != nil:
			in.Message = fmt.Sprintf("%s changed type from %s (in %s) to %s: consumers still on %s read it as %s, which cannot read the branch %s", where, rt, old, f.wUnion.describe(), old, rt, wt)
			in.Fix = fmt.Sprintf("keep %s (under FORWARD/FULL a field cannot gain a union branch that %s cannot read); add a new optional field instead", rt, old)
		case dir == Forward:
			in.Message = fmt.Sprintf("%s changed type from %s (in %s) to %s: consumers still on %s read it as %s, which cannot read %s", where, rt, old, wt, old, rt, wt)
			in.Fix = fmt.Sprintf("keep %s, or change it only to a type that promotes to %s (int→long→float→double, string↔bytes); to change the type, add a new field instead", rt, rt)
		default:
			what := wt
			if f.wUnion != nil {
				what = "branch " + wt + " of writer " + f.wUnion.describe()
			}
			in.Message = fmt.Sprintf("%s: writer %s cannot be read as %s", where, what, rt)
			in.Fix = "use the same type, a promotable one (int→long→float→double, string↔bytes), or a union containing it"
		}
	case RuleNameMismatch:
		switch dir {
		case Backward:
			in.Message = fmt.Sprintf("%s was renamed from %s (in %s) to %s", where, f.w.name, old, f.r.name)
			in.Fix = fmt.Sprintf(`add "aliases": ["%s"] to %s %s in the new schema`, f.w.name, f.r.kind, f.r.name)
			if f.path == "" {
				in.Fix = fmt.Sprintf(`if it is a rename, add "aliases": ["%s"] to %s %s; if it is another record type, give it its own subject (strategy topic_record_name or record_name): a subject holds one record type`, f.w.name, f.r.kind, f.r.name)
			}
		case Forward:
			in.Message = fmt.Sprintf("%s was renamed from %s (in %s) to %s: consumers still on %s do not know the new name", where, f.r.name, old, f.w.name, old)
			in.Fix = fmt.Sprintf("keep the name %s (a rename is forward compatible only if %s already lists %s as an alias)", f.r.name, old, f.w.name)
		default:
			in.Message = fmt.Sprintf("%s: writer %s does not match reader %s (names differ and the reader has no alias for it)", where, wt, rt)
			in.Fix = fmt.Sprintf(`add "aliases": ["%s"] to the reader's %s`, f.w.name, f.r.name)
		}
	case RuleFixedSizeMismatch:
		in.Message = fmt.Sprintf("fixed %s at %s changed size: %d bytes written, %d bytes read", f.r.name, where, f.w.size, f.r.size)
		in.Fix = "keep the size; a fixed of another size is another type: add a new field for it"
	case RuleMissingEnumSymbols:
		syms := strings.Join(f.symbols, ", ")
		switch dir {
		case Backward:
			in.Message = fmt.Sprintf("enum %s at %s dropped symbols [%s], which records written with %s may contain", f.r.name, where, syms, old)
			in.Fix = fmt.Sprintf(`keep the symbols, or give enum %s a "default" symbol so that unknown symbols read as it`, f.r.name)
		case Forward:
			in.Message = fmt.Sprintf("enum %s at %s gained symbols [%s], which consumers still on %s do not know, and %s's enum has no default", f.r.name, where, syms, old, old)
			in.Fix = fmt.Sprintf(`do not add symbols under FORWARD/FULL unless the old enum declares a "default"; first register a version whose enum %s has "default": "<one of its symbols>"`, f.r.name)
		default:
			in.Message = fmt.Sprintf("%s: writer enum %s has symbols [%s] unknown to the reader, which has no default", where, f.w.name, syms)
			in.Fix = fmt.Sprintf(`add the symbols to the reader, or give the reader's enum %s a "default"`, f.r.name)
		}
	case RuleMissingUnionBranch:
		switch dir {
		case Backward:
			in.Message = fmt.Sprintf("the union at %s (%s) has no branch for %s, which records written with %s may hold", where, rt, wt, old)
			in.Fix = fmt.Sprintf("add %s back to the union (under BACKWARD, branches may be added, not removed)", wt)
		case Forward:
			in.Message = fmt.Sprintf("the new schema may write %s at %s, which %s's %s cannot hold", wt, where, old, rt)
			in.Fix = fmt.Sprintf("do not add union branches under FORWARD/FULL: keep the type %s had, or add a new optional field", old)
		default:
			in.Message = fmt.Sprintf("%s: writer type %s matches no branch of reader %s", where, wt, rt)
			in.Fix = fmt.Sprintf("add %s to the reader's union", wt)
		}
	case RuleDecimalNarrowed:
		in.Message = fmt.Sprintf("%s: %s values do not all fit %s (ordo's resolver refuses a value with more fractional or integer digits than the reader allows)", where, describeDecimal(f.w), describeDecimal(f.r))
		in.Fix = fmt.Sprintf("keep the scale %d and at least %d integer digits (precision - scale)", f.w.scale, f.w.precision-f.w.scale)
		if dir == Forward {
			in.Fix = fmt.Sprintf("do not widen a decimal under FORWARD/FULL: %s reads it as %s", old, describeDecimal(f.r))
		}
	}
	return in
}

func describeDecimal(n *node) string {
	return fmt.Sprintf("decimal(%d,%d)", n.precision, n.scale)
}

// defaultFix suggests a default for a field of type n.
func defaultFix(n *node, name string) string {
	if n.kind == kUnion && len(n.branches) > 0 && n.branches[0].kind == kNull {
		return fmt.Sprintf(`add "default": null to field '%s'`, name)
	}
	s := fmt.Sprintf(`add a default to field '%s', e.g. "default": %s`, name, exampleDefault(n))
	if n.kind != kUnion && n.kind != kNull {
		s += fmt.Sprintf(`, or make it optional: "type": ["null", %s], "default": null`, typeJSON(n))
	}
	return s
}

// exampleDefault is a valid JSON default for n (for a union, of its first
// branch, as the Avro specification requires).
func exampleDefault(n *node) string {
	switch n.kind {
	case kNull:
		return "null"
	case kBoolean:
		return "false"
	case kInt, kLong:
		return "0"
	case kFloat, kDouble:
		return "0.0"
	case kString:
		return `""`
	case kBytes:
		if n.logical == lDecimal {
			return `"\u0000"`
		}
		return `""`
	case kFixed:
		return `"` + strings.Repeat(`\u0000`, n.size) + `"`
	case kEnum:
		if n.hasEnumDef {
			return strconv.Quote(n.enumDef)
		}
		if len(n.symbols) > 0 {
			return strconv.Quote(n.symbols[0])
		}
	case kArray:
		return "[]"
	case kMap:
		return "{}"
	case kUnion:
		if len(n.branches) > 0 {
			return exampleDefault(n.branches[0])
		}
	case kRecord:
		parts := make([]string, 0, len(n.fields))
		for _, f := range n.fields {
			if f.hasDefault {
				continue
			}
			parts = append(parts, strconv.Quote(f.name)+": "+exampleDefault(f.typ))
		}
		return "{" + strings.Join(parts, ", ") + "}"
	}
	return "null"
}

// typeJSON renders n as a schema reference for a fix suggestion.
func typeJSON(n *node) string {
	switch n.kind {
	case kRecord, kEnum, kFixed:
		return strconv.Quote(n.name)
	case kArray:
		return `{"type": "array", "items": ` + typeJSON(n.items) + `}`
	case kMap:
		return `{"type": "map", "values": ` + typeJSON(n.items) + `}`
	case kUnion:
		parts := make([]string, len(n.branches))
		for i, b := range n.branches {
			parts[i] = typeJSON(b)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	switch n.logical {
	case lDecimal:
		return fmt.Sprintf(`{"type": "bytes", "logicalType": "decimal", "precision": %d, "scale": %d}`, n.precision, n.scale)
	case lNone:
		return strconv.Quote(n.kind.String())
	}
	_, lt, _ := strings.Cut(n.branchName, ".")
	return fmt.Sprintf(`{"type": "%s", "logicalType": "%s"}`, n.kind, lt)
}

// ParseLevel parses a compatibility level (NONE, BACKWARD, ...,
// FULL_TRANSITIVE; case insensitive).
func ParseLevel(s string) (sr.CompatibilityLevel, error) {
	var l sr.CompatibilityLevel
	if err := l.UnmarshalText([]byte(strings.TrimSpace(s))); err != nil {
		return 0, fmt.Errorf("unknown compatibility level %q (want one of %s)", s, strings.Join(Levels(), ", "))
	}
	return l, nil
}

// Levels lists the compatibility levels a registry accepts.
func Levels() []string {
	var out []string
	for l := sr.CompatNone; l <= sr.CompatFullTransitive; l++ {
		out = append(out, l.String())
	}
	slices.Sort(out)
	return out
}

// Aliases returns the full names the top-level named type also answers to
// (its "aliases"), e.g. the old name of a renamed record.
func (s *Schema) Aliases() []string { return slices.Clone(s.root.aliases) }
