package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/sagarunner/sagarunner/statemanager"
)

// raceTasks is how many tasks each lifecycle race runs on, one race per
// task.
const raceTasks = 1000

// raceResult is what one contender got for one task.
type raceResult struct {
	task   *statemanager.Task
	replay bool
	err    error
}

// contender is one side of a race. act handles a batch of tasks (batch of
// them, 1 for the operations people make, more for the timers' firing)
// and reports per task.
type contender struct {
	name  string
	batch int
	act   func(ctx context.Context, ids []string) []raceResult
	// event is the history event its win appends; lose is the error its
	// loss returns.
	event string
	lose  error
}

// lifecycleRace is two contenders on each of raceTasks tasks started by
// start and brought by setup to the version the contenders read.
type lifecycleRace struct {
	start func(id string) *statemanager.Task
	setup func(lc statemanager.Lifecycle, id string) error
	// before is the history's event types when the race begins.
	before []string
	a, b   contender
	// check tells what the stored task must be after side winner won.
	check func(stored *statemanager.Task, winner int) error
}

func closeResults(res []statemanager.CloseResult) []raceResult {
	out := make([]raceResult, len(res))
	for i, r := range res {
		out[i] = raceResult{r.Task, r.Replay, r.Err}
	}
	return out
}

// applier is a contender making one change per task, computed from version.
func applier(lc statemanager.Lifecycle, name string, lose error, version int64, change func(id string) statemanager.Change) contender {
	c := change("")
	event := c.Event.Type
	return contender{name: name, batch: 1, event: event, lose: lose,
		act: func(ctx context.Context, ids []string) []raceResult {
			c := change(ids[0])
			c.ID, c.Version = ids[0], version
			task, replay, err := lc.Apply(ctx, c)
			return []raceResult{{task, replay, err}}
		}}
}

// firing is the timers' side: a deadline CloseMany over batches of tasks.
func firing(s statemanager.Store, lose error) contender {
	return contender{name: "firing", batch: 10, event: statemanager.EventTimedOut, lose: lose,
		act: func(ctx context.Context, ids []string) []raceResult {
			res, err := statemanager.CloseMany(ctx, s, ids, statemanager.Close{
				Status: statemanager.StatusTimeout, At: base + 1000, Key: "timeout", OnlyIfDue: true})
			if err != nil {
				out := make([]raceResult, len(ids))
				for i := range out {
					out[i].err = err
				}
				return out
			}
			return closeResults(res)
		}}
}

func dueSoon(id string) *statemanager.Task {
	t := sampleTask(id)
	t.Deadline = base + 10
	return t
}

func claimChange(who string) func(string) statemanager.Change {
	return func(string) statemanager.Change {
		return statemanager.Change{Key: "claim-" + who, ClaimedBy: ptr(who),
			Event: statemanager.Event{Type: statemanager.EventClaimed, At: base + 1, Actor: who}}
	}
}

// testRaceClaimVersusClaim: two candidates claim the same task from the
// same read; one holds it, the other learns who does (ErrStale).
func testRaceClaimVersusClaim(t *testing.T, s statemanager.Store) {
	lc := lifecycleOf(t, s)
	runRace(t, s, lc, lifecycleRace{
		start:  sampleTask,
		before: []string{statemanager.EventStarted},
		a:      applier(lc, "alice", statemanager.ErrStale, 1, claimChange("alice")),
		b:      applier(lc, "bob", statemanager.ErrStale, 1, claimChange("bob")),
		check: func(got *statemanager.Task, winner int) error {
			if want := []string{"alice", "bob"}[winner]; got.ClaimedBy != want || got.Version != 2 || !got.Waiting() {
				return fmt.Errorf("claimed by %q at version %d, status %s; want %s at 2", got.ClaimedBy, got.Version, got.Status, want)
			}
			return nil
		},
	})
}

// testRaceCompleteVersusFiring: a completion (a change that closes the
// task) against its deadline firing.
func testRaceCompleteVersusFiring(t *testing.T, s statemanager.Store) {
	lc := lifecycleOf(t, s)
	runRace(t, s, lc, lifecycleRace{
		start:  dueSoon,
		before: []string{statemanager.EventStarted},
		a: applier(lc, "complete", statemanager.ErrClosed, 1, func(string) statemanager.Change {
			return statemanager.Change{Key: "complete", Outcome: ptr("approve"), CompletedBy: ptr("bob"),
				Event: statemanager.Event{Type: statemanager.EventCompleted, At: base + 500, Actor: "bob", Outcome: "approve"},
				Close: &statemanager.Close{Status: statemanager.StatusCompleted, At: base + 500, By: "bob", Outcome: "approve"}}
		}),
		b:     firing(s, statemanager.ErrClosed),
		check: closedAs(statemanager.StatusCompleted, statemanager.StatusTimeout),
	})
}

