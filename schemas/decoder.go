package schemas

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/big"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// The compiled decoder turns a writer-schema body straight into the natural
// form of the reader schema in a single pass over the bytes:
//
//   - every length, count, index and varint is bounds-checked as it is read
//     (the same limits as the pre-scan in validate.go: nesting depth, block
//     counts against the bytes left, a budget for zero-width items), so
//     untrusted input cannot panic or trigger a large allocation;
//   - writer fields the reader does not have are skipped without allocating;
//   - resolution (defaults, promotions, enum mapping, unions on either side)
//     is decided once per (writer, reader) pair when the program is compiled,
//     not per record.
//
// It replaces pre-scan + goavro decode + resolve + natural conversion (four
// passes and goavro's generic maps) on the hot path. The reference path
// (refDecodeNative + refResolve + refToNatural, goavro-based, unexported)
// stays for the tests: it is checked against this one in differential tests
// and the fuzzer, beside the independent hamba/avro reference.

// decOp decodes one value of a writer type as a reader type. run is set
// after construction so recursive schemas can refer to themselves.
type decOp struct {
	run func(s *scanner, depth int) (any, error)
}

// decode checks the nesting bound (as the pre-scan does for every value)
// and runs op.
func (op *decOp) decode(s *scanner, depth int) (any, error) {
	if depth > maxDepth {
		return nil, s.fail(s.pos, "nesting deeper than %d", maxDepth)
	}
	return op.run(s, depth)
}

// decProgram is a compiled (writer, reader) decoder; err is set when the
// schemas cannot be resolved at all.
type decProgram struct {
	root *decOp
	err  error
	// sizes is how many strings, longs, ints, doubles, floats, times and
	// decimals recent datums needed at most (a decaying maximum, in 1/64
	// units, capped): the next decode sizes its boxing chunks with it, so
	// a datum costs about one allocation per kind, and one outsized datum
	// does not make every later chunk large (the hint decays by 1/64 per
	// datum that needs less).
	sizes    [numSlabs]atomic.Int32
	scanners sync.Pool // of *scanner
}

const (
	slabStrings = iota
	slabLongs
	slabInts
	slabDoubles
	slabFloats
	slabTimes
	slabRats
	slabRecords // record mode: *Record structs
	slabValues  // record mode: their value slots; arrays' elements
	slabLists   // arrays' slice headers (boxed)
	numSlabs
	maxSlabSize = 32
	// maxValuesSize caps the value-slot chunk: a datum of a few records
	// has tens of fields.
	maxValuesSize = 256
	sizeShift     = 6 // sizes are in 1/64 units
)

// scanner returns a scanner over body from the program's pool (the decode
// closures make a scanner escape: pooling saves an allocation per datum),
// its chunks sized by what earlier datums needed.
//
// A pooled scanner keeps its chunks from one datum to the next: a chunk is
// sized for datumsPerChunk datums (at most chunkBytes), so the datums a
// scanner decodes in turn share it and each costs a fraction of an
// allocation per kind. Sharing is safe for the same reason boxing into a
// chunk is (values are written once, before anything refers to them, and
// never again); what it costs is retention: a value kept after its event
// keeps its chunk, and so its neighbours' values, alive (at most about
// chunkBytes per kind, or one datum's body copy when that is larger).
func (p *decProgram) scanner(body []byte) *scanner {
	s, _ := p.scanners.Get().(*scanner)
	if s == nil {
		s = new(scanner)
	}
	s.buf, s.pos, s.budget = body, 0, len(body)+zeroWidthSlack
	need := func(k int) int { return (int(p.sizes[k].Load()) + 1<<sizeShift - 1) >> sizeShift } // one datum's, rounded up
	size := func(k int, elem uintptr) int {
		n := max(need(k), 1)
		return max(n, min(n*datumsPerChunk, chunkBytes/int(elem)))
	}
	// Records, value slots and boxed lists point at one another (a record
	// at its slots, a slot at a nested record or list, a list at its
	// slots). Were their chunks replaced at different datums, a chunk of
	// one kind would hold datums from two chunks of another, and each
	// chunk would point back at the one before it: one value kept alive
	// would keep every datum decoded before it alive, chunk by chunk, with
	// the input buffers their strings are read from (bench/findings.md,
	// 2026-12-06, morning: 145 MB live under a 192 MiB limit, the GC
	// running back to back). So the three start afresh together, before
	// any of them would run out within the datum (or after one did): a
	// generation of chunks holds the same datums in every kind and points
	// at no other. The leaf kinds (strings, numbers, times, decimals) point
	// at no chunk and go on sharing across generations.
	if s.mixed || cap(s.recs)-len(s.recs) < need(slabRecords) || cap(s.vals)-len(s.vals) < need(slabValues) || s.lists.Room() < need(slabLists) {
		s.recs, s.vals, s.mixed = nil, nil, false
		s.lists.Reset()
	}
	s.recSize, s.valSize = size(slabRecords, unsafe.Sizeof(Record{})), size(slabValues, unsafe.Sizeof(any(nil)))
	s.strs.Size = size(slabStrings, unsafe.Sizeof(""))
	s.longs.Size = size(slabLongs, 8)
	s.ints.Size = size(slabInts, 4)
	s.dbls.Size = size(slabDoubles, 8)
	s.flts.Size = size(slabFloats, 4)
	s.times.Size = size(slabTimes, unsafe.Sizeof(time.Time{}))
	s.ratSize = size(slabRats, unsafe.Sizeof(ratCell{}))
	s.lists.Size = size(slabLists, unsafe.Sizeof([]any(nil)))
	return s
}

