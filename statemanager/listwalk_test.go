package statemanager_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/sagarunner/sagarunner/internal/redistest"
	"github.com/sagarunner/sagarunner/statemanager"
)

// TestListWalkIsBounded: a candidate's listing over a role whose tasks are
// almost all claimed by someone else walks a bounded number of entries per
// page (it does not hold Redis for the whole index), ends such pages short
// with a cursor, and the walk of every page still lists each claimable task
// exactly once.
func TestListWalkIsBounded(t *testing.T) {
	_, client := redistest.Start(t)
	s, err := statemanager.NewRedisStore(client, "workflow", statemanager.RedisConfig{Prefix: "walk", Shards: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	start := func(id string, at int64) *statemanager.Task {
		t.Helper()
		task, _, err := s.Start(ctx, &statemanager.Task{ID: id, Roles: []string{"clerk"}, StartedAt: at, RequestID: "r-" + id, StepID: "s"})
		if err != nil {
			t.Fatal(err)
		}
		return task
	}
	const claimed = 700
	for i := range claimed {
		task := start("c"+strconv.Itoa(i), int64(1000+i))
		eve := "eve"
		if _, _, err := s.Apply(ctx, statemanager.Change{ID: task.ID, Version: task.Version, Key: "k" + task.ID, ClaimedBy: &eve,
			Event: statemanager.Event{Type: statemanager.EventClaimed, Actor: "eve"}}); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]bool{}
	for i := range 3 {
		id := "free" + strconv.Itoa(i)
		start(id, int64(5000+i))
		want[id] = true
	}

	f := statemanager.Filter{Candidate: &statemanager.Viewer{User: "bob", Roles: []string{"clerk"}}, Limit: 2}
	got := map[string]int{}
	pages, short := 0, 0
	for {
		page, err := statemanager.ListPage(ctx, s, f)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if pages > 50 {
			t.Fatal("the listing never ends")
		}
		for _, task := range page.Tasks {
			got[task.ID]++
		}
		if page.Next == "" {
			break
		}
		if len(page.Tasks) < f.Limit {
			short++
		}
		f.Cursor = page.Next
	}
	if len(got) != len(want) {
		t.Fatalf("listed %v, want %v", got, want)
	}
	for id, n := range got {
		if !want[id] || n != 1 {
			t.Errorf("%s listed %d times", id, n)
		}
	}
	if short == 0 {
		t.Errorf("%d pages over %d claimed tasks and none ended short: the walk is not bounded", pages, claimed)
	}
}
