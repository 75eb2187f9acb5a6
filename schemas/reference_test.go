package schemas

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/ordo-dev/ordo/schemas/internal/avroref"
)

// The independent reference: hamba/avro (schemas/internal/avroref) parses
// the same schema JSON, resolves writer to reader and decodes/encodes with
// its own code. Ordo's compiled decoder and direct encoder are checked
// against it here, on the interop vectors, on hand-written resolution cases,
// on randomly generated schema pairs and values, and in the fuzzers.

// refMaxAlloc bounds hamba's allocations on hostile input (ordo's own bound
// is the payload size plus zeroWidthSlack).
const refMaxAlloc = 1 << 16

// refPair is a writer (and optional reader) in both implementations.
type refPair struct {
	w, r   *Schema // r == nil: decode as written
	rw, rr *avroref.Schema
	res    *avroref.Resolved
	resErr error             // hamba refuses the pair
	asw    *avroref.Resolved // the writer as written
}

func newRefPair(tb testing.TB, w, r *Schema) *refPair {
	tb.Helper()
	p := &refPair{w: w, r: r}
	var err error
	if p.rw, err = avroref.Parse(w.Text); err != nil {
		tb.Fatalf("reference cannot parse writer %s: %v", w.Text, err)
	}
	if r != nil {
		if p.rr, err = avroref.Parse(r.Text); err != nil {
			tb.Fatalf("reference cannot parse reader %s: %v", r.Text, err)
		}
	}
	p.res, p.resErr = avroref.Resolve(p.rw, p.rr)
	p.asw, _ = avroref.Resolve(p.rw, nil)
	return p
}

// ordoStricter are checks ordo makes that the Avro spec leaves open and
// hamba does not make; ordo rejecting a body for one of these while hamba
// accepts it is expected. Anything else is a disagreement.
var ordoStricter = []string{
	// A decimal beyond its precision: no conforming writer produces it, and
	// it could not be re-encoded with the same schema.
	"decimal exceeds precision",
	// A negative block count announces the block's byte size; hamba ignores
	// it, ordo checks it (not negative, within the body, equal to the
	// items' encoded size).
	"does not match encoded size",
	"for array block at",
	"for map block at",
	"array block of",
	"map block of",
	// A block count of -2^63 has no positive count to negate to; hamba
	// wraps around.
	"invalid array block count",
	"invalid map block count",
	// Varints whose value does not fit the type: hamba silently keeps the
	// low bits.
	"overflows 32 bits",
	"overflows 64 bits",
	// Allocation and recursion bounds on untrusted input.
	"nesting deeper than",
	"of zero-width items exceeds limit",
}

// indexRe finds the index in ordo's union/enum index range errors.
var indexRe = regexp.MustCompile(`index (-?\d+) out of range`)

// stricterReason returns the ordoStricter entry err matches, or "".
func stricterReason(err error) string {
	for _, s := range ordoStricter {
		if strings.Contains(err.Error(), s) {
			return s
		}
	}
	// The spec encodes a union index as a long; hamba reads an int and
	// keeps the low 32 bits (2^31 reads as branch 0), as it does for enum
	// indexes. Only indexes outside int32 are explained by that.
	if m := indexRe.FindStringSubmatch(err.Error()); m != nil {
		if i, perr := strconv.ParseInt(m[1], 10, 64); perr == nil && int64(int32(i)) != i {
			return "index beyond int32"
		}
	}
	return ""
}

// refOutcome counts how a comparison ended, for the tests' logs.
type refOutcome struct {
	agreeValue, agreeReject, stricter, recursive, unsafe int
}

func (o refOutcome) String() string {
	return fmt.Sprintf("%d equal values, %d rejected by both, %d rejected only by ordo's extra checks, %d recursive pairs compared as written only, %d bodies the reference cannot be given", o.agreeValue, o.agreeReject, o.stricter, o.recursive, o.unsafe)
}

