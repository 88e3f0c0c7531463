package saga_test

import (
	"context"
	"encoding/json"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/sagarunner/sagarunner/actions"
	"github.com/sagarunner/sagarunner/clock"
	"github.com/sagarunner/sagarunner/saga"
	"github.com/sagarunner/sagarunner/saga/envelope"
	"github.com/sagarunner/sagarunner/statemanager"
)

// doomedSaga ends every instance FAIL; the approval saga's Fail step is
// hours of deadlines away.
const doomedSaga = `
saga: doomed
version: 1
trigger: {topic: doomed}
steps:
  - id: refuse
    action: Fail
    parameters: {code: REJECTED, message: not today}
`

func steps(out saga.Output) []saga.StepRun {
	var runs []saga.StepRun
	for r := range out.Steps.All() {
		r.Duration = 0 // the fake clock does not move inside a step
		runs = append(runs, r)
	}
	return runs
}

// TestOutputCountsStartsByDomainAndSteps: a start reports its task's
// domain and the step that ran; its replay reports neither start nor note.
func TestOutputCountsStartsByDomainAndSteps(t *testing.T) {
	h := newHarness(t, approvalSaga)
	rec := `{"requestMeta": {"requestId": "r1"}, "payload": {"parameters": {"productId": "p1"}}}`
	first := h.handle("job-posts", "r1", rec)
	if first.Started != 1 || first.StartedIn.Get("workflow") != 1 || first.StartedIn.Len() != 1 {
		t.Errorf("started %d, by domain %v; want 1 in workflow", first.Started, first.StartedIn)
	}
	want := []saga.StepRun{{Saga: "job_post_approval", Step: "approve", Status: saga.StepWaiting}}
	if got := steps(first); !reflect.DeepEqual(got, want) {
		t.Errorf("steps %+v, want %+v", got, want)
	}
	if first.Notes != nil {
		t.Errorf("a start noted %+v", first.Notes)
	}

	again := h.handle("job-posts", "r1", rec)
	if again.Started != 0 || again.StartedIn.Len() != 0 || again.Notes != nil {
		t.Errorf("replay: started %d %v, notes %+v; want nothing", again.Started, again.StartedIn, again.Notes)
	}
}

// TestNotes: each silent outcome leaves one note naming its ids and
// reason, and a caller that hears the answer is not noted for an ordinary
// failure.
func TestNotes(t *testing.T) {
	h := newHarness(t, approvalSaga+"---\n"+doomedSaga)
	h.drive("job-posts", "first", `{"requestMeta": {"requestId": "first"}, "payload": {"parameters": {"productId": "p1"}}}`)
	h.drive("job-posts", "", `{"productId": "p2"}`)
	h.drive(requestTopic, "", closeRequest("ProceedTask", "won", "alice", "p2", "admin"))
	h.drive("job-posts", "", `{"productId": "p3"}`)
	noReply := func(v string) string {
		var m map[string]any
		_ = json.Unmarshal([]byte(v), &m)
		delete(m["requestMeta"].(map[string]any), "replyTo")
		b, _ := json.Marshal(m)
		return string(b)
	}

	tests := []struct {
		name  string
		topic string
		value string
		want  []saga.Note // Message is checked apart
	}{
		{"task id in use", "job-posts", `{"requestMeta": {"requestId": "second"}, "payload": {"parameters": {"productId": "p1"}}}`,
			[]saga.Note{{Kind: saga.NoteTaskIDInUse, Saga: "job_post_approval", Step: "approve", Action: "StartTask",
				RequestID: "second", Domain: "workflow", Code: actions.CodeTaskIDInUse}}},
		{"proceed of an unknown task", requestTopic, closeRequest("ProceedTask", "q1", "alice", "", "admin"), // "": no early answer
			[]saga.Note{{Kind: saga.NoteUnknownTask, Action: "ProceedTask", RequestID: "q1", Domain: "workflow", Code: actions.CodeTaskNotFound}}},
		{"timeout of an unknown task without replyTo", requestTopic, noReply(closeRequest("TimeoutTask", "q2", "", "nope")),
			[]saga.Note{{Kind: saga.NoteUnknownTask, Action: "TimeoutTask", RequestID: "q2", Domain: "workflow", Code: actions.CodeTaskNotFound}}},
		{"proceed of a closed task", requestTopic, closeRequest("ProceedTask", "q3", "bob", "p2", "admin"),
			[]saga.Note{{Kind: saga.NoteClosedTask, Action: "ProceedTask", RequestID: "q3", Domain: "workflow", Code: actions.CodeTaskClosed}}},
		{"refused caller who hears the answer", requestTopic, closeRequest("ProceedTask", "q4", "eve", "p3", "intern"), nil},
		{"refused caller nobody answers", requestTopic, noReply(closeRequest("ProceedTask", "q5", "eve", "p3", "intern")),
			[]saga.Note{{Kind: saga.NoteFailed, Action: "ProceedTask", RequestID: "q5", Domain: "workflow", Code: actions.CodeForbidden}}},
		{"instance ending FAIL nobody answers", "doomed", `{"requestMeta": {"requestId": "d1"}, "payload": {}}`,
			[]saga.Note{{Kind: saga.NoteFailed, Saga: "doomed", Step: "refuse", Action: "Fail", RequestID: "d1", Code: "REJECTED"}}},
		{"instance ending FAIL to a caller", "doomed", `{"requestMeta": {"requestId": "d2", "replyTo": "responses"}, "payload": {}}`, nil},
		{"success", requestTopic, closeRequest("ProceedTask", "q6", "carol", "p3", "admin"), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := h.handle(tc.topic, "", tc.value)
			got := slices.Clone(out.Notes)
			for i := range got {
				if got[i].Message == "" {
					t.Errorf("note %d has no message", i)
				}
				got[i].Message = ""
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("notes %+v, want %+v", got, tc.want)
			}
			if tc.want == nil && out.Notes != nil {
				t.Errorf("notes allocated on a path without any: %#v", out.Notes)
			}
		})
	}
}

