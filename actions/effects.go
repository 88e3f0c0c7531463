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
// statemanager.ErrNotFound and ErrClosed come back wrapped (with the closed
// task for ErrClosed); other store errors are wrapped with ErrRetryable.
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
	case errors.Is(err, statemanager.ErrNotFound), errors.Is(err, statemanager.ErrClosed):
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
		p, err := enrich(e.Payload, t.EnrichPath, t.CloseData)
		if err != nil {
			return nil, fmt.Errorf("task %q: enrich: %w", t.ID, err)
		}
		e.Payload = p
		e.Result = envelope.Result{Status: status}
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
	return append(recs, n), nil
}
