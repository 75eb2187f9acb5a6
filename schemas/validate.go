package schemas

import (
	"fmt"
	"math/big"
	"time"

	"github.com/ordo-dev/ordo/internal/box"
)

// Limits applied by the pre-scan. goavro trusts declared block counts
// (make([]any, 0, count) with count up to MaxInt32) and recurses without a
// depth bound, so untrusted input must be checked before it reaches goavro.
const (
	// maxDepth bounds nesting of records/arrays/maps/unions in a payload.
	maxDepth = 128
	// zeroWidthSlack is the extra item budget for array/map items whose type
	// can encode to zero bytes (e.g. array<null>): such items are allowed up
	// to len(body)+zeroWidthSlack in total, which bounds goavro's allocation.
	zeroWidthSlack = 1024
)

// scanError is an offset-annotated reason; Schema.refDecodeNative turns it into
// a *MalformedError.
type scanError struct {
	offset int
	reason string
	path   string // field path inside the datum ("items[2].qty"), when known
}

func (e *scanError) Error() string {
	if e.path != "" {
		return fmt.Sprintf("%s: %s at offset %d", e.path, e.reason, e.offset)
	}
	return fmt.Sprintf("%s at offset %d", e.reason, e.offset)
}

// prefix adds an outer path segment: a field name or "[i]".
func (e *scanError) prefix(seg string) {
	switch {
	case e.path == "":
		e.path = seg
	case e.path[0] == '[':
		e.path = seg + e.path
	default:
		e.path = seg + "." + e.path
	}
}

// scanner walks an Avro body against a schema tree without allocating,
// verifying that every length, count, index and varint is well-formed and
// within the payload. If scan succeeds goavro can decode the body without
// large allocations, panics or silent int32 truncation.
type scanner struct {
	buf    []byte
	pos    int
	budget int // remaining zero-width item allowance
	// str is buf copied into one string (in body, a chunk shared with
	// earlier datums) on the first string the decoder reads; decoded
	// strings are substrings of it (no allocation per string). In place
	// (record mode, see decodeRecord) it is buf itself, not a copy.
	str  string
	body []byte
	// The decoder boxes the scalars it returns into shared chunks (one
	// allocation per chunk, see internal/box) and takes decimals' big.Rat
	// structs and numerator words from chunks too.
	strs  box.Slab[string]
	longs box.Slab[int64]
	ints  box.Slab[int32]
	dbls  box.Slab[float64]
	flts  box.Slab[float32]
	times box.Slab[time.Time]
	lists box.Slab[[]any]
	rats  []ratCell
	// ratSize is the rats chunk size; nrats counts the decimals decoded.
	ratSize, nrats int
	// Record mode: records and their value slots come from chunks too
	// (sizes recSize, valSize; nrecs, nvals count what the datum used).
	recs                           []Record
	vals                           []any
	recSize, valSize, nrecs, nvals int
	// mixed is set when a records, value-slot or list chunk was replaced
	// while the others went on: the next datum starts all three afresh
	// (see decProgram.scanner).
	mixed bool
	// scratch is map mode's stack of field slots (pushScratch).
	scratch []any
}

func (s *scanner) fail(at int, format string, args ...any) error {
	return &scanError{offset: at, reason: fmt.Sprintf(format, args...)}
}

// varint reads a zig-zag varint of at most maxBytes bytes.
func (s *scanner) varint(maxBytes int, what string) (int64, error) {
	start := s.pos
	var v uint64
	var shift uint
	for i := 0; ; i++ {
		if s.pos >= len(s.buf) {
			return 0, s.fail(start, "truncated body reading %s", what)
		}
		if i >= maxBytes {
			return 0, s.fail(start, "varint for %s longer than %d bytes", what, maxBytes)
		}
		b := s.buf[s.pos]
		s.pos++
		if i == maxBytes-1 && b&0x80 != 0 {
			return 0, s.fail(start, "varint for %s longer than %d bytes", what, maxBytes)
		}
		if i == 9 && b > 1 {
			return 0, s.fail(start, "varint for %s overflows 64 bits", what)
		}
		v |= uint64(b&0x7f) << shift
		if b&0x80 == 0 {
			break
		}
		shift += 7
	}
	if maxBytes == 5 && v > 0xffffffff {
		return 0, s.fail(start, "varint for %s overflows 32 bits", what)
	}
	return int64(v>>1) ^ -int64(v&1), nil
}

// Constant descriptions, so the happy path builds no strings.
var (
	lengthWhat = [kUnion + 1]string{kString: "string length", kBytes: "bytes length"}
	blockWhat  = [kUnion + 1][3]string{
		kArray: {"array block count", "array block size", "array block"},
		kMap:   {"map block count", "map block size", "map block"},
	}
)

// needNamed is need for a named type; the description is built only on
// failure.
func (s *scanner) needNamed(n int64, what, name string) error {
	if n >= 0 && n <= int64(len(s.buf)-s.pos) {
		return nil
	}
	return s.need(n, what+" "+name)
}

func (s *scanner) need(n int64, what string) error {
	if n < 0 {
		return s.fail(s.pos, "negative length %d for %s", n, what)
	}
	if n > int64(len(s.buf)-s.pos) {
		return s.fail(s.pos, "truncated body: %s of %d bytes but only %d remain", what, n, len(s.buf)-s.pos)
	}
	return nil
}

