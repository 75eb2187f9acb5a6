package schemas

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/big"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/sr"
)

const simpleA = `{"type":"record","name":"A","namespace":"t","fields":[{"name":"x","type":"int"}]}`
const simpleB = `{"type":"record","name":"B","namespace":"t","fields":[{"name":"y","type":"string"}]}`

func TestRegistrySingleFlightAndCache(t *testing.T) {
	fake, cl := newFakeSR(t, nil)
	fake.SeedSchema("topic-value", 1, 7, sr.Schema{Schema: simpleA})
	var fetches atomic.Int32
	release := make(chan struct{})
	fake.Intercept(func(w http.ResponseWriter, r *http.Request) bool {
		if strings.HasPrefix(r.URL.Path, "/schemas/ids/7") {
			fetches.Add(1)
			<-release // hold the request so all callers pile up
		}
		return false
	})
	reg := NewRegistry(cl)
	const n = 32
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := reg.SchemaByID(context.Background(), 7)
			if err == nil && (s.FullName != "t.A" || s.ID != 7) {
				err = errors.New("wrong schema " + s.String())
			}
			errs <- err
		}()
	}
	// Wait until every goroutine has registered its miss, then release.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, misses := reg.Stats(); misses == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("callers did not arrive")
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := fetches.Load(); got != 1 {
		t.Fatalf("%d HTTP fetches for %d concurrent callers, want 1", got, n)
	}
	for range 5 {
		if _, err := reg.SchemaByID(context.Background(), 7); err != nil {
			t.Fatal(err)
		}
	}
	if hits, misses := reg.Stats(); hits != 5 || misses != n {
		t.Fatalf("stats hits=%d misses=%d, want 5/%d", hits, misses, n)
	}
	if fetches.Load() != 1 {
		t.Fatal("cache hit went to the registry")
	}
}

func TestRegistryNotFoundIsPermanent(t *testing.T) {
	_, cl := newFakeSR(t, nil)
	reg := NewRegistry(cl)
	_, err := reg.SchemaByID(context.Background(), 404)
	var u *UnknownSchemaError
	if !errors.As(err, &u) || u.ID != 404 {
		t.Fatalf("want *UnknownSchemaError, got %T %v", err, err)
	}
	if err.(interface{ Transient() bool }).Transient() {
		t.Fatal("not found must be permanent")
	}
}

func TestRegistryTimeoutAnd5xxAreTransient(t *testing.T) {
	fake, cl := newFakeSR(t, nil)
	fake.SeedSchema("s-value", 1, 9, sr.Schema{Schema: simpleA})
	fake.Intercept(func(w http.ResponseWriter, r *http.Request) bool {
		switch {
		case strings.HasPrefix(r.URL.Path, "/schemas/ids/9"):
			<-r.Context().Done() // hang until the client gives up
			return true
		case strings.HasPrefix(r.URL.Path, "/schemas/ids/10"):
			http.Error(w, `{"error_code":50001,"message":"backend down"}`, http.StatusServiceUnavailable)
			return true
		}
		return false
	})
	reg := NewRegistry(cl, FetchTimeout(50*time.Millisecond))
	start := time.Now()
	_, err := reg.SchemaByID(context.Background(), 9)
	if time.Since(start) > 2*time.Second {
		t.Fatalf("fetch timeout not applied: %v", time.Since(start))
	}
	var te interface{ Transient() bool }
	if !errors.As(err, &te) || !te.Transient() {
		t.Fatalf("hang: want transient error, got %T %v", err, err)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("timeout error should wrap context.DeadlineExceeded: %v", err)
	}
	_, err = reg.SchemaByID(context.Background(), 10)
	if !errors.As(err, &te) || !te.Transient() {
		t.Fatalf("503: want transient error, got %T %v", err, err)
	}
	// Errors are not cached: once the registry recovers, the id resolves.
	fake.ClearInterceptors()
	if _, err := reg.SchemaByID(context.Background(), 9); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
	// Serde surfaces registry outages as transient too.
	down := NewSerde(NewRegistry(mustClient(t, "http://127.0.0.1:1")), nil, WithAutoRegister(false))
	_, err = down.Decode(context.Background(), "t", AppendHeader(nil, 1))
	if err == nil {
		t.Fatal("header-only must fail")
	}
	_, err = down.Decode(context.Background(), "t", append(AppendHeader(nil, 1), 0))
	if !errors.As(err, &te) || !te.Transient() {
		t.Fatalf("unreachable registry: want transient, got %T %v", err, err)
	}
}

