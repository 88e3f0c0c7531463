package tracing

import (
	"context"
	"errors"
	"net"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// RedisHook is a go-redis hook that makes a client span of every command
// and pipeline run within a traced operation (a record handled, an HTTP
// request). Calls outside one, such as the deadline loops' polling, make
// no span: they would each start a trace of one span, many per second.
//
// Only the command's name is recorded, never its arguments: they hold
// stored events and task data.
func RedisHook(tp trace.TracerProvider) redis.Hook {
	return redisHook{tracer: Tracer(tp)}
}

type redisHook struct{ tracer trace.Tracer }

var _ redis.Hook = redisHook{}

func (redisHook) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		return next(ctx, network, addr)
	}
}

func (h redisHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !traced(ctx) {
			return next(ctx, cmd)
		}
		ctx, span := h.start(ctx, cmd.Name(), 1)
		err := next(ctx, cmd)
		end(span, err)
		return err
	}
}

func (h redisHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if !traced(ctx) {
			return next(ctx, cmds)
		}
		name := "pipeline"
		if len(cmds) > 0 {
			name = "pipeline " + cmds[0].Name()
		}
		ctx, span := h.start(ctx, name, len(cmds))
		err := next(ctx, cmds)
		end(span, err)
		return err
	}
}

// inRedisKey marks a context within a Redis span: the commands a new
// connection sends before the traced one (HELLO, CLIENT SETINFO) run
// within it and are not the caller's work.
type inRedisKey struct{}

// traced says whether a call in ctx gets a span: within a traced
// operation, and not within another Redis call.
func traced(ctx context.Context) bool {
	return trace.SpanContextFromContext(ctx).IsValid() && ctx.Value(inRedisKey{}) == nil
}

func (h redisHook) start(ctx context.Context, op string, n int) (context.Context, trace.Span) {
	ctx = context.WithValue(ctx, inRedisKey{}, true)
	attrs := []attribute.KeyValue{
		attribute.String("db.system.name", "redis"),
		attribute.String("db.operation.name", op),
	}
	if n > 1 {
		attrs = append(attrs, attribute.Int("db.operation.batch.size", n))
	}
	return h.tracer.Start(ctx, "redis "+op, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
}

// end closes span; redis.Nil is an answer (no such key), not a failure.
func end(span trace.Span, err error) {
	if err != nil && !errors.Is(err, redis.Nil) {
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
