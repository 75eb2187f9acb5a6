package processors

// enrich_http: joins each event with the JSON object an HTTP service returns
// for a key.
//
//	- type: enrich_http
//	  config:
//	    url: http://127.0.0.1:8090/tiers/{key}   # required; {key} is replaced by the
//	                                             # URL-escaped key (path or query)
//	    key: event.customer_id                   # required CEL expression
//	    into: tier                               # required attrs key (CEL: attrs.tier)
//	    timeout: 200ms                           # per attempt (default 200ms)
//	    retries: 2                               # extra attempts on failure (default 2)
//	    retry_backoff: 20ms                      # first backoff, doubled each retry (default 20ms)
//	    retry_budget: 0.1                        # retries allowed per request (default 0.1)
//	    cache_size: 10000                        # max cached keys, LRU (default 10000; 0 disables)
//	    cache_ttl: 1m                            # cache entry lifetime (default 1m)
//	    headers: {Authorization: "Bearer ..."}   # optional request headers
//	    default: {tier: standard}                # optional object used when missing
//	    on_missing: default                      # default | error | skip (as enrich_table)
//	    max_response_bytes: 1048576              # larger 2xx bodies are a permanent error (default 1 MiB)
//	    allowed_hosts: [tiers.internal]          # hosts requests and redirects may go to (default: url's host:port)
//	    allow_private_networks: false            # allow RFC 1918/CGNAT/ULA/loopback addresses (default false)
//	    breaker: {failures: 5, cooldown: 10s}    # circuit breaker (failures: 0 disables)
//
// Lookups must be idempotent reads without side effects: processors are
// re-run whenever a transaction aborts (rebalance, crash, transient error),
// so the same GET can be sent several times for one event. Never point
// enrich_http at an endpoint that changes state. Results can also differ
// between a run and its re-run if the service's data changes; the cache makes
// that unlikely within cache_ttl.
//
// Responses (one attempt each; the `retries` loop and the breaker act on the
// transient ones):
//   - 2xx with a JSON object body of at most max_response_bytes: attrs[into]
//     = the object in natural Go (numbers are int64 when integral, float64
//     otherwise). Cached.
//   - 404 or 410: the key is missing; on_missing decides (default, skip, or a
//     permanent error). Cached like a hit (a negative cache for cache_ttl),
//     so unknown keys do not hammer the service. A null key is missing
//     without a request.
//   - 2xx whose body is larger than max_response_bytes, is not JSON or is not
//     a JSON object: permanent error with the reason. The service answered
//     for this record, and asking again gives the same answer, so retrying
//     would stall the partition forever.
//   - other 4xx (400, 405, 409, 422, ...): permanent error naming the status.
//   - 401, 403, 408, 429, 5xx, other 1xx/3xx, timeouts, network errors, a
//     refused redirect or address: retried up to `retries` times with
//     exponential backoff, then a transient error. Transient errors are
//     retried by ordo and never dead-letter an event: an outage of the
//     service (or expired credentials) stalls processing instead of losing or
//     diverting events. A Retry-After header stops the in-processor retries
//     and opens the circuit breaker for that long (at most 5m).
//
// Retry budget: a token bucket that starts with, and never holds more than,
// 10 tokens. Every lookup (cache miss) deposits retry_budget tokens and every
// retry spends one; a retry without a token is not made (the lookup fails
// with a transient error at once). In a full outage retries are thus limited
// to about retry_budget of the lookups plus a burst of 10, so ordo does not
// multiply the load on a struggling service.
//
// Circuit breaker (breaker.go): after breaker.failures consecutive failed
// requests (every attempt counts) calls fail fast for breaker.cooldown with a
// transient "circuit open" error, without a request; then one probe decides.
// State changes are logged.
//
// Safety (httpguard.go): requests go only to allowed_hosts (default: the
// url's host and port); redirects are followed at most 3 times, only to
// allowed hosts, never https to http, and without the configured headers,
// Authorization, Cookie or Referer. Every resolved address is checked right
// before connecting: link-local (169.254/16, fe80::/10, where cloud metadata
// lives), metadata, unspecified and multicast addresses are always refused;
// private ranges (RFC 1918, 100.64/10, fc00::/7) unless
// allow_private_networks; loopback unless the url's host is itself loopback
// (localhost, 127.0.0.1, ::1) or allow_private_networks. Proxy environment
// variables are ignored (a proxy would hide the target address). The key is
// path-escaped (query-escaped in a query); an empty key, and "." or ".." in
// a path, are permanent errors.