func mustClient(t testing.TB, url string) *sr.Client {
	cl, err := sr.NewClient(sr.URLs(url))
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

func TestRegisterCaches(t *testing.T) {
	fake, cl := newFakeSR(t, nil)
	var posts atomic.Int32
	fake.Intercept(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodPost {
			posts.Add(1)
		}
		return false
	})
	reg := NewRegistry(cl)
	id1, err := reg.Register(context.Background(), "x-value", simpleA)
	if err != nil {
		t.Fatal(err)
	}
	id2, err := reg.Register(context.Background(), "x-value", simpleA)
	if err != nil || id1 != id2 {
		t.Fatalf("ids %d %d err %v", id1, id2, err)
	}
	if posts.Load() != 1 {
		t.Fatalf("%d POSTs, want 1", posts.Load())
	}
	s, err := reg.SchemaByID(context.Background(), id1)
	if err != nil || s.FullName != "t.A" {
		t.Fatal(s, err)
	}
}

func TestSubjectStrategies(t *testing.T) {
	cases := []struct {
		in    string
		want  SubjectStrategy
		value string
		key   string
	}{
		{"topic_name", TopicName, "orders-value", "orders-key"},
		{"TopicNameStrategy", TopicName, "orders-value", "orders-key"},
		{"io.confluent.kafka.serializers.subject.RecordNameStrategy", RecordName, "com.acme.X", "com.acme.X-key"},
		{"record_name", RecordName, "com.acme.X", "com.acme.X-key"},
		{"topic_record_name", TopicRecordName, "orders-com.acme.X", "orders-com.acme.X"},
		{"TopicRecordNameStrategy", TopicRecordName, "orders-com.acme.X", "orders-com.acme.X"},
	}
	for _, c := range cases {
		got, err := ParseSubjectStrategy(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseSubjectStrategy(%q) = %v, %v", c.in, got, err)
			continue
		}
		if v := got.Subject("orders", "com.acme.X", false); v != c.value {
			t.Errorf("%v value subject = %q, want %q", got, v, c.value)
		}
		if k := got.Subject("orders", "com.acme.X", true); k != c.key {
			t.Errorf("%v key subject = %q, want %q", got, k, c.key)
		}
		if again, _ := ParseSubjectStrategy(got.String()); again != got {
			t.Errorf("String() %q does not parse back", got.String())
		}
	}
	if _, err := ParseSubjectStrategy("nope"); err == nil {
		t.Error("unknown strategy must fail")
	}
}

func TestSerdeDispatchTwoTypesOneTopic(t *testing.T) {
	_, cl := newFakeSR(t, nil)
	reg := NewRegistry(cl)
	a, b := mustSchema(t, 0, simpleA), mustSchema(t, 0, simpleB)
	s := NewSerde(reg, map[string]*Schema{"t.A": a, "t.B": b}, WithSubjectStrategy(TopicRecordName))
	ctx := context.Background()
	fa, err := s.Encode(ctx, "mixed", "t.A", map[string]any{"x": 1})
	if err != nil {
		t.Fatal(err)
	}
	fb, err := s.Encode(ctx, "mixed", "t.B", map[string]any{"y": "hi"})
	if err != nil {
		t.Fatal(err)
	}
	// A consumer that only knows t.A still decodes t.B as written.
	consumer := NewSerde(NewRegistry(cl), map[string]*Schema{"t.A": a}, WithSubjectStrategy(TopicRecordName), WithAutoRegister(false))
	da, err := consumer.Decode(ctx, "mixed", fa)
	if err != nil || da.Type != "t.A" || da.Value["x"] != int32(1) {
		t.Fatalf("A: %+v %v", da, err)
	}
	db, err := consumer.Decode(ctx, "mixed", fb)
	if err != nil || db.Type != "t.B" || db.Value["y"] != "hi" || db.SchemaID == da.SchemaID {
		t.Fatalf("B: %+v %v", db, err)
	}
	if _, err := s.Encode(ctx, "mixed", "t.C", nil); !errors.Is(err, ErrUnknownType) {
		t.Fatalf("unknown type: %v", err)
	}
	// Without auto-register the id is looked up under the same subject.
	lookup := NewSerde(NewRegistry(cl), map[string]*Schema{"t.A": a}, WithSubjectStrategy(TopicRecordName), WithAutoRegister(false))
	fa2, err := lookup.Encode(ctx, "mixed", "t.A", map[string]any{"x": 1})
	if err != nil || string(fa2) != string(fa) {
		t.Fatalf("lookup encode: %x vs %x: %v", fa2, fa, err)
	}
	if _, err := lookup.Encode(ctx, "other-topic", "t.A", map[string]any{"x": 1}); err == nil {
		t.Fatal("unregistered subject without auto-register must fail")
	}
}