// testRaceApproveVersusCancel: the last approval (closing the task)
// against an admin's cancel.
func testRaceApproveVersusCancel(t *testing.T, s statemanager.Store) {
	lc := lifecycleOf(t, s)
	runRace(t, s, lc, lifecycleRace{
		start: func(id string) *statemanager.Task {
			task := sampleTask(id)
			task.RequiredApprovals = 1
			return task
		},
		setup: func(lc statemanager.Lifecycle, id string) error {
			_, _, err := lc.Apply(context.Background(), statemanager.Change{ID: id, Version: 1, Key: "complete",
				Status: ptr(statemanager.StatusInApproval), Outcome: ptr("approve"), CompletedBy: ptr("bob"),
				Event: statemanager.Event{Type: statemanager.EventCompleted, At: base + 1, Actor: "bob", Outcome: "approve"}})
			return err
		},
		before: []string{statemanager.EventStarted, statemanager.EventCompleted},
		a: applier(lc, "approve", statemanager.ErrClosed, 2, func(string) statemanager.Change {
			return statemanager.Change{Key: "approve", Approvals: &[]statemanager.Approval{{User: "carol", At: base + 500}},
				Event: statemanager.Event{Type: statemanager.EventApproved, At: base + 500, Actor: "carol"},
				Close: &statemanager.Close{Status: statemanager.StatusCompleted, At: base + 500, By: "carol", Outcome: "approve"}}
		}),
		b: contender{name: "cancel", batch: 1, event: statemanager.EventCancelled, lose: statemanager.ErrClosed,
			act: func(ctx context.Context, ids []string) []raceResult {
				task, replay, err := s.Close(ctx, statemanager.Close{ID: ids[0], Status: statemanager.StatusCancelled,
					At: base + 600, By: "root", Key: "cancel", Note: "no longer needed"})
				return []raceResult{{task, replay, err}}
			}},
		check: closedAs(statemanager.StatusCompleted, statemanager.StatusCancelled),
	})
}