// compareDecode decodes body with ordo's compiled decoder and with the
// reference and fails on any disagreement: ordo must accept exactly what the
// reference accepts (less the ordoStricter checks), with the same natural
// value. It returns ordo's value (nil if rejected).
func compareDecode(tb testing.TB, ref *avroref.Ref, p *refPair, body []byte, trusted bool, out *refOutcome) map[string]any {
	tb.Helper()
	refDecode := ref.Decode
	if trusted {
		refDecode = ref.DecodeTrusted
	}
	got, gerr := p.w.decodeNatural(p.r, body)
	if gerr != nil {
		var me *MalformedError
		if !errors.As(gerr, &me) || gerr.Error() == "" {
			tb.Fatalf("ordo returned %T %q, want a *MalformedError", gerr, gerr)
		}
	}
	// Record mode (decodeRecord) reads the same bytes to the same value
	// with records as *Record, or fails with the same error.
	rec, rerr := p.w.decodeRecord(p.r, body)
	switch {
	case (rerr == nil) != (gerr == nil) || rerr != nil && rerr.Error() != gerr.Error():
		tb.Fatalf("record mode disagrees with map mode on %x: %v vs %v\nwriter: %s\nreader: %s", body, rerr, gerr, p.w.Text, readerText(p))
	case rerr == nil:
		if d := naturalDiff("$", naturalSlot(rec), got); d != "" {
			tb.Fatalf("record mode decodes %x to another value: %s\nwriter: %s\nreader: %s", body, d, p.w.Text, readerText(p))
		}
	}
	if errors.Is(p.resErr, avroref.ErrRecursive) {
		// The reference cannot resolve recursive schemas: compare the
		// writer's view instead.
		out.recursive++
		return compareDecode(tb, ref, newRefPair(tb, p.w, nil), body, trusted, out)
	}
	if p.resErr != nil {
		// hamba refuses the pair; ordo must refuse it as well (its compiled
		// program fails, whatever the body).
		if prog := p.w.decoderFor(p.r); prog.err == nil {
			tb.Fatalf("reference refuses the schema pair (%v) but ordo compiles it\nwriter: %s\nreader: %s", p.resErr, p.w.Text, p.r.Text)
		}
		out.agreeReject++
		return nil
	}
	// The reference decodes with the writer as written first: its real
	// decoders stop at the first error, while the skip decoders its
	// resolved reader uses for dropped writer fields loop over a declared
	// block count even past the end of the input (a huge count spins for
	// minutes). Data that is valid as written has honest counts.
	if _, err := refDecode(p.asw, body); err != nil {
		if errors.Is(err, avroref.ErrUnsafeInput) {
			out.unsafe++
			return nil
		}
		if gerr == nil {
			tb.Fatalf("ordo accepts %x, which is not valid data of its writer schema (reference: %v)\nordo value: %#v\nwriter: %s\nreader: %s", body, err, got, p.w.Text, readerText(p))
		}
		out.agreeReject++
		return nil
	}
	want, werr := refDecode(p.res, body)
	switch {
	case gerr == nil && werr == nil:
		if d := naturalDiff("$", got, want); d != "" {
			tb.Fatalf("ordo and the reference decode %x differently: %s\nwriter: %s\nreader: %s", body, d, p.w.Text, readerText(p))
		}
		out.agreeValue++
		return got.(map[string]any)
	case gerr == nil:
		tb.Fatalf("ordo accepts %x, the reference rejects it: %v\nordo value: %#v\nwriter: %s\nreader: %s", body, werr, got, p.w.Text, readerText(p))
	case werr == nil:
		if stricterReason(gerr) == "" {
			tb.Fatalf("ordo rejects %x (%v), the reference accepts it as %#v\nwriter: %s\nreader: %s", body, gerr, want, p.w.Text, readerText(p))
		}
		out.stricter++
	default:
		out.agreeReject++
	}
	return nil
}

func readerText(p *refPair) string {
	if p.r == nil {
		return "(as written)"
	}
	return p.r.Text
}