import (
	"bytes"
	"container/list"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ordo-dev/ordo/schemas"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

type enrichHTTPConfig struct {
	URL                  string            `yaml:"url"`
	Key                  string            `yaml:"key"`
	Into                 string            `yaml:"into"`
	Timeout              string            `yaml:"timeout"`
	Retries              *int              `yaml:"retries"`
	RetryBackoff         string            `yaml:"retry_backoff"`
	RetryBudget          *float64          `yaml:"retry_budget"`
	CacheSize            *int              `yaml:"cache_size"`
	CacheTTL             string            `yaml:"cache_ttl"`
	Headers              map[string]string `yaml:"headers"`
	Default              map[string]any    `yaml:"default"`
	OnMissing            string            `yaml:"on_missing"`
	MaxResponseBytes     *int64            `yaml:"max_response_bytes"`
	AllowedHosts         []string          `yaml:"allowed_hosts"`
	AllowPrivateNetworks bool              `yaml:"allow_private_networks"`
	Breaker              *struct {
		Failures *int   `yaml:"failures"`
		Cooldown string `yaml:"cooldown"`
	} `yaml:"breaker"`
}

const (
	defaultMaxBody   = 1 << 20
	maxMaxBody       = 64 << 20
	retryBurst       = 10.0
	defaultTimeout   = 200 * time.Millisecond
	defaultBackoff   = 20 * time.Millisecond
	defaultCacheTTL  = time.Minute
	defaultFailures  = 5
	defaultCooldown  = 10 * time.Second
	maxRetryAfter    = 5 * time.Minute
	errorBodyDrain   = 64 << 10
	keyPlaceholder   = "{key}"
	placeholderProbe = "ordo-key-placeholder"
)

type httpEnricher struct {
	client     *http.Client
	urlPrefix  string // before {key}
	urlSuffix  string // after {key}
	keyInQuery bool
	key        *celExpr
	into       string
	timeout    time.Duration
	retries    int
	backoff    time.Duration
	budget     *retryBudget
	cache      *ttlCache // nil: no cache
	headers    map[string]string
	def        map[string]any
	onMissing  string
	maxBody    int64
	breaker    *breaker       // nil: disabled
	dialer     *guardedDialer // nil when Deps.HTTPClient is used
	now        func() time.Time
}

func newEnrichHTTP(spec Spec, deps Deps) (Processor, error) {
	var cfg enrichHTTPConfig
	if err := spec.Decode(&cfg); err != nil {
		return nil, err
	}
	if cfg.URL == "" {
		return nil, pathErr(spec, "no `url`", "set `url:` with a {key} placeholder, e.g. http://tiers.internal/tiers/{key}", "url")
	}
	i := strings.Index(cfg.URL, keyPlaceholder)
	if i < 0 {
		return nil, pathErr(spec, fmt.Sprintf("url %q has no {key} placeholder", cfg.URL), "put {key} where the lookup key goes, e.g. http://tiers.internal/tiers/{key}", "url")
	}
	if strings.Count(cfg.URL, keyPlaceholder) > 1 {
		return nil, pathErr(spec, fmt.Sprintf("url %q has more than one {key} placeholder", cfg.URL), "use {key} once, in the path or the query", "url")
	}
	u, err := url.Parse(strings.Replace(cfg.URL, keyPlaceholder, placeholderProbe, 1))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, pathErr(spec, fmt.Sprintf("url %q is not an absolute http(s) URL", cfg.URL), "use http://host[:port]/path/{key}", "url")
	}
	// The key may only choose a path segment or a query value: in the host it
	// would let event data pick the server.
	if !strings.Contains(u.EscapedPath(), placeholderProbe) && !strings.Contains(u.RawQuery, placeholderProbe) {
		return nil, pathErr(spec, fmt.Sprintf("url %q has {key} outside the path and query", cfg.URL), "put {key} in the path or the query, e.g. http://tiers.internal/tiers/{key}; the host must be fixed", "url")
	}
	if cfg.Into == "" {
		return nil, pathErr(spec, "no `into`", "set `into:` to the attrs key for the response object, e.g. into: tier (CEL: attrs.tier)", "into")
	}
	if cfg.Key == "" {
		return nil, pathErr(spec, "no `key`", "set `key:` to a CEL expression giving the lookup key, e.g. event.customer_id", "key")
	}
	h := &httpEnricher{
		urlPrefix: cfg.URL[:i], urlSuffix: cfg.URL[i+len(keyPlaceholder):],
		keyInQuery: strings.Contains(cfg.URL[:i], "?"),
		into:       cfg.Into, headers: cfg.Headers, now: time.Now,
		timeout: defaultTimeout, retries: 2, backoff: defaultBackoff,
		maxBody: defaultMaxBody,
	}
	if h.key, err = compileCEL(spec, nodeAt(spec, "key"), keyPath(spec, "key"), cfg.Key, anyResult); err != nil {
		return nil, err
	}
	if h.onMissing, err = validOnMissing(spec, cfg.OnMissing, cfg.Default != nil); err != nil {
		return nil, err
	}
	if d, ok := normalizeYAML(cfg.Default).(map[string]any); ok {
		h.def = d
	}
	dur := func(name, v string, def time.Duration, min time.Duration, path ...any) (time.Duration, error) {
		if v == "" {
			return def, nil
		}
		d, err := time.ParseDuration(v)
		if err != nil || d < min {
			if len(path) == 0 {
				path = []any{name}
			}
			return 0, pathErr(spec, fmt.Sprintf("%s %q is not a duration >= %v", name, v, min), "write a Go duration such as 200ms, 2s or 1m", path...)
		}
		return d, nil
	}
	if h.timeout, err = dur("timeout", cfg.Timeout, defaultTimeout, time.Millisecond); err != nil {
		return nil, err
	}
	if h.backoff, err = dur("retry_backoff", cfg.RetryBackoff, defaultBackoff, 0); err != nil {
		return nil, err
	}
	ttl, err := dur("cache_ttl", cfg.CacheTTL, defaultCacheTTL, time.Millisecond)
	if err != nil {
		return nil, err
	}
	if cfg.Retries != nil {
		if *cfg.Retries < 0 || *cfg.Retries > 10 {
			return nil, pathErr(spec, fmt.Sprintf("retries %d is out of range", *cfg.Retries), "use 0..10; ordo itself retries transient errors, so a few attempts are enough", "retries")
		}
		h.retries = *cfg.Retries
	}
	ratio := 0.1
	if cfg.RetryBudget != nil {
		if *cfg.RetryBudget < 0 || *cfg.RetryBudget > 1 {
			return nil, pathErr(spec, fmt.Sprintf("retry_budget %v is out of range", *cfg.RetryBudget), "use a ratio between 0 and 1, e.g. 0.1 = at most one retry per ten requests", "retry_budget")
		}
		ratio = *cfg.RetryBudget
	}
	h.budget = newRetryBudget(ratio)
	size := 10000
	if cfg.CacheSize != nil {
		if *cfg.CacheSize < 0 {
			return nil, pathErr(spec, "cache_size is negative", "use 0 to disable the cache or a positive bound", "cache_size")
		}
		size = *cfg.CacheSize
	}
	if size > 0 {
		h.cache = newTTLCache(size, ttl)
	}
	if cfg.MaxResponseBytes != nil {
		if *cfg.MaxResponseBytes < 1 || *cfg.MaxResponseBytes > maxMaxBody {
			return nil, pathErr(spec, fmt.Sprintf("max_response_bytes %d is out of range", *cfg.MaxResponseBytes), fmt.Sprintf("use 1..%d bytes (64 MiB); the default 1048576 (1 MiB) fits any sane lookup answer", maxMaxBody), "max_response_bytes")
		}
		h.maxBody = *cfg.MaxResponseBytes
	}

	// Network safety: config-time checks here, dial-time checks in the
	// transport.
	policy := netPolicy{allowPrivate: cfg.AllowPrivateNetworks, allowLoopback: isLoopbackHost(normHost(u.Hostname()))}
	if err := policy.checkConfigHost(u.Hostname()); err != nil {
		return nil, pathErr(spec, fmt.Sprintf("url %q: %v", cfg.URL, err), "point url at the lookup service's own address", "url")
	}
	allowed := hostSet{}
	if cfg.AllowedHosts == nil {
		allowed[net.JoinHostPort(normHost(u.Hostname()), effectivePort(u))] = true
	}
	for j, e := range cfg.AllowedHosts {
		key, host, err := parseAllowedHost(e)
		if err != nil {
			return nil, pathErr(spec, fmt.Sprintf("allowed_hosts entry %q: %v", e, err), "list host names or host:port pairs, e.g. [tiers.internal, tiers-eu.internal:8443]; no scheme, path or wildcard", "allowed_hosts", j)
		}
		if err := policy.checkConfigHost(host); err != nil {
			return nil, pathErr(spec, fmt.Sprintf("allowed_hosts entry %q: %v", e, err), "remove it, or set allow_private_networks: true for a private service", "allowed_hosts", j)
		}
		allowed[key] = true
	}
	if !allowed.allows(u) {
		return nil, pathErr(spec, fmt.Sprintf("the url's host %s is not in allowed_hosts", u.Host), fmt.Sprintf("add %q to allowed_hosts (or drop allowed_hosts to allow just the url's host)", u.Hostname()), "allowed_hosts")
	}

	failures, cooldown := defaultFailures, defaultCooldown
	if b := cfg.Breaker; b != nil {
		if b.Failures != nil {
			if *b.Failures < 0 || *b.Failures > 1000 {
				return nil, pathErr(spec, fmt.Sprintf("breaker.failures %d is out of range", *b.Failures), "use 1..1000 consecutive failures, or 0 to disable the breaker", "breaker", "failures")
			}
			failures = *b.Failures
		}
		if cooldown, err = dur("breaker.cooldown", b.Cooldown, defaultCooldown, time.Millisecond, "breaker", "cooldown"); err != nil {
			return nil, err
		}
	}
	if failures > 0 {
		h.breaker = newBreaker(failures, cooldown, func() time.Time { return h.now() })
		log := deps.Logger
		if log == nil {
			log = slog.Default()
		}
		log = log.With("processor", specName(spec), "url", h.urlPrefix+keyPlaceholder+h.urlSuffix)
		h.breaker.onChange = func(from, to breakerState, fails int, cause error) {
			switch to {
			case breakerOpen:
				log.Warn("enrich_http circuit open: calls fail fast (transient) until a probe succeeds",
					"from", from.String(), "consecutive_failures", fails, "cooldown", cooldown, "error", cause)
			case breakerHalfOpen:
				log.Info("enrich_http circuit half-open: probing the service")
			case breakerClosed:
				log.Info("enrich_http circuit closed: the service answers again")
			}
		}
	}

	sensitive := append([]string(nil), alwaysStripped...)
	for k := range cfg.Headers {
		sensitive = append(sensitive, k)
	}
	if deps.HTTPClient != nil {
		// The caller's transport owns dialing (and so the address checks);
		// the redirect policy is still ours.
		c := *deps.HTTPClient
		c.CheckRedirect = checkRedirect(allowed, sensitive)
		h.client = &c
	} else {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.Proxy = nil // a proxy would connect to the target for us, unchecked
		h.dialer = newGuardedDialer(policy)
		t.DialContext = h.dialer.DialContext
		t.MaxIdleConnsPerHost = 64
		h.client = &http.Client{Transport: t, CheckRedirect: checkRedirect(allowed, sensitive)}
	}
	return h, nil
}

