package schemas

import (
	"errors"
	"fmt"
)

// Dead-letter reasons: short, stable codes that the producer writes to a dead
// letter's ordo-dlq-reason header. Errors report theirs through a
// DeadLetterReason() string method, so the producer needs no import of this
// package (the same convention as Transient() bool).
const (
	ReasonTombstone         = "tombstone"          // null value: a Kafka delete marker, not an event
	ReasonEmptyPayload      = "empty_payload"      // zero-length (but not null) value
	ReasonMalformed         = "malformed"          // bad framing or Avro body
	ReasonUnknownSchema     = "unknown_schema"     // the registry answered 40403 for the record's schema id
	ReasonUnsupportedSchema = "unsupported_schema" // the id names a non-Avro schema, one with references, or unparsable text
)

// MalformedError reports a payload that can never be decoded (bad framing,
// truncated or corrupt Avro body, trailing bytes). It is permanent: retrying
// the same bytes gives the same result, so the pipeline should dead-letter.
type MalformedError struct {
	SchemaID int    // writer schema id, -1 when the header itself was bad
	Type     string // writer full name, "" when unknown
	Offset   int    // byte offset inside the Avro body (or the frame for header errors)
	Reason   string // human readable cause
	Err      error  // optional underlying error
}

// Error renders "avro: schema id 7 (com.acme.X): truncated body at offset N"
// style messages so operators can find the broken byte quickly.
func (e *MalformedError) Error() string {
	switch {
	case errors.Is(e.Err, ErrTombstone):
		return ErrTombstone.Error()
	case e.SchemaID < 0:
		return "avro: malformed frame: " + e.Reason
	case e.Type == "":
		return fmt.Sprintf("avro: schema id %d: %s", e.SchemaID, e.Reason)
	default:
		return fmt.Sprintf("avro: schema id %d (%s): %s", e.SchemaID, e.Type, e.Reason)
	}
}

// Unwrap exposes the underlying error, if any.
func (e *MalformedError) Unwrap() error { return e.Err }

// Transient reports false: a malformed payload stays malformed.
func (e *MalformedError) Transient() bool { return false }

// DeadLetterReason is ReasonTombstone, ReasonEmptyPayload or ReasonMalformed.
func (e *MalformedError) DeadLetterReason() string {
	switch {
	case errors.Is(e.Err, ErrTombstone):
		return ReasonTombstone
	case errors.Is(e.Err, ErrEmptyPayload):
		return ReasonEmptyPayload
	}
	return ReasonMalformed
}

// UnknownSchemaError means the registry answered that the schema id does not
// exist (HTTP 404 with Confluent error code 40403). Permanent: ids are never
// reassigned, so the record references a schema from another registry or is
// corrupt. A 404 without 40403 (a proxy, a wrong URL path) is transient.
type UnknownSchemaError struct {
	ID  int
	Err error
}

// Error implements error.
func (e *UnknownSchemaError) Error() string {
	return fmt.Sprintf("avro: schema id %d not found in registry: %v", e.ID, e.Err)
}

// Unwrap exposes the registry's error.
func (e *UnknownSchemaError) Unwrap() error { return e.Err }

// Transient reports false: the id will not appear later.
func (e *UnknownSchemaError) Transient() bool { return false }

// DeadLetterReason is ReasonUnknownSchema.
func (e *UnknownSchemaError) DeadLetterReason() string { return ReasonUnknownSchema }

// TransientError wraps failures that may succeed on retry or once an operator
// fixes something outside ordo: network errors, timeouts, and every registry
// answer that is not about the record itself (401/403 refused credentials,
// 408, 429, 5xx, a 404 without error code 40403, an output schema the
// registry rejects or does not have). The event is valid, so it is retried
// (the pipeline stalls and alerts), never dead-lettered. ordo's processors package
// classifies errors by the Transient method, so this package does not need to
// import it.
type TransientError struct {
	Op  string // what was being attempted, e.g. "fetch schema id 7"
	Err error
}

// Error implements error.
func (e *TransientError) Error() string {
	return fmt.Sprintf("avro: %s: transient registry error: %v", e.Op, e.Err)
}

// Unwrap exposes the cause (e.g. context.DeadlineExceeded).
func (e *TransientError) Unwrap() error { return e.Err }

// Transient reports true so callers retry with backoff.
func (e *TransientError) Transient() bool { return true }

// RegistryError is a permanent problem with the schema a record names: the
// registry returned it, but it is not Avro, uses references, or does not
// parse. Ids are immutable, so retrying the record cannot help. (Registry
// refusals such as 401, 409 or 422 are configuration faults outside the
// record and are *TransientError.)
type RegistryError struct {
	Op  string
	Err error
}

// Error implements error.
func (e *RegistryError) Error() string {
	return fmt.Sprintf("avro: %s: %v", e.Op, e.Err)
}

// Unwrap exposes the registry's error (usually *sr.ResponseError).
func (e *RegistryError) Unwrap() error { return e.Err }

// Transient reports false.
func (e *RegistryError) Transient() bool { return false }

// DeadLetterReason is ReasonUnsupportedSchema.
func (e *RegistryError) DeadLetterReason() string { return ReasonUnsupportedSchema }