// compareEncode encodes natural value v (valid for s) with ordo's direct
// encoder and with the reference. Both must accept it; the bytes must be
// equal when no map has two or more entries (map entry order is free: ordo
// sorts keys, hamba follows Go's map order), and each implementation must
// decode the other's bytes back to v. It returns ordo's bytes.
func compareEncode(tb testing.TB, ref *avroref.Ref, s *Schema, rs *avroref.Schema, v map[string]any) []byte {
	tb.Helper()
	ob, oerr := s.EncodeNatural(v)
	hb, herr := ref.Encode(rs, v)
	if oerr != nil || herr != nil {
		tb.Fatalf("encode %#v: ordo err=%v, reference err=%v\nschema: %s", v, oerr, herr, s.Text)
	}
	if !rs.HasMultiEntryMap(v) && !bytes.Equal(ob, hb) {
		tb.Fatalf("encodings differ for %#v\nordo:      %x\nreference: %x\nschema: %s", v, ob, hb, s.Text)
	}
	asWritten, err := avroref.Resolve(rs, nil)
	if err != nil {
		tb.Fatal(err)
	}
	back, err := ref.DecodeTrusted(asWritten, ob)
	if err != nil {
		tb.Fatalf("the reference cannot decode ordo's encoding %x of %#v: %v\nschema: %s", ob, v, err, s.Text)
	}
	if d := naturalDiff("$", back, v); d != "" {
		tb.Fatalf("the reference decodes ordo's encoding to a different value: %s\nschema: %s", d, s.Text)
	}
	oback, err := s.decodeNatural(nil, hb)
	if err != nil {
		tb.Fatalf("ordo cannot decode the reference's encoding %x of %#v: %v\nschema: %s", hb, v, err, s.Text)
	}
	if d := naturalDiff("$", oback, v); d != "" {
		tb.Fatalf("ordo decodes the reference's encoding to a different value: %s\nschema: %s", d, s.Text)
	}
	return ob
}

// compareMutations checks every truncation of body and a few corruptions
// of each byte.
func compareMutations(tb testing.TB, ref *avroref.Ref, p *refPair, body []byte, out *refOutcome) {
	tb.Helper()
	for i := 0; i < len(body); i++ {
		compareDecode(tb, ref, p, body[:i], false, out)
		for _, x := range []byte{0x00, 0x01, 0x7f, 0x80, 0xff} {
			if body[i] == x {
				continue
			}
			mut := bytes.Clone(body)
			mut[i] = x
			compareDecode(tb, ref, p, mut, false, out)
		}
	}
	compareDecode(tb, ref, p, append(bytes.Clone(body), 0), false, out)
}

func TestDecoderMatchesReferenceOnVectors(t *testing.T) {
	v := loadVectors(t)
	ref := avroref.New(refMaxAlloc)
	var out refOutcome
	for _, c := range v.Valid {
		_, body, err := ParseHeader(mustHex(t, c.PayloadHex))
		if err != nil {
			t.Fatal(err)
		}
		w := v.writers[c.WriterSchemaID]
		resolved, asWritten := newRefPair(t, w, v.reader), newRefPair(t, w, nil)
		if compareDecode(t, ref, resolved, body, true, &out) == nil {
			t.Fatalf("%s: valid vector rejected", c.Name)
		}
		if compareDecode(t, ref, asWritten, body, true, &out) == nil {
			t.Fatalf("%s: valid vector rejected as written", c.Name)
		}
		compareMutations(t, ref, resolved, body, &out)
	}
	for _, c := range v.Invalid {
		id, body, err := ParseHeader(mustHex(t, c.PayloadHex))
		if err != nil || v.writers[id] == nil {
			continue // framing errors never reach a decoder
		}
		if compareDecode(t, ref, newRefPair(t, v.writers[id], v.reader), body, false, &out) != nil {
			t.Fatalf("%s: invalid vector accepted", c.Name)
		}
	}
	if out.agreeValue == 0 || out.agreeReject == 0 {
		t.Fatalf("comparison did not exercise both outcomes: %v", out)
	}
	t.Log(out)
}