func (s *scanner) value(n *node, depth int) error {
	if depth > maxDepth {
		return s.fail(s.pos, "nesting deeper than %d", maxDepth)
	}
	switch n.kind {
	case kNull:
		return nil
	case kBoolean:
		if s.pos >= len(s.buf) {
			return s.fail(s.pos, "truncated body reading boolean")
		}
		if b := s.buf[s.pos]; b > 1 {
			return s.fail(s.pos, "invalid boolean byte 0x%02x", b)
		}
		s.pos++
		return nil
	case kInt:
		_, err := s.varint(5, "int")
		return err
	case kLong:
		_, err := s.varint(10, "long")
		return err
	case kFloat, kDouble:
		w := int64(4)
		if n.kind == kDouble {
			w = 8
		}
		if err := s.need(w, n.kind.String()); err != nil {
			return err
		}
		s.pos += int(w)
		return nil
	case kBytes, kString:
		l, err := s.varint(10, lengthWhat[n.kind])
		if err != nil {
			return err
		}
		if err := s.need(l, n.kind.String()); err != nil {
			return err
		}
		if n.logical == lDecimal {
			if err := s.decimal(n, int(l)); err != nil {
				return err
			}
		}
		s.pos += int(l)
		return nil
	case kFixed:
		if err := s.needNamed(int64(n.size), "fixed", n.name); err != nil {
			return err
		}
		if n.logical == lDecimal {
			if err := s.decimal(n, n.size); err != nil {
				return err
			}
		}
		s.pos += n.size
		return nil
	case kEnum:
		at := s.pos
		i, err := s.varint(10, "enum index")
		if err != nil {
			return err
		}
		if i < 0 || i >= int64(len(n.symbols)) {
			return s.fail(at, "enum %s index %d out of range [0,%d)", n.name, i, len(n.symbols))
		}
		return nil
	case kUnion:
		at := s.pos
		i, err := s.varint(10, "union index")
		if err != nil {
			return err
		}
		if i < 0 || i >= int64(len(n.branches)) {
			return s.fail(at, "union index %d out of range [0,%d)", i, len(n.branches))
		}
		return s.value(n.branches[i], depth+1)
	case kRecord:
		for _, f := range n.fields {
			if err := s.value(f.typ, depth+1); err != nil {
				return err
			}
		}
		return nil
	case kArray, kMap:
		return s.blocks(n, depth)
	}
	return s.fail(s.pos, "unsupported schema kind %s", n.kind)
}

func (s *scanner) blocks(n *node, depth int) error {
	for {
		count, start, size, err := s.blockHeader(n)
		if err != nil || count == 0 {
			return err
		}
		for range count {
			if n.kind == kMap {
				if err := s.value(stringNode, depth+1); err != nil {
					return err
				}
			}
			if err := s.value(n.items, depth+1); err != nil {
				return err
			}
		}
		if err := s.blockEnd(n, start, size); err != nil {
			return err
		}
	}
}

// blockHeader reads one array/map block header (count, and size for
// negative counts) and charges it against the remaining bytes or the
// zero-width budget. count == 0 ends the value. The pre-scan and the
// compiled decoder both read blocks through it.
func (s *scanner) blockHeader(n *node) (count int64, blockStart int, blockSize int64, err error) {
	what := n.kind.String()
	itemMin := n.items.minSize
	if n.kind == kMap {
		itemMin++ // key length varint
	}
	at := s.pos
	count, err = s.varint(10, blockWhat[n.kind][0])
	if err != nil || count == 0 {
		return 0, 0, 0, err
	}
	blockStart = -1
	if count < 0 {
		if count == -1<<63 {
			return 0, 0, 0, s.fail(at, "invalid %s block count", what)
		}
		count = -count
		if blockSize, err = s.varint(10, blockWhat[n.kind][1]); err != nil {
			return 0, 0, 0, err
		}
		if err = s.need(blockSize, blockWhat[n.kind][2]); err != nil {
			return 0, 0, 0, err
		}
		blockStart = s.pos
	}
	remaining := int64(len(s.buf) - s.pos)
	if itemMin > 0 {
		if count > remaining/int64(itemMin) {
			return 0, 0, 0, s.fail(at, "%s block count %d exceeds what the remaining %d bytes can hold", what, count, remaining)
		}
	} else {
		if count > int64(s.budget) {
			return 0, 0, 0, s.fail(at, "%s block count %d of zero-width items exceeds limit", what, count)
		}
		s.budget -= int(count)
	}
	return count, blockStart, blockSize, nil
}

func (s *scanner) blockEnd(n *node, blockStart int, blockSize int64) error {
	if blockStart >= 0 && int64(s.pos-blockStart) != blockSize {
		return s.fail(blockStart, "%s block size %d does not match encoded size %d", n.kind, blockSize, s.pos-blockStart)
	}
	return nil
}

var stringNode = &node{kind: kString, branchName: "string"}

// scan validates body against root and returns the offset where the datum
// ends (== len(body) for a well-formed single datum).
func scan(root *node, body []byte) (int, error) {
	s := scanner{buf: body, budget: len(body) + zeroWidthSlack}
	if err := s.value(root, 0); err != nil {
		return s.pos, err
	}
	return s.pos, nil
}

// decimal rejects a decimal whose unscaled value has more digits than the
// schema's precision (conforming writers refuse to produce it, and such a
// value could not be re-encoded). Short encodings skip the big-number math.
func (s *scanner) decimal(n *node, l int) error {
	if l <= n.decSafeLen {
		return nil
	}
	v := decimalFromTwos(s.buf[s.pos:s.pos+l], 0)
	if new(big.Int).Abs(v.Num()).Cmp(n.decLimit) >= 0 {
		return s.fail(s.pos, "decimal exceeds precision %d", n.precision)
	}
	return nil
}