// ReadsRecords: the event is read through CEL only (see RecordReader).
func (h *httpEnricher) ReadsRecords() bool { return true }

func (h *httpEnricher) Process(ctx context.Context, ev *Event) ([]Command, error) {
	k, ok, err := h.key.evalKey(newVars(ev))
	if err != nil {
		return nil, Permanent(fmt.Errorf("key: %v", err))
	}
	var obj map[string]any
	if ok {
		if err := h.checkKey(k); err != nil {
			return nil, err
		}
		var hit bool
		if h.cache != nil {
			obj, hit = h.cache.get(k, h.now())
		}
		if !hit {
			if obj, err = h.tracedFetch(ctx, k); err != nil {
				return nil, err
			}
			if h.cache != nil {
				h.cache.put(k, obj, h.now())
			}
		}
	}
	if obj == nil {
		switch h.onMissing {
		case "skip":
			return nil, nil
		case "error":
			return nil, Permanent(fmt.Errorf("lookup of key %q: not found", k))
		}
		obj = h.def
	}
	if ev.Attrs == nil {
		ev.Attrs = map[string]any{}
	}
	ev.Attrs[h.into] = schemas.CloneNatural(obj)
	return nil, nil
}

// checkKey refuses keys that cannot name one resource: escaping keeps "/"
// out, but "." and ".." are dot segments that servers and proxies resolve
// (/tiers/.. is /), and an empty key asks for the collection.
func (h *httpEnricher) checkKey(k string) error {
	switch {
	case k == "":
		return Permanent(errors.New("key is empty"))
	case !h.keyInQuery && (k == "." || k == ".."):
		return Permanent(fmt.Errorf("key %q is a dot path segment", k))
	}
	return nil
}

