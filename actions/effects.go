package actions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/sagarunner/sagarunner/saga/envelope"
	"github.com/sagarunner/sagarunner/statemanager"
)

// TimeoutKey is the close key of every deadline-driven timeout: automatic
// ones and TimeoutBetween. Because they share it, a deadline fired twice (two
// replicas, or a TimeoutBetween tick racing the timer) is one decision
// replayed, not a second close.
const TimeoutKey = "timeout"

// DefaultDomain is the state manager TimeoutBetween sweeps when its step
// names none, the same default the generic /ProceedTask saga uses.
const DefaultDomain = "workflow"

// CloseTask closes a task of a domain and returns the closed task and the
// effects to produce. The engine uses it for automatic deadlines (Status
// TIMEOUT, Key TimeoutKey, By ""); the close actions use it too, so every
// close yields the same effects. c.At defaults to now on x.Clock.
// statemanager.ErrNotFound, ErrClosed, ErrStale and ErrNeedsApproval come
// back wrapped (with the task for the last three); other store errors are
// wrapped with ErrRetryable.
func CloseTask(ctx context.Context, x *Exec, domain string, c statemanager.Close) (*statemanager.Task, []envelope.Record, error) {
	store, err := storeOf(x, domain)
	if err != nil {
		return nil, nil, fmt.Errorf("close task %q: %w", c.ID, err)
	}
	if c.At == 0 {
		c.At = nowMillis(x)
	}
	t, _, err := store.Close(ctx, c)
	switch {
	case errors.Is(err, statemanager.ErrNotFound), errors.Is(err, statemanager.ErrClosed),
		errors.Is(err, statemanager.ErrStale), errors.Is(err, statemanager.ErrNeedsApproval):
		return t, nil, fmt.Errorf("close task %q in %q: %w", c.ID, domain, err)
	case err != nil:
		return nil, nil, fmt.Errorf("close task %q in %q: %w: %w", c.ID, domain, ErrRetryable, err)
	}
	recs, err := TaskEffects(t, x.Topics)
	if err != nil {
		return t, nil, fmt.Errorf("close task %q in %q: %w", c.ID, domain, err)
	}
	return t, recs, nil
}

// TaskEffects returns the records a closed task produces: the continuation of
// its saga (only when it was started inside one), then its task-closed
// notification. They depend on the closed task alone, so effects re-emitted
// after a crash are byte-identical to the first ones.
//
// The continuation is the suspended envelope, its payload enriched with the
// close data at the recorded enrich path, its result the close status
// (COMPLETED continues as SUCCESS) and its stepId still the StartTask step,
// so the engine routes on from there. It is keyed by requestId, to stay on
// the instance's partition.
func TaskEffects(t *statemanager.Task, topics Topics) ([]envelope.Record, error) {
	var status string
	switch t.Status {
	case statemanager.StatusCompleted:
		status = envelope.StatusSuccess
	case statemanager.StatusTimeout:
		status = envelope.StatusTimeout
	case statemanager.StatusCancelled:
		status = envelope.StatusCancelled
	default:
		return nil, fmt.Errorf("task %q is %s, not closed", t.ID, t.Status)
	}
	var recs []envelope.Record
	if t.Saga != "" {
		var e envelope.Envelope
		if err := envelope.Unmarshal(t.Envelope, &e); err != nil {
			return nil, fmt.Errorf("task %q: stored envelope: %w", t.ID, err)
		}
		if len(e.Payload) == 0 || string(e.Payload) == "null" {
			e.Payload = json.RawMessage(`{}`)
		}
		e.Result = envelope.Result{Status: status}
		if status == envelope.StatusSuccess {
			// Only a completion has an outcome: a task timed out while in
			// approval keeps its executor's outcome, which decided nothing.
			e.Result.Outcome = t.Outcome
		}
		if p, err := enrich(e.Payload, t.EnrichPath, t.CloseData); err == nil {
			e.Payload = p
		} else {
			// The close is recorded and final, so its saga must go on:
			// data that cannot enter the payload (a path through an array
			// a producer sent) resumes it with a FAIL it routes or ends
			// on, never an effect that fails on every retry and leaves
			// the instance waiting for ever. The operations check this
			// before closing; a trusted producer's fast path cannot.
			e.Result = envelope.Result{Status: envelope.StatusFail, Code: CodeEnrichFailed,
				Message: fmt.Sprintf("task %q closed %s, but its data could not be written at %q: %v", t.ID, t.Status, t.EnrichPath, err)}
		}
		key := e.RequestMeta.RequestID
		if key == "" {
			key = t.RequestID
		}
		recs = append(recs, envelope.Record{Topic: topics.Continuations, Key: []byte(key), Value: e.Encode()})
	}
	n, err := NewNotification(t).Record(topics.Notifications)
	if err != nil {
		return nil, err
	}
	recs = append(recs, n)
	if topics.TaskEvents != "" {
		recs = append(recs, TaskEventRecord(topics.TaskEvents, t, ClosingEvent(t)))
	}
	return recs, nil
}

