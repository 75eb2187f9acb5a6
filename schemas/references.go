package schemas

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/sr"
)

// ExpandReferences makes a schema that names types defined elsewhere
// (Confluent schema references, e.g. a shared com.acme.Money, or a sibling
// .avsc file) self-contained: each referenced named type is inlined, with
// its full name, at its first use, and later uses stay by-name references.
// goavro and ordo's parser only accept self-contained schemas.
//
// refs are the texts of the schemas that may define the types; they may use
// each other's types (pass them already expanded, or all together). used
// lists, in order, the indexes of the refs whose types text names directly:
// its Confluent "references". Text that names no type from refs is
// returned unchanged.
//
// A referenced type in the null namespace cannot be inlined into a schema
// with a namespace (Avro would give it the enclosing namespace); that is an
// error.
func ExpandReferences(text string, refs []string) (expanded string, used []int, err error) {
	root, err := decodeJSON(text)
	if err != nil {
		return "", nil, fmt.Errorf("avro: schema JSON: %w", err)
	}
	x := &expander{defs: map[string]refDef{}, defined: map[string]int{}}
	for i, rt := range refs {
		rv, err := decodeJSON(rt)
		if err != nil {
			return "", nil, fmt.Errorf("avro: referenced schema %d: %w", i, err)
		}
		x.collect(rv, "", i)
	}
	out, err := x.rewrite(root, "", -1)
	if err != nil {
		return "", nil, err
	}
	if !x.inlined {
		return text, x.used, nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(out); err != nil {
		return "", nil, fmt.Errorf("avro: encode expanded schema: %w", err)
	}
	return strings.TrimSpace(buf.String()), x.used, nil
}

// ParseSchemaWithReferences is ParseSchema for a schema with references
// (see ExpandReferences). The returned Schema's Text is the expanded,
// self-contained schema.
func ParseSchemaWithReferences(id int, text string, refs []string) (*Schema, error) {
	exp, _, err := ExpandReferences(text, refs)
	if err != nil {
		return nil, fmt.Errorf("avro: parse schema id %d: %w", id, err)
	}
	return ParseSchema(id, exp)
}

// NamedTypes returns the full names of the named types (records, enums,
// fixed) that text defines, in order of definition.
func NamedTypes(text string) ([]string, error) {
	v, err := decodeJSON(text)
	if err != nil {
		return nil, fmt.Errorf("avro: schema JSON: %w", err)
	}
	x := &expander{defs: map[string]refDef{}}
	x.collect(v, "", 0)
	return x.order, nil
}

func decodeJSON(text string) (any, error) {
	dec := json.NewDecoder(strings.NewReader(text))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

type refDef struct {
	def map[string]any // the definition, its name made full
	ref int            // index into refs
}

type expander struct {
	defs    map[string]refDef // named types the refs define
	order   []string          // full names in definition order (NamedTypes)
	defined map[string]int    // named types defined so far in the output: full name -> ref index, -1 for the main text
	used    []int
	inlined bool
}

var namedKinds = map[string]bool{"record": true, "error": true, "enum": true, "fixed": true}

// collect records every named type defined in v (enclosing namespace ns).
func (x *expander) collect(v any, ns string, ref int) {
	switch t := v.(type) {
	case []any:
		for _, b := range t {
			x.collect(b, ns, ref)
		}
	case map[string]any:
		typ, isStr := t["type"].(string)
		if !isStr {
			x.collect(t["type"], ns, ref)
			return
		}
		switch {
		case namedKinds[typ]:
			name, _ := t["name"].(string)
			if name == "" {
				return
			}
			full := fullName(name, str(t, "namespace"), ns)
			if _, dup := x.defs[full]; !dup {
				def := make(map[string]any, len(t))
				for k, e := range t {
					def[k] = e
				}
				def["name"] = full
				delete(def, "namespace")
				x.defs[full] = refDef{def: def, ref: ref}
				x.order = append(x.order, full)
			}
			if fs, ok := t["fields"].([]any); ok {
				for _, f := range fs {
					if fm, ok := f.(map[string]any); ok {
						x.collect(fm["type"], namespaceOf(full), ref)
					}
				}
			}
		case typ == "array":
			x.collect(t["items"], ns, ref)
		case typ == "map":
			x.collect(t["values"], ns, ref)
		}
	}
}

// lookup resolves a type name used in namespace ns the way Avro does: the
// namespace-qualified name first, then the name as written.
func lookup[V any](m map[string]V, name, ns string) (string, V, bool) {
	if ns != "" && !strings.Contains(name, ".") {
		if v, ok := m[ns+"."+name]; ok {
			return ns + "." + name, v, true
		}
	}
	v, ok := m[name]
	return name, v, ok
}

func (x *expander) use(owner, ref int) {
	if owner == -1 && ref >= 0 && !slices.Contains(x.used, ref) {
		x.used = append(x.used, ref)
	}
}

// rewrite copies v, inlining referenced types at first use. owner is the
// ref whose definition v belongs to, -1 for the main text.
func (x *expander) rewrite(v any, ns string, owner int) (any, error) {
	switch t := v.(type) {
	case string:
		if _, prim := primitiveKinds[t]; prim {
			return t, nil
		}
		if _, by, ok := lookup(x.defined, t, ns); ok {
			x.use(owner, by)
			return t, nil
		}
		full, d, ok := lookup(x.defs, t, ns)
		if !ok {
			return t, nil // unknown: the parser reports it
		}
		if !strings.Contains(full, ".") && ns != "" {
			return nil, fmt.Errorf("avro: referenced type %s is in the null namespace and cannot be used from namespace %s (fix: give %s a namespace)", full, ns, full)
		}
		x.use(owner, d.ref)
		x.inlined = true
		return x.rewrite(d.def, "", d.ref)
	case []any:
		out := make([]any, len(t))
		for i, b := range t {
			r, err := x.rewrite(b, ns, owner)
			if err != nil {
				return nil, err
			}
			out[i] = r
		}
		return out, nil
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[k] = e
		}
		typ, isStr := t["type"].(string)
		if !isStr {
			r, err := x.rewrite(t["type"], ns, owner)
			if err != nil {
				return nil, err
			}
			out["type"] = r
			return out, nil
		}
		switch {
		case namedKinds[typ]:
			name, _ := t["name"].(string)
			if name == "" {
				return out, nil // the parser reports it
			}
			full := fullName(name, str(t, "namespace"), ns)
			if _, dup := x.defined[full]; dup && owner >= 0 {
				// Also defined by the main text or another ref:
				// refer to the first definition.
				return full, nil
			}
			x.defined[full] = owner
			if fs, ok := t["fields"].([]any); ok {
				nf := make([]any, len(fs))
				for i, f := range fs {
					fm, ok := f.(map[string]any)
					if !ok {
						nf[i] = f
						continue
					}
					c := make(map[string]any, len(fm))
					for k, e := range fm {
						c[k] = e
					}
					r, err := x.rewrite(fm["type"], namespaceOf(full), owner)
					if err != nil {
						return nil, err
					}
					if _, has := fm["type"]; has {
						c["type"] = r
					}
					nf[i] = c
				}
				out["fields"] = nf
			}
		case typ == "array" || typ == "map":
			key := "items"
			if typ == "map" {
				key = "values"
			}
			if it, has := t[key]; has {
				r, err := x.rewrite(it, ns, owner)
				if err != nil {
					return nil, err
				}
				out[key] = r
			}
		default:
			// a primitive with attributes, or {"type": "SomeName"}
			r, err := x.rewrite(typ, ns, owner)
			if err != nil {
				return nil, err
			}
			out["type"] = r
		}
		return out, nil
	}
	return v, nil
}

// maxReferenceDepth bounds chains of references (a registry refuses
// cycles; this guards against one that does not).
const maxReferenceDepth = 32

// ReferencedSchemas fetches the schemas refs point to, each expanded with
// its own references, for ParseSchemaWithReferences: the writer schema of
// a record whose schema uses shared types. Each fetch is bounded by the
// fetch timeout; errors are classified as SchemaByID's are: a reference the
// registry does not have is a *RegistryError (the writer schema is broken),
// anything else (network, 401/403, 5xx, 429) is transient.
func (r *Registry) ReferencedSchemas(ctx context.Context, refs []sr.SchemaReference) ([]string, error) {
	return r.referencedSchemas(ctx, refs, 0)
}

func (r *Registry) referencedSchemas(ctx context.Context, refs []sr.SchemaReference, depth int) ([]string, error) {
	if depth > maxReferenceDepth {
		return nil, &RegistryError{Op: "resolve schema references", Err: fmt.Errorf("references nest deeper than %d levels", maxReferenceDepth)}
	}
	out := make([]string, 0, len(refs))
	for _, ref := range refs {
		op := fmt.Sprintf("schema reference %s (subject %s version %d)", ref.Name, ref.Subject, ref.Version)
		fctx, cancel := context.WithTimeout(ctx, r.fetchTimeout)
		ss, err := r.cl.SchemaByVersion(fctx, ref.Subject, ref.Version)
		cancel()
		if err != nil {
			if IsNotRegistered(err) { // the writer schema names a reference that does not exist
				return nil, &RegistryError{Op: op, Err: err}
			}
			return nil, &TransientError{Op: op, Err: explain(err, false)}
		}
		if ss.Type != sr.TypeAvro {
			return nil, &RegistryError{Op: op, Err: fmt.Errorf("schema type %v is not Avro", ss.Type)}
		}
		sub, err := r.referencedSchemas(ctx, ss.References, depth+1)
		if err != nil {
			return nil, err
		}
		exp, _, err := ExpandReferences(ss.Schema.Schema, sub)
		if err != nil {
			return nil, &RegistryError{Op: op, Err: err}
		}
		out = append(out, exp)
	}
	return out, nil
}
