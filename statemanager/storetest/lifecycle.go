package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/sagarunner/sagarunner/statemanager"
)

// The lifecycle half of the suite: every store that offers
// statemanager.Lifecycle must pass it; the others skip it.

func lifecycleOf(t *testing.T, s statemanager.Store) statemanager.Lifecycle {
	t.Helper()
	lc, ok := s.(statemanager.Lifecycle)
	if !ok {
		t.Skip("the store does not implement the optional Lifecycle")
	}
	return lc
}

func ptr[T any](v T) *T { return &v }

func mustApply(t *testing.T, lc statemanager.Lifecycle, c statemanager.Change) *statemanager.Task {
	t.Helper()
	got, replay, err := lc.Apply(context.Background(), c)
	if err != nil {
		t.Fatalf("Apply(%s %q at version %d): %v", c.Event.Type, c.ID, c.Version, err)
	}
	if replay {
		t.Fatalf("Apply(%s %q): replay = true on a new key", c.Event.Type, c.ID)
	}
	if got.Version != c.Version+1 {
		t.Fatalf("Apply(%s %q): version %d, want %d", c.Event.Type, c.ID, got.Version, c.Version+1)
	}
	return got
}

func mustHistory(t *testing.T, lc statemanager.Lifecycle, id string) []statemanager.Event {
	t.Helper()
	h, err := lc.History(context.Background(), id)
	if err != nil {
		t.Fatalf("History(%q): %v", id, err)
	}
	return h
}

// sameHistory compares events whole, after checking that Seq numbers them
// from 1.
func sameHistory(t *testing.T, what string, got, want []statemanager.Event) {
	t.Helper()
	for i := range want {
		want[i].Seq = int64(i + 1)
	}
	if !slices.Equal(got, want) {
		t.Errorf("%s: history\n got %+v\nwant %+v", what, got, want)
	}
}

func listIDs(t *testing.T, s statemanager.Store, f statemanager.Filter) []string {
	t.Helper()
	l, err := s.List(context.Background(), f)
	if err != nil {
		t.Fatalf("List(%+v): %v", f, err)
	}
	return taskIDs(l)
}

func dueIDs(t *testing.T, s statemanager.Store, id string, until int64) []statemanager.Due {
	t.Helper()
	d, err := s.Due(context.Background(), s.ShardOf(id), until, 0)
	if err != nil {
		t.Fatal(err)
	}
	return slices.DeleteFunc(d, func(d statemanager.Due) bool { return d.ID != id })
}

