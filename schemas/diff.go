package schemas

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// Change is one structural difference between two versions of a schema.
type Change struct {
	Op   byte   // '+' added, '-' removed, '~' changed
	Path string // field path, as in Incompatibility.Path ("" = the top-level type)
	Text string // what changed, e.g. "field channel: string, no default"
}

func (c Change) String() string {
	where := c.Path
	if where == "" {
		where = "(top level)"
	}
	return fmt.Sprintf("%c %s: %s", c.Op, where, c.Text)
}

// Diff lists the structural changes from old to new: fields added, removed
// or renamed (by alias), type and default changes, enum symbols, union
// branches, names, aliases, fixed sizes and decimal precision. Field order
// and doc strings are not compared (they do not change what is readable).
func Diff(old, new *Schema) []Change {
	d := &differ{seen: map[[2]*node]bool{}}
	d.diff(old.root, new.root, "")
	return d.out
}

type differ struct {
	seen map[[2]*node]bool
	out  []Change
}

func (d *differ) add(op byte, path, format string, args ...any) {
	d.out = append(d.out, Change{Op: op, Path: path, Text: fmt.Sprintf(format, args...)})
}

func (d *differ) diff(o, n *node, path string) {
	key := [2]*node{o, n}
	if d.seen[key] {
		return
	}
	d.seen[key] = true
	if o.kind != n.kind {
		d.add('~', path, "type %s → %s", o.describe(), n.describe())
		return
	}
	switch o.kind {
	case kRecord, kEnum, kFixed:
		if o.name != n.name {
			d.add('~', path, "%s renamed %s → %s", o.kind, o.name, n.name)
		}
		for _, a := range n.aliases {
			if !slices.Contains(o.aliases, a) {
				d.add('+', path, "%s %s: alias %s", n.kind, n.name, a)
			}
		}
		for _, a := range o.aliases {
			if !slices.Contains(n.aliases, a) {
				d.add('-', path, "%s %s: alias %s", n.kind, n.name, a)
			}
		}
	}
	switch o.kind {
	case kRecord:
		d.fields(o, n, path)
	case kEnum:
		var added, removed []string
		for _, s := range n.symbols {
			if _, ok := o.symbolIdx[s]; !ok {
				added = append(added, s)
			}
		}
		for _, s := range o.symbols {
			if _, ok := n.symbolIdx[s]; !ok {
				removed = append(removed, s)
			}
		}
		if len(added) > 0 {
			d.add('+', path, "enum %s: symbols %s", n.name, strings.Join(added, ", "))
		}
		if len(removed) > 0 {
			d.add('-', path, "enum %s: symbols %s", n.name, strings.Join(removed, ", "))
		}
		switch {
		case o.hasEnumDef && !n.hasEnumDef:
			d.add('-', path, "enum %s: default %s", n.name, o.enumDef)
		case !o.hasEnumDef && n.hasEnumDef:
			d.add('+', path, "enum %s: default %s", n.name, n.enumDef)
		case o.hasEnumDef && o.enumDef != n.enumDef:
			d.add('~', path, "enum %s: default %s → %s", n.name, o.enumDef, n.enumDef)
		}
	case kFixed:
		if o.size != n.size {
			d.add('~', path, "fixed %s: size %d → %d", n.name, o.size, n.size)
		}
		d.logical(o, n, path)
	case kArray:
		d.diff(o.items, n.items, path+"[]")
	case kMap:
		d.diff(o.items, n.items, path+"{}")
	case kUnion:
		oi := map[string]*node{}
		for _, b := range o.branches {
			oi[b.branchName] = b
		}
		ni := map[string]*node{}
		for _, b := range n.branches {
			ni[b.branchName] = b
		}
		for _, b := range n.branches {
			if ob, ok := oi[b.branchName]; ok {
				d.diff(ob, b, path)
			} else {
				d.add('+', path, "union branch %s", b.describe())
			}
		}
		for _, b := range o.branches {
			if _, ok := ni[b.branchName]; !ok {
				d.add('-', path, "union branch %s", b.describe())
			}
		}
	default:
		d.logical(o, n, path)
	}
}

func (d *differ) logical(o, n *node, path string) {
	if o.logical != n.logical || o.logical == lDecimal && (o.precision != n.precision || o.scale != n.scale) {
		d.add('~', path, "type %s → %s", describeLogical(o), describeLogical(n))
	}
}

func describeLogical(n *node) string {
	if n.logical == lDecimal {
		return describeDecimal(n) + " (" + n.kind.String() + ")"
	}
	return n.describe()
}

func (d *differ) fields(o, n *node, path string) {
	matched := map[*field]bool{}
	for _, nf := range n.fields {
		fp := joinPath(path, nf.name)
		of := findWriterField(o, nf)
		if of == nil {
			d.add('+', fp, "field %s: %s, %s", nf.name, nf.typ.describe(), describeDefault(nf))
			continue
		}
		matched[of] = true
		if of.name != nf.name {
			d.add('~', fp, "field renamed %s → %s (alias)", of.name, nf.name)
		}
		d.diff(of.typ, nf.typ, fp)
		switch {
		case of.hasDefault && !nf.hasDefault:
			d.add('-', fp, "default %s", defaultJSON(of.def))
		case !of.hasDefault && nf.hasDefault:
			d.add('+', fp, "default %s", defaultJSON(nf.def))
		case of.hasDefault && defaultJSON(of.def) != defaultJSON(nf.def):
			d.add('~', fp, "default %s → %s", defaultJSON(of.def), defaultJSON(nf.def))
		}
	}
	for _, of := range o.fields {
		if !matched[of] {
			d.add('-', joinPath(path, of.name), "field %s: %s, %s", of.name, of.typ.describe(), describeDefault(of))
		}
	}
}

func describeDefault(f *field) string {
	if !f.hasDefault {
		return "no default"
	}
	return "default " + defaultJSON(f.def)
}

func defaultJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
