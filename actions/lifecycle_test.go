package actions_test

import (
	"context"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/sagarunner/sagarunner/actions"
	"github.com/sagarunner/sagarunner/actions/actionstest"
	"github.com/sagarunner/sagarunner/clock"
	"github.com/sagarunner/sagarunner/saga/envelope"
	"github.com/sagarunner/sagarunner/statemanager"
)

var lifeTopics = actions.Topics{Continuations: "requests", Notifications: "notes", TaskEvents: "events"}

// op runs a lifecycle action as a direct record of user with roles.
func op(t *testing.T, x *actions.Exec, name, reqID, user string, roles []string, body string) actions.Outcome {
	t.Helper()
	a := build(t, name, actions.Input{Domain: "workflow", InputElement: "parameters", OutputElement: "task"})
	env := &envelope.Envelope{RequestMeta: envelope.RequestMeta{RequestID: reqID, User: user, Roles: roles},
		Payload: []byte(`{"parameters": ` + body + `}`)}
	return run(t, a, x, env)
}

func records(out actions.Outcome, topic string) []envelope.Record {
	var rs []envelope.Record
	for _, r := range out.Records {
		if r.Topic == topic {
			rs = append(rs, r)
		}
	}
	return rs
}

// The four-eyes path through the actions on an in-memory lifecycle store:
// claim, complete into approval, a refused self-approval, two approvals that
// close it, with the outcome on the continuation and in the notification,
// and every event on the task-event topic.
func TestLifecycleActionsFourEyes(t *testing.T) {
	stores := actionstest.NewResolver()
	x := &actions.Exec{Stores: stores, Clock: clock.NewFake(t0), Topics: lifeTopics, Partition: 3, AdminRoles: []string{"admin"}}
	start := build(t, "StartTask", actions.Input{Domain: "workflow", InputElement: "parameters", Params: map[string]any{
		"taskIdPath": "productId", "taskRoles": "clerk", "possibleOutcomes": "approve,reject", "requiredApprovals": 2,
		"approverRoles": "boss", "priority": 3}})
	out := run(t, start, x, decode(t, startEvent))
	if !out.Suspend {
		t.Fatalf("start = %+v", out.Env.Result)
	}
	clerk, boss := []string{"clerk"}, []string{"boss"}

	out = op(t, x, "ClaimTask", "c1", "bob", clerk, `{"taskId": "product-1"}`)
	wantResult(t, out, envelope.StatusSuccess, "")
	if got := out.Env.Get("task.claimedBy").String(); got != "bob" {
		t.Fatalf("claimedBy = %q", got)
	}
	wantResult(t, op(t, x, "ClaimTask", "c2", "eve", clerk, `{"taskId": "product-1"}`), envelope.StatusFail, actions.CodeTaskClaimed)
	wantResult(t, op(t, x, "CompleteTask", "p0", "bob", clerk, `{"taskId": "product-1", "outcome": "maybe"}`), envelope.StatusFail, actions.CodeBadInput)

	// ProceedTask is complete: the outcome next to the data.
	proceed := build(t, "ProceedTask", actions.Input{Domain: "workflow", InputElement: "parameters", Params: map[string]any{"inputPattern": "data", "enrichPath": "decision"}})
	penv := &envelope.Envelope{RequestMeta: envelope.RequestMeta{RequestID: "p1", User: "bob", Roles: clerk},
		Payload: []byte(`{"parameters": {"taskId": "product-1", "outcome": "approve", "note": "good", "data": {"ok": true}}}`)}
	out = run(t, proceed, x, penv)
	wantResult(t, out, envelope.StatusSuccess, "")
	if len(out.Acks) != 0 || len(records(out, "requests")) != 0 || len(records(out, "events")) != 1 {
		t.Fatalf("completion into approval produced %+v", out)
	}
	s, _ := stores.Store("workflow")
	if task, _ := s.Get(context.Background(), "product-1"); task.Status != statemanager.StatusInApproval || task.CompletedBy != "bob" || task.Priority != 3 {
		t.Fatalf("task = %+v", task)
	}

	wantResult(t, op(t, x, "ApproveTask", "a0", "bob", boss, `{"taskId": "product-1"}`), envelope.StatusFail, actions.CodeSelfApproval)
	out = op(t, x, "ApproveTask", "a1", "carol", boss, `{"taskId": "product-1"}`)
	wantResult(t, out, envelope.StatusSuccess, "")
	wantResult(t, op(t, x, "ApproveTask", "a2", "carol", boss, `{"taskId": "product-1"}`), envelope.StatusFail, actions.CodeAlreadyApproved)
	// A redelivered approval answers as the first time, changing nothing.
	again := op(t, x, "ApproveTask", "a1", "carol", boss, `{"taskId": "product-1"}`)
	wantResult(t, again, envelope.StatusSuccess, "")
	if ev := records(again, "events"); len(ev) != 1 || string(ev[0].Value) != string(records(out, "events")[0].Value) {
		t.Fatalf("replayed event %v, first %v", ev, records(out, "events"))
	}

	out = op(t, x, "ApproveTask", "a3", "dan", boss, `{"taskId": "product-1", "note": "yes"}`)
	wantResult(t, out, envelope.StatusSuccess, "")
	cont, notes, events := records(out, "requests"), records(out, "notes"), records(out, "events")
	if len(cont) != 1 || len(notes) != 1 || len(events) != 1 || len(out.Acks) != 1 {
		t.Fatalf("closing approval produced %+v", out.Records)
	}
	if r := gjson.GetBytes(cont[0].Value, "result"); r.Get("status").String() != envelope.StatusSuccess || r.Get("outcome").String() != "approve" {
		t.Fatalf("continuation result = %s", r.Raw)
	}
	n := gjson.ParseBytes(notes[0].Value)
	if n.Get("outcome").String() != "approve" || n.Get("note").String() != "good" || n.Get("claimedBy").String() != "bob" ||
		n.Get("approvals.#").Int() != 2 || n.Get("approvals.1.user").String() != "dan" {
		t.Fatalf("notification = %s", notes[0].Value)
	}
	if e := gjson.ParseBytes(events[0].Value); e.Get("type").String() != statemanager.EventApproved || e.Get("actor").String() != "dan" ||
		e.Get("status").String() != statemanager.StatusCompleted || string(events[0].Key) != "product-1" {
		t.Fatalf("closing event = %s", events[0].Value)
	}
	wantResult(t, op(t, x, "CommentTask", "m1", "bob", clerk, `{"taskId": "product-1", "text": "late"}`), envelope.StatusFail, actions.CodeTaskClosed)
}

