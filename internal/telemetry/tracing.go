// Package telemetry wires ordo's observability: OpenTelemetry tracing
// exported over OTLP (configured by the standard OTEL_* environment
// variables), Prometheus metrics on a private registry, readiness, and a slog
// handler that stamps trace ids on log lines. Nothing here touches otel's or
// Prometheus' global state.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Tracing is the tracer provider ordo passes explicitly to its components.
type Tracing struct {
	// Provider is an SDK provider exporting over OTLP, or a no-op provider
	// when no endpoint is configured.
	Provider trace.TracerProvider
	// Endpoint and Protocol say where spans go ("" when off).
	Endpoint, Protocol string

	sdk *sdktrace.TracerProvider
}

// Enabled reports whether spans are exported.
func (t *Tracing) Enabled() bool { return t != nil && t.sdk != nil }

// Shutdown flushes and stops the exporter (no-op when off).
func (t *Tracing) Shutdown(ctx context.Context) error {
	if !t.Enabled() {
		return nil
	}
	return t.sdk.Shutdown(ctx)
}

// ForceFlush exports every ended span now.
func (t *Tracing) ForceFlush(ctx context.Context) error {
	if !t.Enabled() {
		return nil
	}
	return t.sdk.ForceFlush(ctx)
}

// Getenv is os.Getenv's signature, so tests can pass their own environment.
type Getenv func(string) string

// NewTracing builds the tracer provider from the standard OpenTelemetry
// environment variables:
//
//   - OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT:
//     where to export; unset means tracing is off (a no-op provider: no
//     spans, no exporter, no cost);
//   - OTEL_EXPORTER_OTLP_TRACES_PROTOCOL or OTEL_EXPORTER_OTLP_PROTOCOL:
//     grpc, http/protobuf (default, as the spec says) or http;
//   - OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG (default
//     parentbased_always_on), OTEL_SERVICE_NAME (default serviceName),
//     OTEL_RESOURCE_ATTRIBUTES, OTEL_EXPORTER_OTLP_HEADERS, ..._INSECURE,
//     OTEL_BSP_*: read by the SDK and the exporters themselves;
//   - OTEL_SDK_DISABLED=true forces tracing off.
//
// The exporters read the process environment (os.Getenv) for the details;
// getenv only decides whether and how tracing is on.
func NewTracing(ctx context.Context, getenv Getenv, serviceName, version string) (*Tracing, error) {
	if strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") {
		return &Tracing{Provider: noop.NewTracerProvider()}, nil
	}
	endpoint := first(getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), getenv("OTEL_EXPORTER_OTLP_ENDPOINT"))
	if endpoint == "" {
		return &Tracing{Provider: noop.NewTracerProvider()}, nil
	}
	protocol := first(getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"), getenv("OTEL_EXPORTER_OTLP_PROTOCOL"), "http/protobuf")
	var (
		exp sdktrace.SpanExporter
		err error
	)
	insecure := strings.HasPrefix(endpoint, "http://")
	switch protocol {
	case "grpc":
		var opts []otlptracegrpc.Option
		if insecure {
			opts = append(opts, otlptracegrpc.WithInsecure())
		}
		exp, err = otlptracegrpc.New(ctx, opts...)
	case "http/protobuf", "http":
		exp, err = otlptracehttp.New(ctx)
	default:
		return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL %q: use grpc or http/protobuf", protocol)
	}
	if err != nil {
		return nil, fmt.Errorf("otlp trace exporter for %s: %w", endpoint, err)
	}
	res, err := resource.Merge(
		resource.NewSchemaless(semconv.ServiceName(serviceName), semconv.ServiceVersion(version)),
		resource.Default(), // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win
	)
	if err != nil && !errors.Is(err, resource.ErrSchemaURLConflict) {
		return nil, fmt.Errorf("trace resource: %w", err)
	}
	if getenv("OTEL_SERVICE_NAME") == "" && !strings.Contains(getenv("OTEL_RESOURCE_ATTRIBUTES"), "service.name=") {
		// resource.Default's service.name is "unknown_service:<binary>":
		// ours is better.
		res, _ = resource.Merge(res, resource.NewSchemaless(semconv.ServiceName(serviceName)))
	}
	// The sampler comes from OTEL_TRACES_SAMPLER(_ARG) when set (the SDK
	// reads them); the default is parentbased_always_on.
	sdk := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return &Tracing{Provider: sdk, sdk: sdk, Endpoint: endpoint, Protocol: protocol}, nil
}

func first(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}
