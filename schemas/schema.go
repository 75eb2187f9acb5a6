package schemas

import (
	"fmt"
	"io/fs"
	"strings"
	"sync"

	"github.com/linkedin/goavro/v2"

	"github.com/ordo-dev/ordo/examples/orders"
	"github.com/ordo-dev/ordo/internal/cow"
)

// Schema is a parsed Avro schema: the goavro codec (binary/textual encoding)
// plus ordo's own parsed tree, which drives the bounds-checking pre-scan,
// schema resolution and natural-form conversion without re-reading JSON.
// A Schema is immutable after ParseSchema and safe for concurrent use.
type Schema struct {
	ID       int    // registry id; 0 for local (embedded) schemas
	FullName string // full name of the top-level named type, else the type name
	Text     string // schema JSON as given

	codec *goavro.Codec
	root  *node

	// resolvers caches compiled writer->reader resolvers keyed by reader
	// *Schema; a writer Schema is cached per id by Registry, so this is the
	// per-(writerID, reader) cache the hot path uses.
	resolvers sync.Map // *Schema -> *resolverResult
	// decoders caches compiled single-pass decoders keyed by reader *Schema
	// (the writer itself for "as written"); see decoder.go.
	decoders cow.Map[*Schema, *decProgram]
	// recDecoders is decoders for programs that build records as *Record
	// (decodeRecord) instead of map[string]any.
	recDecoders cow.Map[*Schema, *decProgram]
}

type resolverResult struct {
	r   *resolver
	err error
}

// ParseSchema parses Avro schema JSON. Both goavro and ordo's tree parser
// must accept it; goavro is guarded against panics on odd input.
func ParseSchema(id int, text string) (*Schema, error) {
	s, err := parseSchema(id, text)
	if err != nil {
		return nil, fmt.Errorf("avro: parse schema id %d: %w", id, err)
	}
	return s, nil
}

// parseSchema is ParseSchema without the "which schema" prefix, for callers
// that name the schema themselves (a file, a subject).
func parseSchema(id int, text string) (*Schema, error) {
	root, err := parseTree(text)
	if err != nil {
		return nil, err
	}
	codec, err := newCodec(text)
	if err != nil {
		return nil, fmt.Errorf("goavro: %w", err)
	}
	name := root.name
	if name == "" {
		name = root.branchName
	}
	return &Schema{ID: id, FullName: name, Text: text, codec: codec, root: root}, nil
}

func newCodec(text string) (c *goavro.Codec, err error) {
	defer func() {
		if r := recover(); r != nil {
			c, err = nil, fmt.Errorf("panic building codec: %v", r)
		}
	}()
	return goavro.NewCodec(text)
}

// Codec exposes the goavro codec, e.g. for TextualFromNative in tests and
// debugging tools.
func (s *Schema) Codec() *goavro.Codec { return s.codec }

// String returns "com.acme.X (id 7)" for log messages.
func (s *Schema) String() string { return fmt.Sprintf("%s (id %d)", s.FullName, s.ID) }

func (s *Schema) malformed(offset int, reason string, err error) *MalformedError {
	return &MalformedError{SchemaID: s.ID, Type: s.FullName, Offset: offset, Reason: reason, Err: err}
}

// refDecodeNative decodes an Avro body (without Confluent header) into goavro's
// native form. The body is pre-scanned first, so truncated data, negative or
// oversized lengths, allocation bombs, overlong varints and trailing bytes
// all yield a *MalformedError before goavro runs. Bytes and fixed values
// returned by goavro alias body; refToNatural copies them.
func (s *Schema) refDecodeNative(body []byte) (any, error) {
	end, err := scan(s.root, body)
	if err != nil {
		se, _ := err.(*scanError)
		if se != nil {
			return nil, s.malformed(se.offset, se.Error(), nil)
		}
		return nil, s.malformed(end, err.Error(), err)
	}
	if end != len(body) {
		return nil, s.malformed(end, fmt.Sprintf("%d trailing bytes after datum at offset %d", len(body)-end, end), nil)
	}
	return s.goavroDecode(body)
}

func (s *Schema) goavroDecode(body []byte) (native any, err error) {
	defer func() {
		if r := recover(); r != nil {
			native, err = nil, s.malformed(0, fmt.Sprintf("decoder panic: %v", r), nil)
		}
	}()
	native, rest, err := s.codec.NativeFromBinary(body)
	if err != nil {
		return nil, s.malformed(len(body)-len(rest), "goavro: "+err.Error(), err)
	}
	if len(rest) != 0 {
		return nil, s.malformed(len(body)-len(rest), fmt.Sprintf("%d trailing bytes after datum", len(rest)), nil)
	}
	return native, nil
}

// EncodeNative appends the binary encoding of a goavro native value.
func (s *Schema) EncodeNative(dst []byte, native any) (out []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = dst, fmt.Errorf("avro: encode %s: goavro panic: %v", s.FullName, r)
		}
	}()
	out, err = s.codec.BinaryFromNative(dst, native)
	if err != nil {
		return dst, fmt.Errorf("avro: encode %s: %w", s.FullName, err)
	}
	return out, nil
}

// EncodeNatural encodes a record given in natural form (see refFromNatural)
// and returns the Avro body only (no Confluent header).
func (s *Schema) EncodeNatural(v map[string]any) ([]byte, error) {
	return s.AppendNatural(nil, v)
}

// AppendNatural is EncodeNatural appending to dst, so a framed message can
// be built in one buffer: s.AppendNatural(AppendHeader(nil, id), v). It
// encodes directly from the natural form (see encoder.go); on error dst is
// returned unchanged.
func (s *Schema) AppendNatural(dst []byte, v map[string]any) ([]byte, error) {
	out, err := appendNatural(dst, s.root, v)
	if err != nil {
		return dst, fmt.Errorf("avro: from natural %s: %w", s.FullName, err)
	}
	return out, nil
}

// AppendRecord is AppendNatural for a value laid out in slots (see Record).
func (s *Schema) AppendRecord(dst []byte, r *Record) ([]byte, error) {
	out, err := appendNatural(dst, s.root, r)
	if err != nil {
		return dst, fmt.Errorf("avro: from natural %s: %w", s.FullName, err)
	}
	return out, nil
}

// DemoFS returns ordo's demo schemas (one .avsc per type, file name = full
// name + ".avsc") for tools that want the raw files. They live next to the
// example config (examples/orders/schemas), which names them in its
// `schemas:` block; they are also the default of a config without one.
func DemoFS() fs.FS { return orders.Schemas() }

// Demo parses the embedded demo schemas, keyed by full name, with ID 0
// (they become registry ids only once registered). It verifies that each
// file name matches the schema's full name so a misnamed file is caught.
func Demo() (map[string]*Schema, error) {
	fsys := DemoFS()
	names, err := fs.Glob(fsys, "*.avsc")
	if err != nil {
		return nil, fmt.Errorf("avro: list demo schemas: %w", err)
	}
	out := make(map[string]*Schema, len(names))
	for _, n := range names {
		b, err := fs.ReadFile(fsys, n)
		if err != nil {
			return nil, fmt.Errorf("avro: read demo schema %s: %w", n, err)
		}
		s, err := ParseSchema(0, string(b))
		if err != nil {
			return nil, fmt.Errorf("avro: demo schema %s: %w", n, err)
		}
		if want := strings.TrimSuffix(n, ".avsc"); s.FullName != want {
			return nil, fmt.Errorf("avro: demo schema %s declares %s", n, s.FullName)
		}
		out[s.FullName] = s
	}
	return out, nil
}
