package actions_test

import (
	"context"

	"testing"

	"github.com/sagarunner/sagarunner/actions"
	"github.com/sagarunner/sagarunner/saga/envelope"
	"github.com/sagarunner/sagarunner/statemanager"
)

// itemsEvent starts a task whose payload holds an array where a careless
// producer was expected to send an object: an enrichPath through it
// cannot be written.
const itemsEvent = `{
  "requestMeta": {"requestId": "r-7", "user": "carol"},
  "sagaMeta": {"saga": "order", "version": 1, "stepId": "review", "runnerPartition": 3},
  "eventMeta": {"action": "StartTask", "domain": "workflow"},
  "payload": {"parameters": {"productId": "order-1", "items": [1, 2]}}
}`

// A completion whose data cannot enter the waiting saga's payload at its
// enrichPath is refused BAD_INPUT before anything changes. Applied first,
// its close would be durable while the continuation that must follow it
// could never be built: the task closed, the instance waiting forever, the
// operation dead-lettered on every retry.
func TestCompletionThatCannotEnrichIsRefused(t *testing.T) {
	const path = "parameters.items.decision"
	cases := []struct {
		name   string
		action string
		params map[string]any
		body   string
		// approvals: the task needs one, so the completion moves it to
		// IN_APPROVAL and the close comes with the approval.
		approvals int
	}{
		{name: "CompleteTask", action: "CompleteTask", params: map[string]any{"enrichPath": path},
			body: `{"taskId": "order-1", "data": {"ok": true}}`},
		{name: "CompleteTask into approval", action: "CompleteTask", params: map[string]any{"enrichPath": path},
			body: `{"taskId": "order-1", "data": {"ok": true}}`, approvals: 1},
		{name: "ProceedTask without outputElement", action: "ProceedTask", params: map[string]any{"enrichPath": path, "inputPattern": "data"},
			body: `{"taskId": "order-1", "data": {"ok": true}}`},
		{name: "TimeoutTask", action: "TimeoutTask", params: map[string]any{"enrichPath": path, "inputPattern": "data"},
			body: `{"taskId": "order-1", "data": {"late": true}}`},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			x, _, stores := newExec(t)
			x.Topics = lifeTopics
			params := map[string]any{"taskIdPath": "productId", "taskRoles": "clerk"}
			if tt.approvals > 0 {
				params["requiredApprovals"] = tt.approvals
				params["approverRoles"] = "boss"
			}
			start := build(t, "StartTask", actions.Input{Domain: "workflow", InputElement: "parameters", Params: params})
			if out := run(t, start, x, decode(t, itemsEvent)); !out.Suspend {
				t.Fatalf("start = %+v", out.Env.Result)
			}
			a := build(t, tt.action, actions.Input{Domain: "workflow", InputElement: "parameters", Params: tt.params})
			env := &envelope.Envelope{RequestMeta: envelope.RequestMeta{RequestID: "p-1", User: "bob", Roles: []string{"clerk"}},
				Payload: []byte(`{"parameters": ` + tt.body + `}`)}
			out := run(t, a, x, env)
			wantResult(t, out, envelope.StatusFail, actions.CodeBadInput)
			if len(out.Records) != 0 || len(out.Acks) != 0 {
				t.Fatalf("a refused completion produced %d records, %d acks", len(out.Records), len(out.Acks))
			}
			if task := getTask(t, stores, "workflow", "order-1"); task.Status != statemanager.StatusWaiting || task.Version != 1 {
				t.Fatalf("task %s at version %d after a refused completion, want WAITING at 1", task.Status, task.Version)
			}
		})
	}
}