// ClosingEvent is the history event that closed t, rebuilt from the closed
// task alone so that every path closing a task (an operation, a deadline, a
// recovery after a crash) publishes the same bytes: the last approval of a
// task that needed approvals, else the completion, cancel or timeout.
// Only what the task keeps is in it (an approver's note is in the history
// only).
func ClosingEvent(t *statemanager.Task) statemanager.Event {
	e := statemanager.Event{At: t.ClosedAt, Actor: t.ClosedBy, RequestID: t.CloseKey}
	switch t.Status {
	case statemanager.StatusCompleted:
		e.Type, e.Outcome, e.Note = statemanager.EventCompleted, t.Outcome, t.Note
		if n := len(t.Approvals); t.RequiredApprovals > 0 && n > 0 {
			last := t.Approvals[n-1]
			e = statemanager.Event{Type: statemanager.EventApproved, At: last.At, Actor: last.User, RequestID: t.CloseKey}
		}
	case statemanager.StatusCancelled:
		e.Type, e.Note = statemanager.EventCancelled, t.Note
	default:
		e.Type = statemanager.EventTimedOut
	}
	return e
}

// ApplyTask applies a lifecycle change to a task of a domain whose store
// implements statemanager.Lifecycle, and returns the task after it and the
// records to produce: for a change that closes the task, its effects
// exactly as CloseTask's; for any other, its history event on the
// task-event topic. A replayed change (its Key applied already) returns the
// same effects. Errors: ErrUnsupported for a store without the lifecycle;
// statemanager.ErrNotFound, ErrClosed and ErrStale wrapped (with the task
// for the last two); other store errors wrapped with ErrRetryable.
func ApplyTask(ctx context.Context, x *Exec, domain string, c statemanager.Change) (*statemanager.Task, bool, []envelope.Record, error) {
	store, err := storeOf(x, domain)
	if err != nil {
		return nil, false, nil, fmt.Errorf("change task %q: %w", c.ID, err)
	}
	lc, ok := store.(statemanager.Lifecycle)
	if !ok {
		return nil, false, nil, fmt.Errorf("change task %q in %q: %w", c.ID, domain, ErrUnsupported)
	}
	t, replay, err := lc.Apply(ctx, c)
	switch {
	case errors.Is(err, statemanager.ErrNotFound), errors.Is(err, statemanager.ErrClosed), errors.Is(err, statemanager.ErrStale):
		return t, false, nil, fmt.Errorf("change task %q in %q: %w", c.ID, domain, err)
	case err != nil:
		return nil, false, nil, fmt.Errorf("change task %q in %q: %w: %w", c.ID, domain, ErrRetryable, err)
	}
	if c.Close != nil || !statemanager.Open(t.Status) {
		recs, err := TaskEffects(t, x.Topics)
		if err != nil {
			return t, replay, nil, fmt.Errorf("change task %q in %q: %w", c.ID, domain, err)
		}
		return t, replay, recs, nil
	}
	if x.Topics.TaskEvents == "" {
		return t, replay, nil, nil
	}
	e := c.Event
	if replay {
		// The event as first recorded, so a redelivered operation
		// publishes the bytes it published the first time.
		if stored, ok, err := storedEvent(ctx, lc, c.ID, c.Key); err != nil {
			return nil, false, nil, fmt.Errorf("history of task %q in %q: %w: %w", c.ID, domain, ErrRetryable, err)
		} else if ok {
			e = stored
		}
	}
	return t, replay, []envelope.Record{TaskEventRecord(x.Topics.TaskEvents, t, e)}, nil
}

// storedEvent finds the event a request recorded in a task's history.
func storedEvent(ctx context.Context, lc statemanager.Lifecycle, id, key string) (statemanager.Event, bool, error) {
	if key == "" {
		return statemanager.Event{}, false, nil
	}
	events, err := lc.History(ctx, id)
	if err != nil && !errors.Is(err, statemanager.ErrNotFound) {
		return statemanager.Event{}, false, err
	}
	for i := len(events) - 1; i >= 0; i-- {
		if events[i].RequestID == key {
			return events[i], true, nil
		}
	}
	return statemanager.Event{}, false, nil
}

// ErrUnsupported is returned for a lifecycle operation on a domain whose
// store does not implement statemanager.Lifecycle.
var ErrUnsupported = errors.New("actions: the state manager has no task lifecycle")
