package schemas

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/sr"
)

// confluentSR is an httptest server that answers like a Confluent Schema
// Registry, with the answer for each request chosen by the test.
type confluentSR struct {
	srv  *httptest.Server
	reqs atomic.Int32 // requests to /schemas/ids/
	mu   sync.Mutex
	next func(w http.ResponseWriter, r *http.Request) // answers every request
}

func newConfluentSR(t *testing.T) *confluentSR {
	t.Helper()
	c := &confluentSR{}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/schemas/ids/") {
			c.reqs.Add(1)
		}
		c.mu.Lock()
		h := c.next
		c.mu.Unlock()
		h(w, r)
	}))
	t.Cleanup(c.srv.Close)
	return c
}

func (c *confluentSR) answer(h func(w http.ResponseWriter, r *http.Request)) {
	c.mu.Lock()
	c.next = h
	c.mu.Unlock()
}

// confluentError writes a Confluent-style error body.
func confluentError(status, code int, msg string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/vnd.schemaregistry.v1+json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]any{"error_code": code, "message": msg})
	}
}

// plain writes a non-JSON answer, as a proxy in front of a registry does.
func plain(status int, body string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) { http.Error(w, body, status) }
}

// schemaAnswer serves schema text (and type) for any id.
func schemaAnswer(text, typ string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) {
		body := map[string]any{"schema": text}
		if typ != "" {
			body["schemaType"] = typ
		}
		w.Header().Set("Content-Type", "application/vnd.schemaregistry.v1+json")
		_ = json.NewEncoder(w).Encode(body)
	}
}

func transient(err error) bool {
	var t interface{ Transient() bool }
	return errors.As(err, &t) && t.Transient()
}

// closedURL is an http URL on 127.0.0.1 where nothing listens.
func closedURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

// TestRegistryFaultClasses: only "this id does not exist" (404 + 40403) and
// an unusable schema are the record's fault; every other answer is the
// registry's, the network's or the configuration's and must be transient,
// with a message that says what to check.
func TestRegistryFaultClasses(t *testing.T) {
	cases := []struct {
		name      string
		answer    func(http.ResponseWriter, *http.Request)
		permanent bool
		reason    string // DeadLetterReason of a permanent error
		status    int    // the *sr.ResponseError status kept in the chain (0: none)
		says      string // substring of the message
	}{
		{name: "401 json", answer: confluentError(401, 40101, "Unauthorized"), status: 401, says: "refused ordo's credentials"},
		{name: "401 proxy text", answer: plain(401, "Unauthorized"), status: 401, says: "refused ordo's credentials"},
		{name: "403", answer: confluentError(403, 40301, "User cannot access the resource"), status: 403, says: "denied ordo access"},
		{name: "404 40403", answer: confluentError(404, 40403, "Schema 1 not found"), permanent: true, reason: ReasonUnknownSchema, status: 404, says: "not found in registry"},
		{name: "404 no code", answer: plain(404, "<html>Not Found</html>"), status: 404, says: "registry.url is the registry's base URL"},
		{name: "404 40401", answer: confluentError(404, 40401, "Subject not found"), status: 404, says: "registry.url"},
		{name: "408", answer: confluentError(408, 0, "timeout"), status: 408, says: "overloaded or failing"},
		{name: "429", answer: plain(429, "slow down"), status: 429, says: "overloaded or failing"},
		{name: "500", answer: confluentError(500, 50001, "Error in the backend data store"), status: 500, says: "overloaded or failing"},
		{name: "502", answer: plain(502, "Bad Gateway"), status: 502},
		{name: "503", answer: plain(503, "Service Unavailable"), status: 503},
		{name: "400", answer: plain(400, "bad request"), status: 400, says: "check registry.url"},
		{name: "200 not json", answer: plain(200, "hello"), says: "registry.url"},
		{name: "protobuf schema", answer: schemaAnswer(`syntax = "proto3";`, "PROTOBUF"), permanent: true, reason: ReasonUnsupportedSchema, says: "not Avro"},
		{name: "unparsable avro", answer: schemaAnswer(`{"type":"record"`, ""), permanent: true, reason: ReasonUnsupportedSchema},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fake := newConfluentSR(t)
			fake.answer(c.answer)
			reg := NewRegistry(mustClient(t, fake.srv.URL))
			_, err := reg.SchemaByID(context.Background(), 1)
			if err == nil {
				t.Fatal("want an error")
			}
			t.Logf("%v", err)
			if got := transient(err); got == c.permanent {
				t.Fatalf("transient=%v, want %v: %T %v", got, !c.permanent, err, err)
			}
			if c.permanent {
				var r interface{ DeadLetterReason() string }
				if !errors.As(err, &r) || r.DeadLetterReason() != c.reason {
					t.Fatalf("dead-letter reason of %v: want %q", err, c.reason)
				}
			}
			var re *sr.ResponseError
			if c.status != 0 && (!errors.As(err, &re) || re.StatusCode != c.status) {
				t.Fatalf("the registry's answer (%d) is not kept in the chain: %v", c.status, err)
			}
			if c.says != "" && !strings.Contains(err.Error(), c.says) {
				t.Fatalf("message %q should say %q", err, c.says)
			}
		})
	}
}