// A reject sends the task back to its executor; cancel and deadline work on
// it; an unknown task and a store without the lifecycle answer FAIL.
func TestLifecycleActionsRejectCancelDeadline(t *testing.T) {
	stores := actionstest.NewResolver()
	x := &actions.Exec{Stores: stores, Clock: clock.NewFake(t0), Topics: lifeTopics, AdminRoles: []string{"admin"}}
	start := build(t, "StartTask", actions.Input{Domain: "workflow", InputElement: "parameters", Params: map[string]any{
		"taskIdPath": "productId", "taskRoles": "clerk", "requiredApprovals": 1, "timeout": 60000}})
	run(t, start, x, decode(t, startEvent))
	clerk := []string{"clerk"}
	wantResult(t, op(t, x, "CompleteTask", "p1", "bob", clerk, `{"taskId": "product-1", "data": {"v": 1}}`), envelope.StatusSuccess, "")
	out := op(t, x, "RejectTask", "r1", "eve", clerk, `{"taskId": "product-1", "note": "redo"}`)
	wantResult(t, out, envelope.StatusSuccess, "")
	if got := out.Env.Get("task"); got.Get("status").String() != statemanager.StatusWaiting || got.Get("claimedBy").String() != "bob" {
		t.Fatalf("after reject: %s", got.Raw)
	}
	wantResult(t, op(t, x, "SetDeadline", "d0", "eve", clerk, `{"taskId": "product-1", "timeout": 5}`), envelope.StatusFail, actions.CodeForbidden)
	wantResult(t, op(t, x, "SetDeadline", "d1", "bob", clerk, `{"taskId": "product-1", "timeout": "soon"}`), envelope.StatusFail, actions.CodeBadInput)
	out = op(t, x, "SetDeadline", "d2", "bob", clerk, `{"taskId": "product-1", "timeoutOn": 1}`)
	wantResult(t, out, envelope.StatusSuccess, "")
	s, _ := stores.Store("workflow")
	if due, _ := s.Due(context.Background(), 0, t0.UnixMilli(), 10); len(due) != 1 {
		t.Fatalf("a deadline in the past is not due: %v", due)
	}
	wantResult(t, op(t, x, "CancelTask", "x0", "bob", clerk, `{"taskId": "product-1"}`), envelope.StatusFail, actions.CodeForbidden)
	out = op(t, x, "CancelTask", "x1", "", nil, `{"taskId": "product-1", "reason": "withdrawn"}`)
	wantResult(t, out, envelope.StatusSuccess, "")
	if c := records(out, "requests"); len(c) != 1 || gjson.GetBytes(c[0].Value, "result.status").String() != envelope.StatusCancelled {
		t.Fatalf("cancel continuation = %v", c)
	}
	events, _ := s.(statemanager.Lifecycle).History(context.Background(), "product-1")
	var types []string
	for _, e := range events {
		types = append(types, e.Type)
	}
	want := []string{"started", "completed", "rejected", "deadline", "cancelled"}
	if len(types) != len(want) {
		t.Fatalf("history %v, want %v", types, want)
	}
	for i := range want {
		if types[i] != want[i] {
			t.Fatalf("history %v, want %v", types, want)
		}
	}
	wantResult(t, op(t, x, "ClaimTask", "c9", "bob", clerk, `{"taskId": "nope"}`), envelope.StatusFail, actions.CodeTaskNotFound)

	plain := *x
	plain.Stores = plainStores{stores}
	wantResult(t, op(t, &plain, "ClaimTask", "c1", "bob", clerk, `{"taskId": "product-1"}`), envelope.StatusFail, actions.CodeUnsupported)
}