// testLifecycleFlow walks one task through claim → assign → complete into
// IN_APPROVAL → reject → complete → approve → the last approval closing it,
// checking the task, its indexes and its history at each step.
func testLifecycleFlow(t *testing.T, s statemanager.Store) {
	lc := lifecycleOf(t, s)
	ctx := context.Background()
	const id = "flow"
	task := sampleTask(id)
	task.Tenant = "acme"
	task.RequiredApprovals = 2
	mustStart(t, s, task)
	want := []statemanager.Event{{Type: statemanager.EventStarted, At: base}}
	sameHistory(t, "after start", mustHistory(t, lc, id), want)

	step := func(c statemanager.Change) *statemanager.Task {
		t.Helper()
		c.ID, c.Key = id, fmt.Sprintf("rq-%d", c.Version)
		c.Event.RequestID = c.Key
		got := mustApply(t, lc, c)
		sameTask(t, c.Event.Type+": Get", mustGet(t, s, id), got)
		want = append(want, c.Event)
		sameHistory(t, "after "+c.Event.Type, mustHistory(t, lc, id), want)
		return got
	}
	acme := func(v *statemanager.Viewer, status string) []string {
		return listIDs(t, s, statemanager.Filter{Tenant: "acme", Viewer: v, Status: status})
	}
	bob := &statemanager.Viewer{User: "bob"}

	got := step(statemanager.Change{Version: 1, ClaimedBy: ptr("alice"),
		Event: statemanager.Event{Type: statemanager.EventClaimed, At: base + 1, Actor: "alice"}})
	if got.ClaimedBy != "alice" || got.Status != statemanager.StatusWaiting || got.User != "alice" {
		t.Errorf("claimed: %+v", got)
	}

	got = step(statemanager.Change{Version: 2, User: ptr("bob"), ClaimedBy: ptr("bob"),
		Event: statemanager.Event{Type: statemanager.EventAssigned, At: base + 2, Actor: "alice", From: "alice", To: "bob"}})
	if got.User != "bob" || got.ClaimedBy != "bob" {
		t.Errorf("assigned: %+v", got)
	}
	if l := acme(bob, ""); !slices.Equal(l, []string{id}) {
		t.Errorf("bob's inbox after the assignment = %v", l)
	}
	if l := acme(&statemanager.Viewer{User: "alice"}, ""); len(l) != 0 {
		t.Errorf("alice's inbox after the assignment = %v", l)
	}

	got = step(statemanager.Change{Version: 3, Status: ptr(statemanager.StatusInApproval),
		Outcome: ptr("approve"), Note: ptr("done"), CompletedBy: ptr("bob"),
		Event: statemanager.Event{Type: statemanager.EventCompleted, At: base + 3, Actor: "bob", Outcome: "approve", Note: "done"}})
	if got.Status != statemanager.StatusInApproval || got.Outcome != "approve" || got.Note != "done" || got.CompletedBy != "bob" || !got.Waiting() {
		t.Errorf("completed into approval: %+v", got)
	}
	// Open, so listed as IN_APPROVAL (not WAITING), still due and counted.
	if l := acme(bob, statemanager.StatusInApproval); !slices.Equal(l, []string{id}) {
		t.Errorf("List(IN_APPROVAL) = %v", l)
	}
	if l := acme(bob, ""); len(l) != 0 {
		t.Errorf("List(WAITING) lists an IN_APPROVAL task: %v", l)
	}
	if d := dueIDs(t, s, id, base+60_000); len(d) != 1 {
		t.Errorf("Due = %v: an IN_APPROVAL task's deadline runs", d)
	}
	if _, created, err := s.Start(ctx, sampleTask(id)); err != nil || created {
		t.Errorf("Start of an IN_APPROVAL id: created=%v err=%v, want the id taken", created, err)
	}

	got = step(statemanager.Change{Version: 4, Status: ptr(statemanager.StatusWaiting), ClaimedBy: ptr("bob"),
		Approvals: &[]statemanager.Approval{},
		Event:     statemanager.Event{Type: statemanager.EventRejected, At: base + 4, Actor: "carol", Note: "redo"}})
	if got.Status != statemanager.StatusWaiting || got.ClaimedBy != "bob" || len(got.Approvals) != 0 {
		t.Errorf("rejected: %+v", got)
	}

	step(statemanager.Change{Version: 5, Status: ptr(statemanager.StatusInApproval), Outcome: ptr("approve"), Note: ptr("again"),
		Event: statemanager.Event{Type: statemanager.EventCompleted, At: base + 5, Actor: "bob", Outcome: "approve", Note: "again"}})

	carol := statemanager.Approval{User: "carol", At: base + 6}
	got = step(statemanager.Change{Version: 6, Approvals: &[]statemanager.Approval{carol},
		Event: statemanager.Event{Type: statemanager.EventApproved, At: base + 6, Actor: "carol"}})
	if !slices.Equal(got.Approvals, []statemanager.Approval{carol}) || got.Status != statemanager.StatusInApproval {
		t.Errorf("approved once: %+v", got)
	}

	dave := statemanager.Approval{User: "dave", At: base + 7}
	got = step(statemanager.Change{Version: 7, Approvals: &[]statemanager.Approval{carol, dave},
		Event: statemanager.Event{Type: statemanager.EventApproved, At: base + 7, Actor: "dave"},
		Close: &statemanager.Close{Status: statemanager.StatusCompleted, At: base + 7, By: "dave", Outcome: "approve", Note: "again"}})
	if got.Status != statemanager.StatusCompleted || got.ClosedAt != base+7 || got.ClosedBy != "dave" || got.CloseKey != "rq-7" ||
		got.Outcome != "approve" || got.Note != "again" || got.CompletedBy != "bob" || got.ClaimedBy != "bob" ||
		!slices.Equal(got.Approvals, []statemanager.Approval{carol, dave}) || got.Version != 8 || got.Waiting() {
		t.Errorf("closed by the last approval: %+v", got)
	}
	// Closed exactly as Close closes: pending, out of the deadline and
	// waiting indexes, in the closed ones.
	if d := dueIDs(t, s, id, base+1_000_000); len(d) != 0 {
		t.Errorf("Due after the close = %v", d)
	}
	p, err := s.Pending(ctx, s.ShardOf(id), base+7, 0)
	if err != nil || !slices.Equal(taskIDs(p), []string{id}) {
		t.Errorf("Pending = %v, %v", taskIDs(p), err)
	}
	if l := acme(nil, statemanager.StatusInApproval); len(l) != 0 {
		t.Errorf("List(IN_APPROVAL) after the close = %v", l)
	}
	if l := acme(&statemanager.Viewer{User: "dave"}, statemanager.StatusCompleted); !slices.Equal(l, []string{id}) {
		t.Errorf("dave's closed tasks = %v", l)
	}
	if c, ok := s.(statemanager.Counter); ok {
		if n, err := c.CountWaiting(ctx); err != nil || n != 0 {
			t.Errorf("CountWaiting after the close = %d, %v", n, err)
		}
	}
	// Acked, the history is kept with the decision.
	if err := s.Ack(ctx, id); err != nil {
		t.Fatal(err)
	}
	if h := mustHistory(t, lc, id); len(h) != len(want) {
		t.Errorf("history after Ack: %d events, want %d", len(h), len(want))
	}
}

