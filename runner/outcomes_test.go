package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sagarunner/sagarunner/actions"
	"github.com/sagarunner/sagarunner/internal/testutil"
	"github.com/sagarunner/sagarunner/metrics"
	"github.com/sagarunner/sagarunner/saga"
	"github.com/sagarunner/sagarunner/statemanager"
)

// outcomeRunner is a Runner with only what countOutcomes and the waiting
// sampler use, logging JSON into buf on a clock the test moves.
func outcomeRunner(buf *syncBuffer, m Metrics, stores statemanager.Resolver, domains ...string) (*Runner, *time.Time) {
	at := time.Unix(1_763_800_000, 0)
	r := &Runner{metrics: m, stores: stores, domains: domains,
		events: newEventLog(slog.New(slog.NewJSONHandler(buf, nil)))}
	r.events.now = func() time.Time { return at }
	return r, &at
}

// TestNotesAreLoggedOnceWithTheirIdsRateLimited: every silent outcome is
// one structured line naming its ids and reason; a flood of one kind on a
// partition is suppressed and summed into its next line, without hiding
// the other kinds.
func TestNotesAreLoggedOnceWithTheirIdsRateLimited(t *testing.T) {
	var buf syncBuffer
	m := metrics.New(prometheus.NewRegistry())
	r, at := outcomeRunner(&buf, m, nil, "workflow")
	p := topicPartition{"approvals", 3}
	inUse := saga.Note{Kind: saga.NoteTaskIDInUse, Saga: "approval", Step: "approve", Action: "StartTask", RequestID: "second",
		Domain: "workflow", Code: actions.CodeTaskIDInUse, Message: `task id "p1" in "workflow" is waiting for another instance`}
	unknown := saga.Note{Kind: saga.NoteUnknownTask, Action: "ProceedTask", RequestID: "q1", Domain: "workflow",
		Code: actions.CodeTaskNotFound, Message: `no task "nope" in "workflow"`}
	failed := saga.Note{Kind: saga.NoteFailed, Saga: "doomed", Step: "refuse", Action: "Fail", RequestID: "d1",
		Code: "REJECTED", Message: "not today"}

	r.countOutcomes(p, 10, &saga.Output{Notes: []saga.Note{inUse}})
	r.countOutcomes(p, 11, &saga.Output{Notes: []saga.Note{unknown}})
	r.countOutcomes(p, 12, &saga.Output{Notes: []saga.Note{failed}})
	for i := range 5 {
		r.countOutcomes(p, int64(13+i), &saga.Output{Notes: []saga.Note{unknown}})
	}
	*at = at.Add(eventLogInterval)
	r.countOutcomes(p, 30, &saga.Output{Notes: []saga.Note{unknown}})

	lines := buf.lines(t)
	want := []map[string]any{
		{"level": "WARN", "msg": noteLog[saga.NoteTaskIDInUse].msg, "offset": 10.0, "kind": "task_id_in_use", "saga": "approval",
			"step": "approve", "action": "StartTask", "requestId": "second", "domain": "workflow", "code": "TASK_ID_IN_USE", "message": inUse.Message},
		{"level": "WARN", "msg": noteLog[saga.NoteUnknownTask].msg, "offset": 11.0, "kind": "unknown_task", "action": "ProceedTask",
			"requestId": "q1", "domain": "workflow", "code": "TASK_NOT_FOUND", "message": unknown.Message},
		{"level": "WARN", "msg": noteLog[saga.NoteFailed].msg, "offset": 12.0, "kind": "failed", "saga": "doomed", "step": "refuse",
			"action": "Fail", "requestId": "d1", "code": "REJECTED", "message": "not today"},
		{"level": "WARN", "msg": noteLog[saga.NoteUnknownTask].msg, "offset": 30.0, "requestId": "q1", "suppressed": 5.0},
	}
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d: %v", len(lines), len(want), lines)
	}
	for i, w := range want {
		t.Run(fmt.Sprint(w["msg"], " ", w["offset"]), func(t *testing.T) {
			got := lines[i]
			if got["topic"] != "approvals" || got["partition"] != 3.0 {
				t.Errorf("line lacks the partition: %v", got)
			}
			for k, v := range w {
				if got[k] != v {
					t.Errorf("%s = %v, want %v in %v", k, got[k], v, got)
				}
			}
		})
	}
	if _, ok := lines[1]["saga"]; ok {
		t.Errorf("a direct action's line names a saga: %v", lines[1])
	}
	for kind, n := range map[string]float64{"unknown_task": 7, "task_id_in_use": 1, "failed": 1} {
		if got := gauge(t, m.Outcomes.WithLabelValues(kind)); got != n {
			t.Errorf("outcomes_total{kind=%s} = %v, want %v", kind, got, n)
		}
	}
}

