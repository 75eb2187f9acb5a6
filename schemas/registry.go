package schemas

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/sr"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/singleflight"

	"github.com/ordo-dev/ordo/internal/cow"
)

// SubjectStrategy decides the registry subject for a topic/record type, as
// Confluent serializers do; producers and consumers must agree on it.
type SubjectStrategy int

const (
	// TopicName: "<topic>-value" (or -key). One schema lineage per topic;
	// Confluent's default, but it forbids several types on one topic.
	TopicName SubjectStrategy = iota
	// RecordName: "<full record name>" (-key suffix for keys). Lets one type
	// be shared by many topics with one lineage.
	RecordName
	// TopicRecordName: "<topic>-<full record name>". Several types per topic,
	// each with its own lineage; ordo's recommended default.
	TopicRecordName
)

// String returns the config spelling ("topic_name", ...).
func (s SubjectStrategy) String() string {
	switch s {
	case TopicName:
		return "topic_name"
	case RecordName:
		return "record_name"
	case TopicRecordName:
		return "topic_record_name"
	}
	return "SubjectStrategy(" + strconv.Itoa(int(s)) + ")"
}

// ParseSubjectStrategy accepts "topic_name", "record_name",
// "topic_record_name" and the Confluent class names (TopicNameStrategy,
// io.confluent.kafka.serializers.subject.RecordNameStrategy, ...), case
// insensitively, so configs copied from Java clients keep working.
func ParseSubjectStrategy(s string) (SubjectStrategy, error) {
	k := strings.ToLower(strings.TrimSpace(s))
	if i := strings.LastIndexByte(k, '.'); i >= 0 {
		k = k[i+1:]
	}
	k = strings.TrimSuffix(k, "strategy")
	k = strings.NewReplacer("_", "", "-", "").Replace(k)
	switch k {
	case "topicname", "topic":
		return TopicName, nil
	case "recordname", "record":
		return RecordName, nil
	case "topicrecordname", "topicrecord":
		return TopicRecordName, nil
	}
	return 0, fmt.Errorf("avro: unknown subject strategy %q (want topic_name, record_name or topic_record_name)", s)
}

// Subject returns the registry subject for a record of type fullName on
// topic.
func (s SubjectStrategy) Subject(topic, fullName string, isKey bool) string {
	suffix := "-value"
	if isKey {
		suffix = "-key"
	}
	switch s {
	case RecordName:
		if isKey {
			return fullName + "-key"
		}
		return fullName
	case TopicRecordName:
		return topic + "-" + fullName
	default:
		return topic + suffix
	}
}

// Registry is a caching Schema Registry client. Schemas are cached by id
// forever (ids are immutable), concurrent misses for one id share a single
// HTTP request, and each fetch has its own timeout so one slow registry
// call cannot stall a partition indefinitely.
//
// Answers that condemn one id for good (40403 "schema not found", a
// non-Avro or unparsable schema) are remembered in a bounded negative cache
// for NegativeCacheTTL, so a burst of records naming one bad id costs one
// lookup, not one per record. Nothing else is cached negatively: a refused,
// slow or failing registry is asked again on the next retry.
type Registry struct {
	cl           *sr.Client
	fetchTimeout time.Duration
	negTTL       time.Duration
	negMax       int
	now          func() time.Time // tests move the clock

	byID    cow.Map[int, *Schema]
	flight  singleflight.Group
	regMu   sync.Mutex
	regMemo map[regKey]int

	negMu sync.Mutex
	neg   map[int]negEntry

	hits, misses, negHits atomic.Uint64
}

type regKey struct{ subject, text string }

// negEntry is a remembered permanent failure for one schema id.
type negEntry struct {
	err   error
	until time.Time
}

// DefaultNegativeCacheTTL is how long a permanent "no such schema id" answer
// is remembered. Ids are never reassigned, so the answer only changes if the
// id is registered later (e.g. a registry being restored from a backup);
// a minute bounds both the registry load and that delay.
const DefaultNegativeCacheTTL = time.Minute

// negativeCacheMax bounds the negative cache: corrupt records can carry any
// of 2^32 ids, and the cache must not grow with them.
const negativeCacheMax = 10000

// RegistryOpt configures NewRegistry.
type RegistryOpt func(*Registry)

// FetchTimeout bounds each registry HTTP call (default 5s). Timeouts are
// reported as transient errors.
func FetchTimeout(d time.Duration) RegistryOpt {
	return func(r *Registry) {
		if d > 0 {
			r.fetchTimeout = d
		}
	}
}

