package actions_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/sagarunner/sagarunner/actions"
	"github.com/sagarunner/sagarunner/actions/actionstest"
	"github.com/sagarunner/sagarunner/clock"
	"github.com/sagarunner/sagarunner/saga/envelope"
	"github.com/sagarunner/sagarunner/statemanager"
)

// direct runs a direct action record (value) as the engine does: the
// action built from its eventMeta, Exec.Source naming the record.
func direct(t *testing.T, x *actions.Exec, offset int64, value string, headers ...envelope.Header) actions.Outcome {
	t.Helper()
	env := decode(t, value)
	a := build(t, env.EventMeta.Action, actions.Input{Domain: env.EventMeta.Domain, InputElement: env.EventMeta.InputElement,
		OutputElement: env.EventMeta.OutputElement})
	xx := *x
	xx.Source = actions.SourceOf("answers-in", 1, offset, []byte(env.RequestMeta.RequestID), []byte(value), headers)
	return run(t, a, &xx, env)
}

func proceedRecord(reqID, id string) string {
	return fmt.Sprintf(`{"requestMeta": {"requestId": %q, "replyTo": "answers"},
		"eventMeta": {"action": "ProceedTask", "domain": "workflow", "inputElement": "parameters", "outputElement": "out"},
		"payload": {"parameters": {"taskId": %q, "decision": "approved"}}}`, reqID, id)
}

func earlyExec() (*actions.Exec, *actionstest.Resolver) {
	stores := actionstest.NewResolver()
	return &actions.Exec{Stores: stores, Clock: clock.NewFake(t0), Topics: lifeTopics, Partition: 3, AdminRoles: []string{"admin"}}, stores
}

