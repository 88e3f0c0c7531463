package tracing

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName names the instrumentation scope of every span sagarunner makes.
const ScopeName = "github.com/sagarunner/sagarunner"

// DefaultServiceName is service.name when OTEL_SERVICE_NAME (or
// service.name in OTEL_RESOURCE_ATTRIBUTES) does not set one.
const DefaultServiceName = "sagarunner"

// Environment variables FromEnv reads itself; the exporter and the SDK read
// the other OTEL_* variables (endpoint, headers, timeout, sampler, batch
// sizes, resource attributes) as the OpenTelemetry specification says.
const (
	EnvTracesExporter = "OTEL_TRACES_EXPORTER"
	EnvProtocol       = "OTEL_EXPORTER_OTLP_PROTOCOL"
	EnvTracesProtocol = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
)

// ErrConfig is returned by FromEnv for an OTEL_* value it does not take. It
// is a start-up error: the process refuses to run rather than run untraced
// when tracing was asked for.
var ErrConfig = errors.New("tracing: invalid configuration")

// Propagator is the W3C Trace Context propagator: the traceparent and
// tracestate headers, on HTTP requests and on Kafka records alike. Baggage
// is not propagated, so no caller-supplied key reaches the records.
var Propagator propagation.TextMapPropagator = propagation.TraceContext{}

// Shutdown flushes the spans not yet exported and stops the exporter.
type Shutdown func(context.Context) error

// FromEnv builds the process's TracerProvider from the environment.
// Tracing is off unless OTEL_TRACES_EXPORTER is "otlp": unset or "none" (the
// default, unlike the specification's, so a process never dials a collector
// nobody configured) returns a nil provider and a no-op Shutdown. With
// "otlp", spans are batched to an OTLP exporter speaking
// OTEL_EXPORTER_OTLP_TRACES_PROTOCOL or OTEL_EXPORTER_OTLP_PROTOCOL:
// "http/protobuf" (the default) or "grpc". The exporter does not connect
// here; an unreachable collector costs dropped spans, never a failed start.
func FromEnv(ctx context.Context) (trace.TracerProvider, Shutdown, error) {
	return fromEnv(ctx, os.Getenv)
}

func fromEnv(ctx context.Context, getenv func(string) string) (trace.TracerProvider, Shutdown, error) {
	off := func(context.Context) error { return nil }
	otlp := false
	for _, name := range strings.Split(getenv(EnvTracesExporter), ",") {
		switch strings.TrimSpace(name) {
		case "", "none":
		case "otlp":
			otlp = true
		default:
			return nil, off, fmt.Errorf("%w: %s=%q: sagarunner exports traces with \"otlp\" only (or \"none\")", ErrConfig, EnvTracesExporter, name)
		}
	}
	if !otlp {
		return nil, off, nil
	}
	protocol := getenv(EnvTracesProtocol)
	if protocol == "" {
		protocol = getenv(EnvProtocol)
	}
	var exp sdktrace.SpanExporter
	var err error
	switch protocol {
	case "", "http/protobuf":
		exp, err = otlptracehttp.New(ctx)
	case "grpc":
		exp, err = otlptracegrpc.New(ctx)
	default:
		return nil, off, fmt.Errorf("%w: OTLP protocol %q: use \"http/protobuf\" or \"grpc\"", ErrConfig, protocol)
	}
	if err != nil {
		return nil, off, fmt.Errorf("tracing: OTLP exporter: %w", err)
	}
	res, err := Resource(ctx)
	if err != nil {
		_ = exp.Shutdown(ctx)
		return nil, off, err
	}
	// The sampler defaults to OTEL_TRACES_SAMPLER (parent-based always-on
	// when unset), read by the SDK.
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return tp, tp.Shutdown, nil
}

// Resource describes the process: service.name (DefaultServiceName unless
// OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES say otherwise),
// service.version from the build, the host and the SDK. Command-line
// arguments are left out: they may hold credentials.
func Resource(ctx context.Context) (*resource.Resource, error) {
	attrs := []attribute.KeyValue{attribute.String("service.name", DefaultServiceName)}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		attrs = append(attrs, attribute.String("service.version", bi.Main.Version))
	}
	// Later options win: the environment overrides the default name.
	res, err := resource.New(ctx, resource.WithAttributes(attrs...), resource.WithTelemetrySDK(),
		resource.WithHost(), resource.WithFromEnv())
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("%w: resource: %w", ErrConfig, err)
	}
	return res, nil
}

// Tracer is tp's tracer for sagarunner's spans; nil when tp is nil.
func Tracer(tp trace.TracerProvider) trace.Tracer {
	if tp == nil {
		return nil
	}
	return tp.Tracer(ScopeName)
}
