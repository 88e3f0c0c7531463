package gateway

import (
	"context"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/sagarunner/sagarunner/tracing"
)

// routeKey carries a *string in the request context that dispatch fills
// with the matched route, so metrics are labelled by route pattern rather
// than raw URL (task ids would explode the label set).
type routeKey struct{}

func setRoute(r *http.Request, route string) {
	if p, ok := r.Context().Value(routeKey{}).(*string); ok {
		*p = route
	}
}

// statusWriter remembers the status code written.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// observe records per-route metrics, logs server errors and, with tracing
// on, serves the request within a server span.
func (g *Gateway) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		route := "unmatched"
		ctx := context.WithValue(r.Context(), routeKey{}, &route)
		var span trace.Span
		if g.tracer != nil {
			ctx, span = g.startSpan(ctx, r)
		}
		r = r.WithContext(ctx)
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		if sw.code == 0 {
			sw.code = http.StatusOK
		}
		if span != nil {
			endSpan(span, r.Method, route, sw.code)
		}
		elapsed := time.Since(start)
		g.metrics.HTTP(route, sw.code, elapsed)
		level := g.log.Debug
		if sw.code >= 500 {
			level = g.log.Warn
		}
		level("http request", "method", r.Method, "route", route, "path", r.URL.Path, "code", sw.code, "elapsed", elapsed)
	})
}

// startSpan starts the request's server span, a child of the caller's
// traceparent header when it sends a valid one. The span is named once the
// route is known; it records the method, route and status only, never the
// URL's query, a header or the body, where tokens and data travel.
func (g *Gateway) startSpan(ctx context.Context, r *http.Request) (context.Context, trace.Span) {
	ctx = tracing.Propagator.Extract(ctx, propagation.HeaderCarrier(r.Header))
	return g.tracer.Start(ctx, r.Method, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("http.request.method", r.Method)))
}

func endSpan(span trace.Span, method, route string, code int) {
	span.SetName(method + " " + route)
	span.SetAttributes(attribute.String("http.route", route), attribute.Int("http.response.status_code", code))
	if code >= 500 {
		span.SetStatus(codes.Error, http.StatusText(code))
	}
	span.End()
}