// plainStores hides the lifecycle of the stores it resolves.
type plainStores struct{ r statemanager.Resolver }

func (p plainStores) Store(domain string) (statemanager.Store, error) {
	s, err := p.r.Store(domain)
	return struct{ statemanager.Store }{s}, err
}

// CompleteTask hands its data to the waiting saga at its enrichPath
// (default decision, as the generic /ProceedTask saga), directly or
// through the approvals that close it.
func TestCompleteTaskEnrichesTheSaga(t *testing.T) {
	for _, approvals := range []int{0, 1} {
		stores := actionstest.NewResolver()
		x := &actions.Exec{Stores: stores, Clock: clock.NewFake(t0), Topics: lifeTopics, Partition: 3, AdminRoles: []string{"admin"}}
		start := build(t, "StartTask", actions.Input{Domain: "workflow", InputElement: "parameters", Params: map[string]any{
			"taskIdPath": "productId", "taskRoles": "clerk", "requiredApprovals": approvals, "approverRoles": "boss"}})
		if out := run(t, start, x, decode(t, startEvent)); !out.Suspend {
			t.Fatalf("start = %+v", out.Env.Result)
		}
		out := op(t, x, "CompleteTask", "c1", "bob", []string{"clerk"}, `{"taskId": "product-1", "data": {"ok": true}}`)
		wantResult(t, out, envelope.StatusSuccess, "")
		if approvals > 0 {
			out = op(t, x, "ApproveTask", "a1", "carol", []string{"boss"}, `{"taskId": "product-1"}`)
			wantResult(t, out, envelope.StatusSuccess, "")
		}
		cont := records(out, "requests")
		if len(cont) != 1 || gjson.GetBytes(cont[0].Value, "payload.decision.ok").Bool() != true {
			t.Fatalf("approvals %d: continuation %v", approvals, cont)
		}
	}
}