// TestDemoSchemas: all embedded demo schemas parse, and a natural value for
// each round-trips through Encode -> Decode via the registry.
func TestDemoSchemas(t *testing.T) {
	demo, err := Demo()
	if err != nil {
		t.Fatal(err)
	}
	if len(demo) != 12 {
		t.Fatalf("%d demo schemas, want 12", len(demo))
	}
	_, cl := newFakeSR(t, nil)
	s := NewSerde(NewRegistry(cl), demo, WithSubjectStrategy(TopicRecordName))
	ctx := context.Background()
	ts := time.UnixMilli(1764240000123).UTC()
	for name, sch := range demo {
		v, err := sampleNatural(sch.root, 0)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		m := v.(map[string]any)
		env := m["envelope"].(map[string]any)
		env["time"], env["type"], env["causation_id"] = ts, name, nil
		frame, err := s.Encode(ctx, "demo", name, m)
		if err != nil {
			t.Fatalf("%s: encode: %v", name, err)
		}
		d, err := s.Decode(ctx, "demo", frame)
		if err != nil {
			t.Fatalf("%s: decode: %v", name, err)
		}
		if d.Type != name {
			t.Fatalf("decoded type %s, want %s", d.Type, name)
		}
		if diff := naturalDiff("$", d.Value, m); diff != "" {
			t.Fatalf("%s: round trip mismatch: %s", name, diff)
		}
	}
}

// sampleNatural builds a deterministic natural value for a schema.
func sampleNatural(n *node, depth int) (any, error) {
	switch n.kind {
	case kNull:
		return nil, nil
	case kBoolean:
		return true, nil
	case kInt:
		return int32(-42), nil
	case kLong:
		if n.logical == lTimestampMillis {
			return time.UnixMilli(1700000000001).UTC(), nil
		}
		return int64(1) << 40, nil
	case kFloat:
		return float32(1.25), nil
	case kDouble:
		return 2.5, nil
	case kString:
		return "s-ü", nil
	case kBytes, kFixed:
		if n.logical == lDecimal {
			return big.NewRat(-1234567, 100), nil
		}
		return make([]byte, max(n.size, 3)), nil
	case kEnum:
		return n.symbols[len(n.symbols)-1], nil
	case kArray:
		e, err := sampleNatural(n.items, depth+1)
		return []any{e, e}, err
	case kMap:
		e, err := sampleNatural(n.items, depth+1)
		return map[string]any{"k": e}, err
	case kUnion:
		return sampleNatural(n.branches[len(n.branches)-1], depth+1)
	case kRecord:
		m := map[string]any{}
		for _, f := range n.fields {
			v, err := sampleNatural(f.typ, depth+1)
			if err != nil {
				return nil, err
			}
			m[f.name] = v
		}
		return m, nil
	}
	return nil, errors.New("unsupported")
}

// naturalDiff compares natural values exactly: same Go types, map keys
// present on both sides, decimals by value, times by instant, floats by bit
// pattern (so -0 != 0) except that any NaN equals any NaN. "" means equal.
func naturalDiff(path string, got, want any) string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return fmt.Sprintf("%s: got %T, want map", path, got)
		}
		for k := range g {
			if _, ok := w[k]; !ok {
				return fmt.Sprintf("%s: unexpected key %q", path, k)
			}
		}
		for _, k := range slices.Sorted(maps.Keys(w)) {
			gv, ok := g[k]
			if !ok {
				return fmt.Sprintf("%s: missing key %q", path, k)
			}
			if d := naturalDiff(path+"."+k, gv, w[k]); d != "" {
				return d
			}
		}
		return ""
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return fmt.Sprintf("%s: got %T of %d, want slice of %d", path, got, len(g), len(w))
		}
		for i := range w {
			if d := naturalDiff(fmt.Sprintf("%s[%d]", path, i), g[i], w[i]); d != "" {
				return d
			}
		}
		return ""
	case *big.Rat:
		if g, ok := got.(*big.Rat); !ok || g.Cmp(w) != 0 {
			return fmt.Sprintf("%s: got %v, want decimal %s", path, got, w.RatString())
		}
		return ""
	case time.Time:
		if g, ok := got.(time.Time); !ok || !g.Equal(w) {
			return fmt.Sprintf("%s: got %v, want time %v", path, got, w)
		}
		return ""
	case []byte:
		if g, ok := got.([]byte); !ok || string(g) != string(w) {
			return fmt.Sprintf("%s: got %T %x, want bytes %x", path, got, got, w)
		}
		return ""
	case float64:
		g, ok := got.(float64)
		if !ok || (math.Float64bits(g) != math.Float64bits(w) && !(math.IsNaN(g) && math.IsNaN(w))) {
			return fmt.Sprintf("%s: got %T %v, want double %v", path, got, got, w)
		}
		return ""
	case float32:
		g, ok := got.(float32)
		if !ok || (math.Float32bits(g) != math.Float32bits(w) && !(g != g && w != w)) {
			return fmt.Sprintf("%s: got %T %v, want float %v", path, got, got, w)
		}
		return ""
	}
	if got != want {
		return fmt.Sprintf("%s: got %T %v, want %T %v", path, got, got, want, want)
	}
	return ""
}