func TestRegistrySlowAndClosedAreTransient(t *testing.T) {
	fake := newConfluentSR(t)
	fake.answer(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	reg := NewRegistry(mustClient(t, fake.srv.URL), FetchTimeout(50*time.Millisecond))
	start := time.Now()
	_, err := reg.SchemaByID(context.Background(), 1)
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("fetch timeout not applied: %v", took)
	}
	if !transient(err) || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "registry.timeout") {
		t.Fatalf("slow registry: want a transient timeout naming registry.timeout, got %T %v", err, err)
	}

	// An http.Client timeout (how ordo builds its client) is a timeout too.
	hc := &http.Client{Timeout: 50 * time.Millisecond}
	cl, err := sr.NewClient(sr.URLs(fake.srv.URL), sr.HTTPClient(hc))
	if err != nil {
		t.Fatal(err)
	}
	_, err = NewRegistry(cl).SchemaByID(context.Background(), 2)
	if !transient(err) || !strings.Contains(err.Error(), "registry.timeout") {
		t.Fatalf("http.Client timeout: want transient naming registry.timeout, got %T %v", err, err)
	}

	_, err = NewRegistry(mustClient(t, closedURL(t))).SchemaByID(context.Background(), 1)
	if !transient(err) || !strings.Contains(err.Error(), "registry.url") {
		t.Fatalf("closed port: want transient naming registry.url, got %T %v", err, err)
	}
}