// tracedFetch is fetch inside a client span "ordo enrich_http GET" when ctx
// carries a recording span (tracing on); the request carries its traceparent.
func (h *httpEnricher) tracedFetch(ctx context.Context, key string) (map[string]any, error) {
	parent := trace.SpanFromContext(ctx)
	if !parent.IsRecording() {
		return h.fetch(ctx, key)
	}
	ctx, span := parent.TracerProvider().Tracer("github.com/ordo-dev/ordo/processors").Start(ctx, "ordo enrich_http GET",
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("http.request.method", http.MethodGet), attribute.String("url.template", h.urlPrefix+keyPlaceholder+h.urlSuffix)))
	defer span.End()
	obj, err := h.fetch(ctx, key)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.SetAttributes(attribute.Bool("ordo.enrich.found", obj != nil))
	return obj, err
}

// outcome classifies one attempt.
type outcome int

const (
	outOK        outcome = iota
	outMissing           // 404/410
	outPermanent         // the service's answer for this record is unusable
	outTransient         // outage class: retry, count toward the breaker
	outNoRequest         // the request could not be built: nothing was sent
)

// fetch returns the object for key, nil when the service says it is missing.
func (h *httpEnricher) fetch(ctx context.Context, key string) (map[string]any, error) {
	esc := url.PathEscape(key)
	if h.keyInQuery {
		esc = url.QueryEscape(key)
	}
	target := h.urlPrefix + esc + h.urlSuffix
	h.budget.deposit()
	for attempt := 0; ; attempt++ {
		probe := false
		if h.breaker != nil {
			var err error
			if probe, err = h.breaker.allow(); err != nil {
				return nil, Transient(fmt.Errorf("GET %s: %w", target, err))
			}
		}
		obj, out, retryAfter, err := h.get(ctx, target)
		if out == outNoRequest {
			if h.breaker != nil {
				h.breaker.release(probe)
			}
			return nil, Permanent(fmt.Errorf("GET %s: %w", target, err))
		}
		if out != outTransient {
			if h.breaker != nil {
				h.breaker.success(probe)
			}
			switch out {
			case outOK:
				return obj, nil
			case outMissing:
				return nil, nil
			}
			return nil, Permanent(fmt.Errorf("GET %s: %w", target, err))
		}
		if ctx.Err() != nil { // the caller gave up: says nothing about the service
			if h.breaker != nil {
				h.breaker.release(probe)
			}
			return nil, Transient(fmt.Errorf("GET %s: %w", target, ctx.Err()))
		}
		if h.breaker != nil {
			h.breaker.failure(probe, err, retryAfter)
		}
		if retryAfter > 0 {
			return nil, Transient(fmt.Errorf("GET %s: %w (the service asked to retry after %v)", target, err, retryAfter))
		}
		if attempt >= h.retries {
			return nil, Transient(fmt.Errorf("GET %s: %w (after %d attempts)", target, err, attempt+1))
		}
		if !h.budget.withdraw() {
			return nil, Transient(fmt.Errorf("GET %s: %w (retry budget exhausted)", target, err))
		}
		t := time.NewTimer(h.backoff << attempt)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, Transient(fmt.Errorf("GET %s: %w", target, ctx.Err()))
		case <-t.C:
		}
	}
}

