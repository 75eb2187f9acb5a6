package processors

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// tierServer serves /tiers/{key}; behaviour per key prefix.
type tierServer struct {
	*httptest.Server
	requests atomic.Int64
	mu       sync.Mutex
	paths    []string
	fail     atomic.Int64 // fail this many requests with 503 first
}

func newTierServer(t *testing.T) *tierServer {
	ts := &tierServer{}
	ts.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ts.requests.Add(1)
		ts.mu.Lock()
		ts.paths = append(ts.paths, r.URL.EscapedPath()+"|"+r.URL.RawQuery+"|"+r.Header.Get("X-Token"))
		ts.mu.Unlock()
		if ts.fail.Add(-1) >= 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		key := strings.TrimPrefix(r.URL.Path, "/tiers/")
		if key == "" {
			key = r.URL.Query().Get("k")
		}
		switch {
		case strings.HasPrefix(key, "missing"):
			http.NotFound(w, r)
		case strings.HasPrefix(key, "bad"):
			http.Error(w, "bad key", http.StatusBadRequest)
		case strings.HasPrefix(key, "down"):
			http.Error(w, "down", http.StatusInternalServerError)
		case strings.HasPrefix(key, "slow"):
			select {
			case <-time.After(2 * time.Second):
			case <-r.Context().Done():
			}
		case strings.HasPrefix(key, "garbage"):
			fmt.Fprint(w, "<html>proxy error</html>")
		default:
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"key": %q, "tier": "gold", "limit": 5000, "ratio": 0.25, "tags": ["a"]}`, key)
		}
	}))
	t.Cleanup(ts.Close)
	return ts
}

func buildHTTP(t *testing.T, ts *tierServer, extra string) *httpEnricher {
	t.Helper()
	block := "url: " + ts.URL + "/tiers/{key}\nkey: event.customer_id\ninto: tier\n" + extra
	p, err := newEnrichHTTP(testSpec(t, "enrich_http", "tiers", block), Deps{})
	if err != nil {
		t.Fatal(err)
	}
	return p.(*httpEnricher)
}

func evFor(key string) *Event {
	ev := orderPlaced()
	ev.Value["customer_id"] = key
	return ev
}

func runHTTP(p Processor, key string) (any, error) {
	ev := evFor(key)
	_, err := p.Process(context.Background(), ev)
	return ev.Attrs["tier"], err
}

func TestEnrichHTTPLookupAndCache(t *testing.T) {
	ts := newTierServer(t)
	p := buildHTTP(t, ts, "headers: {X-Token: s3cret}\n")
	got, err := runHTTP(p, "cust-7")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"key": "cust-7", "tier": "gold", "limit": int64(5000), "ratio": 0.25, "tags": []any{"a"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %#v", got)
	}
	// Mutating attrs does not corrupt the cache.
	got.(map[string]any)["tier"] = "changed"
	for range 5 {
		got, err = runHTTP(p, "cust-7")
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("cached: %v %v", got, err)
		}
	}
	if n := ts.requests.Load(); n != 1 {
		t.Fatalf("requests = %d, want 1 (cached)", n)
	}
	if _, err := runHTTP(p, "cust 8/x"); err != nil {
		t.Fatal(err)
	}
	if n := ts.requests.Load(); n != 2 {
		t.Fatalf("requests = %d, want 2", n)
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.paths[0] != "/tiers/cust-7||s3cret" || ts.paths[1] != "/tiers/cust%208%2Fx||s3cret" {
		t.Fatalf("paths: %q", ts.paths)
	}
}

func TestEnrichHTTPQueryKey(t *testing.T) {
	ts := newTierServer(t)
	p, err := newEnrichHTTP(testSpec(t, "enrich_http", "tiers", "url: "+ts.URL+"/tiers/?k={key}\nkey: event.customer_id\ninto: tier\n"), Deps{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := runHTTP(p, "a b&c")
	if err != nil || got.(map[string]any)["key"] != "a b&c" {
		t.Fatalf("got %v %v", got, err)
	}
}

func TestEnrichHTTPTTL(t *testing.T) {
	ts := newTierServer(t)
	p := buildHTTP(t, ts, "cache_ttl: 1m\n")
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p.now = func() time.Time { return now }
	runHTTP(p, "cust-7")
	now = now.Add(59 * time.Second)
	runHTTP(p, "cust-7")
	if n := ts.requests.Load(); n != 1 {
		t.Fatalf("requests = %d before expiry, want 1", n)
	}
	now = now.Add(2 * time.Second)
	if _, err := runHTTP(p, "cust-7"); err != nil {
		t.Fatal(err)
	}
	if n := ts.requests.Load(); n != 2 {
		t.Fatalf("requests = %d after expiry, want 2", n)
	}
}

func TestEnrichHTTPCacheBound(t *testing.T) {
	ts := newTierServer(t)
	p := buildHTTP(t, ts, "cache_size: 3\n")
	for i := range 10 {
		if _, err := runHTTP(p, fmt.Sprint("k", i)); err != nil {
			t.Fatal(err)
		}
		runHTTP(p, "k0") // keep k0 recently used
		if l := p.cache.len(); l > 3 {
			t.Fatalf("cache holds %d > 3", l)
		}
	}
	before := ts.requests.Load()
	runHTTP(p, "k0") // LRU kept it
	runHTTP(p, "k9")
	if ts.requests.Load() != before {
		t.Fatal("recently used keys were evicted")
	}
	runHTTP(p, "k1") // evicted long ago
	if ts.requests.Load() != before+1 {
		t.Fatal("evicted key still cached")
	}
	// cache_size: 0 disables the cache.
	p = buildHTTP(t, ts, "cache_size: 0\n")
	before = ts.requests.Load()
	runHTTP(p, "k0")
	runHTTP(p, "k0")
	if ts.requests.Load() != before+2 || p.cache != nil {
		t.Fatal("cache_size 0 should not cache")
	}
}

func TestEnrichHTTPTimeoutTransient(t *testing.T) {
	ts := newTierServer(t)
	p := buildHTTP(t, ts, "timeout: 50ms\nretries: 1\nretry_backoff: 1ms\n")
	start := time.Now()
	_, err := runHTTP(p, "slow-1")
	if err == nil || !IsTransient(err) {
		t.Fatalf("want transient error, got %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("took %v: timeout not applied", d)
	}
	if n := ts.requests.Load(); n != 2 {
		t.Fatalf("requests = %d, want 2 (1 retry)", n)
	}
	if !strings.Contains(err.Error(), "deadline exceeded") {
		t.Errorf("error %q", err)
	}
}

func TestEnrichHTTP5xxRetriedThenTransient(t *testing.T) {
	ts := newTierServer(t)
	p := buildHTTP(t, ts, "retry_backoff: 1ms\n") // retries default 2
	_, err := runHTTP(p, "down-1")
	if err == nil || !IsTransient(err) || !strings.Contains(err.Error(), "500") || !strings.Contains(err.Error(), "after 3 attempts") {
		t.Fatalf("want transient 500 after 3 attempts, got %v", err)
	}
	if n := ts.requests.Load(); n != 3 {
		t.Fatalf("requests = %d, want 3", n)
	}
	// Failures are not cached: a recovered service is asked again.
	if _, err := runHTTP(p, "down-1"); ts.requests.Load() != 6 || err == nil {
		t.Fatal("error result was cached")
	}
	// A blip shorter than the retries succeeds.
	ts.fail.Store(2)
	got, err := runHTTP(p, "cust-7")
	if err != nil || got.(map[string]any)["tier"] != "gold" {
		t.Fatalf("after blip: %v %v", got, err)
	}
	// Invalid bodies are transient too (a proxy error page is an outage).
	if _, err := runHTTP(p, "garbage"); err == nil || !IsTransient(err) || !strings.Contains(err.Error(), "not JSON") {
		t.Fatalf("garbage: %v", err)
	}
}

func TestEnrichHTTPRetryBudget(t *testing.T) {
	ts := newTierServer(t)
	p := buildHTTP(t, ts, "retry_backoff: 0s\nretry_budget: 0.1\nretries: 2\n")
	for i := range 100 {
		if _, err := runHTTP(p, fmt.Sprint("down-", i)); err == nil || !IsTransient(err) {
			t.Fatalf("want transient, got %v", err)
		}
	}
	// 100 lookups; retries limited to the burst of 10 plus 10% of 100 = 20
	// (plus rounding), instead of 200 without a budget.
	if n := ts.requests.Load(); n > 100+21 {
		t.Fatalf("requests = %d: retry budget not enforced", n)
	}
	if n := ts.requests.Load(); n < 100+19 {
		t.Fatalf("requests = %d: budget too strict", n)
	}
}

func TestEnrichHTTP404AndBadRequest(t *testing.T) {
	ts := newTierServer(t)
	p := buildHTTP(t, ts, "default: {tier: standard}\n")
	got, err := runHTTP(p, "missing-1")
	if err != nil || !reflect.DeepEqual(got, map[string]any{"tier": "standard"}) {
		t.Fatalf("default: %v %v", got, err)
	}
	runHTTP(p, "missing-1")
	if n := ts.requests.Load(); n != 1 {
		t.Fatalf("404 not cached: %d requests", n)
	}
	p = buildHTTP(t, ts, "on_missing: error\n")
	if _, err := runHTTP(p, "missing-2"); err == nil || IsTransient(err) || !strings.Contains(err.Error(), `lookup of key "missing-2": not found`) {
		t.Fatalf("error: %v", err)
	}
	p = buildHTTP(t, ts, "")
	if got, err := runHTTP(p, "missing-3"); err != nil || got != nil {
		t.Fatalf("skip: %v %v", got, err)
	}
	before := ts.requests.Load()
	if _, err := runHTTP(p, "bad-1"); err == nil || IsTransient(err) || !strings.Contains(err.Error(), "400") {
		t.Fatalf("400: %v", err)
	}
	if ts.requests.Load() != before+1 {
		t.Fatal("400 was retried")
	}
	// A null key is missing without a request.
	p = buildHTTP(t, ts, "default: {tier: none}\n")
	p2, _ := newEnrichHTTP(testSpec(t, "enrich_http", "tiers", "url: "+ts.URL+"/tiers/{key}\nkey: event.note\ninto: tier\ndefault: {tier: none}\n"), Deps{})
	before = ts.requests.Load()
	if got, err := runHTTP(p2, "x"); err != nil || got.(map[string]any)["tier"] != "none" || ts.requests.Load() != before {
		t.Fatalf("null key: %v %v", got, err)
	}
}

func TestEnrichHTTPCanceled(t *testing.T) {
	ts := newTierServer(t)
	p := buildHTTP(t, ts, "")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := p.Process(ctx, evFor("cust-7"))
	if err == nil || !IsTransient(err) {
		t.Fatalf("want transient, got %v", err)
	}
}

func TestEnrichHTTPConfigErrors(t *testing.T) {
	cases := []struct {
		name, block string
		line        int
		key         string
		frags       []string
	}{
		{"no placeholder", "url: http://x/tiers\nkey: key\ninto: t\n", 1, "pipeline[tiers].url", []string{"no {key} placeholder"}},
		{"not http", "key: key\ninto: t\nurl: ftp://x/{key}\n", 3, "pipeline[tiers].url", []string{"not an absolute http(s) URL"}},
		{"bad timeout", "url: http://x/{key}\nkey: key\ninto: t\ntimeout: fast\n", 4, "pipeline[tiers].timeout", []string{`timeout "fast"`, "fix:"}},
		{"bad ttl", "url: http://x/{key}\nkey: key\ninto: t\ncache_ttl: 0s\n", 4, "pipeline[tiers].cache_ttl", nil},
		{"bad retries", "url: http://x/{key}\nkey: key\ninto: t\nretries: -1\n", 4, "pipeline[tiers].retries", []string{"out of range"}},
		{"bad budget", "url: http://x/{key}\nkey: key\ninto: t\nretry_budget: 2\n", 4, "pipeline[tiers].retry_budget", nil},
		{"bad cache size", "url: http://x/{key}\nkey: key\ninto: t\ncache_size: -5\n", 4, "pipeline[tiers].cache_size", nil},
		{"bad key", "url: http://x/{key}\nkey: event.\ninto: t\n", 2, "pipeline[tiers].key", []string{"invalid CEL"}},
		{"no into", "url: http://x/{key}\nkey: key\n", 1, "pipeline[tiers].into", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := newEnrichHTTP(testSpec(t, "enrich_http", "tiers", c.block), Deps{})
			wantConfigError(t, err, c.line, c.key, c.frags...)
		})
	}
}
