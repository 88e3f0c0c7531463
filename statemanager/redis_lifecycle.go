package statemanager

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// historyCap is how many events a task's history keeps: the newest ones.
// Every transition but comments is bounded by the task's short life; the
// cap keeps a task commented on without end from growing its list, and the
// reads of it, without bound.
const historyCap = 1000

var _ Lifecycle = (*RedisStore)(nil)

// Apply writes c in one script on the task's hash slot; see Lifecycle.Apply.
// The change is written only if the task is open and still at c.Version;
// with c.Close set the same step closes it exactly as Close does, and the
// change's Event is the closing event (an empty Event.Type takes the one
// Close would append). Every change appends exactly one event, whose Seq is
// the Version the change made.
//
// Besides the Lifecycle errors, Apply refuses a malformed change (a status
// that is not open, a negative deadline, a control character in a user or
// role, no event to append) with an error that is none of them.
func (s *RedisStore) Apply(ctx context.Context, c Change) (*Task, bool, error) {
	if c.ID == "" {
		return nil, false, fmt.Errorf("%w: empty id", ErrNotFound)
	}
	args, err := s.applyArgs(c)
	if err != nil {
		return nil, false, fmt.Errorf("statemanager: apply %q: %w", c.ID, err)
	}
	k := s.keysOf(c.ID)
	res, err := s.pipe.script(ctx, applyScript,
		[]string{k.task + c.ID, k.history + c.ID, k.applied + c.ID, k.due, k.pending}, args...)
	if err != nil {
		return nil, false, fmt.Errorf("statemanager: redis apply %q: %w", c.ID, err)
	}
	outcome, fields, err := scriptReply(res)
	if err != nil {
		return nil, false, fmt.Errorf("statemanager: redis apply %q: %w", c.ID, err)
	}
	switch outcome {
	case "ok":
		if c.Deadline != nil {
			s.WakeTimers(ctx, c.ID, *c.Deadline)
		}
		return s.decode(fields), false, nil
	case "replay":
		return s.decode(fields), true, nil
	case "closed":
		return s.decode(fields), false, fmt.Errorf("%w: %q", ErrClosed, c.ID)
	case "stale":
		t := s.decode(fields)
		return t, false, fmt.Errorf("%w: %q is at version %d, not %d", ErrStale, c.ID, t.Version, c.Version)
	case "notfound":
		return nil, false, fmt.Errorf("%w: %q", ErrNotFound, c.ID)
	}
	return nil, false, fmt.Errorf("statemanager: redis apply %q: unexpected reply %q", c.ID, outcome)
}

// applyArgs checks c and lays it out as apply.lua's ARGV.
func (s *RedisStore) applyArgs(c Change) ([]interface{}, error) {
	if c.Status != nil && !Open(*c.Status) {
		return nil, fmt.Errorf("status %q is not open: closing is Close's", *c.Status)
	}
	if c.Deadline != nil && *c.Deadline < 0 {
		return nil, fmt.Errorf("negative deadline %d", *c.Deadline)
	}
	var user, claimedBy string
	var roles []string
	if c.User != nil {
		user = *c.User
	}
	if c.ClaimedBy != nil {
		claimedBy = *c.ClaimedBy
	}
	if c.Roles != nil {
		roles = *c.Roles
	}
	if err := checkJoinable(user, roles, nil, nil); err != nil {
		return nil, err
	}
	if strings.Contains(claimedBy, roleSep) {
		return nil, fmt.Errorf("claimedBy %q holds a control character", claimedBy)
	}
	ev := c.Event
	if c.Close != nil {
		switch c.Close.Status {
		case StatusCompleted, StatusTimeout, StatusCancelled:
		default:
			return nil, fmt.Errorf("invalid close status %q", c.Close.Status)
		}
	}
	var closedAt int64
	if c.Close != nil {
		closedAt = c.Close.At
		if closedAt <= 0 {
			closedAt = time.Now().UnixMilli()
		}
		if ev.Type == "" {
			ev = Event{Type: closeEventType(c.Close.Status), Actor: c.Close.By, Outcome: c.Close.Outcome, Note: c.Close.Note}
		}
		if ev.At == 0 {
			ev.At = closedAt
		}
	}
	if ev.Type == "" {
		return nil, errors.New("no event: every change appends one to the history")
	}
	if ev.At == 0 {
		ev.At = time.Now().UnixMilli()
	}
	tail, err := eventTail(ev)
	if err != nil {
		return nil, err
	}

	args := make([]interface{}, 17, 29)
	k := s.keysOf(c.ID)
	args[0], args[1], args[2], args[3], args[4] = k.prefix, c.ID, strconv.FormatInt(c.Version, 10), c.Key, tail
	args[5], args[6], args[7] = "", "", ""
	if c.User != nil {
		args[5] = "=" + *c.User
	}
	if c.Roles != nil {
		args[6] = "=" + joinRoles(*c.Roles)
	}
	if c.Deadline != nil {
		args[7] = strconv.FormatInt(*c.Deadline, 10)
	}
	for i := 8; i < 17; i++ {
		args[i] = ""
	}
	if cl := c.Close; cl != nil {
		args[8], args[9], args[10], args[11], args[12], args[13], args[14] =
			cl.Status, strconv.FormatInt(closedAt, 10), cl.By, []byte(cl.Data), cl.EnrichPath, cl.Outcome, cl.Note
		args[15] = strconv.FormatInt(closedAt-s.closedTTL.Milliseconds(), 10)
		args[16] = s.closedTTL.Milliseconds()
	}
	plain := func(field string, v *string) {
		if v != nil {
			args = append(args, field, *v)
		}
	}
	plain(fieldStatus, c.Status)
	plain(fieldClaimedBy, c.ClaimedBy)
	plain(fieldOutcome, c.Outcome)
	plain(fieldNote, c.Note)
	plain(fieldCompletedBy, c.CompletedBy)
	// The executor's completion data, kept for the close its last
	// approval makes (closeTask drops it on any other close).
	if c.CloseData != nil {
		args = append(args, fieldCloseData, []byte(*c.CloseData))
	}
	plain(fieldEnrichPath, c.EnrichPath)
	if c.Approvals != nil {
		v := ""
		if len(*c.Approvals) > 0 {
			b, err := json.Marshal(*c.Approvals)
			if err != nil {
				return nil, fmt.Errorf("approvals: %w", err)
			}
			v = string(b)
		}
		args = append(args, fieldApprovals, v)
	}
	return args, nil
}

