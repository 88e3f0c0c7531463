package tracing_test

import (
	"context"
	"errors"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/sagarunner/sagarunner/internal/redistest"
	"github.com/sagarunner/sagarunner/saga/envelope"
	"github.com/sagarunner/sagarunner/tracing"
)

func TestFromEnv(t *testing.T) {
	tests := []struct {
		name     string
		env      map[string]string
		wantOn   bool
		wantErr  error
		protocol string
	}{
		{name: "unset is off"},
		{name: "none is off", env: map[string]string{tracing.EnvTracesExporter: "none"}},
		{name: "otlp over http by default", env: map[string]string{tracing.EnvTracesExporter: "otlp"}, wantOn: true},
		{name: "otlp over grpc", env: map[string]string{tracing.EnvTracesExporter: "otlp", tracing.EnvProtocol: "grpc"}, wantOn: true},
		{name: "the traces protocol wins", env: map[string]string{tracing.EnvTracesExporter: "otlp", tracing.EnvProtocol: "bogus",
			tracing.EnvTracesProtocol: "http/protobuf"}, wantOn: true},
		{name: "an unknown exporter is refused", env: map[string]string{tracing.EnvTracesExporter: "zipkin"}, wantErr: tracing.ErrConfig},
		{name: "an unknown protocol is refused", env: map[string]string{tracing.EnvTracesExporter: "otlp", tracing.EnvProtocol: "http/json"},
			wantErr: tracing.ErrConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, k := range []string{tracing.EnvTracesExporter, tracing.EnvProtocol, tracing.EnvTracesProtocol} {
				t.Setenv(k, tt.env[k])
			}
			// Nowhere to export to: the provider must be built without
			// connecting.
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
			tp, stop, err := tracing.FromEnv(context.Background())
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if stop == nil {
				t.Fatal("nil Shutdown")
			}
			if (tp != nil) != tt.wantOn {
				t.Fatalf("provider %v, want on=%v", tp, tt.wantOn)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 0)
			defer cancel()
			_ = stop(ctx) // nothing was recorded; a cancelled flush is fine
		})
	}
}

func TestResourceServiceName(t *testing.T) {
	tests := []struct{ name, env, want string }{
		{"default", "", tracing.DefaultServiceName},
		{"OTEL_SERVICE_NAME", "billing-runner", "billing-runner"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("OTEL_SERVICE_NAME", tt.env)
			res, err := tracing.Resource(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			for _, kv := range res.Attributes() {
				if kv.Key == "service.name" {
					got = kv.Value.AsString()
				}
			}
			if got != tt.want {
				t.Errorf("service.name = %q, want %q", got, tt.want)
			}
		})
	}
}

func newProvider(t *testing.T) (*sdktrace.TracerProvider, *tracetest.InMemoryExporter) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tp, exp
}

func TestHeadersCarryTheTraceContext(t *testing.T) {
	tp, _ := newProvider(t)
	ctx, span := tp.Tracer("t").Start(context.Background(), "parent")
	defer span.End()

	shared := []envelope.Header{{Key: "sagarunner-hops", Value: []byte("1")}, {Key: "traceparent", Value: []byte("stale")}}
	hs := shared
	tracing.Inject(ctx, &hs)
	if string(shared[1].Value) != "stale" {
		t.Error("Inject wrote into a slice the caller may share")
	}
	n := 0
	for _, h := range hs {
		if h.Key == "traceparent" {
			n++
		}
	}
	if n != 1 || hs[0].Key != "sagarunner-hops" {
		t.Fatalf("headers after Inject: %+v", hs)
	}
	got := trace.SpanContextFromContext(tracing.Extract(context.Background(), hs))
	if got.TraceID() != span.SpanContext().TraceID() || got.SpanID() != span.SpanContext().SpanID() || !got.IsRemote() {
		t.Errorf("extracted %v, want the parent's %v", got, span.SpanContext())
	}

	t.Run("no span injects nothing", func(t *testing.T) {
		var hs []envelope.Header
		tracing.Inject(context.Background(), &hs)
		if len(hs) != 0 {
			t.Errorf("headers %+v", hs)
		}
	})
	t.Run("a malformed traceparent is no parent", func(t *testing.T) {
		ctx := tracing.Extract(context.Background(), []envelope.Header{{Key: "traceparent", Value: []byte("00-zz-zz-01")}})
		if trace.SpanContextFromContext(ctx).IsValid() {
			t.Error("a malformed header gave a valid span context")
		}
	})
}