// testApplyRefusals: an unknown task, a stale version, a closed task and
// malformed changes are refused and change nothing; a replayed key changes
// nothing and answers the task.
func testApplyRefusals(t *testing.T, s statemanager.Store) {
	lc := lifecycleOf(t, s)
	ctx := context.Background()
	claim := func(id string, version int64, key, who string) statemanager.Change {
		return statemanager.Change{ID: id, Version: version, Key: key, ClaimedBy: ptr(who),
			Event: statemanager.Event{Type: statemanager.EventClaimed, At: base + 1, Actor: who, RequestID: key}}
	}
	if task, _, err := lc.Apply(ctx, claim("nope", 1, "k", "alice")); !errors.Is(err, statemanager.ErrNotFound) || task != nil {
		t.Errorf("Apply(unknown) = %v, %v; want nil, ErrNotFound", task, err)
	}
	if _, err := lc.History(ctx, "nope"); !errors.Is(err, statemanager.ErrNotFound) {
		t.Errorf("History(unknown): %v, want ErrNotFound", err)
	}

	mustStart(t, s, sampleTask("ref"))
	claimed := mustApply(t, lc, claim("ref", 1, "k1", "alice"))
	history := mustHistory(t, lc, "ref")
	unchanged := func(what string) {
		t.Helper()
		sameTask(t, what+": Get", mustGet(t, s, "ref"), claimed)
		sameHistory(t, what+": history", mustHistory(t, lc, "ref"), history)
	}

	t.Run("stale version", func(t *testing.T) {
		got, replay, err := lc.Apply(ctx, claim("ref", 1, "k2", "bob"))
		if !errors.Is(err, statemanager.ErrStale) || replay {
			t.Fatalf("err = %v replay = %v, want ErrStale", err, replay)
		}
		sameTask(t, "task with ErrStale", got, claimed)
		unchanged("stale")
	})
	t.Run("replayed key", func(t *testing.T) {
		for _, c := range []statemanager.Change{claim("ref", 1, "k1", "alice"), claim("ref", 2, "k1", "bob")} {
			got, replay, err := lc.Apply(ctx, c)
			if err != nil || !replay {
				t.Fatalf("Apply(replay at version %d) = replay %v, %v", c.Version, replay, err)
			}
			sameTask(t, "replayed", got, claimed)
		}
		unchanged("replay")
	})
	t.Run("malformed", func(t *testing.T) {
		for name, c := range map[string]statemanager.Change{
			"closing status": {ID: "ref", Version: 2, Key: "m1", Status: ptr(statemanager.StatusCompleted),
				Event: statemanager.Event{Type: statemanager.EventCompleted, At: base}},
			"negative deadline": {ID: "ref", Version: 2, Key: "m2", Deadline: ptr(int64(-1)),
				Event: statemanager.Event{Type: statemanager.EventDeadline, At: base}},
			"no event":         {ID: "ref", Version: 2, Key: "m3", ClaimedBy: ptr("bob")},
			"bad close status": {ID: "ref", Version: 2, Key: "m4", Close: &statemanager.Close{Status: statemanager.StatusWaiting}},
			"control char":     {ID: "ref", Version: 2, Key: "m5", User: ptr("a\x1fb"), Event: statemanager.Event{Type: statemanager.EventAssigned}},
		} {
			_, _, err := lc.Apply(ctx, c)
			if err == nil || errors.Is(err, statemanager.ErrStale) || errors.Is(err, statemanager.ErrClosed) || errors.Is(err, statemanager.ErrNotFound) {
				t.Errorf("%s: err = %v, want a validation error", name, err)
			}
		}
		unchanged("malformed")
	})

	closed := mustClose(t, s, statemanager.Close{ID: "ref", Status: statemanager.StatusCancelled, At: base + 9, By: "root", Key: "cancel", Note: "obsolete"})
	if closed.Version != 3 || closed.Note != "obsolete" || closed.ClaimedBy != "alice" {
		t.Errorf("closed: %+v", closed)
	}
	history = append(history, statemanager.Event{Type: statemanager.EventCancelled, At: base + 9, Actor: "root", Note: "obsolete"})
	claimed = closed
	t.Run("closed", func(t *testing.T) {
		for _, v := range []int64{2, 3} {
			got, replay, err := lc.Apply(ctx, claim("ref", v, "k3", "bob"))
			if !errors.Is(err, statemanager.ErrClosed) || replay {
				t.Fatalf("version %d: err = %v replay = %v, want ErrClosed", v, err, replay)
			}
			sameTask(t, "task with ErrClosed", got, closed)
		}
		unchanged("closed")
	})
	t.Run("replay after the close", func(t *testing.T) {
		// The first answer of each key stands: the claim applied, the
		// cancel (as a change with its key) closed it.
		for _, c := range []statemanager.Change{claim("ref", 1, "k1", "alice"),
			{ID: "ref", Version: 2, Key: "cancel", Close: &statemanager.Close{Status: statemanager.StatusCancelled}}} {
			got, replay, err := lc.Apply(ctx, c)
			if err != nil || !replay {
				t.Fatalf("key %s: replay %v, %v", c.Key, replay, err)
			}
			sameTask(t, "replayed after close", got, closed)
		}
		unchanged("replay after close")
	})
}

