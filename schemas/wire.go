// Package schemas is ordo's Avro layer: Confluent wire framing, schema
// parsing on top of goavro, safe decoding of untrusted payloads, Avro schema
// resolution (writer -> reader), the "natural" Go form that processors work
// with, and a caching Schema Registry client plus the Serde the pipeline calls.
//
// goavro only decodes with the writer schema (linkedin/goavro #114, #166) and
// trusts declared lengths and block counts, so this package adds a bounds
// checking pre-scan (see validate.go) and a precomputed resolver (resolve.go).
package schemas

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// MagicByte is the first byte of every Confluent-framed message. Anything
// else means the payload was not produced by a Schema Registry serializer.
const MagicByte = 0

// HeaderSize is the size of the Confluent header: magic byte + 4-byte
// big-endian schema id.
const HeaderSize = 5

// ErrEmptyPayload is wrapped by ParseHeader's error for a zero-length (but
// not null) value.
var ErrEmptyPayload = errors.New("avro: empty payload (no Confluent framing)")

// ErrTombstone is wrapped by ParseHeader's error for a nil value: a Kafka
// tombstone (null value, a delete marker for compacted topics), which is not
// an event. franz-go hands a null value to the consumer as a nil slice and a
// zero-length one as an empty non-nil slice, so the two are told apart.
var ErrTombstone = errors.New("avro: tombstone (null value): a Kafka delete marker, not an event")

// ParseHeader splits a Confluent-framed value into the schema id and the Avro
// body. It returns a *MalformedError (permanent) when the framing is wrong so
// callers can dead-letter the record instead of retrying it. A nil b (a
// tombstone) and an empty b are reported differently (ErrTombstone,
// ErrEmptyPayload).
func ParseHeader(b []byte) (schemaID int, body []byte, err error) {
	switch {
	case b == nil:
		return 0, nil, &MalformedError{SchemaID: -1, Offset: 0, Reason: "tombstone (null value)", Err: ErrTombstone}
	case len(b) == 0:
		return 0, nil, &MalformedError{SchemaID: -1, Offset: 0, Reason: "empty payload (no Confluent framing)", Err: ErrEmptyPayload}
	case b[0] != MagicByte:
		return 0, nil, &MalformedError{SchemaID: -1, Offset: 0, Reason: fmt.Sprintf("unknown magic byte 0x%02x (want 0x00)", b[0])}
	case len(b) < HeaderSize:
		return 0, nil, &MalformedError{SchemaID: -1, Offset: len(b), Reason: fmt.Sprintf("truncated header: %d of %d bytes", len(b), HeaderSize)}
	}
	id := int(binary.BigEndian.Uint32(b[1:5]))
	if len(b) == HeaderSize {
		return id, nil, &MalformedError{SchemaID: id, Offset: HeaderSize, Reason: "header only, Avro body missing"}
	}
	return id, b[HeaderSize:], nil
}

// AppendHeader appends the Confluent header for schemaID to dst; the Avro
// body is appended by the caller, which lets encoders frame without copying.
func AppendHeader(dst []byte, schemaID int) []byte {
	return binary.BigEndian.AppendUint32(append(dst, MagicByte), uint32(schemaID))
}