// NegativeCacheTTL sets how long a permanent per-id failure (40403, or a
// schema that is not usable Avro) is remembered (default
// DefaultNegativeCacheTTL). 0 or less disables the negative cache.
func NegativeCacheTTL(d time.Duration) RegistryOpt {
	return func(r *Registry) { r.negTTL = max(d, 0) }
}

// NewRegistry wraps an sr.Client.
func NewRegistry(cl *sr.Client, opts ...RegistryOpt) *Registry {
	r := &Registry{
		cl: cl, fetchTimeout: 5 * time.Second, negTTL: DefaultNegativeCacheTTL, negMax: negativeCacheMax,
		now: time.Now, regMemo: map[regKey]int{}, neg: map[int]negEntry{},
	}
	for _, o := range opts {
		o(r)
	}
	return r
}

// Stats returns schema-by-id cache hits and misses (a miss is a call that
// had to wait for a fetch, shared or not). Negative-cache hits count as
// neither; see NegativeHits.
func (r *Registry) Stats() (hits, misses uint64) { return r.hits.Load(), r.misses.Load() }

// NegativeHits counts SchemaByID calls answered from the negative cache (a
// remembered permanent failure, no registry request).
func (r *Registry) NegativeHits() uint64 { return r.negHits.Load() }

// Client returns the underlying sr.Client.
func (r *Registry) Client() *sr.Client { return r.cl }

// SchemaByID returns the parsed writer schema for id. A 404 with error code
// 40403 yields a permanent *UnknownSchemaError and an unparsable or non-Avro
// schema a permanent *RegistryError (both remembered for NegativeCacheTTL);
// every other failure (network, timeout, 401, 403, 408, 429, 5xx, a 404
// without 40403) yields a *TransientError that says what to check.
func (r *Registry) SchemaByID(ctx context.Context, id int) (*Schema, error) {
	if v, ok := r.byID.Load(id); ok {
		r.hits.Add(1)
		return v, nil
	}
	if err := r.negative(id); err != nil {
		r.negHits.Add(1)
		return nil, err
	}
	r.misses.Add(1)
	if parent := trace.SpanFromContext(ctx); parent.IsRecording() {
		var span trace.Span
		ctx, span = parent.TracerProvider().Tracer("github.com/ordo-dev/ordo/schemas").Start(ctx, "ordo registry fetch schema",
			trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attribute.Int("ordo.schema.id", id)))
		s, err := r.fetchByID(ctx, id)
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
		return s, err
	}
	return r.fetchByID(ctx, id)
}