// datumsPerChunk and chunkBytes size the chunks a scanner's datums share
// (see scanner). More datums per chunk means fewer allocations and more
// memory kept alive by one value retained past its event.
const (
	datumsPerChunk = 8
	chunkBytes     = 4096
)

// release returns s to the pool without the datum: the body is dropped and
// the counts start again; the chunks stay for the next datum's values (the
// values already in them stay valid, see scanner).
func (p *decProgram) release(s *scanner) {
	s.buf, s.str = nil, ""
	s.strs.Restart()
	s.longs.Restart()
	s.ints.Restart()
	s.dbls.Restart()
	s.flts.Restart()
	s.times.Restart()
	s.lists.Restart()
	s.nrats, s.nrecs, s.nvals = 0, 0, 0
	p.scanners.Put(s)
}

// learnSlabs updates the chunk sizes with what s needed: the decayed
// hint or s's count, whichever is larger (up to maxSlabSize).
func (p *decProgram) learnSlabs(s *scanner) {
	for k, n := range [numSlabs]int{s.strs.Count(), s.longs.Count(), s.ints.Count(), s.dbls.Count(), s.flts.Count(), s.times.Count(), s.nrats, s.nrecs, s.nvals, s.lists.Count()} {
		limit := maxSlabSize
		if k == slabValues {
			limit = maxValuesSize
		}
		old := p.sizes[k].Load()
		v := max(old-old>>sizeShift, int32(min(n, limit))<<sizeShift)
		if v != old {
			p.sizes[k].Store(v) // a lost race only misjudges one chunk size
		}
	}
}

// decoderFor returns the compiled program decoding s (as writer) into
// reader's natural form; reader == nil or identical JSON means "as written".
// Programs are cached on the writer per reader, like resolvers.
func (s *Schema) decoderFor(reader *Schema) *decProgram { return s.program(reader, false) }

// program is decoderFor, or with records set its record-mode twin: records
// decode to *Record (slots in the reader's field order) instead of maps.
func (s *Schema) program(reader *Schema, records bool) *decProgram {
	key := reader
	if reader == nil {
		key = s
	}
	cache := &s.decoders
	if records {
		cache = &s.recDecoders
	}
	if v, ok := cache.Load(key); ok {
		return v
	}
	target := s.root
	if key != s && !jsonEqualText(s.Text, key.Text) {
		target = key.root
	}
	b := &decBuilder{memo: map[[2]*node]*decOp{}, records: records}
	p := &decProgram{}
	op, err := b.build(s.root, target)
	if err != nil {
		p.err = fmt.Errorf("avro: writer %s (id %d) cannot be resolved to reader %s: %w", s.FullName, s.ID, key.FullName, err)
	}
	p.root = op
	v, _ := cache.LoadOrStore(key, p)
	return v
}