// TestDeadLettersCountedByCode: the engine's dead letters carry their code
// in the output, a malformed instance's too, and are not also noted.
func TestDeadLettersCountedByCode(t *testing.T) {
	h := newHarness(t, approvalSaga)
	tests := []struct {
		name, topic, value, code string
	}{
		{"undecodable", "job-posts", `not json`, saga.DeadUndecodable},
		{"unknown action", requestTopic, `{"eventMeta": {"action": "Nope"}}`, saga.DeadUnknownAction},
		{"malformed instance", requestTopic, `{"eventMeta": {"action": "ProceedTask", "domain": "workflow", "inputElement": "parameters"}, "payload": {}}`, actions.CodeBadInput},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := h.handle(tc.topic, "k", tc.value)
			if out.DeadLetters != 1 || out.DeadLetterCodes.Get(tc.code) != 1 || out.DeadLetterCodes.Len() != 1 {
				t.Errorf("dead letters %d by code %+v, want one %s; records %s", out.DeadLetters, out.DeadLetterCodes, tc.code, result{records: out.Records})
			}
			if out.Notes != nil {
				t.Errorf("a dead letter was also noted: %+v", out.Notes)
			}
		})
	}
}

// TestStepDurationIsTheAction: a step's duration is its action's time on
// the engine clock, and a step's status comes from a fixed set whatever
// the action leaves.
func TestStepDurationIsTheAction(t *testing.T) {
	fake := clock.NewFake(start)
	reg := actions.NewRegistry()
	reg.Register(&actions.Spec{Name: "Slow", New: func(actions.Config) (actions.Action, error) {
		return peek(func(*actions.Exec) { fake.Advance(7 * time.Millisecond) }), nil
	}})
	reg.Register(&actions.Spec{Name: "Odd", New: func(actions.Config) (actions.Action, error) { return oddStatus{}, nil }})
	set, err := saga.LoadBytes(reg, "s.yaml", []byte("saga: s\ntrigger: {topic: s}\nsteps:\n  - {id: a, action: Slow, next: {SUCCESS: b}}\n  - {id: b, action: Odd}\n"))
	if err != nil {
		t.Fatal(err)
	}
	eng, err := saga.NewEngine(set, saga.Config{Topics: actions.Topics{Continuations: requestTopic}, Registry: reg, Clock: fake,
		Stores: statemanager.NewResolver(nil, statemanager.RedisConfig{}, nil)})
	if err != nil {
		t.Fatal(err)
	}
	out, err := eng.Handle(context.Background(), saga.Record{Topic: "s", Key: []byte("k"), Value: []byte(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	var got []saga.StepRun
	for r := range out.Steps.All() {
		got = append(got, r)
	}
	want := []saga.StepRun{
		{Saga: "s", Step: "a", Status: envelope.StatusSuccess, Duration: 7 * time.Millisecond},
		{Saga: "s", Step: "b", Status: saga.StepOther},
	}
	if !reflect.DeepEqual(got, want) || out.Steps.Len() != 2 {
		t.Errorf("steps %+v, want %+v", got, want)
	}
}

// oddStatus leaves a status no action should, as one copying its input
// might.
type oddStatus struct{}

func (oddStatus) Execute(_ context.Context, _ *actions.Exec, env *envelope.Envelope) (actions.Outcome, error) {
	env.Result = envelope.Result{Status: "whatever-the-input-said"}
	return actions.Outcome{Env: env}, nil
}

func TestTally(t *testing.T) {
	var a saga.Tally
	a.Add("workflow", 1)
	a.Add("contracts", 2)
	a.Add("workflow", 1)
	a.Add("ignored", 0)
	var b saga.Tally
	b.Add("contracts", 1)
	b.Add("hr", 4)
	a.Merge(b)
	var got []saga.Count
	for l, n := range a.All() {
		got = append(got, saga.Count{Label: l, N: n})
	}
	want := []saga.Count{{"workflow", 2}, {"contracts", 3}, {"hr", 4}}
	if !reflect.DeepEqual(got, want) || a.Len() != 3 || a.Total() != 9 || a.Get("hr") != 4 || a.Get("none") != 0 {
		t.Errorf("tally %v (len %d, total %d), want %v", got, a.Len(), a.Total(), want)
	}
	var empty saga.Tally
	if empty.Len() != 0 || empty.Total() != 0 {
		t.Errorf("zero tally not empty")
	}
}

// TestOneOfEachCostsNoAllocation: the usual output, one start and one
// step, keeps both inline.
func TestOneOfEachCostsNoAllocation(t *testing.T) {
	allocs := testing.AllocsPerRun(100, func() {
		var out saga.Output
		out.StartedIn.Add("workflow", 1)
		out.Steps.Add(saga.StepRun{Saga: "s", Step: "a", Status: envelope.StatusSuccess})
		var total saga.Output
		total.Append(out)
	})
	if allocs != 0 {
		t.Errorf("%v allocations, want 0", allocs)
	}
}
