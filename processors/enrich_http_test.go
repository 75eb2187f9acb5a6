package processors

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"reflect"
	"strconv"
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
	p := buildHTTP(t, ts, "retry_backoff: 1ms\nbreaker: {failures: 0}\n") // retries default 2
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
}

func TestEnrichHTTPRetryBudget(t *testing.T) {
	ts := newTierServer(t)
	p := buildHTTP(t, ts, "retry_backoff: 0s\nretry_budget: 0.1\nretries: 2\nbreaker: {failures: 0}\n")
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

// seenReq is what a test server saw of one request.
type seenReq struct {
	uri    string // RequestURI exactly as sent
	header http.Header
}

// recServer records every request and answers with handle.
type recServer struct {
	*httptest.Server
	mu   sync.Mutex
	seen []seenReq
}

func newRecServer(t *testing.T, handle http.HandlerFunc) *recServer {
	t.Helper()
	rs := &recServer{}
	rs.Server = httptest.NewServer(rs.wrap(handle))
	t.Cleanup(rs.Close)
	return rs
}

func (rs *recServer) wrap(handle http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rs.mu.Lock()
		rs.seen = append(rs.seen, seenReq{uri: r.RequestURI, header: r.Header.Clone()})
		rs.mu.Unlock()
		handle(w, r)
	}
}

func (rs *recServer) requests() []seenReq {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return append([]seenReq(nil), rs.seen...)
}

func jsonOK(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprint(w, `{"tier": "gold"}`)
}

// buildURL builds an enrich_http processor for url with extra config lines.
func buildURL(t *testing.T, url, extra string, deps Deps) *httpEnricher {
	t.Helper()
	p, err := newEnrichHTTP(testSpec(t, "enrich_http", "tiers", "url: "+url+"\nkey: event.customer_id\ninto: tier\n"+extra), deps)
	if err != nil {
		t.Fatal(err)
	}
	return p.(*httpEnricher)
}

func TestEnrichHTTPStatusClasses(t *testing.T) {
	srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/s/"))
		if code == 200 {
			jsonOK(w, r)
			return
		}
		w.WriteHeader(code)
	})
	cases := []struct {
		code     int
		class    string // ok, missing, permanent, transient
		requests int    // with retries: 1
	}{
		{200, "ok", 1},
		{404, "missing", 1},
		{410, "missing", 1},
		{400, "permanent", 1},
		{405, "permanent", 1},
		{409, "permanent", 1},
		{422, "permanent", 1},
		{401, "transient", 2},
		{403, "transient", 2},
		{408, "transient", 2},
		{429, "transient", 2},
		{500, "transient", 2},
		{502, "transient", 2},
		{503, "transient", 2},
		{504, "transient", 2},
		{304, "transient", 2}, // a 3xx Go does not follow
	}
	for _, c := range cases {
		t.Run(strconv.Itoa(c.code), func(t *testing.T) {
			p := buildURL(t, srv.URL+"/s/{key}", "retries: 1\nretry_backoff: 1ms\nbreaker: {failures: 0}\ncache_size: 0\ndefault: {tier: none}\n", Deps{})
			before := len(srv.requests())
			got, err := runHTTP(p, strconv.Itoa(c.code))
			if n := len(srv.requests()) - before; n != c.requests {
				t.Errorf("requests = %d, want %d", n, c.requests)
			}
			switch c.class {
			case "ok":
				if err != nil || got.(map[string]any)["tier"] != "gold" {
					t.Fatalf("got %v, %v", got, err)
				}
			case "missing":
				if err != nil || got.(map[string]any)["tier"] != "none" {
					t.Fatalf("want the default, got %v, %v", got, err)
				}
			case "permanent", "transient":
				if err == nil || IsTransient(err) != (c.class == "transient") {
					t.Fatalf("want %s error, got %v", c.class, err)
				}
				if !strings.Contains(err.Error(), "status "+strconv.Itoa(c.code)) {
					t.Errorf("error %q does not name the status", err)
				}
			}
		})
	}
}

