package schemas

import (
	"context"
	"errors"
	"fmt"

	"github.com/ordo-dev/ordo/internal/cow"
)

// Serde is what the pipeline calls to turn Kafka values into natural
// records and back. Several event types may share a topic, so decoding
// dispatches on the writer schema's full name, and values are resolved to
// ordo's own reader schema for that type when it has one.
type Serde struct {
	reg          *Registry
	readers      map[string]*Schema
	strategy     SubjectStrategy
	autoRegister bool

	// ids maps (subject, fullName) -> schema id used for framing. Read on
	// every encode by every worker, written once per key: a copy-on-write
	// map keeps the readers off a shared lock.
	ids cow.Map[encKey, int]
	// encs maps (topic, fullName) -> the subject's schema id, so the hot
	// path neither builds the subject string nor looks it up per record.
	encs cow.Map[topicType, int]
}

type encKey struct{ subject, fullName string }

type topicType struct{ topic, fullName string }

// SerdeOpt configures NewSerde.
type SerdeOpt func(*Serde)

// WithSubjectStrategy sets how registry subjects are named
// (registry.subject_strategy). Default TopicName ("<topic>-value"), as
// Confluent's serializers: producers and consumers must agree on it, and a
// topic carrying several event types needs TopicRecordName or RecordName.
func WithSubjectStrategy(s SubjectStrategy) SerdeOpt {
	return func(sd *Serde) { sd.strategy = s }
}

// WithAutoRegister sets whether Encode registers a writer schema on first
// use (registry.auto_register). Default true: a new command type works
// without a separate registration step, but the registry's compatibility
// check is then the only gate. With false, a schema must already be
// registered (with identical text, or as the subject's latest version) and
// a read-only registry credential suffices; a missing registration is
// transient, so it stalls the pipeline, never dead-letters.
func WithAutoRegister(on bool) SerdeOpt {
	return func(sd *Serde) { sd.autoRegister = on }
}

// NewSerde builds a Serde. readers maps full name -> ordo's schema for that
// type (e.g. from Demo()); they are used both as reader schemas when
// decoding and as writer schemas when encoding. The map is copied. Without
// options, subjects follow TopicName and writer schemas are auto-registered.
func NewSerde(reg *Registry, readers map[string]*Schema, opts ...SerdeOpt) *Serde {
	rs := make(map[string]*Schema, len(readers))
	for k, v := range readers {
		rs[k] = v
	}
	s := &Serde{reg: reg, readers: rs, strategy: TopicName, autoRegister: true}
	for _, o := range opts {
		if o != nil {
			o(s)
		}
	}
	return s
}

// Decoded is one decoded Kafka value.
type Decoded struct {
	SchemaID int    // writer schema id from the frame
	Type     string // writer full name, e.g. "com.acme.checkout.OrderPlaced"
	// Value is the record in natural form, resolved to ordo's reader schema
	// for Type if there is one, else as written. DecodeRecord sets Record
	// instead.
	Value map[string]any
	// Record is the same value from DecodeRecord: records are *Record
	// (slots in the reader's field order) instead of maps, at any depth;
	// Record.Natural gives Value.
	Record *Record
}

// Decode parses a Confluent-framed value. Malformed payloads give a
// permanent *MalformedError ("avro: schema id 7 (com.acme.X): truncated
// body ... at offset N"; a nil value, i.e. a tombstone, wraps ErrTombstone
// and an empty one ErrEmptyPayload), unknown ids a permanent
// *UnknownSchemaError, registry outages and refusals a *TransientError
// (Transient() == true), and writer/reader incompatibility a permanent error.
func (s *Serde) Decode(ctx context.Context, topic string, value []byte) (Decoded, error) {
	// topic is part of the signature for future per-topic policies; errors
	// are not prefixed with it because the consumer logs topic/offset.
	return s.decode(ctx, value, false)
}

// DecodeRecord is Decode with the value as a *Record (Decoded.Record) in
// place of a map: the same errors, and Record.Natural() equals the Value
// Decode gives. A record costs slots of a chunk shared by the datum
// instead of a map of its own. Its strings point into value instead of a
// copy (Decode copies): value must not change while the result is in use,
// as a fetched record's value does not; Detach what you keep.
func (s *Serde) DecodeRecord(ctx context.Context, topic string, value []byte) (Decoded, error) {
	return s.decode(ctx, value, true)
}