// TestOutcomesFeedTheMetricsWithBoundedLabels: starts count under their
// domain when it is known and under OtherDomain when a record named its
// own; steps, closes and the engine's dead letters under their labels.
func TestOutcomesFeedTheMetricsWithBoundedLabels(t *testing.T) {
	var buf syncBuffer
	m := metrics.New(prometheus.NewRegistry())
	r, _ := outcomeRunner(&buf, m, nil, "contracts", "workflow")
	var out saga.Output
	out.StartedIn.Add("workflow", 2)
	out.StartedIn.Add("made-up-by-a-producer", 1)
	out.Closed = map[string]int{statemanager.StatusCompleted: 2}
	out.DeadLetterCodes.Add(saga.DeadUndecodable, 1)
	out.DeadLetterCodes.Add(actions.CodeBadInput, 2)
	out.Steps.Add(saga.StepRun{Saga: "approval", Step: "approve", Status: saga.StepWaiting, Duration: time.Millisecond})
	out.Steps.Add(saga.StepRun{Saga: "approval", Step: "publish", Status: "SUCCESS", Duration: time.Millisecond})
	r.countOutcomes(topicPartition{"approvals", 0}, 1, &out)

	tests := []struct {
		name   string
		metric prometheus.Metric
		want   float64
	}{
		{"started in a known domain", m.TasksStarted.WithLabelValues("workflow"), 2},
		{"started in an unknown domain", m.TasksStarted.WithLabelValues(OtherDomain), 1},
		{"closed", m.TasksClosed.WithLabelValues(statemanager.StatusCompleted), 2},
		{"engine dead letter by code", m.DeadLettered.WithLabelValues(actions.CodeBadInput), 2},
		{"undecodable", m.DeadLettered.WithLabelValues(saga.DeadUndecodable), 1},
		{"waiting step", m.Steps.WithLabelValues("approval", "approve", saga.StepWaiting), 1},
		{"succeeded step", m.Steps.WithLabelValues("approval", "publish", "SUCCESS"), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := gauge(t, tt.metric); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
	if got := gauge(t, m.TasksStarted.WithLabelValues("made-up-by-a-producer")); got != 0 {
		t.Errorf("a producer's domain became a label")
	}
	if lines := buf.lines(t); len(lines) != 0 {
		t.Errorf("an output without notes logged %v", lines)
	}
}

// countingStores resolves domains to stores that count their waiting tasks
// (or fail to), and one domain to a store that cannot count.
type countingStores struct {
	counts map[string]int64
	err    error
}

type countingStore struct {
	statemanager.Store
	n   int64
	err error
}

func (s countingStore) CountWaiting(context.Context) (int64, error) { return s.n, s.err }

func (c countingStores) Store(d string) (statemanager.Store, error) {
	n, ok := c.counts[d]
	if !ok {
		return struct{ statemanager.Store }{}, nil
	}
	return countingStore{n: n, err: c.err}, nil
}

func TestWaitingGaugeSamplesStoresThatCount(t *testing.T) {
	tests := []struct {
		name  string
		err   error
		want  map[string]float64 // domain -> gauge; absent: no series
		lines int
	}{
		{"counted", nil, map[string]float64{"workflow": 42}, 0},
		{"count failed", errors.New("redis: connection refused"), map[string]float64{}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf syncBuffer
			reg := prometheus.NewRegistry()
			m := metrics.New(reg)
			r, _ := outcomeRunner(&buf, m, countingStores{counts: map[string]int64{"workflow": 42}, err: tt.err}, "contracts", "workflow")
			r.sampleWaitingOnce(context.Background())
			fams, err := reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]float64{}
			for _, f := range fams {
				if f.GetName() != "sagarunner_tasks_waiting" {
					continue
				}
				for _, s := range f.GetMetric() {
					got[s.GetLabel()[0].GetValue()] = s.GetGauge().GetValue()
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("tasks_waiting %v, want %v", got, tt.want)
			}
			if lines := buf.lines(t); len(lines) != tt.lines {
				t.Errorf("%d log lines, want %d: %v", len(lines), tt.lines, lines)
			}
		})
	}
}

// TestSilentOutcomesThroughTheRunner: end to end, a second instance on a
// waiting task id and a ProceedTask of an unknown task (that opts out of
// the early answers) are each logged with
// their request ids and counted; the start counts under its domain and its
// step under its saga and step.
func TestSilentOutcomesThroughTheRunner(t *testing.T) {
	e := newEnv(t, sharedRedis(t), true)
	var buf syncBuffer
	m := metrics.New(prometheus.NewRegistry())
	e.start(e.config(), e.eng, WithMetrics(m), WithLogger(slog.New(slog.NewJSONHandler(&buf, nil))))

	e.produce("approvals", "first", `{"id": "dup"}`)
	e.waitStatus("dup", statemanager.StatusWaiting)
	second := e.produce("approvals", "second", `{"id": "dup"}`)
	unknown := e.produce(requestTopic, "ghost", `{"requestMeta": {"requestId": "ghost"},
		"eventMeta": {"action": "ProceedTask", "domain": "workflow", "inputElement": "parameters", "parameters": {"taskIdPath": "taskId"}},
		"payload": {"parameters": {"taskId": "nope"}}}`,
		// Unknown at once, as over HTTP, instead of kept as an early answer.
		kgo.RecordHeader{Key: actions.NoEarlyHeader, Value: []byte("1")})
	e.waitCommitted("test-group", second)
	e.waitCommitted("test-group", unknown)

	testutil.Eventually(t, 5*time.Second, 10*time.Millisecond, func() error {
		for kind, want := range map[string]float64{saga.NoteTaskIDInUse: 1, saga.NoteUnknownTask: 1} {
			if got := gauge(t, m.Outcomes.WithLabelValues(kind)); got != want {
				return fmt.Errorf("outcomes_total{kind=%s} = %v, want %v", kind, got, want)
			}
		}
		return nil
	})
	found := map[string]map[string]any{}
	for _, l := range buf.lines(t) {
		if k, ok := l["kind"].(string); ok {
			if found[k] != nil {
				t.Errorf("%s logged twice: %v and %v", k, found[k], l)
			}
			found[k] = l
		}
	}
	for kind, requestID := range map[string]string{saga.NoteTaskIDInUse: "second", saga.NoteUnknownTask: "ghost"} {
		l := found[kind]
		if l == nil || l["requestId"] != requestID || l["message"] == "" || l["code"] == "" {
			t.Errorf("%s line %v, want one naming request %s with its code and message", kind, l, requestID)
		}
	}
	if l := found[saga.NoteTaskIDInUse]; l != nil && (l["saga"] != "approval" || l["step"] != "approve" || l["topic"] != "approvals") {
		t.Errorf("task id in use line lacks its saga, step or topic: %v", l)
	}
	if got := gauge(t, m.TasksStarted.WithLabelValues(domain)); got != 1 {
		t.Errorf("tasks_started_total{domain=%s} = %v, want 1", domain, got)
	}
	if got := gauge(t, m.Steps.WithLabelValues("approval", "approve", saga.StepWaiting)); got != 1 {
		t.Errorf("steps_total{approval,approve,WAITING} = %v, want 1", got)
	}
}

// TestTimerOutputsCountedOnceWithTheirDomain: a fired deadline counts its
// close once, however the emit went, and its lateness under its domain.
func TestTimerOutputsCountedOnceWithTheirDomain(t *testing.T) {
	e := newEnv(t, sharedRedis(t), true)
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	e.start(e.config(), e.eng, WithMetrics(m))
	e.produce("quick", "q", `{"id": "quick-1"}`)
	e.waitStatus("quick-1", statemanager.StatusTimeout)
	testutil.Eventually(t, 5*time.Second, 10*time.Millisecond, func() error {
		if got := gauge(t, m.TasksClosed.WithLabelValues(statemanager.StatusTimeout)); got != 1 {
			return fmt.Errorf("tasks_closed_total{TIMEOUT} = %v, want 1", got)
		}
		return nil
	})
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != "sagarunner_timer_lateness_seconds" {
			continue
		}
		for _, s := range f.GetMetric() {
			if l := s.GetLabel(); len(l) != 1 || l[0].GetValue() != domain || s.GetHistogram().GetSampleCount() != 1 {
				t.Errorf("lateness series %v with %d samples, want one of domain %s", l, s.GetHistogram().GetSampleCount(), domain)
			}
		}
		return
	}
	t.Error("no timer lateness exported")
}

// TestCountingTheUsualOutputCostsNoAllocation: on the hot path, counting a
// record's start, close and step allocates nothing, once its series exist.
func TestCountingTheUsualOutputCostsNoAllocation(t *testing.T) {
	var out saga.Output
	out.StartedIn.Add("workflow", 1)
	out.Closed = map[string]int{statemanager.StatusCompleted: 1}
	out.Steps.Add(saga.StepRun{Saga: "approval", Step: "publish", Status: "SUCCESS"})
	tp := topicPartition{"approvals", 0}
	for _, tt := range []struct {
		name string
		m    Metrics
	}{
		{"no metrics", NopMetrics{}},
		{"prometheus", metrics.New(prometheus.NewRegistry())},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var buf syncBuffer
			r, _ := outcomeRunner(&buf, tt.m, nil, "workflow")
			r.countOutcomes(tp, 1, &out) // creates the series
			if n := testing.AllocsPerRun(100, func() { r.countOutcomes(tp, 1, &out) }); n != 0 {
				t.Errorf("%v allocations, want 0", n)
			}
		})
	}
}