func TestEnrichHTTPUnusableAnswersArePermanent(t *testing.T) {
	srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch strings.TrimPrefix(r.URL.Path, "/x/") {
		case "exact": // exactly 100 bytes
			fmt.Fprintf(w, `{"pad": %q}`, strings.Repeat("a", 100-len(`{"pad": ""}`)))
		case "big":
			fmt.Fprintf(w, `{"pad": %q}`, strings.Repeat("a", 101-len(`{"pad": ""}`)))
		case "big-chunked": // no Content-Length: the limit applies while reading
			fmt.Fprint(w, `{"pad": "`)
			w.(http.Flusher).Flush()
			fmt.Fprint(w, strings.Repeat("a", 200)+`"}`)
		case "html":
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprint(w, "<html>proxy error</html>")
		case "empty":
			w.WriteHeader(http.StatusOK)
		case "array":
			fmt.Fprint(w, `[1, 2]`)
		case "null":
			fmt.Fprint(w, `null`)
		case "trailing":
			fmt.Fprint(w, `{"a": 1} {"b": 2}`)
		}
	})
	p := buildURL(t, srv.URL+"/x/{key}", "max_response_bytes: 100\nretries: 2\nretry_backoff: 1ms\ncache_size: 0\n", Deps{})
	if got, err := runHTTP(p, "exact"); err != nil || len(got.(map[string]any)["pad"].(string)) != 89 {
		t.Fatalf("a body of exactly max_response_bytes: %v %v", got, err)
	}
	for _, c := range []struct{ key, reason string }{
		{"big", "response too large: Content-Length 101 > max_response_bytes 100"},
		{"big-chunked", "response too large: more than max_response_bytes 100"},
		{"html", `response is not JSON (Content-Type "text/html")`},
		{"empty", "response is not JSON"},
		{"array", "response is a JSON array, want a JSON object"},
		{"null", "response is JSON null, want a JSON object"},
		{"trailing", "data after the first value"},
	} {
		before := len(srv.requests())
		_, err := runHTTP(p, c.key)
		if err == nil || IsTransient(err) || !strings.Contains(err.Error(), c.reason) {
			t.Errorf("%s: want permanent %q, got %v", c.key, c.reason, err)
		}
		if n := len(srv.requests()) - before; n != 1 {
			t.Errorf("%s: %d requests, want 1 (a permanent answer is not retried)", c.key, n)
		}
	}
	// Unusable answers prove the service is up: they do not open the breaker.
	if s := p.breaker.snapshot(); s != breakerClosed {
		t.Fatalf("breaker %v after permanent answers", s)
	}
}

func TestEnrichHTTPNetworkErrorTransient(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(jsonOK))
	url := srv.URL
	srv.Close() // nothing listens there now
	p := buildURL(t, url+"/tiers/{key}", "retries: 1\nretry_backoff: 1ms\n", Deps{})
	_, err := runHTTP(p, "cust-7")
	if err == nil || !IsTransient(err) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("want transient connection refused, got %v", err)
	}
}

func TestEnrichHTTPKeyEscapingAndDotKeys(t *testing.T) {
	srv := newRecServer(t, jsonOK)
	p := buildURL(t, srv.URL+"/tiers/{key}/profile", "", Deps{})
	for key, uri := range map[string]string{
		"a/b?c#d%e f":  "/tiers/a%2Fb%3Fc%23d%25e%20f/profile",
		"../../admin":  "/tiers/..%2F..%2Fadmin/profile",
		"...":          "/tiers/.../profile",
		"x;y,z&q=1+@$": "/tiers/x%3By%2Cz&q=1+@$/profile",
		"ünï":          "/tiers/%C3%BCn%C3%AF/profile",
	} {
		before := len(srv.requests())
		if _, err := runHTTP(p, key); err != nil {
			t.Fatalf("%q: %v", key, err)
		}
		reqs := srv.requests()
		if len(reqs) != before+1 || reqs[before].uri != uri {
			t.Errorf("key %q: server saw %v, want %q", key, reqs[before:], uri)
		}
	}
	before := len(srv.requests())
	for _, key := range []string{"..", ".", ""} {
		_, err := runHTTP(p, key)
		if err == nil || IsTransient(err) {
			t.Errorf("key %q: want a permanent error, got %v", key, err)
		}
	}
	if n := len(srv.requests()); n != before {
		t.Fatalf("refused keys reached the server: %v", srv.requests()[before:])
	}
	// In a query, dots are just data; an empty key is still refused.
	q := buildURL(t, srv.URL+"/tiers?id={key}", "", Deps{})
	if _, err := runHTTP(q, ".."); err != nil {
		t.Fatal(err)
	}
	if reqs := srv.requests(); reqs[len(reqs)-1].uri != "/tiers?id=.." {
		t.Fatalf("query key: server saw %q", reqs[len(reqs)-1].uri)
	}
	if _, err := runHTTP(q, ""); err == nil || IsTransient(err) {
		t.Fatalf("empty query key: %v", err)
	}
}

