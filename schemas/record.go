package schemas

import "encoding/json"

// Record is a record value laid out in slots: Values[i] is the value of
// field Names[i]. It is the hot path's alternative to map[string]any where
// the fields are known when the config is built (orchestrate's commands):
// one slice per record instead of a hash map, no per-field hashing, and the
// encoder walks the slots in schema order. Names is shared by every record
// of one layout and is never modified; lay it out in the schema's field
// order and the encoder matches each field at its own index.
//
// A slot holding Unset takes the field's default when encoded (an error if
// the field has none). A record nested as a field value is a *Record; the
// other slot values are in natural form (see Schema.AppendNatural).
type Record struct {
	Names  []string
	Values []any
}

type unsetSlot struct{}

// Unset marks a Record slot without a value: the encoder writes the field's
// default, and Natural leaves the field out.
var Unset any = unsetSlot{}

// Get returns the value of field name, and false when the record has no such
// field or its slot is Unset.
func (r *Record) Get(name string) (any, bool) {
	for i, n := range r.Names {
		if n == name && i < len(r.Values) {
			if r.Values[i] == Unset {
				return nil, false
			}
			return r.Values[i], true
		}
	}
	return nil, false
}

// Set sets field name's slot to v, and reports false when the record has
// no such field.
func (r *Record) Set(name string, v any) bool {
	for i, n := range r.Names {
		if n == name && i < len(r.Values) {
			r.Values[i] = v
			return true
		}
	}
	return false
}

// Natural returns the record as a new map[string]any (the form of
// Event.Value), Unset slots left out (and names without a value, in a
// malformed record). Records nested at any depth (a slot, an array's
// element, a map's value) are converted too: arrays and maps holding one
// are copied, others are shared, as are the scalars.
// It allocates; the hot path never calls it.
func (r *Record) Natural() map[string]any {
	m := make(map[string]any, len(r.Names))
	for i, n := range r.Names[:min(len(r.Names), len(r.Values))] {
		if v := r.Values[i]; v != Unset {
			m[n] = naturalSlot(v)
		}
	}
	return m
}

// MarshalJSON writes the record as its Natural map (field names as keys),
// so that a record in a value marshalled as JSON (attrs forwarded in a
// header, a log line) reads as the map it stands for.
func (r *Record) MarshalJSON() ([]byte, error) {
	return json.Marshal(r.Natural())
}

// naturalSlot converts the records within v to maps (see Natural).
func naturalSlot(v any) any {
	switch x := v.(type) {
	case *Record:
		if x == nil {
			return nil
		}
		return x.Natural()
	case []any:
		if !holdsRecord(x) {
			return x
		}
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = naturalSlot(e)
		}
		return out
	case map[string]any:
		has := false
		for _, e := range x {
			if holdsRecord(e) {
				has = true
				break
			}
		}
		if !has {
			return x
		}
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = naturalSlot(e)
		}
		return out
	}
	return v
}

// holdsRecord reports whether v is or contains a *Record.
func holdsRecord(v any) bool {
	switch x := v.(type) {
	case *Record:
		return true
	case []any:
		for _, e := range x {
			if holdsRecord(e) {
				return true
			}
		}
	case map[string]any:
		for _, e := range x {
			if holdsRecord(e) {
				return true
			}
		}
	}
	return false
}

// field implements fieldSource: the value of the schema's i-th field, name,
// looked for at index i first; an Unset slot counts as absent.
func (r *Record) field(i int, name string) (any, bool) {
	if i < len(r.Names) && r.Names[i] == name {
		v := r.Values[i]
		return v, v != Unset
	}
	for j, n := range r.Names {
		if n == name {
			v := r.Values[j]
			return v, v != Unset
		}
	}
	return nil, false
}

// appendSlots is appendRecord for a *Record: the same checks (unknown field,
// required field missing) and the same bytes as the record's Natural map.
func appendSlots(dst []byte, n *node, r *Record) ([]byte, error) {
	if len(r.Values) != len(r.Names) {
		return dst, perr("record %s: %d names but %d values", n.name, len(r.Names), len(r.Values))
	}
	set := 0
	for _, v := range r.Values {
		if v != Unset {
			set++
		}
	}
	dst, matched, err := appendFields(dst, n, r)
	if err != nil {
		return dst, err
	}
	if matched != set {
		for i, k := range r.Names {
			if _, ok := n.fieldIdx[k]; !ok && r.Values[i] != Unset {
				return dst, perr("record %s has no field %q", n.name, k)
			}
		}
		return dst, perr("record %s: a field name appears twice", n.name)
	}
	return dst, nil
}