// testRaceDeadlineVersusFiring: a deadline moved later against the timers
// firing the old one they read.
func testRaceDeadlineVersusFiring(t *testing.T, s statemanager.Store) {
	lc := lifecycleOf(t, s)
	const later = base + 1_000_000_000
	wins := runRace(t, s, lc, lifecycleRace{
		start:  dueSoon,
		before: []string{statemanager.EventStarted},
		a: applier(lc, "deadline", statemanager.ErrClosed, 1, func(string) statemanager.Change {
			return statemanager.Change{Key: "deadline", Deadline: ptr(int64(later)),
				Event: statemanager.Event{Type: statemanager.EventDeadline, At: base + 500, Actor: "root", To: "later"}}
		}),
		b: firing(s, statemanager.ErrStale),
		check: func(got *statemanager.Task, winner int) error {
			if winner == 0 {
				if !got.Waiting() || got.Deadline != later || got.Version != 2 {
					return fmt.Errorf("status %s, deadline %d, version %d; want open, moved, at 2", got.Status, got.Deadline, got.Version)
				}
				return nil
			}
			return closedAs("", statemanager.StatusTimeout)(got, winner)
		},
	})
	// The moved deadlines wait in the due index, at their new time only.
	var due int
	for shard := range s.Shards() {
		d, err := s.Due(context.Background(), shard, later, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range d {
			if x.Deadline != later {
				t.Errorf("%s due at %d", x.ID, x.Deadline)
			}
		}
		due += len(d)
	}
	if due != wins["deadline"] {
		t.Errorf("%d tasks due, %d deadlines moved", due, wins["deadline"])
	}
}

// closedAs checks a task closed with the status of side winner.
func closedAs(statuses ...string) func(*statemanager.Task, int) error {
	return func(got *statemanager.Task, winner int) error {
		if got.Status != statuses[winner] || got.Waiting() {
			return fmt.Errorf("status %s, want %s", got.Status, statuses[winner])
		}
		return nil
	}
}

func raceID(i int) string { return fmt.Sprintf("race-%d", i) }

// runRace runs r on raceTasks tasks at once: exactly one side wins each,
// the other gets its losing error with the task as the winner left it, and
// the history holds the events before the race and the winner's event, no
// other. It returns the number of wins of each side by name.
func runRace(t *testing.T, s statemanager.Store, lc statemanager.Lifecycle, r lifecycleRace) map[string]int {
	ctx := context.Background()
	ids := make([]string, raceTasks)
	for i := range ids {
		ids[i] = raceID(i)
	}
	parallel(t, ids, func(id string) error {
		if _, created, err := s.Start(ctx, r.start(id)); err != nil || !created {
			return fmt.Errorf("start: created=%v, %w", created, err)
		}
		if r.setup != nil {
			return r.setup(lc, id)
		}
		return nil
	})
	if t.Failed() {
		return nil
	}

	sides := []contender{r.a, r.b}
	results := make([][2]raceResult, len(ids))
	index := make(map[string]int, len(ids))
	for i, id := range ids {
		index[id] = i
	}
	var wg sync.WaitGroup
	gun := make(chan struct{})
	for side, c := range sides {
		for lo := 0; lo < len(ids); lo += c.batch {
			batch := ids[lo:min(lo+c.batch, len(ids))]
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-gun
				for j, res := range c.act(ctx, batch) {
					results[index[batch[j]]][side] = res
				}
			}()
		}
	}
	close(gun)
	wg.Wait()

	var mu sync.Mutex
	wins := map[string]int{}
	open := 0
	parallel(t, ids, func(id string) error {
		res := results[index[id]]
		winner := -1
		for side, got := range res {
			switch {
			case got.err == nil && !got.replay:
				if winner >= 0 {
					return fmt.Errorf("both %s and %s won", sides[0].name, sides[1].name)
				}
				winner = side
			case !errors.Is(got.err, sides[side].lose):
				return fmt.Errorf("%s: replay=%v err=%v, want a win or %v", sides[side].name, got.replay, got.err, sides[side].lose)
			}
		}
		if winner < 0 {
			return errors.New("nobody won")
		}
		stored, err := s.Get(ctx, id)
		if err != nil {
			return err
		}
		if err := r.check(stored, winner); err != nil {
			return fmt.Errorf("%s won: %w", sides[winner].name, err)
		}
		for _, got := range res {
			if got.task == nil || got.task.Version != stored.Version || got.task.Status != stored.Status ||
				got.task.ClaimedBy != stored.ClaimedBy || got.task.ClosedAt != stored.ClosedAt || got.task.Deadline != stored.Deadline {
				return fmt.Errorf("a contender saw %+v, stored %+v", got.task, stored)
			}
		}
		h, err := lc.History(ctx, id)
		if err != nil {
			return err
		}
		want := append(slices.Clone(r.before), sides[winner].event)
		var types []string
		for i, e := range h {
			types = append(types, e.Type)
			if e.Seq != int64(i+1) {
				return fmt.Errorf("event %d has Seq %d", i, e.Seq)
			}
		}
		if !slices.Equal(types, want) {
			return fmt.Errorf("%s won, history %v, want %v", sides[winner].name, types, want)
		}
		if last := h[len(h)-1]; last.Seq != stored.Version {
			return fmt.Errorf("last event Seq %d, task version %d", last.Seq, stored.Version)
		}
		mu.Lock()
		wins[sides[winner].name]++
		if stored.Waiting() {
			open++
		}
		mu.Unlock()
		return nil
	})
	t.Logf("wins: %v", wins)

	// Each task closed at most once: pending and the open count agree with
	// the winners.
	closed := 0
	for shard := range s.Shards() {
		p, err := s.Pending(ctx, shard, base+1_000_000, 2*raceTasks)
		if err != nil {
			t.Fatal(err)
		}
		closed += len(p)
	}
	if closed+open != raceTasks {
		t.Errorf("%d closed and pending + %d open, want %d tasks", closed, open, raceTasks)
	}
	if c, ok := s.(statemanager.Counter); ok {
		if n, err := c.CountWaiting(ctx); err != nil || n != int64(open) {
			t.Errorf("CountWaiting = %d, %v; %d tasks open", n, err, open)
		}
	}
	return wins
}

// parallel runs fn on every id from a few goroutines, as the runner's
// partition workers do, and reports the first failures.
func parallel(t *testing.T, ids []string, fn func(id string) error) {
	t.Helper()
	var mu sync.Mutex
	var failures []string
	work := make(chan string)
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range work {
				if err := fn(id); err != nil {
					mu.Lock()
					failures = append(failures, id+": "+err.Error())
					mu.Unlock()
				}
			}
		}()
	}
	for _, id := range ids {
		work <- id
	}
	close(work)
	wg.Wait()
	slices.Sort(failures)
	for i, f := range failures {
		if i == 10 {
			t.Errorf("... and %d more", len(failures)-i)
			break
		}
		t.Error(f)
	}
}
