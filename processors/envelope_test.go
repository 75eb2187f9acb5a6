package processors

import (
	"testing"
	"time"

	"github.com/ordo-dev/ordo/schemas"
)

// TestEnvelopeFromRecordMatchesTheMap: the one-pass reader of a decoded
// envelope gives what the natural form gives, for a full envelope, one with
// Unset and null slots, fields in another order and a foreign field.
func TestEnvelopeFromRecordMatchesTheMap(t *testing.T) {
	at := time.Date(2026, 12, 6, 8, 30, 0, 0, time.UTC)
	for _, r := range []*schemas.Record{
		{Names: []string{"id", "type", "source", "time", "correlation_id", "causation_id"},
			Values: []any{"e-1", "com.acme.X", "shop", at, "o-1", "c-0"}},
		{Names: []string{"id", "type", "source", "time", "correlation_id", "causation_id"},
			Values: []any{"e-2", schemas.Unset, "shop", schemas.Unset, "o-2", nil}},
		{Names: []string{"causation_id", "extra", "correlation_id", "id", "time"},
			Values: []any{"c-3", int64(7), "o-3", "e-3", at}},
		{Names: []string{"id", "type"}, Values: []any{"e-4"}}, // malformed: more names than slots
	} {
		got, want := EnvelopeFromRecord(r), EnvelopeFrom(r.Natural())
		if got != want {
			t.Errorf("%v: EnvelopeFromRecord = %+v, from the map %+v", r.Names, got, want)
		}
		if got.ID == "" {
			t.Errorf("%v: no id read", r.Names)
		}
	}
}
