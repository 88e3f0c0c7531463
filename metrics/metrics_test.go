package metrics

import (
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// value reads a counter or gauge without the prometheus testutil package,
// whose diff dependency this module does not pin.
func value(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	m, ok := c.(prometheus.Metric)
	if !ok {
		t.Fatalf("%T is not a single metric", c)
	}
	var out dto.Metric
	if err := m.Write(&out); err != nil {
		t.Fatal(err)
	}
	switch {
	case out.Counter != nil:
		return out.Counter.GetValue()
	case out.Gauge != nil:
		return out.Gauge.GetValue()
	}
	t.Fatalf("%T is neither counter nor gauge", c)
	return 0
}

func TestNilMetricsIsSafe(t *testing.T) {
	var m *Metrics
	m.Consumed("t")
	m.Step(time.Millisecond)
	m.Started("workflow", 1)
	m.Closed("COMPLETED")
	m.Lateness("workflow", time.Millisecond)
	m.Waiting("workflow", 3)
	m.StepDone("approval", "approve", "WAITING", time.Millisecond)
	m.Outcome("unknown_task")
	m.DeadLetter("PANIC")
	m.Retry("transient")
	m.ProduceFailed("permanent")
	m.Lag("t", 0, 3)
	m.Uncommitted("t", 0, time.Second)
	m.DropLag("t", 0)
	m.HTTP("/x", 200, time.Millisecond)
	if m.Handler() == nil {
		t.Fatal("nil Metrics must still serve a handler")
	}
}

func TestRecording(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	tests := []struct {
		name   string
		record func()
		metric prometheus.Collector
		want   float64
	}{
		{"consumed", func() { m.Consumed("a"); m.Consumed("a") }, m.RecordsConsumed.WithLabelValues("a"), 2},
		{"started", func() { m.Started("workflow", 3); m.Started("workflow", 0) }, m.TasksStarted.WithLabelValues("workflow"), 3},
		{"closed", func() { m.Closed("TIMEOUT") }, m.TasksClosed.WithLabelValues("TIMEOUT"), 1},
		{"dead letter by code", func() { m.DeadLetter("PANIC"); m.DeadLetter("UNDECODABLE") }, m.DeadLettered.WithLabelValues("PANIC"), 1},
		{"retry by class", func() { m.Retry("transient"); m.Retry("transient") }, m.Retries.WithLabelValues("transient"), 2},
		{"produce failure by class", func() { m.ProduceFailed("permanent") }, m.ProduceFailures.WithLabelValues("permanent"), 1},
		{"uncommitted age", func() { m.Uncommitted("a", 3, 1500*time.Millisecond) }, m.OldestUncommitted.WithLabelValues("a", "3"), 1.5},
		{"uncommitted age clamps negative", func() { m.Uncommitted("a", 4, -time.Second) }, m.OldestUncommitted.WithLabelValues("a", "4"), 0},
		{"lag clamps negative", func() { m.Lag("a", 1, -5) }, m.ConsumerLag.WithLabelValues("a", "1"), 0},
		{"lag", func() { m.Lag("a", 2, 7) }, m.ConsumerLag.WithLabelValues("a", "2"), 7},
		{"http", func() { m.HTTP("/tasks", 200, time.Millisecond) }, m.HTTPRequests.WithLabelValues("/tasks", "200"), 1},
		{"waiting by domain", func() { m.Waiting("workflow", 4); m.Waiting("workflow", 2) }, m.TasksWaiting.WithLabelValues("workflow"), 2},
		{"waiting clamps negative", func() { m.Waiting("contracts", -1) }, m.TasksWaiting.WithLabelValues("contracts"), 0},
		{"steps by saga, step and status", func() {
			m.StepDone("approval", "approve", "WAITING", time.Millisecond)
			m.StepDone("approval", "approve", "WAITING", time.Millisecond)
			m.StepDone("approval", "approve", "FAIL", time.Millisecond)
		}, m.Steps.WithLabelValues("approval", "approve", "WAITING"), 2},
		{"outcome by kind", func() { m.Outcome("task_id_in_use") }, m.Outcomes.WithLabelValues("task_id_in_use"), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.record()
			if got := value(t, tt.metric); got != tt.want {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestHandlerServesRegistry(t *testing.T) {
	m := New(prometheus.NewRegistry())
	m.Lateness("workflow", 30*time.Millisecond)
	m.Step(time.Millisecond)
	m.StepDone("approval", "publish", "SUCCESS", 2*time.Millisecond)
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		`sagarunner_timer_lateness_seconds_bucket{domain="workflow",le="0.05"} 1`,
		`sagarunner_step_latency_seconds_count 1`,
		`sagarunner_step_duration_seconds_bucket{saga="approval",step="publish",le="0.0025"} 1`,
		`sagarunner_steps_total{saga="approval",status="SUCCESS",step="publish"} 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("exposition lacks %q", want)
		}
	}
}

func TestNewTwiceOnOneRegistryShares(t *testing.T) {
	reg := prometheus.NewRegistry()
	a, b := New(reg), New(reg)
	a.DeadLetter("PANIC")
	b.DeadLetter("PANIC")
	if got := value(t, a.DeadLettered.WithLabelValues("PANIC")); got != 2 {
		t.Fatalf("shared counter = %v, want 2", got)
	}
}

func TestNilRegistryGetsOwn(t *testing.T) {
	m := New(nil)
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if !strings.Contains(rec.Body.String(), "go_goroutines") {
		t.Fatal("own registry should include the Go collector")
	}
}

// TestDropLagForgetsEveryPartitionGauge: a revoked partition must not keep
// showing an old lag or a growing age on this process.
func TestDropLagForgetsEveryPartitionGauge(t *testing.T) {
	m := New(prometheus.NewRegistry())
	m.Lag("a", 1, 5)
	m.Uncommitted("a", 1, time.Minute)
	m.DropLag("a", 1)
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, name := range []string{"sagarunner_consumer_lag_records{", "sagarunner_oldest_uncommitted_seconds{"} {
		if strings.Contains(rec.Body.String(), name) {
			t.Errorf("%s still exported after DropLag", name)
		}
	}
}

// TestLabelSetsAreBounded: past WithMaxSeries label sets, new values count
// under "other" (keeping a fixed label such as status), values already
// admitted keep their own series, and the exposition never grows past the
// bound plus the overflow series.
func TestLabelSetsAreBounded(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg, WithMaxSeries(3))
	for i := range 10 {
		d := fmt.Sprintf("d%d", i)
		m.Started(d, 1)
		m.Waiting(d, int64(i))
		m.Lateness(d, time.Millisecond)
		m.DeadLetter("CODE_" + d)
		m.StepDone("saga", d, "SUCCESS", time.Millisecond)
		m.StepDone("saga", d, "FAIL", time.Millisecond)
	}
	m.Started("d0", 1) // admitted before the bound: still its own series

	tests := []struct {
		name   string
		metric prometheus.Collector
		want   float64
	}{
		{"started admitted", m.TasksStarted.WithLabelValues("d0"), 2},
		{"started overflow", m.TasksStarted.WithLabelValues(OtherLabel), 7},
		{"waiting overflow holds the last", m.TasksWaiting.WithLabelValues(OtherLabel), 9},
		{"dead letters overflow", m.DeadLettered.WithLabelValues(OtherLabel), 7},
		// Three label sets admitted: d0 SUCCESS, d0 FAIL, d1 SUCCESS.
		{"steps admitted", m.Steps.WithLabelValues("saga", "d1", "SUCCESS"), 1},
		{"steps overflow keeps the status", m.Steps.WithLabelValues(OtherLabel, OtherLabel, "FAIL"), 9},
		{"steps overflow success", m.Steps.WithLabelValues(OtherLabel, OtherLabel, "SUCCESS"), 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := value(t, tt.metric); got != tt.want {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}

	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	limits := map[string]int{
		"sagarunner_tasks_started_total":    4, // 3 + other
		"sagarunner_tasks_waiting":          4,
		"sagarunner_timer_lateness_seconds": 4,
		"sagarunner_dead_lettered_total":    4,
		"sagarunner_step_duration_seconds":  4,
		"sagarunner_steps_total":            5, // 3 + other per status
	}
	for _, f := range families {
		if limit, ok := limits[f.GetName()]; ok {
			if n := len(f.GetMetric()); n != limit {
				t.Errorf("%s has %d series, want %d", f.GetName(), n, limit)
			}
			delete(limits, f.GetName())
		}
	}
	for name := range limits {
		t.Errorf("%s not exported", name)
	}
}