func TestEnrichHTTPRedirects(t *testing.T) {
	// other is a second service: a different port, and named "localhost"
	// where the configured url says 127.0.0.1.
	other := newRecServer(t, jsonOK)
	_, otherPort, _ := net.SplitHostPort(other.Listener.Addr().String())
	var target string
	main := newRecServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/tiers/away"):
			http.Redirect(w, r, target, http.StatusFound)
		case strings.HasPrefix(r.URL.Path, "/tiers/moved-"):
			http.Redirect(w, r, "/tiers/"+strings.TrimPrefix(r.URL.Path, "/tiers/moved-"), http.StatusMovedPermanently)
		case strings.HasPrefix(r.URL.Path, "/tiers/loop"):
			http.Redirect(w, r, "/tiers/loop", http.StatusFound)
		default:
			jsonOK(w, r)
		}
	})
	auth := "headers: {Authorization: Bearer s3cret, X-Api-Key: k3y}\ncache_size: 0\nretries: 0\nbreaker: {failures: 0}\n"
	p := buildURL(t, main.URL+"/tiers/{key}", auth, Deps{})

	// Same host: followed, but the credentials stay behind.
	if got, err := runHTTP(p, "moved-cust-7"); err != nil || got.(map[string]any)["tier"] != "gold" {
		t.Fatalf("same-host redirect: %v %v", got, err)
	}
	reqs := main.requests()
	if len(reqs) != 2 || reqs[0].header.Get("Authorization") != "Bearer s3cret" || reqs[0].header.Get("X-Api-Key") != "k3y" {
		t.Fatalf("first request: %+v", reqs)
	}
	if r := reqs[1]; r.uri != "/tiers/cust-7" || r.header.Get("Authorization") != "" || r.header.Get("X-Api-Key") != "" || r.header.Get("Referer") != "" {
		t.Fatalf("redirected request carried credentials: %q %v", r.uri, r.header)
	}

	// Another host, or another port of the same host: refused, transient,
	// and the other service never hears of it.
	for _, to := range []string{"http://localhost:" + otherPort + "/steal", other.URL + "/steal"} {
		target = to
		_, err := runHTTP(p, "away")
		if err == nil || !IsTransient(err) || !strings.Contains(err.Error(), "is not in allowed_hosts") {
			t.Fatalf("redirect to %s: want transient refusal, got %v", to, err)
		}
		if n := len(other.requests()); n != 0 {
			t.Fatalf("redirect to %s reached it (%d requests)", to, n)
		}
	}

	// Listed in allowed_hosts: followed, still without credentials.
	p = buildURL(t, main.URL+"/tiers/{key}", auth+"allowed_hosts: [127.0.0.1, localhost]\n", Deps{})
	target = "http://localhost:" + otherPort + "/tiers/x"
	if got, err := runHTTP(p, "away"); err != nil || got.(map[string]any)["tier"] != "gold" {
		t.Fatalf("allowed redirect: %v %v", got, err)
	}
	if r := other.requests(); len(r) != 1 || r[0].header.Get("Authorization") != "" || r[0].header.Get("X-Api-Key") != "" {
		t.Fatalf("other service saw %+v", r)
	}

	// A redirect loop stops after 3 hops.
	before := len(main.requests())
	if _, err := runHTTP(p, "loop"); err == nil || !IsTransient(err) || !strings.Contains(err.Error(), "more than 3 redirects") {
		t.Fatalf("loop: %v", err)
	}
	if n := len(main.requests()) - before; n != 4 {
		t.Fatalf("loop: %d requests, want 4", n)
	}
}

