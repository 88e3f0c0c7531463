package runner

import (
	"context"

	"github.com/tidwall/gjson"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/sagarunner/sagarunner/saga"
	"github.com/sagarunner/sagarunner/tracing"
)

// WithTracerProvider turns tracing on: a span per record handled (traced),
// a producer span per record produced, and the trace context carried to
// every output in its traceparent header. Default nil: tracing off, and
// neither the middleware nor the hook is installed.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(r *Runner) {
		if tp == nil {
			return
		}
		r.tracer = tracing.Tracer(tp)
		r.kopts = append(r.kopts, kgo.WithHooks(tracing.ProduceHook(tp)))
	}
}

// envelopeIDs are the envelope fields a handling span is named and
// labelled by: identifiers only, never the payload or the caller.
var envelopeIDs = [...]string{"requestMeta.requestId", "sagaMeta.saga", "sagaMeta.stepId", "eventMeta.action", "eventMeta.domain"}

// traced is the outermost middleware: it handles the record within a span
// continuing the trace its traceparent header carries, so the engine's
// Redis calls are its children, and writes that span into every output's
// headers, so what the record causes (a continuation, a reply, a
// notification) continues the trace once produced. The runner produces
// after the handler returns, outside this span: the header is how the
// producer span (tracing.ProduceHook) finds its parent.
func (r *Runner) traced(next Handler) Handler {
	if r.tracer == nil {
		return next
	}
	return func(ctx context.Context, rec saga.Record) (saga.Output, error) {
		ids := gjson.GetManyBytes(rec.Value, envelopeIDs[:]...)
		requestID, sagaName, step, action, domain := ids[0].String(), ids[1].String(), ids[2].String(), ids[3].String(), ids[4].String()
		if step == "" {
			// A start record names its saga or only its trigger topic;
			// it begins at the saga's first step.
			if g := r.startedSaga(sagaName, rec.Topic); g != nil && len(g.Steps) > 0 {
				first := g.Steps[0]
				sagaName, step = g.Name, first.ID
				if action == "" {
					action = first.ActionName
				}
				if domain == "" {
					domain = first.Domain
				}
			}
		}
		what := sagaName
		if what == "" {
			what = action
		}
		if what == "" {
			what = rec.Topic
		}
		attrs := []attribute.KeyValue{
			attribute.String("messaging.system", "kafka"),
			attribute.String("messaging.operation.type", "process"),
			attribute.String("messaging.destination.name", rec.Topic),
			attribute.Int("messaging.destination.partition.id", int(rec.Partition)),
			attribute.Int64("messaging.kafka.offset", rec.Offset),
		}
		for _, a := range [...]struct{ k, v string }{
			{"sagarunner.request_id", requestID}, {"sagarunner.saga", sagaName}, {"sagarunner.step", step},
			{"sagarunner.action", action}, {"sagarunner.domain", domain},
		} {
			if a.v != "" {
				attrs = append(attrs, attribute.String(a.k, a.v))
			}
		}
		if n := attemptOf(ctx, rec); n > 1 {
			attrs = append(attrs, attribute.Int("sagarunner.attempt", n))
		}
		ctx = tracing.Extract(ctx, rec.Headers)
		ctx, span := r.tracer.Start(ctx, "sagarunner.handle "+what, trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attrs...))
		defer span.End()

		out, err := next(ctx, rec)
		if err != nil {
			// The class, not the message: a message may quote the input.
			span.SetStatus(codes.Error, Classify(err).String())
			return out, err
		}
		dead := 0
		for i := range out.Records {
			o := &out.Records[i]
			switch o.Topic {
			case r.notifications:
				// A task's notification is keyed by its task id.
				span.SetAttributes(attribute.String("sagarunner.task_id", string(o.Key)))
			case r.deadLetterTopic:
				dead++
			}
			// The header must never make a deliverable output too large:
			// a record at the limit goes untraced instead.
			if recordSize(*o)+traceHeaderBytes <= r.cfg.MaxRecordBytes {
				tracing.Inject(ctx, &o.Headers)
			}
		}
		if dead > 0 {
			span.SetAttributes(attribute.Int("sagarunner.dead_letters", dead))
			span.SetStatus(codes.Error, "dead-lettered")
		}
		span.SetAttributes(attribute.Int("sagarunner.outputs", len(out.Records)))
		return out, nil
	}
}

// traceHeaderBytes bounds what Inject adds: "traceparent" and its 55-byte
// value, and a tracestate of up to 512 bytes as W3C lets vendors keep it.
var traceHeaderBytes = len("traceparent") + 55 + len("tracestate") + 512

// startedSaga is the saga a start record begins: the one it names, or else
// the only saga its topic triggers; nil when the engine cannot say.
func (r *Runner) startedSaga(name, topic string) *saga.Saga {
	e, ok := r.eng.(interface{ Sagas() *saga.Set })
	if !ok {
		return nil
	}
	set := e.Sagas()
	if name != "" {
		g, _ := set.ByName(name)
		return g
	}
	if gs := set.ByTopic(topic); len(gs) == 1 {
		return gs[0]
	}
	return nil
}