func parkedKeys(t *testing.T, stores *actionstest.Resolver, id string) []string {
	t.Helper()
	s, _ := stores.Store("workflow")
	ps, err := s.(statemanager.EarlyAnswers).Early(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, p := range ps {
		keys = append(keys, p.Key)
	}
	return keys
}

// Operations on Kafka before their task: parked once each, answered
// nothing now; the start applies them in arrival order under the rules
// they would have met (a non-candidate's claim refused), closes the task
// with the early ProceedTask (continuation and notification once), answers
// each replyTo, and unparks them only through the ack.
func TestEarlyAnswersAppliedAtStart(t *testing.T) {
	x, stores := earlyExec()
	claim := `{"requestMeta": {"requestId": "c-1", "user": "eve", "roles": ["sales"], "replyTo": "answers"},
		"eventMeta": {"action": "ClaimTask", "domain": "workflow", "inputElement": "parameters"},
		"payload": {"parameters": {"taskId": "product-1"}}}`
	for i, v := range []string{claim, proceedRecord("p-1", "product-1"), proceedRecord("p-1", "product-1")} {
		out := direct(t, x, int64(i), v)
		if !out.Parked || len(out.Records) != 0 || len(out.Acks) != 0 {
			t.Fatalf("record %d: parked %v, %d records, result %+v; want parked silently", i, out.Parked, len(out.Records), out.Env.Result)
		}
	}
	if got := parkedKeys(t, stores, "product-1"); fmt.Sprint(got) != "[c-1 p-1]" {
		t.Fatalf("parked %v, want [c-1 p-1] (the redelivery parked once)", got)
	}

	start := build(t, "StartTask", actions.Input{Domain: "workflow", InputElement: "parameters",
		Params: map[string]any{"taskIdPath": "productId", "taskRoles": "clerk"}})
	out := run(t, start, x, decode(t, startEvent))
	if !out.Suspend {
		t.Fatalf("start = %+v", out.Env.Result)
	}
	replies := records(out, "answers")
	if len(replies) != 2 {
		t.Fatalf("%d replies, want 2: %v", len(replies), out.Records)
	}
	if r := gjson.GetManyBytes(replies[0].Value, "requestMeta.requestId", "result.code"); r[0].String() != "c-1" || r[1].String() != actions.CodeForbidden {
		t.Errorf("first reply %s, want c-1 refused FORBIDDEN", replies[0].Value)
	}
	if r := gjson.GetManyBytes(replies[1].Value, "requestMeta.requestId", "result.status", "out.decision"); r[0].String() != "p-1" || r[1].String() != envelope.StatusSuccess {
		t.Errorf("second reply %s, want p-1 SUCCESS", replies[1].Value)
	}
	conts, notes := records(out, "requests"), records(out, "notes")
	if len(conts) != 1 || len(notes) != 1 {
		t.Fatalf("%d continuations, %d notifications; want one each", len(conts), len(notes))
	}
	if r := gjson.GetManyBytes(conts[0].Value, "result.status", "sagaMeta.stepId", "payload.parameters.productId"); r[0].String() != envelope.StatusSuccess || r[1].String() != "approve" {
		t.Errorf("continuation %s", conts[0].Value)
	}
	s, _ := stores.Store("workflow")
	if task, _ := s.Get(context.Background(), "product-1"); task.Status != statemanager.StatusCompleted || task.CloseKey != "p-1" {
		t.Errorf("task %s closed by %q, want COMPLETED by p-1", task.Status, task.CloseKey)
	}

	// Nothing is unparked before the ack: a crash now applies them again
	// from the replayed start, with the same effects.
	again := run(t, start, x, decode(t, startEvent))
	if c := records(again, "requests"); len(c) != 1 || string(c[0].Value) != string(conts[0].Value) {
		t.Fatalf("replayed start re-applied to %d continuations, want the same one", len(c))
	}
	rest, err := actions.AckEarly(context.Background(), stores, again.Acks)
	if err != nil {
		t.Fatal(err)
	}
	if len(rest) != 1 || rest[0].ID != "product-1" || rest[0].Early != nil {
		t.Errorf("acks left for the close: %+v, want the close's", rest)
	}
	if got := parkedKeys(t, stores, "product-1"); len(got) != 0 {
		t.Errorf("still parked after the ack: %v", got)
	}
	if after := run(t, start, x, decode(t, startEvent)); len(after.Records) != 0 {
		t.Errorf("a start after the ack applied %d records again", len(after.Records))
	}
}

// What is not parked answers as before: a saga step, a record that opts
// out (the gateway's), an operation without a task id of its own, and a
// store without early answers; an operation past the per-task limit is
// refused EARLY_REFUSED.
func TestEarlyAnswersNotParked(t *testing.T) {
	x, stores := earlyExec()
	rec := proceedRecord("p-1", "product-9")
	a := build(t, "ProceedTask", actions.Input{Domain: "workflow", InputElement: "parameters", OutputElement: "out"})
	t.Run("no source", func(t *testing.T) {
		wantResult(t, run(t, a, x, decode(t, rec)), envelope.StatusFail, actions.CodeTaskNotFound)
	})
	t.Run("opted out", func(t *testing.T) {
		out := direct(t, x, 1, rec, envelope.Header{Key: actions.NoEarlyHeader, Value: []byte("1")})
		wantResult(t, out, envelope.StatusFail, actions.CodeTaskNotFound)
	})
	t.Run("no task id", func(t *testing.T) {
		out := direct(t, x, 2, `{"requestMeta": {"requestId": "p-2"}, "eventMeta": {"action": "CancelTask", "domain": "workflow", "inputElement": "parameters"},
			"payload": {"parameters": {}}}`)
		wantResult(t, out, envelope.StatusFail, actions.CodeTaskNotFound)
	})
	t.Run("saga step", func(t *testing.T) {
		env := decode(t, rec)
		env.SagaMeta = envelope.SagaMeta{Saga: "s", StepID: "proceed"}
		xx := *x
		xx.Source = actions.SourceOf("requests", 0, 1, nil, []byte(rec), nil)
		wantResult(t, run(t, a, &xx, env), envelope.StatusFail, actions.CodeTaskNotFound)
	})
	if got := parkedKeys(t, stores, "product-9"); len(got) != 0 {
		t.Fatalf("parked %v", got)
	}
	t.Run("per-task limit", func(t *testing.T) {
		for i := range statemanager.EarlyPerTask {
			if out := direct(t, x, int64(10+i), proceedRecord(fmt.Sprint("q-", i), "product-8")); !out.Parked {
				t.Fatalf("operation %d not parked: %+v", i, out.Env.Result)
			}
		}
		out := direct(t, x, 99, proceedRecord("q-more", "product-8"))
		wantResult(t, out, envelope.StatusFail, actions.CodeEarlyRefused)
	})
}

// A task that starts between an operation's read and its park is found by
// the park, and the operation runs on it at once.
func TestEarlyAnswerRacingStart(t *testing.T) {
	x, stores := earlyExec()
	s, _ := stores.Store("workflow")
	racing := &startingStore{MemStore: s.(*actionstest.MemStore)}
	xx := *x
	xx.Stores = storeOnly{racing}
	out := direct(t, &xx, 1, proceedRecord("p-1", "product-1"))
	wantResult(t, out, envelope.StatusSuccess, "")
	if out.Parked || len(records(out, "notes")) != 1 {
		t.Fatalf("parked %v, %d notifications; want the task closed now", out.Parked, len(records(out, "notes")))
	}
}

// startingStore starts the task the first time it is read and not found,
// as a StartTask on another partition would in between.
type startingStore struct {
	*actionstest.MemStore
	started bool
}

func (s *startingStore) Get(ctx context.Context, id string) (*statemanager.Task, error) {
	t, err := s.MemStore.Get(ctx, id)
	if err == nil || s.started {
		return t, err
	}
	s.started = true
	if _, _, err := s.MemStore.Start(ctx, &statemanager.Task{ID: id, RequestID: "r", StartedAt: 1}); err != nil {
		return nil, err
	}
	return nil, err
}

type storeOnly struct{ s statemanager.Store }

func (r storeOnly) Store(string) (statemanager.Store, error) { return r.s, nil }
