package gateway

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/sagarunner/sagarunner/tracing"
)

// setRoute names the matched route for the metrics and the log, so they
// are labelled by route pattern rather than raw URL (task ids would explode
// the label set). w is the writer observe handed to dispatch.
func setRoute(w http.ResponseWriter, route string) {
	if sw, ok := w.(*statusWriter); ok {
		sw.route = route
	}
}

// statusWriter remembers the status code written and the route matched.
// It is the one thing observe allocates per request: the route travels in
// it rather than in a context value, which would copy the request.
type statusWriter struct {
	http.ResponseWriter
	code  int
	route string
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
		var span trace.Span
		if g.tracer != nil {
			var ctx context.Context
			ctx, span = g.startSpan(r.Context(), r)
			r = r.WithContext(ctx)
		}
		sw := &statusWriter{ResponseWriter: w, route: "unmatched"}
		next.ServeHTTP(sw, r)
		if sw.code == 0 {
			sw.code = http.StatusOK
		}
		if span != nil {
			endSpan(span, r.Method, sw.route, sw.code)
		}
		elapsed := time.Since(start)
		g.metrics.HTTP(sw.route, sw.code, elapsed)
		level := slog.LevelDebug
		if sw.code >= 500 {
			level = slog.LevelWarn
		}
		// Asking first spares boxing the attributes of a line that is
		// not written, which is nearly every line.
		if g.log.Enabled(r.Context(), level) {
			g.log.Log(r.Context(), level, "http request", "method", r.Method, "route", sw.route, "path", r.URL.Path, "code", sw.code, "elapsed", elapsed)
		}
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