// testDeadlineMoves: a change moves the deadline in the index the timers
// read: later, into the past (due at once), away (never due); a firing
// that read the old deadline then finds the task not due (ErrStale).
func testDeadlineMoves(t *testing.T, s statemanager.Store) {
	lc := lifecycleOf(t, s)
	ctx := context.Background()
	const id = "dl"
	mustStart(t, s, sampleTask(id)) // deadline base+60s
	version := int64(1)
	move := func(to int64) *statemanager.Task {
		t.Helper()
		got := mustApply(t, lc, statemanager.Change{ID: id, Version: version, Key: fmt.Sprint("dl-", version), Deadline: &to,
			Event: statemanager.Event{Type: statemanager.EventDeadline, At: base + version, Actor: "root", To: fmt.Sprint(to)}})
		version++
		if got.Deadline != to {
			t.Errorf("moved to %d: Deadline %d", to, got.Deadline)
		}
		return got
	}
	between := func() []statemanager.Due {
		t.Helper()
		d, err := s.Between(ctx, 0, base+1_000_000_000, 0)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}

	move(base + 120_000)
	if d := dueIDs(t, s, id, base+60_000); len(d) != 0 {
		t.Errorf("Due at the old deadline = %v", d)
	}
	if d := dueIDs(t, s, id, base+120_000); !slices.Equal(d, []statemanager.Due{{ID: id, Deadline: base + 120_000}}) {
		t.Errorf("Due at the new deadline = %v", d)
	}

	// A firing that read the deadline before it moved later finds the task
	// not due, and leaves it.
	res, err := statemanager.CloseMany(ctx, s, []string{id}, statemanager.Close{Status: statemanager.StatusTimeout, At: base + 60_000, Key: "timeout", OnlyIfDue: true})
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(res[0].Err, statemanager.ErrStale) || res[0].Task == nil || !res[0].Task.Waiting() {
		t.Errorf("firing a moved deadline: %+v, want ErrStale with the open task", res[0])
	}

	move(base - 5) // the past: due at once
	if d := dueIDs(t, s, id, base); !slices.Equal(d, []statemanager.Due{{ID: id, Deadline: base - 5}}) {
		t.Errorf("Due after a move into the past = %v", d)
	}

	move(0)
	if d := between(); len(d) != 0 {
		t.Errorf("Between after removing the deadline = %v", d)
	}
	if got := mustGet(t, s, id); got.Deadline != 0 {
		t.Errorf("Deadline after removal = %d", got.Deadline)
	}
	res, err = statemanager.CloseMany(ctx, s, []string{id}, statemanager.Close{Status: statemanager.StatusTimeout, At: base + 1_000_000, Key: "timeout", OnlyIfDue: true})
	if err != nil || !errors.Is(res[0].Err, statemanager.ErrStale) {
		t.Errorf("firing a task with no deadline: %+v, %v", res, err)
	}

	// A deadline of an IN_APPROVAL task fires it TIMEOUT.
	move(base + 10)
	mustApply(t, lc, statemanager.Change{ID: id, Version: version, Key: "complete", Status: ptr(statemanager.StatusInApproval),
		Event: statemanager.Event{Type: statemanager.EventCompleted, At: base + 11, Actor: "alice"}})
	res, err = statemanager.CloseMany(ctx, s, []string{id}, statemanager.Close{Status: statemanager.StatusTimeout, At: base + 20, Key: "timeout", OnlyIfDue: true})
	if err != nil || res[0].Err != nil || res[0].Task.Status != statemanager.StatusTimeout {
		t.Fatalf("firing an IN_APPROVAL task: %+v, %v", res, err)
	}
	h := mustHistory(t, lc, id)
	types := make([]string, len(h))
	for i, e := range h {
		types[i] = e.Type
	}
	wantTypes := []string{statemanager.EventStarted, statemanager.EventDeadline, statemanager.EventDeadline, statemanager.EventDeadline,
		statemanager.EventDeadline, statemanager.EventCompleted, statemanager.EventTimedOut}
	if !slices.Equal(types, wantTypes) {
		t.Errorf("history %v, want %v", types, wantTypes)
	}
	if last := h[len(h)-1]; last != (statemanager.Event{Seq: 7, Type: statemanager.EventTimedOut, At: base + 20}) {
		t.Errorf("timed out event %+v", last)
	}
}