func TestEnrichHTTPRedirectHTTPSDowngradeRefused(t *testing.T) {
	plain := newRecServer(t, jsonOK)
	tls := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, plain.URL+"/tiers/x", http.StatusFound)
	}))
	t.Cleanup(tls.Close)
	// A caller-supplied client (here: one trusting the test CA) keeps its
	// transport; the redirect policy is still enrich_http's.
	p := buildURL(t, tls.URL+"/tiers/{key}", "allowed_hosts: [127.0.0.1]\nretries: 0\n", Deps{HTTPClient: tls.Client()})
	_, err := runHTTP(p, "cust-7")
	if err == nil || !IsTransient(err) || !strings.Contains(err.Error(), "https to http downgrade") {
		t.Fatalf("want transient downgrade refusal, got %v", err)
	}
	if n := len(plain.requests()); n != 0 {
		t.Fatalf("plain http server saw %d requests", n)
	}
}

func TestEnrichHTTPDialTimeAddressChecks(t *testing.T) {
	srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close") // every request dials anew
		jsonOK(w, r)
	})
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	url := "http://tiers.test:" + port + "/tiers/{key}"
	resolveTo := func(p *httpEnricher, addrs ...string) *atomic.Int64 {
		var lookups atomic.Int64
		p.dialer.lookup = func(_ context.Context, host string) ([]netip.Addr, error) {
			lookups.Add(1)
			if host != "tiers.test" {
				return nil, fmt.Errorf("unexpected lookup of %q", host)
			}
			var out []netip.Addr
			for _, a := range addrs {
				out = append(out, netip.MustParseAddr(a))
			}
			return out, nil
		}
		return &lookups
	}
	cfg := "retries: 0\ncache_size: 0\nbreaker: {failures: 0}\n"
	for _, c := range []struct {
		extra, addr, reason string
	}{
		{"", "169.254.169.254", "address 169.254.169.254 refused: link-local"},
		{"allow_private_networks: true\n", "169.254.169.254", "address 169.254.169.254 refused: link-local"},
		{"allow_private_networks: true\n", "::ffff:169.254.169.254", "refused: link-local"},
		{"allow_private_networks: true\n", "fe80::1", "refused: link-local"},
		{"allow_private_networks: true\n", "fd00:ec2::254", "refused: cloud metadata"},
		{"allow_private_networks: true\n", "0.0.0.0", "refused: unspecified"},
		{"", "10.1.2.3", "address 10.1.2.3 refused: private network address (set allow_private_networks: true"},
		{"", "100.64.0.1", "refused: private network"},
		{"", "fd12::1", "refused: private network"},
		{"", "127.0.0.1", "address 127.0.0.1 refused: loopback"}, // the url's host is not loopback
	} {
		p := buildURL(t, url, cfg+c.extra, Deps{})
		lookups := resolveTo(p, c.addr)
		_, err := runHTTP(p, "cust-7")
		if err == nil || !IsTransient(err) || !strings.Contains(err.Error(), c.reason) {
			t.Errorf("%s %s: want transient %q, got %v", strings.TrimSpace(c.extra), c.addr, c.reason, err)
		}
		if lookups.Load() != 1 {
			t.Errorf("%s: %d lookups", c.addr, lookups.Load())
		}
	}
	if n := len(srv.requests()); n != 0 {
		t.Fatalf("refused addresses reached the server: %d requests", n)
	}

	// Allowed: the request goes to the checked address. A refused address
	// in the same answer is skipped, never dialed.
	p := buildURL(t, url, cfg+"allow_private_networks: true\n", Deps{})
	resolveTo(p, "169.254.169.254", "127.0.0.1")
	if got, err := runHTTP(p, "cust-7"); err != nil || got.(map[string]any)["tier"] != "gold" {
		t.Fatalf("allowed: %v %v", got, err)
	}
	if n := len(srv.requests()); n != 1 {
		t.Fatalf("requests = %d, want 1", n)
	}
	// DNS rebinding: the next dial resolves to the metadata address and is
	// refused, although the first one was fine.
	resolveTo(p, "169.254.169.254")
	if _, err := runHTTP(p, "cust-8"); err == nil || !IsTransient(err) || !strings.Contains(err.Error(), "refused: link-local") {
		t.Fatalf("rebound: %v", err)
	}
	if n := len(srv.requests()); n != 1 {
		t.Fatalf("rebound name reached the server: %d requests", n)
	}
}