func (s *Serde) decode(ctx context.Context, value []byte, records bool) (Decoded, error) {
	id, body, err := ParseHeader(value)
	if err != nil {
		return Decoded{}, err
	}
	w, err := s.reg.SchemaByID(ctx, id)
	if err != nil {
		return Decoded{SchemaID: id}, err
	}
	if records {
		return s.decodeRecordWith(w, body)
	}
	return s.decodeWith(w, body)
}

func (s *Serde) decodeWith(w *Schema, body []byte) (Decoded, error) {
	d := Decoded{SchemaID: w.ID, Type: w.FullName}
	v, err := w.decodeNatural(s.readers[w.FullName], body)
	if err == nil {
		d.Value, err = topRecord[map[string]any](w, v)
	}
	return d, err
}

func (s *Serde) decodeRecordWith(w *Schema, body []byte) (Decoded, error) {
	d := Decoded{SchemaID: w.ID, Type: w.FullName}
	v, err := w.decodeRecord(s.readers[w.FullName], body)
	if err == nil {
		d.Record, err = topRecord[*Record](w, v)
	}
	return d, err
}

// topRecord is the decoded top-level value as a record (a map or a
// *Record), or a permanent error for a schema whose top level is not one.
func topRecord[T map[string]any | *Record](w *Schema, v any) (T, error) {
	r, ok := v.(T)
	if !ok {
		return r, &MalformedError{SchemaID: w.ID, Type: w.FullName, Reason: fmt.Sprintf("top-level type is %T, not a record", v)}
	}
	return r, nil
}

// ErrUnknownType is returned by Encode for a type ordo has no schema for.
var ErrUnknownType = errors.New("avro: no schema for type")

// Encode encodes v (natural form) as fullName using ordo's schema for that
// type and frames it with the registry id: registered on first use when
// autoRegister is set, otherwise looked up under the strategy's subject
// (falling back to the subject's latest version if it is the same schema).
// The id is cached per (subject, type). Registry failures, including a
// schema that is not registered with auto-register off, are transient: the
// event is fine, ordo's deployment is not.
func (s *Serde) Encode(ctx context.Context, topic, fullName string, v map[string]any) ([]byte, error) {
	return s.AppendEncoded(ctx, make([]byte, 0, 256), topic, fullName, v)
}

// AppendEncoded is Encode appending the framed value to dst, so that the
// commands of an event can share one buffer. v is a natural
// map[string]any or a *Record laid out in slots. On error dst is returned
// unchanged.
func (s *Serde) AppendEncoded(ctx context.Context, dst []byte, topic, fullName string, v any) ([]byte, error) {
	sch := s.readers[fullName]
	if sch == nil {
		return dst, fmt.Errorf("%w %s", ErrUnknownType, fullName)
	}
	var id int
	if v, ok := s.encs.Load(topicType{topic, fullName}); ok {
		id = v
	} else {
		var err error
		if id, err = s.schemaID(ctx, s.strategy.Subject(topic, fullName, false), sch); err != nil {
			return dst, err
		}
		s.encs.Store(topicType{topic, fullName}, id)
	}
	out, err := appendNatural(AppendHeader(dst, id), sch.root, v)
	if err != nil {
		return dst, fmt.Errorf("topic %s: avro: from natural %s: %w", topic, sch.FullName, err)
	}
	return out, nil
}

func (s *Serde) schemaID(ctx context.Context, subject string, sch *Schema) (int, error) {
	k := encKey{subject, sch.FullName}
	if id, ok := s.ids.Load(k); ok {
		return id, nil
	}
	var id int
	var err error
	if s.autoRegister {
		id, err = s.reg.Register(ctx, subject, sch.Text)
	} else {
		id, err = s.reg.Lookup(ctx, subject, sch.Text)
		// Not registered by that exact text: the latest version may still
		// be the same schema written differently.
		if err != nil && IsNotRegistered(err) {
			latest, lerr := s.reg.Latest(ctx, subject)
			switch {
			case lerr == nil && jsonEqualText(latest.Text, sch.Text):
				id, err = latest.ID, nil
			case lerr == nil:
				// Transient: the event is fine, ordo's deployment is not.
				err = &TransientError{Op: "look up schema under subject " + subject, Err: fmt.Errorf(
					"%s is not registered under subject %s (latest is id %d) and auto-register is off: register it, or set registry.auto_register: true: %w",
					sch.FullName, subject, latest.ID, err)}
			}
		}
	}
	if err != nil {
		return 0, err
	}
	s.ids.Store(k, id)
	return id, nil
}