// testReassignmentIndexes: a task reassigned to other users and roles is
// listed for exactly its current candidates, whoever asks.
func testReassignmentIndexes(t *testing.T, s statemanager.Store) {
	lc := lifecycleOf(t, s)
	for i, id := range []string{"ra-1", "ra-2", "ra-3"} {
		task := sampleTask(id)
		task.Tenant, task.User, task.Roles, task.StartedAt = "acme", "alice", []string{"manager", "clerk"}, base+int64(i)
		mustStart(t, s, task)
	}
	assign := func(id string, version int64, user *string, roles *[]string) {
		t.Helper()
		mustApply(t, lc, statemanager.Change{ID: id, Version: version, Key: fmt.Sprint("as-", version), User: user, Roles: roles,
			Event: statemanager.Event{Type: statemanager.EventAssigned, At: base + 10}})
	}
	assign("ra-1", 1, ptr("bob"), nil)                            // user only
	assign("ra-2", 1, ptr(""), &[]string{"clerk", "director"})    // no user, roles changed
	assign("ra-2", 2, ptr("carol"), &[]string{"director", "ops"}) // and again
	assign("ra-3", 1, nil, &[]string{})                           // roles only, to none
	if _, _, err := lc.Apply(context.Background(), statemanager.Change{ID: "ra-3", Version: 2, Key: "st", Status: ptr(statemanager.StatusInApproval),
		Event: statemanager.Event{Type: statemanager.EventCompleted, At: base + 11}}); err != nil {
		t.Fatal(err)
	}
	v := func(user string, roles ...string) *statemanager.Viewer {
		return &statemanager.Viewer{User: user, Roles: roles}
	}
	tests := []struct {
		name   string
		filter statemanager.Filter
		want   []string
	}{
		{"old user", statemanager.Filter{Viewer: v("alice")}, nil},
		{"old user, in approval", statemanager.Filter{Viewer: v("alice"), Status: statemanager.StatusInApproval}, []string{"ra-3"}},
		{"new user", statemanager.Filter{Viewer: v("bob")}, []string{"ra-1"}},
		{"second new user", statemanager.Filter{Viewer: v("carol")}, []string{"ra-2"}},
		{"kept role", statemanager.Filter{Viewer: v("", "manager")}, []string{"ra-1"}},
		{"dropped role", statemanager.Filter{Viewer: v("", "clerk")}, []string{"ra-1"}},
		{"added then kept role", statemanager.Filter{Viewer: v("", "director")}, []string{"ra-2"}},
		{"added role", statemanager.Filter{Viewer: v("", "ops")}, []string{"ra-2"}},
		{"trusted by user", statemanager.Filter{User: "carol"}, []string{"ra-2"}},
		{"trusted by role", statemanager.Filter{Role: "clerk"}, []string{"ra-1"}},
		{"trusted by old user", statemanager.Filter{User: "alice"}, nil},
		{"trusted by old user, in approval", statemanager.Filter{User: "alice", Status: statemanager.StatusInApproval}, []string{"ra-3"}},
		{"admin, waiting", statemanager.Filter{Viewer: &statemanager.Viewer{Admin: true}}, []string{"ra-1", "ra-2"}},
		{"admin, in approval", statemanager.Filter{Viewer: &statemanager.Viewer{Admin: true}, Status: statemanager.StatusInApproval}, []string{"ra-3"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.filter.Tenant = "acme"
			if got := listIDs(t, s, tc.filter); !slices.Equal(got, tc.want) {
				t.Errorf("List(%+v) = %v, want %v", tc.filter, got, tc.want)
			}
		})
	}
	// Closed, a reassigned task leaves the indexes of its current
	// candidates.
	for _, id := range []string{"ra-1", "ra-2", "ra-3"} {
		mustClose(t, s, statemanager.Close{ID: id, Status: statemanager.StatusCancelled, At: base + 20, Key: "c"})
	}
	for _, f := range []statemanager.Filter{{Viewer: v("bob")}, {Viewer: v("carol", "director", "ops", "manager")}, {User: "alice", Status: statemanager.StatusInApproval}, {}} {
		f.Tenant = "acme"
		if got := listIDs(t, s, f); len(got) != 0 {
			t.Errorf("List(%+v) after the closes = %v", f, got)
		}
	}
}