// get makes one attempt. retryAfter is the service's Retry-After on a
// transient answer (0 when absent).
func (h *httpEnricher) get(ctx context.Context, target string) (obj map[string]any, out outcome, retryAfter time.Duration, err error) {
	actx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodGet, target, nil)
	if err != nil {
		return nil, outNoRequest, 0, err
	}
	req.Header.Set("Accept", "application/json")
	propagation.TraceContext{}.Inject(ctx, propagation.HeaderCarrier(req.Header))
	for k, v := range h.headers {
		req.Header.Set(k, v)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return nil, outTransient, 0, err
	}
	defer resp.Body.Close()
	code := resp.StatusCode
	if code < 200 || code > 299 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, errorBodyDrain))
		err := fmt.Errorf("status %s", resp.Status)
		switch {
		case code == http.StatusNotFound || code == http.StatusGone:
			return nil, outMissing, 0, nil
		case code == http.StatusUnauthorized || code == http.StatusForbidden ||
			code == http.StatusRequestTimeout || code == http.StatusTooManyRequests ||
			code >= 500 || code < 400:
			// Credentials, rate limits, outages and unfollowed redirects are
			// the service's or the config's problem, not the event's.
			return nil, outTransient, parseRetryAfter(resp.Header.Get("Retry-After"), h.now()), err
		}
		return nil, outPermanent, 0, err
	}
	if resp.ContentLength > h.maxBody {
		return nil, outPermanent, 0, fmt.Errorf("response too large: Content-Length %d > max_response_bytes %d", resp.ContentLength, h.maxBody)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, h.maxBody+1))
	if err != nil {
		return nil, outTransient, 0, fmt.Errorf("reading response: %w", err)
	}
	if int64(len(body)) > h.maxBody {
		return nil, outPermanent, 0, fmt.Errorf("response too large: more than max_response_bytes %d", h.maxBody)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, outPermanent, 0, fmt.Errorf("response is not JSON (Content-Type %q): %v", resp.Header.Get("Content-Type"), err)
	}
	if dec.More() {
		return nil, outPermanent, 0, fmt.Errorf("response is not JSON (Content-Type %q): data after the first value", resp.Header.Get("Content-Type"))
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, outPermanent, 0, fmt.Errorf("response is %s, want a JSON object", jsonKind(v))
	}
	return NaturalJSON(m).(map[string]any), outOK, 0, nil
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "JSON null"
	case []any:
		return "a JSON array"
	case string:
		return "a JSON string"
	case bool:
		return "a JSON boolean"
	}
	return "a JSON number"
}