func TestEnrichHTTPConfigRefusesUnsafeTargets(t *testing.T) {
	base := "key: key\ninto: t\n"
	cases := []struct {
		name, block string
		line        int
		key         string
		frags       []string
	}{
		{"metadata ip", base + "url: http://169.254.169.254/latest/meta-data/{key}\n", 3, "pipeline[tiers].url", []string{"link-local", "fix:"}},
		{"metadata ip even if private allowed", base + "allow_private_networks: true\nurl: http://169.254.169.254/{key}\n", 4, "pipeline[tiers].url", []string{"link-local"}},
		{"link-local v6", base + "url: http://[fe80::1]/{key}\n", 3, "pipeline[tiers].url", []string{"link-local"}},
		{"mapped metadata", base + "url: http://[::ffff:169.254.169.254]/{key}\n", 3, "pipeline[tiers].url", []string{"link-local"}},
		{"metadata name", base + "url: http://metadata.google.internal/computeMetadata/v1/{key}\n", 3, "pipeline[tiers].url", []string{"cloud metadata service"}},
		{"unspecified", base + "url: http://0.0.0.0:8080/{key}\n", 3, "pipeline[tiers].url", []string{"unspecified"}},
		{"private", base + "url: http://10.0.0.5/{key}\n", 3, "pipeline[tiers].url", []string{"private network", "allow_private_networks: true"}},
		{"cgnat", base + "url: http://100.100.1.1/{key}\n", 3, "pipeline[tiers].url", []string{"private network"}},
		{"ula", base + "url: http://[fd00::5]/{key}\n", 3, "pipeline[tiers].url", []string{"private network"}},
		{"key in host", base + "url: http://{key}.tiers.internal/x\n", 3, "pipeline[tiers].url", []string{"outside the path and query"}},
		{"key in fragment", base + "url: http://tiers.internal/x#{key}\n", 3, "pipeline[tiers].url", []string{"outside the path and query"}},
		{"two keys", base + "url: http://tiers.internal/{key}/{key}\n", 3, "pipeline[tiers].url", []string{"more than one"}},
		{"allowed metadata", base + "url: http://tiers.internal/{key}\nallowed_hosts: [tiers.internal, 169.254.169.254]\n", 4, "pipeline[tiers].allowed_hosts[1]", []string{"link-local"}},
		{"allowed loopback", base + "url: http://tiers.internal/{key}\nallowed_hosts: [tiers.internal, 127.0.0.1]\n", 4, "pipeline[tiers].allowed_hosts[1]", []string{"loopback"}},
		{"allowed url", base + "url: http://tiers.internal/{key}\nallowed_hosts:\n  - tiers.internal\n  - http://x/\n", 6, "pipeline[tiers].allowed_hosts[1]", []string{"not a host or host:port"}},
		{"allowed wildcard", base + "url: http://tiers.internal/{key}\nallowed_hosts: ['*.internal']\n", 4, "pipeline[tiers].allowed_hosts[0]", nil},
		{"allowed bad port", base + "url: http://tiers.internal/{key}\nallowed_hosts: ['tiers.internal:0']\n", 4, "pipeline[tiers].allowed_hosts[0]", []string{"1..65535"}},
		{"url host not allowed", base + "url: http://tiers.internal/{key}\nallowed_hosts: [other.internal]\n", 4, "pipeline[tiers].allowed_hosts", []string{"not in allowed_hosts", `"tiers.internal"`}},
		{"url port not allowed", base + "url: http://tiers.internal:8080/{key}\nallowed_hosts: ['tiers.internal:9090']\n", 4, "pipeline[tiers].allowed_hosts", []string{"not in allowed_hosts"}},
		{"max body", base + "url: http://tiers.internal/{key}\nmax_response_bytes: 0\n", 4, "pipeline[tiers].max_response_bytes", []string{"out of range"}},
		{"max body big", base + "url: http://tiers.internal/{key}\nmax_response_bytes: 1000000000\n", 4, "pipeline[tiers].max_response_bytes", []string{"out of range"}},
		{"breaker failures", base + "url: http://tiers.internal/{key}\nbreaker:\n  failures: -1\n", 5, "pipeline[tiers].breaker.failures", []string{"out of range"}},
		{"breaker cooldown", base + "url: http://tiers.internal/{key}\nbreaker:\n  cooldown: soon\n", 5, "pipeline[tiers].breaker.cooldown", []string{`"soon"`}},
		{"breaker unknown key", base + "url: http://tiers.internal/{key}\nbreaker: {threshold: 3}\n", 4, "pipeline[tiers].breaker.threshold", []string{"unknown key", "failures"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := newEnrichHTTP(testSpec(t, "enrich_http", "tiers", c.block), Deps{})
			wantConfigError(t, err, c.line, c.key, c.frags...)
		})
	}
	// Accepted: private with the opt-in, loopback when the url is loopback,
	// host-only and host:port allow-list entries.
	for _, block := range []string{
		base + "url: http://10.0.0.5/{key}\nallow_private_networks: true\n",
		base + "url: http://localhost:8090/{key}\n",
		base + "url: http://[::1]:8090/{key}\n",
		base + "url: http://127.0.0.1:8090/{key}\nallowed_hosts: [127.0.0.1, localhost]\n",
		base + "url: https://tiers.internal/{key}\nallowed_hosts: ['tiers.internal:443', 'tiers-eu.internal']\n",
		base + "url: http://tiers.internal/{key}\nbreaker: {failures: 0}\nmax_response_bytes: 67108864\n",
	} {
		if _, err := newEnrichHTTP(testSpec(t, "enrich_http", "tiers", block), Deps{}); err != nil {
			t.Errorf("%q: %v", block, err)
		}
	}
}

