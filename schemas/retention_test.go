package schemas

import (
	"runtime"
	"testing"
	"weak"
)

// Datums decoded one after another share chunks (see decProgram.scanner).
// One datum kept alive may keep its chunks' neighbours alive, but never a
// chain of them back through everything decoded before: in a consumer,
// the few events still in flight would otherwise keep seconds of decoded
// events and the fetched buffers their strings are read from on the heap
// (a 145 MB live heap under a 192 MiB limit, bench/findings.md).
func TestAKeptDatumDoesNotKeepEarlierDatumsAlive(t *testing.T) {
	s := mustSchema(t, 1, boxingSchema)
	const n, early = 4000, 3950 // all but the last generations
	var alive []weak.Pointer[byte]
	var kept any
	for i := range n {
		body, err := s.EncodeNatural(boxingDatum(i)) // its own buffer, as a fetched record's
		if err != nil {
			t.Fatal(err)
		}
		v, err := s.decodeRecord(s, body)
		if err != nil {
			t.Fatal(err)
		}
		if i < early {
			alive = append(alive, weak.Make(&body[0]))
		}
		kept = v
	}
	runtime.GC()
	runtime.GC()
	still := 0
	for _, w := range alive {
		if w.Value() != nil {
			still++
		}
	}
	runtime.KeepAlive(kept)
	if still > 0 {
		t.Fatalf("keeping the last of %d decoded datums keeps %d of the first %d datums' bodies alive: decoded chunks chain datums together", n, still, early)
	}
}
