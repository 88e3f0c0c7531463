package statemanager

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/sagarunner/sagarunner/internal/redistest"
)

// evalshaCalls is how many EVALSHA calls the server ran since its stats
// were last reset, less those that failed (a NOSCRIPT before the script is
// loaded, say).
func evalshaCalls(t *testing.T, client *redis.Client) int {
	t.Helper()
	info, err := client.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if rest, ok := strings.CutPrefix(line, "cmdstat_evalsha:calls="); ok {
			n, err := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
			if err != nil {
				t.Fatalf("INFO commandstats: %s: %v", line, err)
			}
			_, f, _ := strings.Cut(rest, "failed_calls=")
			failed, err := strconv.Atoi(f)
			if err != nil {
				t.Fatalf("INFO commandstats: %s: %v", line, err)
			}
			return n - failed
		}
	}
	return 0
}

// queued runs fns concurrently while the store's only flush slot is held,
// waits until all n calls they make are queued, then lets the queue go as
// one flush and returns the EVALSHA calls the server ran for it.
func queued(t *testing.T, s *RedisStore, g *gate, client *redis.Client, n int, fns ...func()) int {
	t.Helper()
	ctx := context.Background()
	held := holdSlot(t, s, g)
	done := make(chan struct{}, len(fns))
	for _, fn := range fns {
		go func() {
			defer func() { done <- struct{}{} }()
			fn()
		}()
	}
	waitQueued(t, s, n)
	if err := client.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	g.release <- struct{}{}
	<-held
	for range fns {
		<-done
	}
	// The gate holds one command per arming.
	g.entered = make(chan struct{})
	return evalshaCalls(t, client)
}