// decodeNatural decodes body with the compiled program for reader.
func (s *Schema) decodeNatural(reader *Schema, body []byte) (any, error) {
	return s.decodeWith(s.decoderFor(reader), body, false)
}

// decodeRecord is decodeNatural with records as *Record: the same values,
// in the reader's field order, a record costing a slot range of a shared
// chunk instead of a map (see Record). Natural of the result equals what
// decodeNatural returns.
//
// Its strings point into body itself instead of a copy of it: body must
// not change while the value is in use. The pipeline's bodies are fetched
// record values that nothing writes, and whatever keeps a decoded value
// past its event detaches it (Detach) or would keep the record's key,
// which points into the same fetched batch, anyway.
func (s *Schema) decodeRecord(reader *Schema, body []byte) (any, error) {
	return s.decodeWith(s.program(reader, true), body, true)
}

func (s *Schema) decodeWith(p *decProgram, body []byte, inPlace bool) (any, error) {
	if p.err != nil {
		return nil, &MalformedError{SchemaID: s.ID, Type: s.FullName, Reason: p.err.Error(), Err: p.err}
	}
	sc := p.scanner(body)
	if inPlace && len(body) > 0 {
		sc.str = unsafe.String(&body[0], len(body))
	}
	defer p.release(sc)
	v, err := p.root.decode(sc, 0)
	if err != nil {
		if se, ok := err.(*scanError); ok {
			return nil, s.malformed(se.offset, se.Error(), nil)
		}
		return nil, s.malformed(sc.pos, err.Error(), err)
	}
	if sc.pos != len(body) {
		return nil, s.malformed(sc.pos, fmt.Sprintf("%d trailing bytes after datum at offset %d", len(body)-sc.pos, sc.pos), nil)
	}
	p.learnSlabs(sc) // from valid datums only: bad input cannot size chunks
	return v, nil
}

type decBuilder struct {
	memo map[[2]*node]*decOp
	// records builds records as *Record (compileRecord) instead of maps.
	records bool
}

func (b *decBuilder) build(w, r *node) (*decOp, error) {
	key := [2]*node{w, r}
	if op, ok := b.memo[key]; ok {
		return op, nil
	}
	op := &decOp{}
	b.memo[key] = op
	run, err := b.compile(w, r)
	if err != nil {
		delete(b.memo, key)
		return nil, err
	}
	op.run = run
	return op, nil
}

type decFn = func(s *scanner, depth int) (any, error)

func (b *decBuilder) compile(w, r *node) (decFn, error) {
	if w.kind == kUnion {
		return b.compileWriterUnion(w, r)
	}
	if r.kind == kUnion {
		// The natural form unwraps unions, so reading into a reader union is
		// reading into the branch the writer type selects.
		rb, err := readerBranch(w, r)
		if err != nil {
			return nil, err
		}
		op, err := b.build(w, rb)
		if err != nil {
			return nil, within("reader branch "+rb.branchName, err)
		}
		// op.run may not be set yet (recursive schemas), so call through op.
		return func(s *scanner, depth int) (any, error) { return op.run(s, depth) }, nil
	}
	if w.kind == r.kind {
		if err := namedMismatch(w, r); err != nil {
			return nil, err
		}
	}
	switch {
	case w.kind == r.kind:
		switch w.kind {
		case kRecord:
			return b.compileRecord(w, r)
		case kEnum:
			return compileEnumDecoder(w, r), nil
		case kFixed:
		case kArray, kMap:
			items, err := b.build(w.items, r.items)
			if err != nil {
				return nil, within(w.kind.String()+" items", err)
			}
			if w.kind == kArray {
				return arrayDecoder(w, items), nil
			}
			return mapDecoder(w, items), nil
		}
	case promotable(w.kind, r.kind):
	default:
		return nil, perr("writer type %s cannot be read as %s", w.describe(), r.describe())
	}
	if w.logical == lDecimal && r.logical == lNone {
		// The reader ignores the decimal and gets the two's complement bytes
		// as written; going through the value would drop redundant
		// sign-extension bytes (found by the hamba differential test).
		return rawDecimalDecoder(w, r.kind == kString), nil
	}
	// Leaves: read the writer's value, then convert when the reader's type or
	// logical type differs (the conversions are the resolver's).
	read := leafDecoder(w)
	if w.kind == r.kind && w.logical == r.logical && (w.logical != lDecimal || w.scale == r.scale && w.precision <= r.precision) {
		return read, nil
	}
	var conv func(any) (any, error)
	var err error
	if w.kind == r.kind {
		conv, err = compileLogical(w, r)
	} else {
		conv = compilePromotion(w, r)
	}
	if err != nil {
		return nil, err
	}
	return func(s *scanner, depth int) (any, error) {
		at := s.pos
		v, err := read(s, depth)
		if err != nil {
			return nil, err
		}
		out, err := conv(v)
		if err != nil {
			return nil, &scanError{offset: at, reason: err.Error()}
		}
		return out, nil
	}, nil
}