// TestVectorsFastPathMatchesJSON: the compiled decoder's writer view of
// every valid vector, re-encoded, renders to exactly writer_json, the JSON
// written by avsc (a third implementation).
func TestVectorsFastPathMatchesJSON(t *testing.T) {
	v := loadVectors(t)
	for _, c := range v.Valid {
		_, body, _ := ParseHeader(mustHex(t, c.PayloadHex))
		w := v.writers[c.WriterSchemaID]
		nat, err := w.decodeNatural(nil, body)
		if err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		enc, err := w.EncodeNatural(nat.(map[string]any))
		if err != nil {
			t.Fatalf("%s: re-encode: %v", c.Name, err)
		}
		native, _, err := w.Codec().NativeFromBinary(enc)
		if err != nil {
			t.Fatalf("%s: goavro decode: %v", c.Name, err)
		}
		text, err := w.Codec().TextualFromNative(nil, native)
		if err != nil {
			t.Fatal(err)
		}
		if d := jsonDiff("$", parseJSONExact(t, text), parseJSONExact(t, c.WriterJSON)); d != "" {
			t.Fatalf("%s: writer JSON mismatch: %s", c.Name, d)
		}
	}
}

func TestDecoderMatchesReferenceOnResolutionCases(t *testing.T) {
	ref := avroref.New(refMaxAlloc)
	for _, c := range resolutionCases {
		t.Run(c.name, func(t *testing.T) {
			w := mustSchema(t, 1, c.writer)
			r := mustSchema(t, 2, c.reader)
			p, asWritten := newRefPair(t, w, r), newRefPair(t, w, nil)
			var out refOutcome
			for i, val := range c.values {
				body := compareEncode(t, ref, w, asWritten.rw, val)
				if d := naturalDiff("$", compareDecode(t, ref, asWritten, body, true, &out), val); d != "" {
					t.Fatalf("value %d: as-written decode changed the value: %s", i, d)
				}
				if c.refDiffers != "" {
					if _, err := w.decodeNatural(r, body); err != nil {
						t.Fatalf("value %d rejected: %v", i, err)
					}
					continue
				}
				if compareDecode(t, ref, p, body, true, &out) == nil {
					t.Fatalf("value %d rejected", i)
				}
				compareMutations(t, ref, p, body, &out)
			}
			if c.refDiffers != "" {
				t.Logf("resolution not compared with the reference: %s", c.refDiffers)
			}
			t.Log(out)
		})
	}
}

// randomPairs is how many generated schema pairs the plain test checks;
// the fuzzer explores more.
const randomPairs = 300

// TestDecoderMatchesReferenceOnRandomSchemas generates writer schemas,
// reader schemas evolved from them, and values; ordo and the reference must
// encode each value to the same bytes and decode it (and every truncation
// and single-byte corruption of it) the same way.
func TestDecoderMatchesReferenceOnRandomSchemas(t *testing.T) {
	ref := avroref.New(refMaxAlloc)
	var out refOutcome
	n := randomPairs
	if testing.Short() {
		n = 50
	}
	for seed := range uint64(n) {
		checkRandomPair(t, ref, seed, nil, &out)
	}
	if out.agreeValue < n || out.agreeReject == 0 {
		t.Fatalf("random comparisons did not exercise both outcomes: %v", out)
	}
	t.Log(out)
}

