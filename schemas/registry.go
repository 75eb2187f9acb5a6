package schemas

import (
	"context"
	"errors"
	"fmt"
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
type Registry struct {
	cl           *sr.Client
	fetchTimeout time.Duration

	byID    sync.Map // int -> *Schema
	flight  singleflight.Group
	regMu   sync.Mutex
	regMemo map[regKey]int

	hits, misses atomic.Uint64
}

type regKey struct{ subject, text string }

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

// NewRegistry wraps an sr.Client.
func NewRegistry(cl *sr.Client, opts ...RegistryOpt) *Registry {
	r := &Registry{cl: cl, fetchTimeout: 5 * time.Second, regMemo: map[regKey]int{}}
	for _, o := range opts {
		o(r)
	}
	return r
}

// Stats returns schema-by-id cache hits and misses (a miss is a call that
// had to wait for a fetch, shared or not).
func (r *Registry) Stats() (hits, misses uint64) { return r.hits.Load(), r.misses.Load() }

// Client returns the underlying sr.Client.
func (r *Registry) Client() *sr.Client { return r.cl }

// SchemaByID returns the parsed writer schema for id. Not found yields a
// permanent *UnknownSchemaError; network failures, timeouts, 5xx and 429
// yield a *TransientError; an unparsable or non-Avro schema is permanent.
func (r *Registry) SchemaByID(ctx context.Context, id int) (*Schema, error) {
	if v, ok := r.byID.Load(id); ok {
		r.hits.Add(1)
		return v.(*Schema), nil
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
		// Detach from the first caller's cancellation: the result is shared
		// by every waiter and cached, but keep the per-fetch timeout.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.fetchTimeout)
		defer cancel()
		s, err := r.cl.SchemaByID(fctx, id)
		if err != nil {
			return nil, classify(fmt.Sprintf("fetch schema id %d", id), id, err)
		}
		if s.Type != sr.TypeAvro {
			return nil, &RegistryError{Op: fmt.Sprintf("schema id %d", id), Err: fmt.Errorf("schema type %v is not Avro", s.Type)}
		}
		if len(s.References) > 0 {
			return nil, &RegistryError{Op: fmt.Sprintf("schema id %d", id), Err: errors.New("schema references are not supported")}
		}
		parsed, err := ParseSchema(id, s.Schema)
		if err != nil {
			return nil, &RegistryError{Op: fmt.Sprintf("schema id %d", id), Err: err}
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

// Register registers schemaText under subject (idempotent at the registry:
// an existing identical schema returns its id) and caches the id by
// (subject, text) so producers call the registry once per schema.
func (r *Registry) Register(ctx context.Context, subject, schemaText string) (int, error) {
	return r.idOf(ctx, "register", subject, schemaText, func(fctx context.Context) (int, error) {
		// RegisterSchema (POST /subjects/{s}/versions) is CreateSchema
		// without its follow-up usages lookup: one round trip.
		id, err := r.cl.RegisterSchema(fctx, subject, sr.Schema{Schema: schemaText, Type: sr.TypeAvro}, -1, -1)
		if err != nil {
			return 0, classify("register schema under subject "+subject, -1, err)
		}
		return id, nil
	})
}

// Lookup returns the id of schemaText if it is registered under subject,
// without registering it (for producers running with auto-register off).
// Returns a *RegistryError wrapping sr.ErrSchemaNotFound / subject not
// found when it is not registered.
func (r *Registry) Lookup(ctx context.Context, subject, schemaText string) (int, error) {
	return r.idOf(ctx, "lookup", subject, schemaText, func(fctx context.Context) (int, error) {
		ss, err := r.cl.LookupSchema(fctx, subject, sr.Schema{Schema: schemaText, Type: sr.TypeAvro})
		if err != nil {
			if isTransient(err) {
				return 0, &TransientError{Op: "look up schema under subject " + subject, Err: err}
			}
			return 0, &RegistryError{Op: "look up schema under subject " + subject, Err: err}
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
// "latest" changes).
func (r *Registry) Latest(ctx context.Context, subject string) (*Schema, error) {
	fctx, cancel := context.WithTimeout(ctx, r.fetchTimeout)
	defer cancel()
	ss, err := r.cl.SchemaByVersion(fctx, subject, -1)
	if err != nil {
		if isTransient(err) {
			return nil, &TransientError{Op: "latest schema of subject " + subject, Err: err}
		}
		return nil, &RegistryError{Op: "latest schema of subject " + subject, Err: err}
	}
	if v, ok := r.byID.Load(ss.ID); ok {
		return v.(*Schema), nil
	}
	s, err := ParseSchema(ss.ID, ss.Schema.Schema)
	if err != nil {
		return nil, &RegistryError{Op: "latest schema of subject " + subject, Err: err}
	}
	v, _ := r.byID.LoadOrStore(ss.ID, s)
	return v.(*Schema), nil
}

func (r *Registry) remember(k regKey, id int) {
	r.regMu.Lock()
	r.regMemo[k] = id
	r.regMu.Unlock()
}

// isTransient decides whether a registry error may succeed on retry.
func isTransient(err error) bool {
	var re *sr.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode >= 500 || re.StatusCode == http.StatusTooManyRequests || re.StatusCode == http.StatusRequestTimeout
	}
	// Anything that is not an HTTP answer is network/timeout/cancellation.
	return true
}

// classify maps an sr error to ordo's error taxonomy.
func classify(op string, id int, err error) error {
	var re *sr.ResponseError
	if errors.As(err, &re) {
		if id >= 0 && (re.ErrorCode == sr.ErrSchemaNotFound.Code || re.StatusCode == http.StatusNotFound) {
			return &UnknownSchemaError{ID: id, Err: err}
		}
		if isTransient(err) {
			return &TransientError{Op: op, Err: err}
		}
		return &RegistryError{Op: op, Err: err}
	}
	return &TransientError{Op: op, Err: err}
}
