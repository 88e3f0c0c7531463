package saga_test

import (
	"strings"
	"testing"

	"github.com/sagarunner/sagarunner/saga"
	"github.com/sagarunner/sagarunner/statemanager"
)

// reviewV1 and reviewV2 are two versions of one saga on one trigger topic:
// a task, then a Publish that says which version ran it.
const (
	reviewV1 = `
saga: review
version: 1
trigger: {topic: reviews}
steps:
  - id: approve
    action: StartTask
    domain: workflow
    inputElement: parameters
    parameters: {taskIdPath: id, taskRoles: manager}
    next: {SUCCESS: publish}
  - id: publish
    action: Publish
    parameters: {topic: reviewed, pattern: "{id: parameters.id, by: 'v1'}"}
`
	reviewV2 = `
saga: review
version: 2
trigger: {topic: reviews}
steps:
  - id: approve
    action: StartTask
    domain: workflow
    inputElement: parameters
    parameters: {taskIdPath: id, taskRoles: manager}
    next: {SUCCESS: publish}
  - id: publish
    action: Publish
    parameters: {topic: reviewed, pattern: "{id: parameters.id, by: 'v2'}"}
`
)

// TestVersionsSideBySide deploys version 2 beside version 1 while a
// version 1 instance waits on a task: a new trigger starts on version 2,
// the waiting instance finishes on version 1's steps, and once version 1
// is gone its continuation is dead-lettered instead of run on version 2.
func TestVersionsSideBySide(t *testing.T) {
	old := newHarness(t, reviewV1)
	if res := old.drive("reviews", "r-1", `{"id": "t-1"}`); res.started != 1 {
		t.Fatalf("v1 start: %d tasks started; %s", res.started, res)
	}
	if got := old.mustTask("workflow", "t-1"); got.Saga != "review" {
		t.Fatalf("task t-1 = %+v", got)
	}

	both := newHarnessOn(t, old.client, reviewV1+"---"+reviewV2)
	if res := both.drive("reviews", "r-2", `{"id": "t-2"}`); res.started != 1 {
		t.Fatalf("v2 start: %d tasks started; %s", res.started, res)
	}
	for _, tc := range []struct{ task, want string }{{"t-1", "v1"}, {"t-2", "v2"}} {
		res := both.drive(requestTopic, "p-"+tc.task, closeRequest("ProceedTask", "p-"+tc.task, "alice", tc.task, "manager"))
		pub := res.one(t, "reviewed")
		if by := get(pub, "by").String(); by != tc.want {
			t.Errorf("task %s resumed on %s, want %s: %s", tc.task, by, tc.want, pub.Value)
		}
	}

	// A third instance on version 2, then version 1 alone again (a
	// rollback): the version 2 instance may not finish on version 1.
	if res := both.drive("reviews", "r-3", `{"id": "t-3"}`); res.started != 1 {
		t.Fatalf("v2 start: %s", res)
	}
	back := newHarnessOn(t, old.client, reviewV1)
	res := back.drive(requestTopic, "p-t-3", closeRequest("ProceedTask", "p-t-3", "alice", "t-3", "manager"))
	if pub := res.on("reviewed"); len(pub) != 0 {
		t.Errorf("a version 2 instance ran on version 1: %s", res)
	}
	dl := res.one(t, deadTopic)
	if get(dl, "code").String() != saga.DeadUnknownVersion || get(dl, "saga").String() != "review" || string(dl.Key) != "r-3" {
		t.Errorf("dead letter = %s %s, want %s for r-3", dl.Key, dl.Value, saga.DeadUnknownVersion)
	}
	if want := `saga "review" version 2 is not loaded (loaded: 1)`; !strings.Contains(get(dl, "error").String(), want) {
		t.Errorf("dead letter error %q, want it to say %q", get(dl, "error").String(), want)
	}
	// The decision is kept: the task closed, only its continuation is
	// parked on the dead-letter topic for an operator to replay.
	if got := back.mustTask("workflow", "t-3"); got.Status != statemanager.StatusCompleted {
		t.Errorf("task t-3 is %s", got.Status)
	}
}