// readerBranch picks the reader union branch for a non-union writer type:
// the first of the same type, else the first the writer promotes to.
func readerBranch(w, r *node) (*node, error) {
	for _, rb := range r.branches {
		if sameKind(w, rb) {
			return rb, nil
		}
	}
	for _, rb := range r.branches {
		if promotable(w.kind, rb.kind) {
			return rb, nil
		}
	}
	return nil, perr("writer type %s matches no branch of reader %s", w.describe(), r.describe())
}

func (b *decBuilder) compileWriterUnion(w, r *node) (decFn, error) {
	ops := make([]*decOp, len(w.branches))
	errs := make([]error, len(w.branches))
	ok := 0
	var firstErr error
	for i, wb := range w.branches {
		op, err := b.build(wb, r)
		if err != nil {
			// Only an error if the data actually uses this branch.
			errs[i] = within("writer branch "+wb.branchName, err)
			if firstErr == nil {
				firstErr = errs[i]
			}
			continue
		}
		ops[i] = op
		ok++
	}
	if ok == 0 {
		return nil, firstErr
	}
	return func(s *scanner, depth int) (any, error) {
		at := s.pos
		i, err := s.varint(10, "union index")
		if err != nil {
			return nil, err
		}
		if i < 0 || i >= int64(len(ops)) {
			return nil, s.fail(at, "union index %d out of range [0,%d)", i, len(ops))
		}
		if ops[i] == nil {
			return nil, &scanError{offset: at, reason: errs[i].Error()}
		}
		return ops[i].decode(s, depth+1)
	}, nil
}

// recStep is one writer field: decoded into the reader's field number
// slot, or skipped.
type recStep struct {
	slot int    // the reader field's index in the reader's fields
	op   *decOp // nil: skip the writer field
	skip *node  // writer type to skip
	seg  string // writer field name, for error paths
	// more are further reader fields reading the same writer field (one by
	// name, others by alias): the value is decoded again for each.
	more []recTarget
}

type recTarget struct {
	slot int
	op   *decOp
}

type recDefault struct {
	slot  int
	val   any
	clone bool
}