// TestRegistry401ThenRecovers: a refusal is not remembered; once the
// credentials are accepted the same id resolves and is cached.
func TestRegistry401ThenRecovers(t *testing.T) {
	fake := newConfluentSR(t)
	fake.answer(confluentError(401, 40101, "Unauthorized"))
	reg := NewRegistry(mustClient(t, fake.srv.URL))
	ctx := context.Background()
	for range 3 {
		if _, err := reg.SchemaByID(ctx, 1); !transient(err) {
			t.Fatalf("401: want transient, got %T %v", err, err)
		}
	}
	fake.answer(schemaAnswer(simpleA, ""))
	s, err := reg.SchemaByID(ctx, 1)
	if err != nil || s.FullName != "t.A" {
		t.Fatalf("after the registry accepts: %v %v", s, err)
	}
	if _, err := reg.SchemaByID(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if got := fake.reqs.Load(); got != 4 {
		t.Fatalf("%d requests, want 4 (3 refused, 1 accepted, then cached)", got)
	}
	if reg.NegativeHits() != 0 {
		t.Fatalf("a 401 was served from the negative cache %d times", reg.NegativeHits())
	}
}

// TestRegistryNegativeCache: 50 records naming one unknown id cost one
// lookup within the TTL, concurrently or not; after the TTL the registry is
// asked again; 0 disables the cache.
func TestRegistryNegativeCache(t *testing.T) {
	fake := newConfluentSR(t)
	fake.answer(confluentError(404, 40403, "Schema 999999 not found"))
	reg := NewRegistry(mustClient(t, fake.srv.URL), NegativeCacheTTL(time.Minute))
	var clock atomic.Int64
	clock.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	reg.now = func() time.Time { return time.Unix(0, clock.Load()) }
	s := NewSerde(reg, nil, WithAutoRegister(false))
	ctx := context.Background()
	frame := append(AppendHeader(nil, 999999), 2)

	var wg sync.WaitGroup
	for range 25 {
		wg.Go(func() {
			_, err := s.Decode(ctx, "t", frame)
			var u *UnknownSchemaError
			if !errors.As(err, &u) || u.ID != 999999 || transient(err) {
				t.Errorf("want permanent *UnknownSchemaError, got %T %v", err, err)
			}
		})
	}
	wg.Wait()
	for range 25 {
		if _, err := s.Decode(ctx, "t", frame); !errors.As(err, new(*UnknownSchemaError)) {
			t.Fatalf("cached answer: %T %v", err, err)
		}
	}
	if got := fake.reqs.Load(); got != 1 {
		t.Fatalf("50 records with one unknown id made %d registry lookups, want 1", got)
	}
	if _, misses := reg.Stats(); misses+reg.NegativeHits() != 50 || reg.NegativeHits() < 25 {
		t.Fatalf("misses %d + negative hits %d, want 50 with at least the 25 sequential ones negative", misses, reg.NegativeHits())
	}

	clock.Add(int64(59 * time.Second))
	if _, err := reg.SchemaByID(ctx, 999999); err == nil || fake.reqs.Load() != 1 {
		t.Fatalf("within the TTL: %v, %d lookups", err, fake.reqs.Load())
	}
	clock.Add(int64(time.Second))
	// After the TTL the registry is asked again, and a late registration is seen.
	fake.answer(schemaAnswer(simpleA, ""))
	if sch, err := reg.SchemaByID(ctx, 999999); err != nil || sch.FullName != "t.A" {
		t.Fatalf("after the TTL: %v %v", sch, err)
	}
	if got := fake.reqs.Load(); got != 2 {
		t.Fatalf("%d lookups after the TTL, want 2", got)
	}

	off := NewRegistry(mustClient(t, fake.srv.URL), NegativeCacheTTL(0))
	fake.answer(confluentError(404, 40403, "Schema 7 not found"))
	for range 3 {
		if _, err := off.SchemaByID(ctx, 7); !errors.As(err, new(*UnknownSchemaError)) {
			t.Fatalf("TTL 0: %T %v", err, err)
		}
	}
	if got := fake.reqs.Load(); got != 5 {
		t.Fatalf("TTL 0 must not cache: %d lookups in all, want 5", got)
	}
}

// TestRegistryNegativeCacheBounded: corrupt records with ever new ids must
// not grow the cache without bound.
func TestRegistryNegativeCacheBounded(t *testing.T) {
	fake := newConfluentSR(t)
	fake.answer(confluentError(404, 40403, "Schema not found"))
	reg := NewRegistry(mustClient(t, fake.srv.URL))
	reg.negMax = 3
	for id := 1; id <= 10; id++ {
		if _, err := reg.SchemaByID(context.Background(), id); !errors.As(err, new(*UnknownSchemaError)) {
			t.Fatalf("id %d: %T %v", id, err, err)
		}
	}
	reg.negMu.Lock()
	n := len(reg.neg)
	reg.negMu.Unlock()
	if n != 3 {
		t.Fatalf("negative cache holds %d entries, want the bound 3", n)
	}
	// The remembered ids are still answered without a lookup.
	before := fake.reqs.Load()
	for id := 1; id <= 3; id++ {
		_, _ = reg.SchemaByID(context.Background(), id)
	}
	if fake.reqs.Load() != before {
		t.Fatal("remembered ids went to the registry")
	}
}

// TestOwnSchemaFailuresAreTransient: registering or looking up ordo's own
// output schemas fails because of the registry or the deployment, never the
// event, so every failure is transient with a hint.
func TestOwnSchemaFailuresAreTransient(t *testing.T) {
	a := mustSchema(t, 0, simpleA)
	ctx := context.Background()
	cases := []struct {
		name   string
		answer func(http.ResponseWriter, *http.Request)
		auto   bool
		says   string
	}{
		{"register 401", confluentError(401, 40101, "Unauthorized"), true, "refused ordo's credentials"},
		{"register 403", plain(403, "Forbidden"), true, "denied ordo access"},
		{"register 409", confluentError(409, 409, "Schema being registered is incompatible"), true, "incompatible"},
		{"register 422", confluentError(422, 42201, "Invalid schema"), true, "invalid"},
		{"register 500", confluentError(500, 50001, "store error"), true, "overloaded or failing"},
		{"lookup 404 40401", confluentError(404, 40401, "Subject not found"), false, "registry.auto_register"},
		{"lookup 401", confluentError(401, 40101, "Unauthorized"), false, "refused ordo's credentials"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fake := newConfluentSR(t)
			fake.answer(c.answer)
			s := NewSerde(NewRegistry(mustClient(t, fake.srv.URL)), map[string]*Schema{"t.A": a}, WithAutoRegister(c.auto))
			_, err := s.Encode(ctx, "out", "t.A", map[string]any{"x": 1})
			t.Logf("%v", err)
			if !transient(err) {
				t.Fatalf("want transient, got %T %v", err, err)
			}
			if !strings.Contains(err.Error(), c.says) {
				t.Fatalf("message %q should say %q", err, c.says)
			}
		})
	}

	// Not registered by its text, but the latest version is the same
	// schema: used. A different latest: transient, names the latest id.
	fake := newConfluentSR(t)
	fake.answer(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPost:
			confluentError(404, 40403, "Schema not found")(w, r)
		case strings.HasSuffix(r.URL.Path, "/versions/latest"):
			w.Header().Set("Content-Type", "application/vnd.schemaregistry.v1+json")
			_ = json.NewEncoder(w).Encode(map[string]any{"subject": "out-value", "version": 3, "id": 42, "schema": simpleA})
		default:
			plain(500, "unexpected")(w, r)
		}
	})
	s := NewSerde(NewRegistry(mustClient(t, fake.srv.URL)), map[string]*Schema{"t.A": a}, WithAutoRegister(false))
	b, err := s.Encode(ctx, "out", "t.A", map[string]any{"x": 1})
	if err != nil {
		t.Fatal(err)
	}
	if id, _, _ := ParseHeader(b); id != 42 {
		t.Fatalf("framed with id %d, want the latest's 42", id)
	}
	other := NewSerde(NewRegistry(mustClient(t, fake.srv.URL)), map[string]*Schema{"t.B": mustSchema(t, 0, simpleB)}, WithAutoRegister(false))
	_, err = other.Encode(ctx, "out", "t.B", map[string]any{"y": "x"})
	if !transient(err) || !strings.Contains(err.Error(), "latest is id 42") || !strings.Contains(err.Error(), "registry.auto_register") {
		t.Fatalf("different latest: want transient naming id 42 and auto_register, got %T %v", err, err)
	}
}

