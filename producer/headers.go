// Package producer builds the records ordo writes: commands and dead letters
// inside the consumer's transaction (Output), and the Publisher SDK that other
// teams' Go services use to publish events ordo consumes.
package producer

// Header keys ordo sets on every command it emits. The envelope is also inside
// the Avro value; the headers let routers, kcat users and tracing read it
// without decoding.
const (
	HeaderID            = "ordo-id"
	HeaderType          = "ordo-type"
	HeaderSource        = "ordo-source"
	HeaderTime          = "ordo-time" // RFC 3339, milliseconds
	HeaderCorrelationID = "ordo-correlation-id"
	HeaderCausationID   = "ordo-causation-id"
	// HeaderInput names the input record a command was derived from as
	// "topic/partition/offset", so a verifier can prove that no input record
	// produced a command twice.
	HeaderInput = "ordo-input"

	// W3C trace context, carried from input to output.
	HeaderTraceparent = "traceparent"
	HeaderTracestate  = "tracestate"
	HeaderBaggage     = "baggage"
)

// Header keys ordo adds to a dead-letter record. The original key, value and
// headers are kept unchanged, unless the dead letter would be too large for
// its topic (see Output.DeadLetterContext).
const (
	HeaderDLQErrorClass      = "ordo-dlq-error-class" // "permanent"
	HeaderDLQReason          = "ordo-dlq-reason"      // short code: see DeadLetterReason
	HeaderDLQError           = "ordo-dlq-error"       // the error message
	HeaderDLQProcessor       = "ordo-dlq-processor"   // "decode" or the processor name
	HeaderDLQSourceTopic     = "ordo-dlq-source-topic"
	HeaderDLQSourcePartition = "ordo-dlq-source-partition"
	HeaderDLQSourceOffset    = "ordo-dlq-source-offset"
	HeaderDLQTime            = "ordo-dlq-time" // RFC 3339, when ordo dead-lettered it
	HeaderDLQGroup           = "ordo-dlq-group"

	// Only on a bounded dead letter (ordo-dlq-reason record_too_large):
	HeaderDLQOriginalReason = "ordo-dlq-original-reason" // why the event was dead-lettered
	HeaderDLQTruncated      = "ordo-dlq-truncated"       // what was cut: "value", "key", "headers", "error", comma-separated
	HeaderDLQRecordSize     = "ordo-dlq-record-size"     // estimated bytes of the full dead letter
	HeaderDLQValueSize      = "ordo-dlq-value-size"      // the original value's length
	HeaderDLQKeySize        = "ordo-dlq-key-size"        // the original key's length
)
