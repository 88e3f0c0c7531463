package actions_test

import (
	"context"
	"testing"

	"github.com/sagarunner/sagarunner/actions"
	"github.com/sagarunner/sagarunner/statemanager"
)

// TestTrustedProceedCannotSkipApprovals: a trusted caller's ProceedTask
// takes the fast path that closes without reading the task; on a task
// that needs approvals the store refuses that close, and the completion
// goes through the lifecycle instead, which needs a named executor for the
// four-eyes rule: the caller gets BAD_INPUT and the task stays open, with
// no notification or continuation.
func TestTrustedProceedCannotSkipApprovals(t *testing.T) {
	x, _, stores := newExec(t)
	s, err := stores.Store("workflow")
	if err != nil {
		t.Fatal(err)
	}
	task := &statemanager.Task{ID: "four-eyes", Domain: "workflow", RequestID: "r-1", StartedAt: t0.UnixMilli(),
		RequiredApprovals: 2, Data: []byte(`{}`), Envelope: []byte(`{"requestMeta":{"requestId":"r-1"},"payload":{}}`)}
	if _, _, err := s.Start(context.Background(), task); err != nil {
		t.Fatal(err)
	}
	a := build(t, "ProceedTask", actions.Input{Domain: "workflow", InputElement: "parameters",
		Params: map[string]any{"enrichPath": "decision", "inputPattern": "data"}})
	env := decode(t, `{"requestMeta":{"requestId":"p-1"},"payload":{"parameters":{"taskId":"four-eyes","data":{"ok":true}}}}`)
	out := run(t, a, x, env)
	if r := out.Env.Result; r.Status != "FAIL" || r.Code != actions.CodeBadInput {
		t.Errorf("result %+v, want FAIL %s", r, actions.CodeBadInput)
	}
	for _, r := range out.Records {
		if r.Topic == topics.Notifications || r.Topic == topics.Continuations {
			t.Errorf("a completion awaiting approvals produced %s: %s", r.Topic, r.Value)
		}
	}
	if got := getTask(t, stores, "workflow", "four-eyes"); got.Status != statemanager.StatusWaiting {
		t.Errorf("task is %s, want %s", got.Status, statemanager.StatusWaiting)
	}
}