// A task takes at most actions.MaxTaskChanges changes that leave it open:
// a seer commenting, or a claimer claiming and unclaiming, forever would
// otherwise grow its stored request ids and history without bound. Past
// the bound a change that keeps it open is refused (with the task's
// state), a replay still answers as the first time, and a close goes
// through, so the task always ends.
func TestTaskChangesBounded(t *testing.T) {
	x, _, stores := newExec(t)
	x.Topics = lifeTopics
	start := build(t, "StartTask", actions.Input{Domain: "workflow", InputElement: "parameters",
		Params: map[string]any{"taskIdPath": "productId", "taskRoles": "clerk"}})
	if out := run(t, start, x, decode(t, itemsEvent)); !out.Suspend {
		t.Fatalf("start = %+v", out.Env.Result)
	}
	// Reaching the bound one comment at a time is the attack itself; the
	// version is where it would have left the task.
	ctx := context.Background()
	keys, err := stores.client.Keys(ctx, "*:t:order-1").Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("task hash: %v %v", keys, err)
	}
	if err := stores.client.HSet(ctx, keys[0], "v", actions.MaxTaskChanges-1).Err(); err != nil {
		t.Fatal(err)
	}
	clerk := []string{"clerk"}
	comment := `{"taskId": "order-1", "text": "again"}`
	wantResult(t, op(t, x, "CommentTask", "m-1", "bob", clerk, comment), envelope.StatusSuccess, "")
	out := op(t, x, "CommentTask", "m-2", "bob", clerk, comment)
	wantResult(t, out, envelope.StatusFail, actions.CodeTooManyChanges)
	if v := out.Env.Get("task.version").Int(); v != actions.MaxTaskChanges {
		t.Errorf("refusal carries version %d, want %d", v, actions.MaxTaskChanges)
	}
	wantResult(t, op(t, x, "ClaimTask", "c-1", "bob", clerk, `{"taskId": "order-1"}`), envelope.StatusFail, actions.CodeTooManyChanges)
	wantResult(t, op(t, x, "CommentTask", "m-1", "bob", clerk, comment), envelope.StatusSuccess, "")

	out = op(t, x, "CompleteTask", "p-1", "bob", clerk, `{"taskId": "order-1", "data": {"ok": true}}`)
	wantResult(t, out, envelope.StatusSuccess, "")
	if len(records(out, "requests")) != 1 {
		t.Fatalf("the close past the bound produced %d continuations, want 1", len(records(out, "requests")))
	}
	if task := getTask(t, stores, "workflow", "order-1"); task.Status != statemanager.StatusCompleted {
		t.Fatalf("task %s, want COMPLETED", task.Status)
	}
}

// A trusted producer's ProceedTask takes the fast path, which closes
// without reading the task first and so cannot check the enrich path: the
// close is then final, and its saga resumes with FAIL ENRICH_FAILED (its
// payload as it was) instead of an effect failing on every retry.
func TestUnwritableDataResumesTheSagaFailed(t *testing.T) {
	x, _, _ := newExec(t)
	x.Topics = lifeTopics
	start := build(t, "StartTask", actions.Input{Domain: "workflow", InputElement: "parameters",
		Params: map[string]any{"taskIdPath": "productId", "taskRoles": "clerk"}})
	if out := run(t, start, x, decode(t, itemsEvent)); !out.Suspend {
		t.Fatalf("start = %+v", out.Env.Result)
	}
	a := build(t, "ProceedTask", actions.Input{Domain: "workflow", InputElement: "parameters",
		Params: map[string]any{"enrichPath": "parameters.items.decision", "inputPattern": "data"}})
	env := &envelope.Envelope{RequestMeta: envelope.RequestMeta{RequestID: "p-1"},
		Payload: []byte(`{"parameters": {"taskId": "order-1", "data": {"ok": true}}}`)}
	out := run(t, a, x, env)
	var cont []envelope.Record
	for _, r := range out.Records {
		if r.Topic == lifeTopics.Continuations {
			cont = append(cont, r)
		}
	}
	if len(cont) != 1 {
		t.Fatalf("%d continuations, want 1: %+v", len(cont), out.Env.Result)
	}
	var e envelope.Envelope
	if err := envelope.Unmarshal(cont[0].Value, &e); err != nil {
		t.Fatal(err)
	}
	if e.Result.Status != envelope.StatusFail || e.Result.Code != actions.CodeEnrichFailed {
		t.Fatalf("continuation result %+v, want FAIL %s", e.Result, actions.CodeEnrichFailed)
	}
}