// TestMergedStartsAnswerEachTheirOwn: concurrent starts of one shard run
// as one script call, and each caller gets its own answer: created, the
// task that exists, the refusal of an id whose close is not acked, the
// early answers waiting for its id, and the failure of its own keys. A
// failing start stops none of the others.
func TestMergedStartsAnswerEachTheirOwn(t *testing.T) {
	ctx := context.Background()
	_, client := redistest.Start(t)
	s, g := gatedStore(t, client)
	ids := idsOfShard(0, 6)
	fresh, open, pending, early, broken, fresh2 := ids[0], ids[1], ids[2], ids[3], ids[4], ids[5]

	if _, _, err := s.Start(ctx, &Task{ID: open, Name: "first", StartedAt: 1000}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Start(ctx, &Task{ID: pending, RequestID: "r1", StartedAt: 1000}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Close(ctx, Close{ID: pending, Status: StatusCompleted, Key: "k"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Park(ctx, Parked{TaskID: early, Key: "op", Value: []byte("v")}, 1000); err != nil {
		t.Fatal(err)
	}
	// The broken start's user index is a string: its ZADD fails after
	// the task's hash is written.
	if err := client.Set(ctx, "{workflow:0}:u:mallory", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}

	type answer struct {
		task           *Task
		created, early bool
		err            error
	}
	got := make(map[string]answer)
	results := make(chan func(), len(ids))
	start := func(task *Task) func() {
		return func() {
			stored, created, early, err := s.StartEarly(ctx, task)
			results <- func() { got[task.ID] = answer{stored, created, early, err} }
		}
	}
	calls := queued(t, s, g, client, len(ids),
		start(&Task{ID: fresh, Name: "fresh", Roles: []string{"admin"}, Deadline: 5000, StartedAt: 1000}),
		start(&Task{ID: open, Name: "second", StartedAt: 2000}),
		start(&Task{ID: pending, RequestID: "r2", StartedAt: 2000}),
		start(&Task{ID: early, StartedAt: 1000}),
		start(&Task{ID: broken, User: "mallory", StartedAt: 1000}),
		start(&Task{ID: fresh2, Priority: 3, StartedAt: 1000}),
	)
	for range ids {
		(<-results)()
	}
	if calls != 1 {
		t.Errorf("%d EVALSHA calls for %d starts of one shard, want 1", calls, len(ids))
	}
	if a := got[fresh]; a.err != nil || !a.created || a.early || a.task.Name != "fresh" {
		t.Errorf("fresh start = %+v", a)
	}
	if a := got[fresh2]; a.err != nil || !a.created {
		t.Errorf("second fresh start = %+v", a)
	}
	if a := got[open]; a.err != nil || a.created || a.task.Name != "first" {
		t.Errorf("start of an open task = %+v, want the first one, not created", a)
	}
	if a := got[pending]; !errors.Is(a.err, ErrClosePending) {
		t.Errorf("start over an unacked close = %+v, want ErrClosePending", a)
	}
	if a := got[early]; a.err != nil || !a.created || !a.early {
		t.Errorf("start with early answers = %+v, want created and early", a)
	}
	var rerr redis.Error
	if a := got[broken]; a.err == nil || !strings.Contains(a.err.Error(), "WRONGTYPE") || !errors.As(a.err, &rerr) {
		t.Errorf("broken start = %+v, want its own WRONGTYPE redis error", a)
	}
	for _, id := range []string{fresh, fresh2, early} {
		if task, err := s.Get(ctx, id); err != nil || !task.Waiting() {
			t.Errorf("Get(%q) = %+v, %v", id, task, err)
		}
	}
	// The started tasks are listed and counted as they would be alone.
	if n, err := client.ZCard(ctx, "{workflow:0}:r:admin").Result(); err != nil || n != 1 {
		t.Errorf("role index holds %d, %v; want 1", n, err)
	}
	if n, err := client.ZScore(ctx, "{workflow:0}:due", fresh).Result(); err != nil || n != 5000 {
		t.Errorf("due score of %q = %v, %v; want 5000", fresh, n, err)
	}
	if n, err := client.ZCard(ctx, "{workflow:0}:p:waiting").Result(); err != nil || n != 1 {
		t.Errorf("priority index holds %d, %v; want 1", n, err)
	}
}

// TestMergedClosesAnswerEachTheirOwn: concurrent closes of one shard, each
// with its own decision, run as one script call; each caller gets its own
// answer, refusals included, and one failing id stops none of the others.
func TestMergedClosesAnswerEachTheirOwn(t *testing.T) {
	ctx := context.Background()
	_, client := redistest.Start(t)
	s, g := gatedStore(t, client)
	ids := idsOfShard(1, 6)
	done, timedOut, replayed, approvals, missing, broken := ids[0], ids[1], ids[2], ids[3], ids[4], ids[5]
	for _, id := range []string{done, timedOut, replayed} {
		if _, _, err := s.Start(ctx, &Task{ID: id, Roles: []string{"admin"}, Deadline: 5000, StartedAt: 1000}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := s.Start(ctx, &Task{ID: approvals, RequiredApprovals: 2, StartedAt: 1000}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Close(ctx, Close{ID: replayed, Status: StatusCancelled, Key: "cancel-1", By: "ann"}); err != nil {
		t.Fatal(err)
	}
	if err := client.Set(ctx, "{workflow:1}:t:"+broken, "x", 0).Err(); err != nil {
		t.Fatal(err)
	}

	type answer struct {
		task   *Task
		replay bool
		err    error
	}
	got := make(map[string]answer)
	results := make(chan func(), len(ids))
	closeIt := func(c Close) func() {
		return func() {
			task, replay, err := s.Close(ctx, c)
			results <- func() { got[c.ID] = answer{task, replay, err} }
		}
	}
	calls := queued(t, s, g, client, len(ids),
		closeIt(Close{ID: done, Status: StatusCompleted, By: "bob", Key: "done-1", Data: []byte(`{"ok":1}`), At: 2000}),
		closeIt(Close{ID: timedOut, Status: StatusTimeout, Key: "timeout", At: 6000, OnlyIfDue: true}),
		closeIt(Close{ID: replayed, Status: StatusCancelled, Key: "cancel-1", By: "ann"}),
		closeIt(Close{ID: approvals, Status: StatusCompleted, Key: "done-2"}),
		closeIt(Close{ID: missing, Status: StatusCompleted, Key: "done-3"}),
		closeIt(Close{ID: broken, Status: StatusCompleted, Key: "done-4"}),
	)
	for range ids {
		(<-results)()
	}
	if calls != 1 {
		t.Errorf("%d EVALSHA calls for %d closes of one shard, want 1", calls, len(ids))
	}
	if a := got[done]; a.err != nil || a.replay || a.task.Status != StatusCompleted || a.task.ClosedBy != "bob" || string(a.task.CloseData) != `{"ok":1}` || a.task.ClosedAt != 2000 {
		t.Errorf("completion = %+v", a)
	}
	if a := got[timedOut]; a.err != nil || a.task.Status != StatusTimeout || a.task.ClosedAt != 6000 || a.task.ClosedBy != "" || a.task.CloseData != nil {
		t.Errorf("timeout = %+v: a neighbour's decision leaked into it?", a)
	}
	if a := got[replayed]; a.err != nil || !a.replay || a.task.Status != StatusCancelled {
		t.Errorf("replayed close = %+v, want the replay", a)
	}
	if a := got[approvals]; !errors.Is(a.err, ErrNeedsApproval) {
		t.Errorf("close of a task needing approvals = %+v, want ErrNeedsApproval", a)
	}
	if a := got[missing]; !errors.Is(a.err, ErrNotFound) {
		t.Errorf("close of no task = %+v, want ErrNotFound", a)
	}
	var rerr redis.Error
	if a := got[broken]; a.err == nil || !strings.Contains(a.err.Error(), "WRONGTYPE") || !errors.As(a.err, &rerr) {
		t.Errorf("broken close = %+v, want its own WRONGTYPE redis error", a)
	}
	// What the closes share is kept as they would have kept it alone: the
	// waiting count, the pending set and the closed indexes.
	if n, err := s.CountWaiting(ctx); err != nil || n != 1 {
		t.Errorf("CountWaiting = %d, %v; want 1 (the task needing approvals)", n, err)
	}
	for status, id := range map[string]string{StatusCompleted: done, StatusTimeout: timedOut, StatusCancelled: replayed} {
		if _, err := client.ZScore(ctx, "{workflow:1}:closed:"+status, id).Result(); err != nil {
			t.Errorf("%q is not in the closed index of %s: %v", id, status, err)
		}
	}
	if n, err := client.ZCard(ctx, "{workflow:1}:pending").Result(); err != nil || n != 3 {
		t.Errorf("pending holds %d, %v; want 3", n, err)
	}
	if n, err := client.Exists(ctx, "{workflow:1}:r:admin").Result(); err != nil || n != 0 {
		t.Errorf("role index still exists (%d, %v) after every task of it closed", n, err)
	}
}

// TestMergedAcksShareOneCall: concurrent acks of one shard run as one
// script call, and each acked task gets its TTL.
func TestMergedAcksShareOneCall(t *testing.T) {
	ctx := context.Background()
	_, client := redistest.Start(t)
	s, g := gatedStore(t, client)
	ids := idsOfShard(2, 5)
	var fns []func()
	errs := make(chan error, len(ids))
	for _, id := range ids {
		if _, _, err := s.Start(ctx, &Task{ID: id, StartedAt: 1000}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.Close(ctx, Close{ID: id, Status: StatusCompleted, Key: "k"}); err != nil {
			t.Fatal(err)
		}
		fns = append(fns, func() { errs <- s.Ack(ctx, id) })
	}
	if calls := queued(t, s, g, client, len(ids), fns...); calls != 1 {
		t.Errorf("%d EVALSHA calls for %d acks of one shard, want 1", calls, len(ids))
	}
	for range ids {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	for _, id := range ids {
		if ttl, err := client.PTTL(ctx, "{workflow:2}:t:"+id).Result(); err != nil || ttl <= 0 {
			t.Errorf("TTL of %q = %v, %v; want the ClosedTTL", id, ttl, err)
		}
	}
	if n, err := client.ZCard(ctx, "{workflow:2}:pending").Result(); err != nil || n != 0 {
		t.Errorf("pending holds %d, %v; want 0", n, err)
	}
}

// failMerged is a go-redis hook that answers the first merged script call
// (one with more than a lone start's keys) with a server error without
// sending it, as a server would that refused the call as a whole.
type failMerged struct{ done bool }

type refusal string

func (e refusal) Error() string { return string(e) }
func (refusal) RedisError()     {}

func (f *failMerged) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (f *failMerged) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (f *failMerged) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if f.done {
			return next(ctx, cmds)
		}
		kept := cmds[:0:0]
		for _, c := range cmds {
			args := c.Args()
			if c.Name() == "evalsha" && len(args) > 3 && fmt.Sprint(args[2]) != "6" {
				c.SetErr(refusal("BUSY pretend the server refused the merged call"))
				f.done = true
				continue
			}
			kept = append(kept, c)
		}
		if len(kept) == 0 {
			return nil
		}
		return next(ctx, kept)
	}
}

// TestMergedCallFailingWholeRunsItsCallsAlone: when the server refuses a
// merged call as a whole, its calls run again one by one and each caller
// gets its own answer.
func TestMergedCallFailingWholeRunsItsCallsAlone(t *testing.T) {
	ctx := context.Background()
	_, client := redistest.Start(t)
	s, g := gatedStore(t, client)
	client.AddHook(&failMerged{})
	ids := idsOfShard(3, 4)
	if _, _, err := s.Start(ctx, &Task{ID: ids[0], Name: "first", StartedAt: 1000}); err != nil {
		t.Fatal(err)
	}
	created := make(chan string, len(ids))
	errs := make(chan error, len(ids))
	var fns []func()
	for _, id := range ids {
		fns = append(fns, func() {
			_, ok, err := s.Start(ctx, &Task{ID: id, StartedAt: 2000})
			if ok {
				created <- id
			}
			errs <- err
		})
	}
	if calls := queued(t, s, g, client, len(ids), fns...); calls != len(ids) {
		t.Errorf("%d EVALSHA calls reached the server, want %d (the refused merged call's starts, alone)", calls, len(ids))
	}
	for range ids {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if n := len(created); n != len(ids)-1 {
		t.Errorf("%d starts created a task, want %d (the first id existed)", n, len(ids)-1)
	}
}