// parseRetryAfter reads a Retry-After header (seconds or an HTTP date),
// capped at maxRetryAfter; 0 when absent or in the past.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s <= 0 {
			return 0
		}
		d = time.Duration(min(s, int64(maxRetryAfter/time.Second))) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return max(0, min(d, maxRetryAfter))
}

// NaturalJSON converts the json.Number values of a JSON document decoded
// with UseNumber to int64 (integral) or float64, recursively, in place: the
// natural form processors and the Avro encoder expect.
func NaturalJSON(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = NaturalJSON(e)
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = NaturalJSON(e)
		}
		return x
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		f, _ := x.Float64()
		return f
	}
	return v
}

// retryBudget is a token bucket: requests deposit `ratio` tokens, retries
// spend one. It starts full with retryBurst tokens and never holds more.
type retryBudget struct {
	mu     sync.Mutex
	ratio  float64
	tokens float64
}

func newRetryBudget(ratio float64) *retryBudget {
	return &retryBudget{ratio: ratio, tokens: retryBurst}
}

func (b *retryBudget) deposit() {
	b.mu.Lock()
	b.tokens = min(retryBurst, b.tokens+b.ratio)
	b.mu.Unlock()
}

func (b *retryBudget) withdraw() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// ttlCache is a bounded LRU cache whose entries expire after ttl. A nil value
// caches "missing".
type ttlCache struct {
	mu   sync.Mutex
	size int
	ttl  time.Duration
	ll   *list.List
	m    map[string]*list.Element
}

type cacheEntry struct {
	key     string
	val     map[string]any
	expires time.Time
}

func newTTLCache(size int, ttl time.Duration) *ttlCache {
	return &ttlCache{size: size, ttl: ttl, ll: list.New(), m: make(map[string]*list.Element)}
}

func (c *ttlCache) get(k string, now time.Time) (map[string]any, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.m[k]
	if !ok {
		return nil, false
	}
	e := el.Value.(*cacheEntry)
	if !now.Before(e.expires) {
		c.ll.Remove(el)
		delete(c.m, k)
		return nil, false
	}
	c.ll.MoveToFront(el)
	return e.val, true
}

func (c *ttlCache) put(k string, v map[string]any, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[k]; ok {
		e := el.Value.(*cacheEntry)
		e.val, e.expires = v, now.Add(c.ttl)
		c.ll.MoveToFront(el)
		return
	}
	c.m[k] = c.ll.PushFront(&cacheEntry{key: k, val: v, expires: now.Add(c.ttl)})
	for c.ll.Len() > c.size {
		old := c.ll.Back()
		c.ll.Remove(old)
		delete(c.m, old.Value.(*cacheEntry).key)
	}
}

func (c *ttlCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}