func (b *decBuilder) compileRecord(w, r *node) (decFn, error) {
	steps := make([]recStep, len(w.fields))
	for i, wf := range w.fields {
		steps[i] = recStep{skip: wf.typ, seg: wf.name}
	}
	var defaults []recDefault
	for slot, rf := range r.fields {
		wf := findWriterField(w, rf)
		if wf == nil {
			if !rf.hasDefault {
				return nil, within(rf.name, perr("reader field missing in writer %s and has no default", w.name))
			}
			nat, err := naturalDefault(rf)
			if err != nil {
				return nil, within(rf.name, fmt.Errorf("invalid default: %w", err))
			}
			d := recDefault{slot: slot, val: nat}
			switch nat.(type) {
			case map[string]any, []any, []byte, *big.Rat:
				d.clone = true
			}
			defaults = append(defaults, d)
			continue
		}
		op, err := b.build(wf.typ, rf.typ)
		if err != nil {
			return nil, within(rf.name, err)
		}
		st := &steps[w.fieldIdx[wf.name]]
		if st.op != nil {
			st.more = append(st.more, recTarget{slot, op})
			continue
		}
		st.slot, st.op, st.skip = slot, op, nil
	}
	// Every reader field gets a value (from a writer field or its default),
	// so a record is its reader's fields in order: names[k] has slot k.
	names := make([]string, len(r.fields))
	for k, f := range r.fields {
		names[k] = f.name
	}
	if b.records {
		// A *Record whose Names slice is the program's, shared by every
		// record it decodes (readers can recognise the layout by it).
		return func(s *scanner, depth int) (any, error) {
			rec := s.record(len(names))
			rec.Names = names
			if err := fill(s, depth, steps, defaults, rec.Values); err != nil {
				return nil, err
			}
			return rec, nil
		}, nil
	}
	return func(s *scanner, depth int) (any, error) {
		vals := s.pushScratch(len(names))
		defer s.popScratch(len(names))
		if err := fill(s, depth, steps, defaults, vals); err != nil {
			return nil, err
		}
		out := make(map[string]any, len(names))
		for k, v := range vals {
			out[names[k]] = v
		}
		return out, nil
	}, nil
}

// fill decodes a record's writer fields in order into vals (indexed by
// the reader's field order) and sets the reader's defaults.
func fill(s *scanner, depth int, steps []recStep, defaults []recDefault, vals []any) error {
	for i := range steps {
		st := &steps[i]
		if st.op == nil {
			if err := s.value(st.skip, depth+1); err != nil {
				return inField(st.seg, err)
			}
			continue
		}
		start, budget := s.pos, s.budget
		v, err := st.op.decode(s, depth+1)
		if err != nil {
			return inField(st.seg, err)
		}
		vals[st.slot] = v
		for _, t := range st.more {
			end := s.pos
			s.pos, s.budget = start, budget
			v, err := t.op.decode(s, depth+1)
			if err != nil {
				return inField(st.seg, err)
			}
			if s.pos != end {
				return s.fail(start, "writer field %s read to different lengths", st.seg)
			}
			vals[t.slot] = v
		}
	}
	for i := range defaults {
		d := &defaults[i]
		if d.clone {
			vals[d.slot] = CloneNatural(d.val)
		} else {
			vals[d.slot] = d.val
		}
	}
	return nil
}

// pushScratch returns n cleared slots on the scanner's scratch stack (map
// mode decodes a record's fields into them before building its map);
// popScratch(n) gives them back, cleared so the pooled scanner keeps no
// values alive. A nested record pushes above its parent's slots; if that
// grows the stack, the parent keeps writing its own (old) array.
func (s *scanner) pushScratch(n int) []any {
	k := len(s.scratch)
	s.scratch = slices.Grow(s.scratch, n)[:k+n]
	return s.scratch[k : k+n : k+n]
}

func (s *scanner) popScratch(n int) {
	k := len(s.scratch) - n
	clear(s.scratch[k:])
	s.scratch = s.scratch[:k]
}

// record returns a new *Record with n value slots, both from the datum's
// chunks (one allocation per chunk, not per record).
func (s *scanner) record(n int) *Record {
	if len(s.recs) == cap(s.recs) {
		s.mixed = s.mixed || cap(s.recs) > 0
		s.recs = make([]Record, 0, max(s.recSize, 1))
	}
	s.recs = s.recs[:len(s.recs)+1]
	r := &s.recs[len(s.recs)-1]
	r.Values = s.slots(n)
	s.nrecs++
	return r
}

// slots returns n zeroed value slots from the shared chunk (length and
// capacity n: an append copies out).
func (s *scanner) slots(n int) []any {
	if cap(s.vals)-len(s.vals) < n {
		s.mixed = s.mixed || len(s.vals) > 0
		s.vals = make([]any, 0, max(s.valSize, n))
	}
	k := len(s.vals)
	s.vals = s.vals[:k+n]
	s.nvals += n
	return s.vals[k : k+n : k+n]
}