// testCloseHistory: every close appends its one closing event, replays
// and refused closes none; a new start of a closed id starts a new
// history.
func testCloseHistory(t *testing.T, s statemanager.Store) {
	lc := lifecycleOf(t, s)
	ctx := context.Background()
	ids := []string{"ch-0", "ch-1", "ch-2", "ch-3"}
	for _, id := range ids {
		mustStart(t, s, sampleTask(id))
	}
	mustClose(t, s, statemanager.Close{ID: ids[0], Status: statemanager.StatusCompleted, At: base + 5, By: "bob", Key: "p",
		Outcome: "reject", Note: "too long"})
	for range 2 { // a replay and another key append nothing
		if _, _, err := s.Close(ctx, statemanager.Close{ID: ids[0], Status: statemanager.StatusCompleted, At: base + 6, Key: "p"}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.Close(ctx, statemanager.Close{ID: ids[0], Status: statemanager.StatusTimeout, At: base + 6, Key: "timeout"}); !errors.Is(err, statemanager.ErrClosed) {
			t.Fatal(err)
		}
	}
	sameHistory(t, "completed", mustHistory(t, lc, ids[0]), []statemanager.Event{
		{Type: statemanager.EventStarted, At: base},
		{Type: statemanager.EventCompleted, At: base + 5, Actor: "bob", Outcome: "reject", Note: "too long"}})

	res, err := statemanager.CloseMany(ctx, s, ids, statemanager.Close{Status: statemanager.StatusTimeout, At: base + 7, Key: "timeout"})
	if err != nil {
		t.Fatal(err)
	}
	for i, id := range ids[1:] {
		if res[i+1].Err != nil || res[i+1].Task.Version != 2 {
			t.Fatalf("%s: %+v", id, res[i+1])
		}
		sameHistory(t, "timed out", mustHistory(t, lc, id), []statemanager.Event{
			{Type: statemanager.EventStarted, At: base}, {Type: statemanager.EventTimedOut, At: base + 7}})
	}
	if len(mustHistory(t, lc, ids[0])) != 2 {
		t.Errorf("a refused CloseMany appended to %s's history", ids[0])
	}

	// Replaced by a new visit, the task's history starts over.
	if err := s.Ack(ctx, ids[1]); err != nil {
		t.Fatal(err)
	}
	next := sampleTask(ids[1])
	next.RequestID, next.StartedAt = "r-next", base+100
	if got := mustStart(t, s, next); got.Version != 1 {
		t.Errorf("restarted at version %d", got.Version)
	}
	sameHistory(t, "restarted", mustHistory(t, lc, ids[1]), []statemanager.Event{{Type: statemanager.EventStarted, At: base + 100}})
	mustApply(t, lc, statemanager.Change{ID: ids[1], Version: 1, Key: "p", ClaimedBy: ptr("bob"),
		Event: statemanager.Event{Type: statemanager.EventClaimed, At: base + 101, Actor: "bob"}})
}
