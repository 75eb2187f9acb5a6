package schemas

import (
	"fmt"
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

// UnknownSchemaError means the registry answered that the schema id does not
// exist (error code 40403 / HTTP 404). Permanent: ids are never reassigned,
// so the record references a schema from another registry or is corrupt.
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

// TransientError wraps failures that may succeed on retry: network errors,
// timeouts, 5xx and 429 answers from the registry. ordo's processors package
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

// RegistryError is a permanent, non-404 registry answer (e.g. 409
// incompatible schema, 422 invalid schema, 401 unauthorized): retrying does
// not help until someone changes configuration.
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