// naturalDefault is a reader field's default in natural form.
func naturalDefault(f *field) (any, error) {
	native, err := defaultNative(f.typ, f.def)
	if err != nil {
		return nil, err
	}
	return toNatural(f.typ, native, true)
}

func compileEnumDecoder(w, r *node) decFn {
	// symbols[i] is the reader symbol for writer index i; "" means unknown to
	// the reader, which has no default.
	symbols := make([]string, len(w.symbols))
	for i, sym := range w.symbols {
		if _, ok := r.symbolIdx[sym]; ok {
			symbols[i] = sym
		} else if r.hasEnumDef {
			symbols[i] = r.enumDef
		}
	}
	boxed := make([]any, len(symbols)) // boxed once: no allocation per value
	for i, sym := range symbols {
		boxed[i] = sym
	}
	return func(s *scanner, depth int) (any, error) {
		at := s.pos
		i, err := s.varint(10, "enum index")
		if err != nil {
			return nil, err
		}
		if i < 0 || i >= int64(len(symbols)) {
			return nil, s.fail(at, "enum %s index %d out of range [0,%d)", w.name, i, len(symbols))
		}
		if symbols[i] == "" {
			return nil, s.fail(at, "enum symbol %q of writer %s is unknown to reader %s, which has no default", w.symbols[i], w.name, r.name)
		}
		return boxed[i], nil
	}
}

func arrayDecoder(w *node, items *decOp) decFn {
	return func(s *scanner, depth int) (any, error) {
		var out []any
		for {
			count, start, size, err := s.blockHeader(w)
			if err != nil {
				return nil, err
			}
			if count == 0 {
				if out == nil {
					out = []any{}
				}
				// The slice header boxed into a shared chunk (no
				// allocation per array).
				s.mixed = s.mixed || s.lists.Full()
				return s.lists.Box(out), nil
			}
			if out == nil {
				// The first block's elements take slots of the shared
				// chunk; a later block appends (and so copies out).
				out = s.slots(int(count))[:0]
			}
			for range count {
				v, err := items.decode(s, depth+1)
				if err != nil {
					return nil, inIndex(len(out), err)
				}
				out = append(out, v)
			}
			if err := s.blockEnd(w, start, size); err != nil {
				return nil, err
			}
		}
	}
}

func mapDecoder(w *node, items *decOp) decFn {
	return func(s *scanner, depth int) (any, error) {
		var out map[string]any
		for {
			count, start, size, err := s.blockHeader(w)
			if err != nil {
				return nil, err
			}
			if count == 0 {
				if out == nil {
					out = map[string]any{}
				}
				return out, nil
			}
			if out == nil {
				out = make(map[string]any, count)
			}
			for range count {
				if depth+1 > maxDepth {
					return nil, s.fail(s.pos, "nesting deeper than %d", maxDepth)
				}
				k, err := s.readString()
				if err != nil {
					return nil, err
				}
				v, err := items.decode(s, depth+1)
				if err != nil {
					return nil, inField(k, err)
				}
				out[k] = v
			}
			if err := s.blockEnd(w, start, size); err != nil {
				return nil, err
			}
		}
	}
}

// readBytes returns a length-prefixed slice of the buffer (aliasing it).
func (s *scanner) readBytes(kind kind) ([]byte, error) {
	what := kind.String()
	l, err := s.varint(10, lengthWhat[kind])
	if err != nil {
		return nil, err
	}
	if err := s.need(l, what); err != nil {
		return nil, err
	}
	b := s.buf[s.pos : s.pos+int(l)]
	s.pos += int(l)
	return b, nil
}

func (s *scanner) readString() (string, error) {
	b, err := s.readBytes(kString)
	if err != nil || len(b) == 0 {
		return "", err
	}
	if s.str == "" {
		s.str = s.copyBody()
	}
	end := s.pos
	return s.str[end-len(b) : end], nil
}

// copyBody returns the datum's body copied into the scanner's body chunk
// (shared by the datums the scanner decodes in turn, like the boxing
// chunks): the decoded strings are substrings of it. The bytes are written
// here once and never again, which is what makes the string immutable.
func (s *scanner) copyBody() string {
	n := len(s.buf)
	if n == 0 {
		return ""
	}
	if cap(s.body)-len(s.body) < n {
		s.body = make([]byte, 0, max(n, chunkBytes))
	}
	k := len(s.body)
	s.body = append(s.body, s.buf...)
	return unsafe.String(&s.body[k], n)
}

