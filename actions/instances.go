package actions

import (
	"context"

	"github.com/sagarunner/sagarunner/statemanager"
)

// CodeInstanceCancelled is the result code of the continuation that resumes
// a cancelled instance at the task it waited on: the engine then runs the
// saga's onCancel step, if it declares one, and ends the instance
// CANCELLED instead of routing on the step's statuses.
const CodeInstanceCancelled = "INSTANCE_CANCELLED"

// suspendedHookKey carries WithSuspendedHook's function in a context.
type suspendedHookKey struct{}

// WithSuspendedHook returns a context under which StartTask calls fn with
// the task the instance now waits on, whether it stored it now or found it
// stored by an earlier try of the same step (a replay). The engine names
// the open task in the instance's timeline with it: on a replay after a
// crash the task exists already, and the timeline must still learn of it.
func WithSuspendedHook(ctx context.Context, fn func(*statemanager.Task)) context.Context {
	return context.WithValue(ctx, suspendedHookKey{}, fn)
}

func suspended(ctx context.Context, t *statemanager.Task) {
	if fn, _ := ctx.Value(suspendedHookKey{}).(func(*statemanager.Task)); fn != nil {
		fn(t)
	}
}
