package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/sagarunner/sagarunner/statemanager"
)

// RunEarly is the conformance suite of the optional
// statemanager.EarlyAnswers: parking, the start that learns of parked
// operations, their removal and their expiry. newStore must return an
// empty store that implements EarlyAnswers, whose domain limit is well
// above EarlyPerTask; with 2 shards or more, shards are checked apart.
func RunEarly(t *testing.T, newStore func(t *testing.T) statemanager.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s statemanager.Store, ea statemanager.EarlyAnswers)
	}{
		{"ParkKeepsArrivalOrderAndKeysOnce", testParkOrder},
		{"StartReportsParked", testStartReportsParked},
		{"ParkOnExistingTaskRefused", testParkExisting},
		{"PerTaskLimit", testParkPerTaskLimit},
		{"UnparkRemovesOnlyNamed", testUnpark},
		{"ExpiredByShardAndTime", testExpired},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			ea, ok := s.(statemanager.EarlyAnswers)
			if !ok {
				t.Skip("the store does not implement the optional EarlyAnswers")
			}
			tc.fn(t, s, ea)
		})
	}
}

func park(t *testing.T, ea statemanager.EarlyAnswers, id, key string, at int64) bool {
	t.Helper()
	ok, err := ea.Park(context.Background(), statemanager.Parked{TaskID: id, Key: key, Value: []byte(`{"op":"` + key + `"}`)}, at)
	if err != nil {
		t.Fatalf("Park(%q, %q): %v", id, key, err)
	}
	return ok
}

func earlyKeys(t *testing.T, ea statemanager.EarlyAnswers, id string) []string {
	t.Helper()
	ps, err := ea.Early(context.Background(), id)
	if err != nil {
		t.Fatalf("Early(%q): %v", id, err)
	}
	keys := make([]string, len(ps))
	for i, p := range ps {
		keys[i] = p.Key
		if want := `{"op":"` + p.Key + `"}`; string(p.Value) != want || p.TaskID != id {
			t.Errorf("Early(%q)[%d] = %q for %q, want %q", id, i, p.Value, p.TaskID, want)
		}
	}
	return keys
}

func testParkOrder(t *testing.T, _ statemanager.Store, ea statemanager.EarlyAnswers) {
	// Keys that sort otherwise than they arrive.
	for i, k := range []string{"r-c", "r-a", "r-b"} {
		if !park(t, ea, "early-1", k, base+int64(i)) {
			t.Fatalf("Park(%q) = not parked, want parked", k)
		}
	}
	if park(t, ea, "early-1", "r-a", base+10) {
		t.Error("a redelivered key was parked twice")
	}
	if got := earlyKeys(t, ea, "early-1"); fmt.Sprint(got) != "[r-c r-a r-b]" {
		t.Errorf("Early = %v, want arrival order [r-c r-a r-b]", got)
	}
	if got := earlyKeys(t, ea, "nothing-parked"); len(got) != 0 {
		t.Errorf("Early of an id with nothing parked = %v", got)
	}
}

func testStartReportsParked(t *testing.T, _ statemanager.Store, ea statemanager.EarlyAnswers) {
	ctx := context.Background()
	park(t, ea, "early-2", "r-1", base)
	task := &statemanager.Task{ID: "early-2", RequestID: "start-1", StepID: "s", StartedAt: base}
	_, created, early, err := ea.StartEarly(ctx, task)
	if err != nil || !created || !early {
		t.Fatalf("StartEarly = created %v, early %v, %v; want created with early answers", created, early, err)
	}
	// A replayed start still learns of what is parked.
	_, created, early, err = ea.StartEarly(ctx, task)
	if err != nil || created || !early {
		t.Fatalf("replayed StartEarly = created %v, early %v, %v; want a replay with early answers", created, early, err)
	}
	if err := ea.Unpark(ctx, []statemanager.EarlyRef{{TaskID: "early-2", Key: "r-1"}}); err != nil {
		t.Fatal(err)
	}
	if _, _, early, err = ea.StartEarly(ctx, task); err != nil || early {
		t.Fatalf("StartEarly after Unpark: early %v, %v; want none", early, err)
	}
	_, created, early, err = ea.StartEarly(ctx, &statemanager.Task{ID: "early-3", RequestID: "start-2", StepID: "s", StartedAt: base})
	if err != nil || !created || early {
		t.Fatalf("StartEarly with nothing parked = created %v, early %v, %v", created, early, err)
	}
}

func testParkExisting(t *testing.T, s statemanager.Store, ea statemanager.EarlyAnswers) {
	ctx := context.Background()
	if _, _, err := s.Start(ctx, &statemanager.Task{ID: "early-4", RequestID: "start", StepID: "s", StartedAt: base}); err != nil {
		t.Fatal(err)
	}
	_, err := ea.Park(ctx, statemanager.Parked{TaskID: "early-4", Key: "r-1", Value: []byte(`{}`)}, base)
	if !errors.Is(err, statemanager.ErrTaskExists) {
		t.Fatalf("Park on a started task: %v, want ErrTaskExists", err)
	}
	if got := earlyKeys(t, ea, "early-4"); len(got) != 0 {
		t.Errorf("a refused park left %v", got)
	}
}

