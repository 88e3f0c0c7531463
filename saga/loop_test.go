package saga_test

import (
	"testing"
	"time"

	"github.com/sagarunner/sagarunner/statemanager"
)

// loopSaga escalates to the same task step again while the post is high
// priority, as the product spec's example does: the step is entered twice by
// one instance, which must start a second task, while a replay of the first
// visit must not.
const loopSaga = `
saga: loop
version: 1
trigger: {topic: posts}
steps:
  - id: escalate
    action: StartTask
    domain: workflow
    parameters: {taskName: Escalated, taskRoles: director, timeout: 1000}
    next: {SUCCESS: done, TIMEOUT: check}
  - id: check
    condition: {type: elementValue, element: parameters.priority}
    next: {high: escalate, "*": fail}
  - id: done
    action: Finish
  - id: fail
    action: Fail
`

func TestLoopBackIntoTaskStepStartsANewTask(t *testing.T) {
	h := newHarness(t, loopSaga)
	res := h.drive("posts", "", `{"requestMeta":{"requestId":"r1"},"payload":{"parameters":{"priority":"high"}}}`)
	if res.started != 1 {
		t.Fatalf("started %d tasks, want 1", res.started)
	}
	const id = "r1:escalate:0"
	first := h.mustTask("workflow", id)

	// Replaying the trigger record is a no-op: the task keeps its visit.
	if res := h.drive("posts", "", `{"requestMeta":{"requestId":"r1"},"payload":{"parameters":{"priority":"high"}}}`); res.started != 0 {
		t.Fatalf("replayed trigger started %d tasks", res.started)
	}

	for round := 1; round <= 3; round++ {
		h.clock.Advance(time.Second)
		res, fired := h.fire("workflow")
		if fired != 1 || len(res.on(notifyTopic)) != 1 {
			t.Fatalf("round %d: fired %d, records %s", round, fired, res)
		}
		if res.started != 1 {
			t.Fatalf("round %d: the loop back into escalate started %d tasks, want 1", round, res.started)
		}
		again := h.mustTask("workflow", id)
		if again.Status != statemanager.StatusWaiting || again.StartKey == first.StartKey || again.Deadline <= first.Deadline {
			t.Fatalf("round %d: task after re-entry = %+v (first visit %q)", round, again, first.StartKey)
		}
		first = again
	}
}
