package gateway

import (
	"context"
	"net/http"
	"time"
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

// observe records per-route metrics and logs server errors.
func (g *Gateway) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		route := "unmatched"
		r = r.WithContext(context.WithValue(r.Context(), routeKey{}, &route))
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		if sw.code == 0 {
			sw.code = http.StatusOK
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
