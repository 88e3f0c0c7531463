package test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/sagarunner/sagarunner/config"
	"github.com/sagarunner/sagarunner/internal/app"
	"github.com/sagarunner/sagarunner/internal/redistest"
	"github.com/sagarunner/sagarunner/internal/testutil"
	"github.com/sagarunner/sagarunner/saga/envelope"
	"github.com/sagarunner/sagarunner/tracing"
)

// tracedSaga starts a task over HTTP and publishes once it is proceeded,
// so one approval crosses the gateway, Kafka, the runner and Redis twice.
const tracedSaga = `saga: traced_post
version: 1
trigger:
  path: /traced-posts
steps:
  - id: approve
    action: StartTask
    domain: workflow
    inputElement: parameters
    parameters:
      inputPattern: "{data: @}"
      taskIdPath: productId
      taskName: Traced approval
      taskRoles: manager
      timeout: 600000
    next: {SUCCESS: publish}
  - id: publish
    action: Publish
    parameters: {topic: traced-posts-approved, pattern: "{id: parameters.productId, by: decision.user}"}
`

// TestTracingFollowsAnApproval proceeds a task over HTTP with a caller's
// traceparent and follows that one trace through the gateway, the runner's
// handling of the ProceedTask request, its Redis calls and produces, the
// notification on Kafka, and the handling of the continuation it caused.
func TestTracingFollowsAnApproval(t *testing.T) {
	redisAddr, _ := redistest.Start(t)
	brokers := newCluster(t).ListenAddrs()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "traced_post.yaml"), []byte(tracedSaga), 0o644); err != nil {
		t.Fatal(err)
	}
	proceed, err := os.ReadFile("../sagas/proceed_task.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "proceed_task.yaml"), proceed, 0o644); err != nil {
		t.Fatal(err)
	}
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	p := startTracedProcess(t, newConfig(t, brokers, redisAddr, dir), tp)
	out := readTopics(t, brokers, notificationTopic)

	// A marker in the bodies: no span may carry it.
	const marker = "body-marker-7f3a"
	if st, body := do(t, "POST", p.base+"/traced-posts?async=true", "", `{"productId":"tr-1","brief":"`+marker+`"}`); st != http.StatusAccepted {
		t.Fatalf("POST /traced-posts: %d %s", st, body)
	}
	waitTask(t, p.base, "", "workflow", "tr-1", "WAITING")

	const callerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	req, err := http.NewRequest("POST", p.base+"/ProceedTask", strings.NewReader(`{"taskId":"tr-1","data":{"user":"`+marker+`"}}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("traceparent", "00-"+callerTrace+"-00f067aa0ba902b7-01")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("POST /ProceedTask: %d", res.StatusCode)
	}

	// The continuation is handled after the answer: wait for its span.
	inTrace := func() []sdktrace.ReadOnlySpan {
		var spans []sdktrace.ReadOnlySpan
		for _, s := range exp.GetSpans().Snapshots() {
			if s.SpanContext().TraceID().String() == callerTrace {
				spans = append(spans, s)
			}
		}
		return spans
	}
	attr := func(s sdktrace.ReadOnlySpan, key string) string {
		for _, a := range s.Attributes() {
			if string(a.Key) == key {
				return a.Value.Emit()
			}
		}
		return ""
	}
	find := func(spans []sdktrace.ReadOnlySpan, match func(sdktrace.ReadOnlySpan) bool) sdktrace.ReadOnlySpan {
		for _, s := range spans {
			if match(s) {
				return s
			}
		}
		return nil
	}
	isContinuation := func(s sdktrace.ReadOnlySpan) bool {
		return s.SpanKind() == trace.SpanKindConsumer && attr(s, "sagarunner.saga") == "traced_post"
	}
	type spanIndex = map[trace.SpanID]sdktrace.ReadOnlySpan
	parentOf := func(byID spanIndex, s sdktrace.ReadOnlySpan) sdktrace.ReadOnlySpan { return byID[s.Parent().SpanID()] }
	want := []struct {
		name  string
		match func(spanIndex, sdktrace.ReadOnlySpan) bool
	}{
		{"the gateway's server span", func(_ spanIndex, s sdktrace.ReadOnlySpan) bool {
			return s.SpanKind() == trace.SpanKindServer && s.Name() == "POST /ProceedTask" && attr(s, "http.response.status_code") == "200"
		}},
		{"the gateway's produce of the request", func(byID spanIndex, s sdktrace.ReadOnlySpan) bool {
			parent := parentOf(byID, s)
			return s.SpanKind() == trace.SpanKindProducer && parent != nil && parent.SpanKind() == trace.SpanKindServer
		}},
		{"the runner's handling of the request", func(_ spanIndex, s sdktrace.ReadOnlySpan) bool {
			return s.SpanKind() == trace.SpanKindConsumer && s.Name() == "sagarunner.handle proceed_task" &&
				attr(s, "sagarunner.action") == "ProceedTask" && attr(s, "sagarunner.task_id") == "tr-1" &&
				attr(s, "messaging.destination.name") == requestTopic && attr(s, "sagarunner.request_id") != ""
		}},
		{"a Redis call within that handling", func(byID spanIndex, s sdktrace.ReadOnlySpan) bool {
			parent := parentOf(byID, s)
			return strings.HasPrefix(s.Name(), "redis ") && parent != nil && parent.Name() == "sagarunner.handle proceed_task"
		}},
		{"the notification's produce", func(_ spanIndex, s sdktrace.ReadOnlySpan) bool {
			return s.Name() == "send "+notificationTopic
		}},
		{"the continuation's handling, after its produce", func(byID spanIndex, s sdktrace.ReadOnlySpan) bool {
			parent := parentOf(byID, s)
			return isContinuation(s) && attr(s, "sagarunner.step") == "approve" && parent != nil && parent.Name() == "send "+requestTopic
		}},
		{"the continuation's publish", func(_ spanIndex, s sdktrace.ReadOnlySpan) bool {
			return s.Name() == "send traced-posts-approved"
		}},
	}
	// Spans end as their work does, the continuation's after the answer:
	// poll until the trace holds them all.
	testutil.Eventually(t, waitLong, poll, func() error {
		spans := inTrace()
		byID := spanIndex{}
		for _, s := range spans {
			byID[s.SpanContext().SpanID()] = s
		}
		var missing []string
		for _, w := range want {
			if find(spans, func(s sdktrace.ReadOnlySpan) bool { return w.match(byID, s) }) == nil {
				missing = append(missing, w.name)
			}
		}
		if len(missing) == 0 {
			return nil
		}
		var have []string
		for _, s := range spans {
			have = append(have, fmt.Sprintf("%s (%s) %v", s.Name(), s.SpanKind(), s.Attributes()))
		}
		return fmt.Errorf("trace %s lacks %s; it holds: %s", callerTrace, strings.Join(missing, ", "), strings.Join(have, "; "))
	})

	t.Run("the notification on Kafka carries the trace", func(t *testing.T) {
		n := out.waitFor(t, notificationTopic, "tr-1", nil)
		var hs []envelope.Header
		for _, h := range n.Headers {
			hs = append(hs, envelope.Header{Key: h.Key, Value: h.Value})
		}
		if got := trace.SpanContextFromContext(tracing.Extract(context.Background(), hs)).TraceID().String(); got != callerTrace {
			t.Errorf("notification's trace %q, want %s (headers %v)", got, callerTrace, n.Headers)
		}
	})

	t.Run("the start request is a trace of its own", func(t *testing.T) {
		s := find(exp.GetSpans().Snapshots(), func(s sdktrace.ReadOnlySpan) bool { return s.Name() == "POST /traced-posts" })
		if s == nil {
			t.Fatal("no span of POST /traced-posts")
		}
		if s.SpanContext().TraceID().String() == callerTrace || s.Parent().IsValid() {
			t.Errorf("the start request joined trace %s", s.SpanContext().TraceID())
		}
	})

	t.Run("no span carries a body", func(t *testing.T) {
		for _, s := range exp.GetSpans().Snapshots() {
			for _, a := range s.Attributes() {
				if strings.Contains(a.Value.Emit(), marker) {
					t.Errorf("span %q: attribute %s = %q", s.Name(), a.Key, a.Value.Emit())
				}
			}
			if strings.Contains(s.Status().Description, marker) {
				t.Errorf("span %q: status %q", s.Name(), s.Status().Description)
			}
		}
	})
}

// startTracedProcess is startProcess with the spans going to tp.
func startTracedProcess(t *testing.T, cfg *config.Config, tp trace.TracerProvider) *process {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(newTestLog(t, "traced"), &slog.HandlerOptions{Level: slog.LevelInfo}))
	a, err := app.New(cfg, log, app.Options{Registerer: prometheus.NewRegistry(), Listener: ln, TracerProvider: tp})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &process{name: "traced", app: a, base: "http://" + ln.Addr().String(), cancel: cancel, done: make(chan error, 1)}
	go func() { p.done <- a.Run(ctx) }()
	t.Cleanup(func() { p.stop(t) })
	testutil.Eventually(t, waitLong, poll, func() error {
		if st, body := do(t, "GET", p.base+"/readyz", "", ""); st != http.StatusOK {
			return fmt.Errorf("/readyz: %d %s", st, body)
		}
		return nil
	})
	return p
}
