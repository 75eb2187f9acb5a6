package schemas

import (
	"context"
	"testing"

	"github.com/ordo-dev/ordo/schemas/internal/avroref"
)

// FuzzDecode feeds arbitrary frames through the full Serde decode path
// (writer schemas of the interop vectors, resolution to the vector reader,
// natural form). It must never panic, it must agree with the independent
// reference (hamba/avro, see reference_test.go) on every input, both
// resolved and as written, and whatever decodes must re-encode with the
// reader schema and decode again to the same value.
func FuzzDecode(f *testing.F) {
	v := loadVectors(f)
	for _, c := range v.Valid {
		f.Add(mustHex(f, c.PayloadHex))
	}
	for _, c := range v.Invalid {
		f.Add(mustHex(f, c.PayloadHex))
	}
	// Decode against pre-parsed writers (no HTTP in the fuzz loop).
	s := NewSerde(nil, map[string]*Schema{v.reader.FullName: v.reader}, WithAutoRegister(false))
	ref := avroref.New(refMaxAlloc)
	resolved, asWritten := map[int]*refPair{}, map[int]*refPair{}
	for id, w := range v.writers {
		resolved[id], asWritten[id] = newRefPair(f, w, v.reader), newRefPair(f, w, nil)
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		id, body, err := ParseHeader(frame)
		if err != nil {
			return
		}
		w := v.writers[id]
		if w == nil {
			return
		}
		var out refOutcome
		compareDecode(t, ref, resolved[id], body, false, &out)
		compareDecode(t, ref, asWritten[id], body, false, &out)
		d, err := s.decodeWith(w, body)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		enc, err := v.reader.EncodeNatural(d.Value)
		if err != nil {
			t.Fatalf("decoded value does not re-encode: %v\n%#v", err, d.Value)
		}
		again, err := s.decodeWith(v.reader, enc)
		if err != nil {
			t.Fatalf("re-encoded value does not decode: %v", err)
		}
		if diff := naturalDiff("$", again.Value, d.Value); diff != "" {
			t.Fatalf("round trip changed value: %s", diff)
		}
	})
}

// BenchmarkDecode measures decode + resolve + natural of vector 0 (schema
// already cached, as in steady state).
func BenchmarkDecode(b *testing.B) {
	v := loadVectors(b)
	_, cl := newFakeSR(b, v)
	s := NewSerde(NewRegistry(cl), map[string]*Schema{v.reader.FullName: v.reader}, WithAutoRegister(false))
	frame := mustHex(b, v.Valid[0].PayloadHex)
	ctx := context.Background()
	if _, err := s.Decode(ctx, "checkout.orders.v1", frame); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		if _, err := s.Decode(ctx, "checkout.orders.v1", frame); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncode measures natural -> framed bytes with a cached schema id.
func BenchmarkEncode(b *testing.B) {
	v := loadVectors(b)
	_, cl := newFakeSR(b, v)
	s := NewSerde(NewRegistry(cl), map[string]*Schema{v.reader.FullName: v.reader})
	ctx := context.Background()
	d, err := s.Decode(ctx, "checkout.orders.v1", mustHex(b, v.Valid[0].PayloadHex))
	if err != nil {
		b.Fatal(err)
	}
	if _, err := s.Encode(ctx, "checkout.orders.v1", v.reader.FullName, d.Value); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Encode(ctx, "checkout.orders.v1", v.reader.FullName, d.Value); err != nil {
			b.Fatal(err)
		}
	}
}
