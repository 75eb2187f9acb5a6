package observability

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/ordo-dev/ordo/internal/demo"
	"github.com/ordo-dev/ordo/producer"
	"github.com/ordo-dev/ordo/publish"
)

// jaeger is a running Jaeger v2 (test/observability/jaeger.yaml).
type jaeger struct {
	otlpHTTP, query string
}

func startJaeger(t *testing.T) *jaeger {
	t.Helper()
	bin := need(t, "JAEGER_BIN")
	cfg := os.Getenv("JAEGER_CONFIG")
	if cfg == "" {
		cfg = "jaeger.yaml"
	}
	j := &jaeger{}
	startOnFreePorts(t, "jaeger health", 60*time.Second, func() (<-chan error, string, func() bool) {
		j.otlpHTTP, j.query = freeAddr(t), freeAddr(t)
		health := freeAddr(t)
		exited, logPath := startChild(t, "jaeger", bin, []string{"--config", "file:" + cfg},
			"JAEGER_OTLP_HTTP="+j.otlpHTTP, "JAEGER_OTLP_GRPC="+freeAddr(t),
			"JAEGER_QUERY_HTTP="+j.query, "JAEGER_QUERY_GRPC="+freeAddr(t), "JAEGER_HEALTH="+health)
		return exited, logPath, func() bool {
			resp, err := http.Get("http://" + health + "/status")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == 200
		}
	})
	return j
}

// tracerProvider exports a test service's spans to j synchronously.
func (j *jaeger) tracerProvider(t *testing.T, service string) *sdktrace.TracerProvider {
	t.Helper()
	exp, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpoint(j.otlpHTTP), otlptracehttp.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithResource(resource.NewSchemaless(semconv.ServiceName(service))))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tp
}

// Jaeger's /api/traces/{id} answer.
type jTrace struct {
	Spans []struct {
		SpanID        string `json:"spanID"`
		OperationName string `json:"operationName"`
		References    []struct {
			RefType string `json:"refType"`
			SpanID  string `json:"spanID"`
		} `json:"references"`
		ProcessID string `json:"processID"`
		Tags      []struct {
			Key   string `json:"key"`
			Value any    `json:"value"`
		} `json:"tags"`
	} `json:"spans"`
	Processes map[string]struct {
		ServiceName string `json:"serviceName"`
	} `json:"processes"`
}

type span struct {
	id, parent, name, service string
	tags                      map[string]string
}

func (j *jaeger) trace(t *testing.T, id trace.TraceID) []span {
	t.Helper()
	resp, err := http.Get("http://" + j.query + "/api/traces/" + id.String())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Data []jTrace `json:"data"`
	}
	if resp.StatusCode != 200 {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	var out []span
	for _, tr := range body.Data {
		for _, s := range tr.Spans {
			sp := span{id: s.SpanID, name: s.OperationName, service: tr.Processes[s.ProcessID].ServiceName, tags: map[string]string{}}
			for _, r := range s.References {
				if r.RefType == "CHILD_OF" {
					sp.parent = r.SpanID
				}
			}
			for _, tg := range s.Tags {
				sp.tags[tg.Key] = fmt.Sprint(tg.Value)
			}
			out = append(out, sp)
		}
	}
	return out
}

// tree renders spans as an indented "service: name" tree.
func tree(spans []span) string {
	var b strings.Builder
	byParent := map[string][]span{}
	ids := map[string]bool{}
	for _, s := range spans {
		ids[s.id] = true
	}
	for _, s := range spans {
		p := s.parent
		if !ids[p] {
			p = ""
		}
		byParent[p] = append(byParent[p], s)
	}
	var walk func(p string, depth int)
	walk = func(p string, depth int) {
		kids := byParent[p]
		slices.SortFunc(kids, func(a, b span) int { return strings.Compare(a.name, b.name) })
		for _, s := range kids {
			extra := ""
			for _, k := range []string{"ordo.txn.outcome", "error", "ordo.dead_letter.processor"} {
				if v, ok := s.tags[k]; ok {
					extra += fmt.Sprintf(" %s=%s", k, v)
				}
			}
			fmt.Fprintf(&b, "%s%s: %s%s\n", strings.Repeat("  ", depth), s.service, s.name, extra)
			walk(s.id, depth+1)
		}
	}
	walk("", 0)
	return b.String()
}

func find(spans []span, name string) []span {
	var out []span
	for _, s := range spans {
		if s.name == name {
			out = append(out, s)
		}
	}
	return out
}

// one returns the single span called name whose parent is parent.
func one(t *testing.T, spans []span, name string, parent span) span {
	t.Helper()
	for _, s := range find(spans, name) {
		if s.parent == parent.id {
			return s
		}
	}
	t.Fatalf("no span %q under %q (%s)\n%s", name, parent.name, parent.id, tree(spans))
	return span{}
}