func TestProduceHook(t *testing.T) {
	tp, exp := newProvider(t)
	hook := tracing.ProduceHook(tp)
	buffered := hook.(kgo.HookProduceRecordBuffered)
	unbuffered := hook.(kgo.HookProduceRecordUnbuffered)
	tr := tp.Tracer("t")

	handleCtx, handle := tr.Start(context.Background(), "handle")
	handle.End()
	var fromHeader []envelope.Header
	tracing.Inject(handleCtx, &fromHeader)
	reqCtx, request := tr.Start(context.Background(), "request")
	request.End()

	tests := []struct {
		name       string
		rec        *kgo.Record
		wantParent trace.SpanContext
	}{
		{"the header's span is the parent", &kgo.Record{Topic: "out", Context: reqCtx,
			Headers: []kgo.RecordHeader{{Key: fromHeader[0].Key, Value: fromHeader[0].Value}}}, handle.SpanContext()},
		{"else the Produce context's span", &kgo.Record{Topic: "out", Context: reqCtx}, request.SpanContext()},
		{"else a trace of its own", &kgo.Record{Topic: "out", Context: context.Background()}, trace.SpanContext{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			exp.Reset()
			buffered.OnProduceRecordBuffered(tt.rec)
			tt.rec.Partition, tt.rec.Offset = 2, 7
			unbuffered.OnProduceRecordUnbuffered(tt.rec, nil)
			spans := exp.GetSpans()
			if len(spans) != 1 {
				t.Fatalf("%d spans, want 1", len(spans))
			}
			s := spans[0]
			if s.Name != "send out" || s.SpanKind != trace.SpanKindProducer {
				t.Errorf("span %q kind %v", s.Name, s.SpanKind)
			}
			if tt.wantParent.IsValid() {
				if s.Parent.SpanID() != tt.wantParent.SpanID() || s.SpanContext.TraceID() != tt.wantParent.TraceID() {
					t.Errorf("parent %v, want %v", s.Parent, tt.wantParent)
				}
			} else if s.Parent.IsValid() {
				t.Errorf("parent %v, want none", s.Parent)
			}
			// The record now carries the producer span.
			var hs []envelope.Header
			for _, h := range tt.rec.Headers {
				hs = append(hs, envelope.Header{Key: h.Key, Value: h.Value})
			}
			if len(hs) != 1 {
				t.Fatalf("headers %+v, want one traceparent", hs)
			}
			if got := trace.SpanContextFromContext(tracing.Extract(context.Background(), hs)); got.SpanID() != s.SpanContext.SpanID() {
				t.Errorf("record carries %v, want the producer span %v", got, s.SpanContext)
			}
		})
	}
}

func TestRedisHook(t *testing.T) {
	addr, _ := redistest.Start(t)
	tp, exp := newProvider(t)
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = rdb.Close() })
	rdb.AddHook(tracing.RedisHook(tp))

	// Outside a trace: no span.
	if err := rdb.Set(context.Background(), "k", "secret-value", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n := len(exp.GetSpans()); n != 0 {
		t.Fatalf("%d spans outside a trace, want 0", n)
	}

	ctx, parent := tp.Tracer("t").Start(context.Background(), "handle")
	if err := rdb.Get(ctx, "missing").Err(); !errors.Is(err, redis.Nil) {
		t.Fatal(err)
	}
	if _, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, "k", "secret-value", 0)
		p.Get(ctx, "k")
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	parent.End()

	// A connection's set-up commands (HELLO, CLIENT SETINFO) may show too,
	// when the traced call is the one that dials.
	byName := map[string]int{}
	for _, s := range exp.GetSpans() {
		byName[s.Name]++
		if s.Name == "handle" {
			continue
		}
		if s.Parent.SpanID() != parent.SpanContext().SpanID() {
			t.Errorf("%s: parent %v, want the handling span", s.Name, s.Parent)
		}
		if s.Status.Code != 0 {
			t.Errorf("%s: status %v; a missing key is not an error", s.Name, s.Status)
		}
		for _, a := range s.Attributes {
			if a.Value.Emit() == "secret-value" || a.Value.Emit() == "k" {
				t.Errorf("%s: attribute %s carries a command argument", s.Name, a.Key)
			}
		}
	}
	for _, name := range []string{"redis get", "redis pipeline set"} {
		if byName[name] != 1 {
			t.Errorf("%d spans %q, want 1 (spans: %v)", byName[name], name, byName)
		}
	}
}