// leafDecoder reads a primitive, enum-free leaf in the writer's natural form
// (the same values goavro + refToNatural produce).
func leafDecoder(n *node) decFn {
	switch n.kind {
	case kNull:
		return func(*scanner, int) (any, error) { return nil, nil }
	case kBoolean:
		return func(s *scanner, _ int) (any, error) {
			if s.pos >= len(s.buf) {
				return nil, s.fail(s.pos, "truncated body reading boolean")
			}
			b := s.buf[s.pos]
			if b > 1 {
				return nil, s.fail(s.pos, "invalid boolean byte 0x%02x", b)
			}
			s.pos++
			return b == 1, nil
		}
	case kInt:
		return func(s *scanner, _ int) (any, error) {
			v, err := s.varint(5, "int")
			if err != nil {
				return nil, err
			}
			i := int32(v)
			switch n.logical {
			case lDate:
				return s.times.Box(time.Unix(int64(i)*86400, 0).UTC()), nil
			case lTimeMillis:
				return time.Duration(i) * time.Millisecond, nil
			}
			if uint32(i) < 256 {
				return i, nil // Go boxes small integers without allocating
			}
			return s.ints.Box(i), nil
		}
	case kLong:
		return func(s *scanner, _ int) (any, error) {
			v, err := s.varint(10, "long")
			if err != nil {
				return nil, err
			}
			switch n.logical {
			case lTimestampMillis:
				sec := v / 1e3
				return s.times.Box(time.Unix(sec, (v-sec*1e3)*1e6).UTC()), nil
			case lTimestampMicros:
				sec := v / 1e6
				return s.times.Box(time.Unix(sec, (v-sec*1e6)*1e3).UTC()), nil
			case lTimeMicros:
				return time.Duration(v) * time.Microsecond, nil
			}
			if uint64(v) < 256 {
				return v, nil
			}
			return s.longs.Box(v), nil
		}
	case kFloat:
		return func(s *scanner, _ int) (any, error) {
			if err := s.need(4, "float"); err != nil {
				return nil, err
			}
			f := math.Float32frombits(binary.LittleEndian.Uint32(s.buf[s.pos:]))
			s.pos += 4
			return s.flts.Box(f), nil
		}
	case kDouble:
		return func(s *scanner, _ int) (any, error) {
			if err := s.need(8, "double"); err != nil {
				return nil, err
			}
			f := math.Float64frombits(binary.LittleEndian.Uint64(s.buf[s.pos:]))
			s.pos += 8
			return s.dbls.Box(f), nil
		}
	case kString:
		return func(s *scanner, _ int) (any, error) {
			str, err := s.readString()
			if err != nil || str == "" {
				return str, err // "" boxes without allocating
			}
			return s.strs.Box(str), nil
		}
	case kBytes:
		if n.logical == lDecimal {
			return func(s *scanner, _ int) (any, error) {
				l, err := s.varint(10, lengthWhat[kBytes])
				if err != nil {
					return nil, err
				}
				if err := s.need(l, "bytes"); err != nil {
					return nil, err
				}
				return s.readDecimal(n, int(l))
			}
		}
		return func(s *scanner, _ int) (any, error) {
			b, err := s.readBytes(kBytes)
			if err != nil {
				return nil, err
			}
			return append([]byte(nil), b...), nil
		}
	case kFixed:
		return func(s *scanner, _ int) (any, error) {
			if err := s.needNamed(int64(n.size), "fixed", n.name); err != nil {
				return nil, err
			}
			if n.logical == lDecimal {
				return s.readDecimal(n, n.size)
			}
			b := append([]byte(nil), s.buf[s.pos:s.pos+n.size]...)
			s.pos += n.size
			return b, nil
		}
	}
	return func(s *scanner, _ int) (any, error) {
		return nil, s.fail(s.pos, "unsupported schema kind %s", n.kind)
	}
}