func testParkPerTaskLimit(t *testing.T, _ statemanager.Store, ea statemanager.EarlyAnswers) {
	for i := range statemanager.EarlyPerTask {
		park(t, ea, "early-5", fmt.Sprintf("r-%02d", i), base)
	}
	_, err := ea.Park(context.Background(), statemanager.Parked{TaskID: "early-5", Key: "r-more", Value: []byte(`{}`)}, base)
	if !errors.Is(err, statemanager.ErrEarlyFull) {
		t.Fatalf("Park past the per-task limit: %v, want ErrEarlyFull", err)
	}
	// A redelivery of a parked one is still a no-op, not a refusal.
	if park(t, ea, "early-5", "r-03", base) {
		t.Error("a redelivered key was parked again")
	}
	// Another id is not affected.
	if !park(t, ea, "early-6", "r-more", base) {
		t.Error("another task's park was refused")
	}
}

func testUnpark(t *testing.T, _ statemanager.Store, ea statemanager.EarlyAnswers) {
	ctx := context.Background()
	park(t, ea, "early-7", "r-1", base)
	park(t, ea, "early-7", "r-2", base)
	park(t, ea, "early-8", "r-1", base)
	refs := []statemanager.EarlyRef{{TaskID: "early-7", Key: "r-1"}, {TaskID: "early-8", Key: "r-1"}, {TaskID: "unknown", Key: "r-9"}}
	for range 2 { // twice: a retried unpark is harmless
		if err := ea.Unpark(ctx, refs); err != nil {
			t.Fatal(err)
		}
	}
	if got := earlyKeys(t, ea, "early-7"); fmt.Sprint(got) != "[r-2]" {
		t.Errorf("early-7 keeps %v, want [r-2]", got)
	}
	if got := earlyKeys(t, ea, "early-8"); len(got) != 0 {
		t.Errorf("early-8 keeps %v, want nothing", got)
	}
	// An unparked key may be parked anew (the store keeps no tombstone).
	if !park(t, ea, "early-8", "r-1", base) {
		t.Error("an unparked key could not be parked again")
	}
}

func testExpired(t *testing.T, s statemanager.Store, ea statemanager.EarlyAnswers) {
	ctx := context.Background()
	// Two ids of different shards, the second parked later.
	a, b := "early-a", ""
	for i := 0; b == "" && s.Shards() > 1; i++ {
		if id := fmt.Sprintf("early-b%d", i); s.ShardOf(id) != s.ShardOf(a) {
			b = id
		}
	}
	park(t, ea, a, "r-1", base)
	park(t, ea, a, "r-2", base+1000)
	if b != "" {
		park(t, ea, b, "r-1", base)
	}
	ps, err := ea.Early(ctx, a)
	if err != nil || len(ps) != 2 {
		t.Fatalf("Early(%q) = %v, %v", a, ps, err)
	}
	first, second := ps[0].ExpiresAt, ps[1].ExpiresAt
	if first <= base || second-first != 1000 {
		t.Fatalf("ExpiresAt %d and %d: want after the park time, 1000 ms apart", first, second)
	}
	expired := func(now int64) []string {
		t.Helper()
		got, err := ea.Expired(ctx, s.ShardOf(a), now, 0)
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for _, p := range got {
			keys = append(keys, p.TaskID+"/"+p.Key)
			if p.TaskID == a && p.Key == "r-1" && string(p.Value) != `{"op":"r-1"}` {
				t.Errorf("expired value %q", p.Value)
			}
		}
		return keys
	}
	if got := expired(first - 1); len(got) != 0 {
		t.Errorf("Expired before the first expiry = %v", got)
	}
	if got := expired(first); fmt.Sprint(got) != "[early-a/r-1]" {
		t.Errorf("Expired at the first expiry = %v, want [early-a/r-1] (another shard's stays out)", got)
	}
	// Expired removes nothing: only Unpark does, once dead letters are out.
	if got := expired(second); fmt.Sprint(got) != "[early-a/r-1 early-a/r-2]" {
		t.Errorf("Expired at the second expiry = %v", got)
	}
	if err := ea.Unpark(ctx, []statemanager.EarlyRef{{TaskID: a, Key: "r-1"}}); err != nil {
		t.Fatal(err)
	}
	if got := expired(second); fmt.Sprint(got) != "[early-a/r-2]" {
		t.Errorf("Expired after Unpark = %v", got)
	}
	if b == "" {
		return // one shard: nothing to keep apart
	}
	got, err := ea.Expired(ctx, s.ShardOf(b), first, 1)
	if err != nil || len(got) != 1 || got[0].TaskID != b {
		t.Errorf("Expired in the other shard = %v, %v", got, err)
	}
}
