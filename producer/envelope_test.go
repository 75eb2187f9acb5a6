package producer

import (
	"testing"
	"time"

	"github.com/ordo-dev/ordo/schemas"
)

// TestEnvelopeOfRecordMatchesLookups: the one-pass reader of a command's
// envelope record gives what a lookup per field gives (Unset slots absent),
// whatever the field order, with foreign fields and missing slots.
func TestEnvelopeOfRecordMatchesLookups(t *testing.T) {
	at := time.Date(2026, 12, 6, 8, 30, 0, 0, time.UTC)
	for _, r := range []*schemas.Record{
		{Names: []string{"id", "type", "source", "time", "correlation_id", "causation_id"},
			Values: []any{"e-1", "com.acme.X", "shop", at, "o-1", "c-0"}},
		{Names: []string{"id", "type", "source", "time", "correlation_id", "causation_id"},
			Values: []any{"e-2", schemas.Unset, "shop", schemas.Unset, "o-2", nil}},
		{Names: []string{"causation_id", "extra", "correlation_id", "id", "time"},
			Values: []any{"c-3", int64(7), "o-3", "e-3", at}},
		{Names: []string{"id", "type"}, Values: []any{"e-4"}},
	} {
		got := envelopeOfRecord(r)
		want := envelopeFrom(func(k string) any { v, _ := r.Get(k); return v })
		if got != want {
			t.Errorf("%v: envelopeOfRecord = %+v, by lookups %+v", r.Names, got, want)
		}
	}
}