// rawDecimalDecoder reads a writer decimal (bytes or fixed) for a reader
// without the logical type: the bytes as written (a string for a string
// reader), still rejecting values beyond the writer's precision like every
// other read of that writer type.
func rawDecimalDecoder(w *node, asString bool) decFn {
	return func(s *scanner, _ int) (any, error) {
		l := int64(w.size)
		if w.kind == kBytes {
			var err error
			if l, err = s.varint(10, lengthWhat[kBytes]); err != nil {
				return nil, err
			}
			if err := s.need(l, "bytes"); err != nil {
				return nil, err
			}
		} else if err := s.needNamed(l, "fixed", w.name); err != nil {
			return nil, err
		}
		if err := s.decimal(w, int(l)); err != nil {
			return nil, err
		}
		b := s.buf[s.pos : s.pos+int(l)]
		s.pos += int(l)
		if asString {
			return string(b), nil
		}
		return append([]byte(nil), b...), nil
	}
}

// readDecimal reads l bytes of two's complement (already bounds-checked) as
// a decimal of n, rejecting values beyond n's precision. Values that fit in
// an int64 avoid big.Int parsing.
func (s *scanner) readDecimal(n *node, l int) (any, error) {
	if err := s.decimal(n, l); err != nil {
		return nil, err
	}
	raw := s.buf[s.pos : s.pos+l]
	s.pos += l
	if l <= 8 {
		var u int64
		if l > 0 && raw[0]&0x80 != 0 {
			u = -1
		}
		for _, c := range raw {
			u = u<<8 | int64(c)
		}
		if n.scale < len(pow10Int64) && u != math.MinInt64 {
			return s.smallRat(u, pow10Int64[n.scale]), nil
		}
	}
	return decimalFromTwos(raw, n.scale), nil
}

// smallRat returns num/den (den > 0) in lowest terms. The gcd is taken on
// int64s and the parts are set directly, which skips big.Rat's own
// normalization (a big-number GCD and two allocations per decimal). The
// Rat and its numerator's words come from the scanner's chunk of cells (so
// arithmetic on one decimal never writes into another's words): a decimal
// costs one allocation, its denominator's words, or none for a whole
// number.
func (s *scanner) smallRat(num, den int64) *big.Rat {
	a, b := num, den
	if a < 0 {
		a = -a // the caller excludes MinInt64
	}
	for b != 0 {
		a, b = b, a%b
	}
	if a > 1 {
		num, den = num/a, den/a
	}
	s.nrats++
	if len(s.rats) == cap(s.rats) {
		s.rats = make([]ratCell, 0, max(s.ratSize, 1))
	}
	s.rats = s.rats[:len(s.rats)+1]
	c := &s.rats[len(s.rats)-1]
	r := &c.r
	// A zero-length numerator with the cell's two words as room: SetInt64
	// fills it without allocating.
	r.Num().SetBits(c.words[:0:2]).SetInt64(num)
	if den != 1 {
		// An uninitialized Rat's denominator is 1 without storage; Set
		// gives it storage (the one allocation; two on 32-bit platforms
		// for a denominator of 2^32 or more) before it is written.
		r.Set(r).Denom().SetInt64(den)
	}
	return r
}

// ratCell is a decoded decimal and the words its numerator starts in.
type ratCell struct {
	r     big.Rat
	words [2]big.Word
}

// pow10Int64 holds 10^0..10^18, the scales whose denominator fits an int64.
var pow10Int64 = func() [19]int64 {
	var t [19]int64
	t[0] = 1
	for i := 1; i < len(t); i++ {
		t[i] = t[i-1] * 10
	}
	return t
}()

// inField and inIndex prefix a decode error's path (only on the error path,
// so the happy path allocates nothing for it).
func inField(seg string, err error) error {
	if se, ok := err.(*scanError); ok {
		se.prefix(seg)
		return se
	}
	return within(seg, err)
}

func inIndex(i int, err error) error {
	seg := fmt.Sprintf("[%d]", i)
	if se, ok := err.(*scanError); ok {
		se.prefix(seg)
		return se
	}
	return within(seg, err)
}
