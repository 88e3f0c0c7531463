package statemanager

import (
	"context"
	"encoding/json"
	"errors"
)

// StatusInApproval is an open task its executor completed, waiting for
// approvals (SPEC §12). Its deadline keeps running.
const StatusInApproval = "IN_APPROVAL"

// Open reports whether a status is one of the open ones (WAITING,
// IN_APPROVAL): the task can still change and its deadline runs.
func Open(status string) bool { return status == StatusWaiting || status == StatusInApproval }

// Approval is one approver's approval of a completed task.
type Approval struct {
	User string `json:"user"`
	At   int64  `json:"at"`
}

// Event types of a task's history, one per transition (SPEC §12).
const (
	EventStarted   = "started"
	EventClaimed   = "claimed"
	EventUnclaimed = "unclaimed"
	EventAssigned  = "assigned"
	EventCompleted = "completed"
	EventApproved  = "approved"
	EventRejected  = "rejected"
	EventCancelled = "cancelled"
	EventTimedOut  = "timedout"
	EventDeadline  = "deadline"
	EventCommented = "commented"
)

// Event is one entry of a task's history: what happened, when, who did it,
// and the value it changed from and to where that applies (an assignee, a
// deadline). Seq numbers a task's events from 1, in the order they
// happened.
type Event struct {
	Seq       int64  `json:"seq"`
	Type      string `json:"type"`
	At        int64  `json:"at"`
	Actor     string `json:"actor,omitempty"`
	From      string `json:"from,omitempty"`
	To        string `json:"to,omitempty"`
	Outcome   string `json:"outcome,omitempty"`
	Note      string `json:"note,omitempty"`
	RequestID string `json:"requestId,omitempty"`
}

// Change is one transition of an open task that does not close it (claim,
// unclaim, assign, complete into IN_APPROVAL, an approval short of the
// last, reject, a deadline move, a comment), or one that closes it in the
// same atomic step (Close set: complete without approvals, the last
// approval, cancel). The caller computes it from the task as it read it;
// Apply writes it only if the task has not changed since (Version).
type Change struct {
	ID string
	// Version is the task's Version as read. Apply refuses with ErrStale
	// when the task moved on since, so of two concurrent changes computed
	// from one read exactly one wins.
	Version int64
	// Key makes the change idempotent (the request id): a change whose Key
	// was already applied to this task changes nothing and Apply returns
	// the task with replay=true.
	Key string
	// Event is appended to the history (Seq is assigned by the store).
	Event Event

	// The fields to write; nil leaves a field as it is.
	Status      *string // WAITING or IN_APPROVAL; closing is Close's
	ClaimedBy   *string
	User        *string
	Roles       *[]string
	Outcome     *string
	Note        *string
	CompletedBy *string
	Approvals   *[]Approval
	// Deadline moves the task's deadline (0 removes it); a deadline in the
	// past makes the task due at once.
	Deadline *int64
	// CloseData and EnrichPath keep the executor's completion on a task
	// moving to IN_APPROVAL (recorded as the task's CloseData and
	// EnrichPath), so the close its last approval makes hands the saga the
	// data the executor gave; nil leaves them as they are.
	CloseData  *json.RawMessage
	EnrichPath *string

	// Close, when set, closes the task with this decision after the
	// fields above are written, exactly as Store.Close would (its ID and
	// Key are the Change's).
	Close *Close
}

// ErrStale is returned by Apply, with the task as it is now, when the task
// changed since the caller read it: another change won the race.
var ErrStale = errors.New("statemanager: task changed since it was read")

// ErrNeedsApproval is returned by Close and CloseMany, with the task, for a
// COMPLETED close of a task that needs approvals (RequiredApprovals > 0, or
// IN_APPROVAL already): it completes through Lifecycle.Apply, which counts
// them. Nothing changed.
var ErrNeedsApproval = errors.New("statemanager: the task needs approvals; complete it through the lifecycle")

// Lifecycle is an optional extension of Store for the task lifecycle of
// SPEC §12; check for it with a type assertion.
type Lifecycle interface {
	// Apply writes c atomically. It returns the task after the change, or:
	// ErrNotFound for an unknown id; ErrClosed with the task when it is
	// closed already (and c.Key is not the key that closed it); ErrStale
	// with the current task when its Version is not c.Version. A replayed
	// Key returns the task and replay=true and changes nothing.
	Apply(ctx context.Context, c Change) (task *Task, replay bool, err error)

	// History returns every event of a task, oldest first, while the task
	// is kept (open, or closed for ClosedTTL); ErrNotFound otherwise.
	History(ctx context.Context, id string) ([]Event, error)
}