// TestTraceEndToEnd: upstream publisher → ordo (processing, processors,
// produce) → downstream consumer, one trace in Jaeger; and a dead-lettered
// event's trace shows the error.
func TestTraceEndToEnd(t *testing.T) {
	j := startJaeger(t)
	e := newEnv(t)
	ordo := e.startOrdo(t,
		"OTEL_EXPORTER_OTLP_ENDPOINT=http://"+j.otlpHTTP,
		"OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
		"OTEL_SERVICE_NAME=ordo",
		"OTEL_BSP_SCHEDULE_DELAY=100",
	)
	upTP := j.tracerProvider(t, "checkout")
	downTP := j.tracerProvider(t, "fulfilment")
	pub := publish.New(e.pubCl, e.serde, "checkout", publish.WithTracerProvider(upTP))
	good := e.publish(t, pub, 1, false)[0]
	bad := e.publish(t, pub, 1, true)[0]

	// Downstream: consume the command and the dead letter, continuing the trace.
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeTopics("commands.reserve-inventory.v1", "ordo.dead-letter.v1"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	tracer := downTP.Tracer("downstream")
	seen := map[trace.TraceID]bool{}
	deadline := time.Now().Add(60 * time.Second)
	for !(seen[good] && seen[bad]) {
		if time.Now().After(deadline) {
			t.Fatalf("downstream did not see the command and the dead letter (seen %v)", seen)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		fs := cl.PollFetches(ctx)
		cancel()
		fs.EachRecord(func(r *kgo.Record) {
			ctx := producer.ExtractTrace(context.Background(), r.Headers)
			id := trace.SpanContextFromContext(ctx).TraceID()
			if id != good && id != bad {
				return
			}
			seen[id] = true
			_, s := tracer.Start(ctx, "downstream process "+r.Topic, trace.WithSpanKind(trace.SpanKindConsumer))
			s.End()
		})
	}
	ordo.stop(t) // flushes ordo's exporter

	var spans []span
	waitFor(t, 30*time.Second, "the full trace in jaeger", func() bool {
		spans = j.trace(t, good)
		// The process span ends last (with its transaction), so it may
		// be stored after its children: wait for it too.
		return len(find(spans, "downstream process commands.reserve-inventory.v1")) == 1 &&
			len(find(spans, "ordo processor routes")) >= 1 && len(find(spans, "ordo send commands.notify-customer.v1")) >= 1 &&
			len(find(spans, "ordo process "+demo.OrderPlaced)) >= 1
	})
	t.Logf("trace %s:\n%s", good, tree(spans))

	root := find(spans, "send "+demo.TopicOrders)
	if len(root) != 1 || root[0].service != "checkout" || root[0].parent != "" {
		t.Fatalf("want one root producer span of service checkout\n%s", tree(spans))
	}
	proc := one(t, spans, "ordo process "+demo.OrderPlaced, root[0])
	for k, want := range map[string]string{
		"messaging.system": "kafka", "messaging.destination.name": demo.TopicOrders, "messaging.operation.type": "process",
		"ordo.txn.outcome": "committed", "span.kind": "consumer",
	} {
		if got := proc.tags[k]; got != want {
			t.Errorf("process span %s = %q, want %q", k, got, want)
		}
	}
	for _, k := range []string{"messaging.consumer.group.name", "messaging.kafka.offset", "messaging.destination.partition.id", "messaging.kafka.message.key"} {
		if proc.tags[k] == "" {
			t.Errorf("process span has no %s", k)
		}
	}
	if proc.service != "ordo" {
		t.Errorf("process span service %q, want ordo", proc.service)
	}
	for _, p := range []string{"order-rules", "customer-tier", "routes"} {
		one(t, spans, "ordo processor "+p, proc)
	}
	send := one(t, spans, "ordo send commands.reserve-inventory.v1", proc)
	one(t, spans, "ordo send commands.notify-customer.v1", proc)
	down := one(t, spans, "downstream process commands.reserve-inventory.v1", send)
	if down.service != "fulfilment" {
		t.Errorf("downstream span service %q", down.service)
	}

	// The dead-lettered event.
	waitFor(t, 30*time.Second, "the dead letter's trace in jaeger", func() bool {
		spans = j.trace(t, bad)
		return len(find(spans, "downstream process ordo.dead-letter.v1")) == 1 && len(find(spans, "ordo process "+demo.OrderPlaced)) >= 1
	})
	t.Logf("dead-letter trace %s:\n%s", bad, tree(spans))
	root = find(spans, "send "+demo.TopicOrders)
	if len(root) != 1 {
		t.Fatalf("no root span\n%s", tree(spans))
	}
	proc = one(t, spans, "ordo process "+demo.OrderPlaced, root[0])
	if proc.tags["error"] != "true" || proc.tags["otel.status_code"] != "ERROR" || proc.tags["ordo.dead_letter.processor"] != "order-rules" {
		t.Errorf("dead-lettered process span tags %v, want error=true, otel.status_code=ERROR, ordo.dead_letter.processor=order-rules", proc.tags)
	}
	rules := one(t, spans, "ordo processor order-rules", proc)
	if rules.tags["error"] != "true" {
		t.Errorf("order-rules span is not an error: %v", rules.tags)
	}
	dl := one(t, spans, "ordo send ordo.dead-letter.v1", proc)
	one(t, spans, "downstream process ordo.dead-letter.v1", dl)
}