// fetchByID is SchemaByID's miss path: one shared, cached fetch per id.
func (r *Registry) fetchByID(ctx context.Context, id int) (*Schema, error) {
	ch := r.flight.DoChan(strconv.Itoa(id), func() (any, error) {
		if v, ok := r.byID.Load(id); ok {
			return v, nil
		}
		if err := r.negative(id); err != nil {
			return nil, err
		}
		// Detach from the first caller's cancellation: the result is shared
		// by every waiter and cached, but keep the per-fetch timeout.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.fetchTimeout)
		defer cancel()
		parsed, err := r.fetchParse(fctx, id)
		if err != nil {
			if !isTransientErr(err) {
				r.rememberNegative(id, err)
			}
			return nil, err
		}
		v, _ := r.byID.LoadOrStore(id, parsed)
		return v, nil
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.(*Schema), nil
	case <-ctx.Done():
		return nil, &TransientError{Op: fmt.Sprintf("fetch schema id %d", id), Err: ctx.Err()}
	}
}

// fetchParse asks the registry for id and parses the answer.
func (r *Registry) fetchParse(ctx context.Context, id int) (*Schema, error) {
	op := fmt.Sprintf("fetch schema id %d", id)
	s, err := r.cl.SchemaByID(ctx, id)
	if err != nil {
		return nil, classifyFetch(op, id, err)
	}
	if s.Type != sr.TypeAvro {
		return nil, &RegistryError{Op: fmt.Sprintf("schema id %d", id), Err: fmt.Errorf("schema type %v is not Avro", s.Type)}
	}
	// Shared types (schema references) are inlined from their subjects.
	refs, err := r.ReferencedSchemas(ctx, s.References)
	if err != nil {
		return nil, err
	}
	parsed, err := ParseSchemaWithReferences(id, s.Schema, refs)
	if err != nil {
		return nil, &RegistryError{Op: fmt.Sprintf("schema id %d", id), Err: err}
	}
	return parsed, nil
}

// negative returns the remembered permanent failure for id, if any and not
// expired.
func (r *Registry) negative(id int) error {
	if r.negTTL <= 0 {
		return nil
	}
	r.negMu.Lock()
	defer r.negMu.Unlock()
	e, ok := r.neg[id]
	if !ok {
		return nil
	}
	if !r.now().Before(e.until) {
		delete(r.neg, id)
		return nil
	}
	return e.err
}

// rememberNegative records a permanent failure for id. When the cache is
// full, expired entries are dropped first; if it is still full the entry is
// not recorded (the id is simply asked again: bounded memory wins).
func (r *Registry) rememberNegative(id int, err error) {
	if r.negTTL <= 0 {
		return
	}
	now := r.now()
	r.negMu.Lock()
	defer r.negMu.Unlock()
	if len(r.neg) >= r.negMax {
		for k, e := range r.neg {
			if !now.Before(e.until) {
				delete(r.neg, k)
			}
		}
		if len(r.neg) >= r.negMax {
			return
		}
	}
	r.neg[id] = negEntry{err: err, until: now.Add(r.negTTL)}
}

// Register registers schemaText under subject (idempotent at the registry:
// an existing identical schema returns its id) and caches the id by
// (subject, text) so producers call the registry once per schema.
func (r *Registry) Register(ctx context.Context, subject, schemaText string) (int, error) {
	return r.idOf(ctx, "register", subject, schemaText, func(fctx context.Context) (int, error) {
		// RegisterSchema (POST /subjects/{s}/versions) is CreateSchema
		// without its follow-up usages lookup: one round trip.
		id, err := r.cl.RegisterSchema(fctx, subject, sr.Schema{Schema: schemaText, Type: sr.TypeAvro}, -1, -1)
		if err != nil {
			return 0, classifyOwn("register schema under subject "+subject, err)
		}
		return id, nil
	})
}

// Lookup returns the id of schemaText if it is registered under subject,
// without registering it (for producers running with auto-register off).
// Every failure is a *TransientError (the schema is ordo's own, so a missing
// or refused schema is a deployment fault, not the event's); IsNotRegistered
// tells "not registered" (404) apart.
func (r *Registry) Lookup(ctx context.Context, subject, schemaText string) (int, error) {
	return r.idOf(ctx, "lookup", subject, schemaText, func(fctx context.Context) (int, error) {
		ss, err := r.cl.LookupSchema(fctx, subject, sr.Schema{Schema: schemaText, Type: sr.TypeAvro})
		if err != nil {
			return 0, classifyOwn("look up schema under subject "+subject, err)
		}
		return ss.ID, nil
	})
}

// idOf is the memo and single-flight shared by Register and Lookup: the id
// of (subject, text) is remembered once known; concurrent callers share one
// registry call, bounded by the fetch timeout.
func (r *Registry) idOf(ctx context.Context, op, subject, schemaText string, call func(context.Context) (int, error)) (int, error) {
	k := regKey{subject, schemaText}
	r.regMu.Lock()
	id, ok := r.regMemo[k]
	r.regMu.Unlock()
	if ok {
		return id, nil
	}
	v, err, _ := r.flight.Do(op+"\x00"+subject+"\x00"+schemaText, func() (any, error) {
		fctx, cancel := context.WithTimeout(ctx, r.fetchTimeout)
		defer cancel()
		return call(fctx)
	})
	if err != nil {
		return 0, err
	}
	id = v.(int)
	r.remember(k, id)
	return id, nil
}

// Latest returns the latest schema registered under subject (not cached:
// "latest" changes). Registry failures are *TransientError, as for Lookup.
func (r *Registry) Latest(ctx context.Context, subject string) (*Schema, error) {
	fctx, cancel := context.WithTimeout(ctx, r.fetchTimeout)
	defer cancel()
	ss, err := r.cl.SchemaByVersion(fctx, subject, -1)
	if err != nil {
		return nil, classifyOwn("latest schema of subject "+subject, err)
	}
	if v, ok := r.byID.Load(ss.ID); ok {
		return v, nil
	}
	refs, err := r.ReferencedSchemas(ctx, ss.References)
	if err != nil {
		return nil, err
	}
	s, err := ParseSchemaWithReferences(ss.ID, ss.Schema.Schema, refs)
	if err != nil {
		return nil, &RegistryError{Op: "latest schema of subject " + subject, Err: err}
	}
	v, _ := r.byID.LoadOrStore(ss.ID, s)
	return v, nil
}

func (r *Registry) remember(k regKey, id int) {
	r.regMu.Lock()
	r.regMemo[k] = id
	r.regMu.Unlock()
}

// Fault classes (issue 9). The record is only to blame when the registry
// positively says its schema id does not exist (404 + 40403) or names a
// schema ordo cannot use; everything else is the registry, the network or
// ordo's configuration, so the event is valid and must be retried, never
// dead-lettered:
//
//	401, 403          credentials missing, wrong or lacking rights: fix config
//	404 w/o 40403     not a registry answer (proxy, wrong URL path): fix config
//	408, 429, 5xx     registry busy or failing: wait
//	other 4xx         not a registry answer for this request: fix config
//	no HTTP answer    network error, timeout, undecodable body: wait
//
// For ordo's own (output) schemas, Register, Lookup and Latest, every
// failure is transient, 404/409/422 included: the event did nothing wrong;
// the operator must register the schema, fix its compatibility, or enable
// auto-register.

// classifyFetch maps an error from fetching the writer schema id.
func classifyFetch(op string, id int, err error) error {
	var re *sr.ResponseError
	if errors.As(err, &re) && re.StatusCode == http.StatusNotFound && re.ErrorCode == sr.ErrSchemaNotFound.Code {
		return &UnknownSchemaError{ID: id, Err: err}
	}
	return &TransientError{Op: op, Err: explain(err, false)}
}

// classifyOwn maps an error from registering or looking up ordo's own
// schemas: always transient.
func classifyOwn(op string, err error) error {
	return &TransientError{Op: op, Err: explain(err, true)}
}

// IsNotRegistered reports whether err is the registry saying a subject or
// schema does not exist (HTTP 404 with error code 40401, 40402 or 40403).
func IsNotRegistered(err error) bool {
	var re *sr.ResponseError
	if !errors.As(err, &re) || re.StatusCode != http.StatusNotFound {
		return false
	}
	switch re.ErrorCode {
	case sr.ErrSubjectNotFound.Code, sr.ErrVersionNotFound.Code, sr.ErrSchemaNotFound.Code:
		return true
	}
	return false
}

// explain wraps a registry error with what the answer means and what to do,
// keeping the original (errors.As still finds the *sr.ResponseError). own
// says the request was about ordo's own schema (register, lookup, latest).
func explain(err error, own bool) error {
	var re *sr.ResponseError
	if !errors.As(err, &re) {
		var ne net.Error
		if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
			return fmt.Errorf("registry did not answer in time (raise registry.timeout if it is just slow): %w", err)
		}
		return fmt.Errorf("registry unreachable or not answering like a schema registry (check registry.url): %w", err)
	}
	code := re.StatusCode
	what := fmt.Sprintf("HTTP %d %s", code, http.StatusText(code))
	if re.ErrorCode != 0 {
		what += fmt.Sprintf(", error code %d", re.ErrorCode)
	}
	var hint string
	switch {
	case code == http.StatusUnauthorized:
		hint = "the registry refused ordo's credentials: check the registry credentials ordo is configured with"
	case code == http.StatusForbidden:
		hint = "the registry denied ordo access: grant ordo's registry user read access (and write access to register schemas)"
	case code == http.StatusNotFound && own && IsNotRegistered(err):
		hint = "the schema or subject is not registered: register ordo's schema, or set registry.auto_register: true"
	case code == http.StatusNotFound:
		hint = "a 404 that is not the registry's \"schema not found\" (40403): check that registry.url is the registry's base URL"
	case code == http.StatusConflict:
		hint = "the registry rejects ordo's schema as incompatible with the subject's history: fix the schema or the subject's compatibility level"
	case code == http.StatusUnprocessableEntity:
		hint = "the registry rejects ordo's schema as invalid: fix the schema"
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500:
		hint = "the registry is overloaded or failing: retrying"
	default:
		hint = "unexpected registry answer: check registry.url"
	}
	return fmt.Errorf("%s (%s): %w", hint, what, err)
}

// isTransientErr reports whether err says it is transient.
func isTransientErr(err error) bool {
	var t interface{ Transient() bool }
	return errors.As(err, &t) && t.Transient()
}
