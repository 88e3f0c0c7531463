package actions

import (
	"context"
	"errors"

	"github.com/sagarunner/sagarunner/clock"
	"github.com/sagarunner/sagarunner/saga/envelope"
	"github.com/sagarunner/sagarunner/statemanager"
)

// Action is a configured action, built once per saga step (or per direct
// action record) by its Spec's New. Execute is safe for concurrent use.
//
// Execute receives a private copy of the envelope and returns the outcome.
// Business failures (a missing element, a pattern error, an unknown task) are
// never errors: they set env.Result to FAIL with a code. A non-nil error means
// infrastructure trouble (Redis down); the runner retries the whole record
// later, so Execute must be safe to repeat.
type Action interface {
	Execute(ctx context.Context, x *Exec, env *envelope.Envelope) (Outcome, error)
}

// Exec is what an action may use while it runs.
type Exec struct {
	Stores statemanager.Resolver
	Clock  clock.Clock
	Topics Topics
	// Partition is the runner partition the event arrived on.
	Partition int32
	// AdminRoles are the roles that may act on any task of their tenant
	// (auth.adminRoles).
	AdminRoles []string
	// Source is the consumed record of a direct action (nil for a saga
	// step, a timer, an applied early answer): a task operation on a task
	// not started yet may be parked with it (early.go).
	Source *Source
}

// Topics names the topics actions produce to.
type Topics struct {
	// Continuations is where resumed saga instances are sent (the runner's
	// request topic), keyed by requestId.
	Continuations string
	// Notifications receives task-closed notifications, keyed by taskId.
	Notifications string
	// TaskEvents receives every event of a task's history (SPEC §12),
	// keyed by taskId; empty publishes none.
	TaskEvents string
}

// DefaultTaskEventTopic is the task-event topic of SPEC §12
// (topics.taskEvents).
const DefaultTaskEventTopic = "sagarunner-task-events"

// Outcomer is implemented by a built action that completes with one of a
// declared set of outcomes (a StartTask with possibleOutcomes): the saga
// loader accepts those names as routes of its step.
type Outcomer interface {
	Outcomes() []string
}

// Outcome is what an action did. Env is the output envelope; its Result
// routes the saga.
type Outcome struct {
	Env *envelope.Envelope
	// Suspend says the instance now waits (StartTask); the engine stops here.
	Suspend bool
	// Finish ends the instance now, whatever the routes say.
	Finish bool
	// Parked says a direct operation was kept for a task not started yet
	// (early.go): nobody is answered now; it answers when applied or
	// expired.
	Parked bool
	// Records are produced after the step: notifications, continuations of
	// other instances, published events.
	Records []envelope.Record
	// Acks are closed tasks, per domain, to Ack once Records are durable.
	Acks []Ack
}

// Ack names a closed task whose effects are in Outcome.Records, or, with
// Early set, early answers that the records applied or dead-lettered: they
// are removed from the store once the records are durable (AckEarly), and
// ID is then only informative.
type Ack struct {
	Domain string
	ID     string
	Early  []statemanager.EarlyRef
}

// CodeEnrichFailed: a closed task's data could not be written into its
// saga's payload at the enrich path; the saga resumes with it as FAIL.
const CodeEnrichFailed = "ENRICH_FAILED"

// Result codes actions set on FAIL.
const (
	CodeBadInput     = "BAD_INPUT"      // missing element, bad type
	CodePattern      = "PATTERN_ERROR"  // a JMESPath pattern failed at run time
	CodeTaskNotFound = "TASK_NOT_FOUND" // no task with that id
	CodeTaskClosed   = "TASK_CLOSED"    // the task was closed already
	CodeForbidden    = "FORBIDDEN"      // the caller may not close that task
	CodeFailed       = "FAILED"         // a Fail step
	// CodeTaskIDInUse: a StartTask whose task id waits for another
	// instance. Taking the id over would orphan that instance, and silently
	// attaching this one to it would let anyone who knows an id squat on
	// it; it is a business outcome, routable like any FAIL.
	CodeTaskIDInUse = "TASK_ID_IN_USE"

	// Lifecycle refusals (SPEC §12).
	CodeTaskClaimed     = "TASK_CLAIMED"          // another operator holds the task
	CodeNotInApproval   = "NOT_IN_APPROVAL"       // approve or reject of a task not awaiting approval
	CodeInApproval      = "TASK_IN_APPROVAL"      // an executor's operation on a task awaiting approval
	CodeAlreadyApproved = "ALREADY_APPROVED"      // the approver approved it already
	CodeSelfApproval    = "SELF_APPROVAL"         // the executor may not approve its own completion
	CodeTaskChanged     = "TASK_CHANGED"          // lost a race with another operation (409)
	CodeUnsupported     = "LIFECYCLE_UNSUPPORTED" // the domain's store has no lifecycle
)

// ErrRetryable marks infrastructure errors worth retrying; actions wrap store
// errors with it.
var ErrRetryable = errors.New("actions: retryable")
