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
//
// Lookups must be idempotent reads without side effects: processors are
// re-run whenever a transaction aborts (rebalance, crash, transient error),
// so the same GET can be sent several times for one event. Never point
// enrich_http at an endpoint that changes state. Results can also differ
// between a run and its re-run if the service's data changes; the cache makes
// that unlikely within cache_ttl.
//
// Responses:
//   - 2xx with a JSON object body: attrs[into] = the object in natural Go
//     (numbers are int64 when integral, float64 otherwise). Cached.
//   - 404 or 410: the key is missing; on_missing decides (default, skip, or a
//     permanent error). Cached like a hit, so unknown keys do not hammer the
//     service. A null key is missing without a request.
//   - 400 or 422: the request for this event is invalid; permanent error
//     (dead-letter), no retry.
//   - anything else (network error, timeout, 429, 5xx, other 4xx, a body that
//     is not a JSON object or larger than 1 MiB): retried up to `retries` times
//     with exponential backoff, then a transient error. Transient errors are
//     retried by ordo and never dead-letter an event: an outage of the service
//     stalls processing instead of losing or diverting events.
//
// Retry budget: a token bucket that starts with, and never holds more than,
// 10 tokens. Every lookup (cache miss) deposits retry_budget tokens and every
// retry spends one; a retry without a token is not made (the lookup fails
// with a transient error at once). In a full outage retries are thus limited
// to about retry_budget of the lookups plus a burst of 10, so ordo does not
// multiply the load on a struggling service.

import (
	"bytes"
	"container/list"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

type enrichHTTPConfig struct {
	URL          string            `yaml:"url"`
	Key          string            `yaml:"key"`
	Into         string            `yaml:"into"`
	Timeout      string            `yaml:"timeout"`
	Retries      *int              `yaml:"retries"`
	RetryBackoff string            `yaml:"retry_backoff"`
	RetryBudget  *float64          `yaml:"retry_budget"`
	CacheSize    *int              `yaml:"cache_size"`
	CacheTTL     string            `yaml:"cache_ttl"`
	Headers      map[string]string `yaml:"headers"`
	Default      map[string]any    `yaml:"default"`
	OnMissing    string            `yaml:"on_missing"`
}

const (
	httpMaxBody     = 1 << 20
	retryBurst      = 10.0
	defaultTimeout  = 200 * time.Millisecond
	defaultBackoff  = 20 * time.Millisecond
	defaultCacheTTL = time.Minute
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
	i := strings.Index(cfg.URL, "{key}")
	if i < 0 {
		return nil, pathErr(spec, fmt.Sprintf("url %q has no {key} placeholder", cfg.URL), "put {key} where the lookup key goes, e.g. http://tiers.internal/tiers/{key}", "url")
	}
	u, err := url.Parse(strings.ReplaceAll(cfg.URL, "{key}", "k"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, pathErr(spec, fmt.Sprintf("url %q is not an absolute http(s) URL", cfg.URL), "use http://host[:port]/path/{key}", "url")
	}
	if cfg.Into == "" {
		return nil, pathErr(spec, "no `into`", "set `into:` to the attrs key for the response object, e.g. into: tier (CEL: attrs.tier)", "into")
	}
	if cfg.Key == "" {
		return nil, pathErr(spec, "no `key`", "set `key:` to a CEL expression giving the lookup key, e.g. event.customer_id", "key")
	}
	h := &httpEnricher{
		urlPrefix: cfg.URL[:i], urlSuffix: cfg.URL[i+len("{key}"):],
		keyInQuery: strings.Contains(cfg.URL[:i], "?"),
		into:       cfg.Into, headers: cfg.Headers, now: time.Now,
		timeout: defaultTimeout, retries: 2, backoff: defaultBackoff,
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
	dur := func(name, v string, def time.Duration, min time.Duration) (time.Duration, error) {
		if v == "" {
			return def, nil
		}
		d, err := time.ParseDuration(v)
		if err != nil || d < min {
			return 0, pathErr(spec, fmt.Sprintf("%s %q is not a duration >= %v", name, v, min), "write a Go duration such as 200ms, 2s or 1m", name)
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
	h.client = deps.HTTPClient
	if h.client == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = 64
		h.client = &http.Client{Transport: t}
	}
	return h, nil
}

func (h *httpEnricher) Process(ctx context.Context, ev *Event) ([]Command, error) {
	k, ok, err := h.key.evalKey(newVars(ev))
	if err != nil {
		return nil, Permanent(fmt.Errorf("key: %v", err))
	}
	var obj map[string]any
	if ok {
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
	ev.Attrs[h.into] = deepCopy(obj)
	return nil, nil
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
		trace.WithAttributes(attribute.String("http.request.method", http.MethodGet), attribute.String("url.template", h.urlPrefix+"{key}"+h.urlSuffix)))
	defer span.End()
	obj, err := h.fetch(ctx, key)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.SetAttributes(attribute.Bool("ordo.enrich.found", obj != nil))
	return obj, err
}

// errMissing marks a 404/410.
var errMissing = errors.New("not found")

// fetch returns the object for key, nil when the service says it is missing.
func (h *httpEnricher) fetch(ctx context.Context, key string) (map[string]any, error) {
	esc := url.PathEscape(key)
	if h.keyInQuery {
		esc = url.QueryEscape(key)
	}
	target := h.urlPrefix + esc + h.urlSuffix
	h.budget.deposit()
	for attempt := 0; ; attempt++ {
		obj, retry, err := h.get(ctx, target)
		if err == nil {
			return obj, nil
		}
		if errors.Is(err, errMissing) {
			return nil, nil
		}
		if !retry {
			return nil, Permanent(fmt.Errorf("GET %s: %w", target, err))
		}
		if ctx.Err() != nil {
			return nil, Transient(fmt.Errorf("GET %s: %w", target, ctx.Err()))
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

// get makes one attempt. retry reports whether a failure is worth retrying.
func (h *httpEnricher) get(ctx context.Context, target string) (obj map[string]any, retry bool, err error) {
	actx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodGet, target, nil)
	if err != nil {
		return nil, false, err
	}
	req.Header.Set("Accept", "application/json")
	propagation.TraceContext{}.Inject(ctx, propagation.HeaderCarrier(req.Header))
	for k, v := range h.headers {
		req.Header.Set(k, v)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return nil, true, err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone:
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil, false, errMissing
	case resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusUnprocessableEntity:
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil, false, fmt.Errorf("status %s", resp.Status)
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil, true, fmt.Errorf("status %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, httpMaxBody+1))
	if err != nil {
		return nil, true, err
	}
	if len(body) > httpMaxBody {
		return nil, true, fmt.Errorf("response larger than %d bytes", httpMaxBody)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, true, fmt.Errorf("response is not JSON: %v", err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, true, fmt.Errorf("response is %T, want a JSON object", v)
	}
	return NaturalJSON(m).(map[string]any), false, nil
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