// checkRandomPair runs the encode and decode comparisons for the pair
// generated from seed, then for body mutated by xor (cycled over the body)
// when xor is non-empty.
func checkRandomPair(tb testing.TB, ref *avroref.Ref, seed uint64, xor []byte, out *refOutcome) {
	tb.Helper()
	gp, err := avroref.NewGen(seed).Next()
	if err != nil {
		tb.Fatalf("seed %d: generate: %v", seed, err)
	}
	w, err := ParseSchema(1, gp.WriterJSON)
	if err != nil {
		tb.Fatalf("seed %d: ordo rejects generated writer: %v\n%s", seed, err, gp.WriterJSON)
	}
	r, err := ParseSchema(2, gp.ReaderJSON)
	if err != nil {
		tb.Fatalf("seed %d: ordo rejects generated reader: %v\n%s", seed, err, gp.ReaderJSON)
	}
	p, asWritten := newRefPair(tb, w, r), newRefPair(tb, w, nil)
	if p.resErr != nil && !errors.Is(p.resErr, avroref.ErrRecursive) {
		tb.Fatalf("seed %d: the reference refuses a generated pair: %v\nwriter: %s\nreader: %s", seed, p.resErr, gp.WriterJSON, gp.ReaderJSON)
	}
	body := compareEncode(tb, ref, w, asWritten.rw, gp.Value)
	if _, err := w.decodeNatural(r, body); err != nil || compareDecode(tb, ref, p, body, true, out) == nil {
		tb.Fatalf("seed %d: generated value rejected after resolution: %v\nwriter: %s\nreader: %s\nbody: %x", seed, func() error { _, err := w.decodeNatural(r, body); return err }(), gp.WriterJSON, gp.ReaderJSON, body)
	}
	if len(xor) == 0 {
		compareMutations(tb, ref, p, body, out)
		return
	}
	if len(body) == 0 {
		return
	}
	mut := bytes.Clone(body)
	for i, b := range xor {
		mut[i%len(mut)] ^= b
	}
	compareDecode(tb, ref, p, mut, false, out)
	compareDecode(tb, ref, asWritten, mut, false, out)
}

// FuzzRandomSchemas explores generated schema pairs (the seed) and
// corruptions of their encoded values (xor).
func FuzzRandomSchemas(f *testing.F) {
	for seed := range uint64(16) {
		f.Add(seed, []byte{})
		f.Add(seed, []byte{0, 0, 0x80})
	}
	ref := avroref.New(refMaxAlloc)
	f.Fuzz(func(t *testing.T, seed uint64, xor []byte) {
		var out refOutcome
		checkRandomPair(t, ref, seed, xor, &out)
	})
}

// TestDecimalReadAsPlainBytesKeepsWriterBytes: a reader that drops the
// decimal logical type gets the writer's bytes exactly, including redundant
// sign-extension bytes (the random differential test found ordo re-encoding
// the value instead, which dropped them).
func TestDecimalReadAsPlainBytesKeepsWriterBytes(t *testing.T) {
	ref := avroref.New(refMaxAlloc)
	raw := []byte{0xff, 0xaa, 0x5c, 0x1b} // -5612517 with a redundant 0xff
	cases := []struct {
		name, writer, reader string
		body                 []byte
		want                 any
	}{
		{"bytes", `{"type":"bytes","logicalType":"decimal","precision":25,"scale":20}`, `"bytes"`, append([]byte{byte(len(raw) * 2)}, raw...), raw},
		{"string", `{"type":"bytes","logicalType":"decimal","precision":25,"scale":20}`, `"string"`, append([]byte{byte(len(raw) * 2)}, raw...), string(raw)},
		{"fixed", `{"type":"fixed","name":"F","size":4,"logicalType":"decimal","precision":9,"scale":2}`, `{"type":"fixed","name":"F","size":4}`, raw, raw},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := mustSchema(t, 1, rec(`{"name":"d","type":`+c.writer+`}`))
			r := mustSchema(t, 2, rec(`{"name":"d","type":`+c.reader+`}`))
			got, err := w.decodeNatural(r, c.body)
			if err != nil {
				t.Fatal(err)
			}
			if d := naturalDiff("$.d", got.(map[string]any)["d"], c.want); d != "" {
				t.Fatal(d)
			}
			var out refOutcome
			compareDecode(t, ref, newRefPair(t, w, r), c.body, true, &out)
			if out.agreeValue != 1 {
				t.Fatalf("reference comparison: %v", out)
			}
		})
	}
}
