package tracing

import (
	"context"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// ProduceHook is a kgo hook that makes a producer span of every record a
// client produces and carries that span to the consumer in the record's
// traceparent header. The span's parent is the trace context the record
// already carries in its headers (the runner writes the handling span
// there, since it produces outside the handler), else the span of the
// Produce context (the gateway's HTTP request). A record with neither, a
// deadline's output, starts a trace of its own.
//
// Install it with kgo.WithHooks(ProduceHook(tp)) on every client that
// produces; it is a no-op for consumed records.
func ProduceHook(tp trace.TracerProvider) kgo.Hook {
	return produceHook{tracer: Tracer(tp)}
}

type produceHook struct{ tracer trace.Tracer }

var (
	_ kgo.HookProduceRecordBuffered   = produceHook{}
	_ kgo.HookProduceRecordUnbuffered = produceHook{}
)

// OnProduceRecordBuffered starts the span and injects it. kgo calls it in
// Produce before the record is serialised, so the header reaches the broker.
func (h produceHook) OnProduceRecordBuffered(r *kgo.Record) {
	ctx := r.Context
	if ctx == nil {
		ctx = context.Background()
	}
	carrier := RecordHeaders{r}
	if sc := trace.SpanContextFromContext(Propagator.Extract(context.Background(), carrier)); sc.IsValid() {
		ctx = trace.ContextWithRemoteSpanContext(ctx, sc)
	}
	ctx, _ = h.tracer.Start(ctx, "send "+r.Topic, trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			attribute.String("messaging.system", "kafka"),
			attribute.String("messaging.operation.type", "send"),
			attribute.String("messaging.destination.name", r.Topic),
		))
	Propagator.Inject(ctx, carrier)
	r.Context = ctx
}

// OnProduceRecordUnbuffered ends the span with where the record landed, or
// the error its promise gets.
func (h produceHook) OnProduceRecordUnbuffered(r *kgo.Record, err error) {
	span := trace.SpanFromContext(r.Context)
	if !span.IsRecording() {
		return
	}
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	} else {
		span.SetAttributes(
			attribute.Int("messaging.destination.partition.id", int(r.Partition)),
			attribute.Int64("messaging.kafka.offset", r.Offset),
		)
	}
	span.End()
}