// TestTombstoneIsNamed: a nil value (a Kafka tombstone) is reported as a
// tombstone, distinct from an empty value; both are permanent.
func TestTombstoneIsNamed(t *testing.T) {
	_, cl := newFakeSR(t, nil)
	s := NewSerde(NewRegistry(cl), nil, WithAutoRegister(false))
	reason := func(err error) string {
		var r interface{ DeadLetterReason() string }
		if errors.As(err, &r) {
			return r.DeadLetterReason()
		}
		return ""
	}
	_, err := s.Decode(context.Background(), "t", nil)
	if !errors.Is(err, ErrTombstone) || errors.Is(err, ErrEmptyPayload) || transient(err) {
		t.Fatalf("nil value: want permanent ErrTombstone, got %T %v", err, err)
	}
	if !strings.Contains(err.Error(), "tombstone (null value)") || strings.Contains(err.Error(), "empty payload") {
		t.Fatalf("nil value message: %q", err)
	}
	if reason(err) != ReasonTombstone {
		t.Fatalf("nil value reason %q, want %q", reason(err), ReasonTombstone)
	}
	_, err = s.Decode(context.Background(), "t", []byte{})
	if !errors.Is(err, ErrEmptyPayload) || errors.Is(err, ErrTombstone) || transient(err) {
		t.Fatalf("empty value: want permanent ErrEmptyPayload, got %T %v", err, err)
	}
	if reason(err) != ReasonEmptyPayload || strings.Contains(err.Error(), "tombstone") {
		t.Fatalf("empty value: reason %q, message %q", reason(err), err)
	}
	_, err = s.Decode(context.Background(), "t", []byte{1, 0, 0, 0, 1, 2})
	if reason(err) != ReasonMalformed {
		t.Fatalf("bad magic byte: reason %q, want %q", reason(err), ReasonMalformed)
	}
}