// lockedBuffer is a log sink safe for concurrent writers.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestEnrichHTTPCircuitBreaker(t *testing.T) {
	var healthy atomic.Bool
	srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "missing") {
			http.NotFound(w, r)
			return
		}
		if !healthy.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		jsonOK(w, r)
	})
	var logs lockedBuffer
	p := buildURL(t, srv.URL+"/tiers/{key}", "retries: 0\ncache_size: 0\nbreaker: {failures: 3, cooldown: 1m}\n",
		Deps{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p.now = func() time.Time { return now }

	// Answers for one record (404) reset the count: 2 failures, a 404, 2
	// failures do not open the circuit.
	for _, k := range []string{"a", "b", "missing", "c", "d"} {
		runHTTP(p, k)
	}
	if s := p.breaker.snapshot(); s != breakerClosed {
		t.Fatalf("breaker %v after non-consecutive failures", s)
	}
	// The third consecutive failure opens it.
	if _, err := runHTTP(p, "e"); err == nil || !IsTransient(err) || !strings.Contains(err.Error(), "503") {
		t.Fatalf("third failure: %v", err)
	}
	if s := p.breaker.snapshot(); s != breakerOpen {
		t.Fatalf("breaker %v after 3 consecutive failures", s)
	}
	// Open: calls fail fast and transient; the service sees nothing.
	healthy.Store(true)
	before := len(srv.requests())
	for i := range 20 {
		_, err := runHTTP(p, fmt.Sprint("k", i))
		if err == nil || !IsTransient(err) || !strings.Contains(err.Error(), "circuit open (next probe in 1m0s)") || !strings.Contains(err.Error(), "503") {
			t.Fatalf("open circuit: %v", err)
		}
	}
	if n := len(srv.requests()) - before; n != 0 {
		t.Fatalf("the service saw %d requests while the circuit was open", n)
	}
	// After the cool-down one probe goes out; its failure reopens the
	// circuit for another cool-down.
	healthy.Store(false)
	now = now.Add(time.Minute)
	if _, err := runHTTP(p, "probe-1"); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("failed probe: %v", err)
	}
	if s := p.breaker.snapshot(); s != breakerOpen || len(srv.requests())-before != 1 {
		t.Fatalf("after a failed probe: %v, %d requests", s, len(srv.requests())-before)
	}
	now = now.Add(59 * time.Second)
	if _, err := runHTTP(p, "k"); err == nil || !strings.Contains(err.Error(), "circuit open") {
		t.Fatalf("reopened circuit: %v", err)
	}
	// A successful probe closes it; traffic flows again.
	healthy.Store(true)
	now = now.Add(time.Second)
	for i := range 5 {
		if got, err := runHTTP(p, fmt.Sprint("ok", i)); err != nil || got.(map[string]any)["tier"] != "gold" {
			t.Fatalf("after recovery: %v %v", got, err)
		}
	}
	if s := p.breaker.snapshot(); s != breakerClosed || len(srv.requests())-before != 6 {
		t.Fatalf("after recovery: %v, %d requests", s, len(srv.requests())-before)
	}
	out := logs.String()
	for _, want := range []string{"circuit open", "consecutive_failures=3", "circuit half-open", "circuit closed", "processor=tiers"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

func TestEnrichHTTPHalfOpenSendsOneProbe(t *testing.T) {
	release := make(chan struct{})
	var inProbe atomic.Bool
	srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request) {
		if !inProbe.Load() {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		<-release
		jsonOK(w, r)
	})
	p := buildURL(t, srv.URL+"/tiers/{key}", "retries: 0\ncache_size: 0\ntimeout: 10s\nbreaker: {failures: 1, cooldown: 20ms}\n", Deps{})
	if _, err := runHTTP(p, "a"); err == nil {
		t.Fatal("want an error")
	}
	time.Sleep(30 * time.Millisecond) // past the cool-down (real clock)
	inProbe.Store(true)
	probeDone := make(chan error, 1)
	go func() { _, err := runHTTP(p, "probe"); probeDone <- err }()
	for len(srv.requests()) < 2 { // wait until the probe is at the server
		time.Sleep(time.Millisecond)
	}
	// Meanwhile, concurrent lookups fail fast.
	var wg sync.WaitGroup
	var fast atomic.Int64
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := runHTTP(p, fmt.Sprint("c", i)); err != nil && IsTransient(err) && strings.Contains(err.Error(), "probe in flight") {
				fast.Add(1)
			}
		}()
	}
	wg.Wait()
	if fast.Load() != 8 || len(srv.requests()) != 2 {
		t.Fatalf("%d of 8 failed fast; server saw %d requests, want 2", fast.Load(), len(srv.requests()))
	}
	close(release)
	if err := <-probeDone; err != nil {
		t.Fatalf("probe: %v", err)
	}
	if _, err := runHTTP(p, "after"); err != nil {
		t.Fatalf("after the probe: %v", err)
	}
}