// History returns the task's events, oldest first; see Lifecycle.History.
// It keeps the newest 1,000 events of a task.
func (s *RedisStore) History(ctx context.Context, id string) ([]Event, error) {
	if id == "" {
		return nil, fmt.Errorf("%w: empty id", ErrNotFound)
	}
	k := s.keysOf(id)
	res, err := s.pipe.script(ctx, historyScript, []string{k.task + id, k.history + id})
	if err != nil {
		return nil, fmt.Errorf("statemanager: redis history %q: %w", id, err)
	}
	outcome, raw, err := scriptReply(res)
	if err != nil {
		return nil, fmt.Errorf("statemanager: redis history %q: %w", id, err)
	}
	if outcome == "notfound" {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	var fields []interface{}
	if arr, _ := res.([]interface{}); len(arr) > 2 {
		fields, _ = arr[2].([]interface{})
	}
	events := make([]Event, 0, len(raw)+2)
	for _, r := range raw {
		v, _ := r.(string)
		var e Event
		if err := json.Unmarshal([]byte(v), &e); err != nil {
			return nil, fmt.Errorf("statemanager: redis history %q: event %q: %w", id, v, err)
		}
		events = append(events, e)
	}
	return withImpliedEvents(s.decode(fields), events), nil
}

// withImpliedEvents completes a task's stored history with the events no
// script writes, so the start and plain-close hot paths write no list: the
// started event (Seq 1), unless the history was capped past it, and the
// closing event of a plain close (Close, CloseMany: a proceed, a deadline,
// a cancel), whose Seq is the version the close made, built from the
// decision exactly as it would have been written.
func withImpliedEvents(t *Task, events []Event) []Event {
	if len(events) == 0 || events[0].Seq == 2 {
		started := Event{Seq: 1, Type: EventStarted, At: t.StartedAt, Actor: t.StartedBy}
		events = append([]Event{started}, events...)
	}
	if !Open(t.Status) && t.Version > events[len(events)-1].Seq {
		events = append(events, closingEvent(t))
	}
	return events
}

// closingEvent is the history event of a plain close of t.
func closingEvent(t *Task) Event {
	return Event{Seq: t.Version, Type: closeEventType(t.Status), At: t.ClosedAt, Actor: t.ClosedBy, Outcome: t.Outcome, Note: t.Note}
}

// seqPrefix is how every encoded Event begins when its Seq is 0 (Seq is the
// first field of Event and never omitted).
const seqPrefix = `{"seq":0,`

// eventTail encodes e for the scripts, less its Seq: a script writes the
// Seq it assigns in front (see appendEvent in lib.lua), so no script
// encodes JSON.
func eventTail(e Event) (string, error) {
	e.Seq = 0
	b, err := json.Marshal(e)
	if err != nil {
		return "", fmt.Errorf("encode event: %w", err)
	}
	tail, ok := strings.CutPrefix(string(b), seqPrefix)
	if !ok {
		return "", fmt.Errorf("encode event: %s does not begin with %s", b, seqPrefix)
	}
	return tail, nil
}

// closeEventType is the history event of a close with status.
func closeEventType(status string) string {
	switch status {
	case StatusTimeout:
		return EventTimedOut
	case StatusCancelled:
		return EventCancelled
	}
	return EventCompleted
}

// checkJoinable refuses values that hold roleSep, which joins the lists in
// the task hash and the listing indexes' names.
func checkJoinable(user string, lists ...[]string) error {
	if strings.Contains(user, roleSep) {
		return fmt.Errorf("user %q holds a control character", user)
	}
	for _, l := range lists {
		for _, v := range l {
			if strings.Contains(v, roleSep) {
				return fmt.Errorf("%q holds a control character", v)
			}
		}
	}
	return nil
}