func TestEnrichHTTPRetryAfter(t *testing.T) {
	srv := newRecServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "30")
		http.Error(w, "slow down", http.StatusTooManyRequests)
	})
	// failures: 5, but the service's own Retry-After opens the circuit at
	// once; no in-processor retry hammers it.
	p := buildURL(t, srv.URL+"/tiers/{key}", "retries: 3\nretry_backoff: 1ms\ncache_size: 0\n", Deps{})
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p.now = func() time.Time { return now }
	_, err := runHTTP(p, "a")
	if err == nil || !IsTransient(err) || !strings.Contains(err.Error(), "retry after 30s") {
		t.Fatalf("429: %v", err)
	}
	if n := len(srv.requests()); n != 1 {
		t.Fatalf("requests = %d, want 1 (no retry against Retry-After)", n)
	}
	now = now.Add(29 * time.Second)
	if _, err := runHTTP(p, "b"); err == nil || !strings.Contains(err.Error(), "circuit open (next probe in 1s)") {
		t.Fatalf("within Retry-After: %v", err)
	}
	now = now.Add(time.Second)
	runHTTP(p, "c")
	if n := len(srv.requests()); n != 2 {
		t.Fatalf("requests = %d after Retry-After, want 2", n)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"":                              0,
		"0":                             0,
		"-5":                            0,
		"7":                             7 * time.Second,
		" 7 ":                           7 * time.Second,
		"86400":                         maxRetryAfter,
		"99999999999999999":             maxRetryAfter,
		"Thu, 01 Jan 2026 12:00:42 GMT": 42 * time.Second,
		"Thu, 01 Jan 2026 11:00:00 GMT": 0,
		"Fri, 02 Jan 2026 12:00:00 GMT": maxRetryAfter,
		"soon":                          0,
	} {
		if got := parseRetryAfter(v, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", v, got, want)
		}
	}
}

// BenchmarkEnrichHTTPMiss is one uncached lookup against a loopback server
// (pooled connections): the cost of the request path including the breaker
// and redirect/host checks.
func BenchmarkEnrichHTTPMiss(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(jsonOK))
	defer srv.Close()
	p, err := newEnrichHTTP(testSpec(b, "enrich_http", "tiers", "url: "+srv.URL+"/tiers/{key}\nkey: event.customer_id\ninto: tier\ncache_size: 0\ntimeout: 5s\n"), Deps{})
	if err != nil {
		b.Fatal(err)
	}
	ev := evFor("cust-7")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Process(context.Background(), ev); err != nil {
			b.Fatal(err)
		}
	}
}
