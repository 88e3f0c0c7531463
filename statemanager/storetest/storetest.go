// Package storetest is the conformance suite of statemanager.Store. A backend
// counts as a state manager only once its test file passes Run: the suite
// pins down the idempotency and exactly-once rules the runner relies on
// (replayed starts and closes, one winner per close race, decisions kept
// pending until acked), so that every backend behaves the same under them.
// A backend offering statemanager.Lifecycle also passes its half: every
// transition and refusal, the history, and one winner per race of two
// operations on a task.
package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/sagarunner/sagarunner/statemanager"
)

// base is an arbitrary epoch-ms instant the suite's times are relative to.
const base int64 = 1_763_800_000_000

// Run runs the conformance suite. newStore must return an empty store, not
// shared with any other subtest, with at least 2 shards.
func Run(t *testing.T, newStore func(t *testing.T) statemanager.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s statemanager.Store)
	}{
		{"StartGetRoundTrip", testStartGetRoundTrip},
		{"StartFillsDefaults", testStartFillsDefaults},
		{"DuplicateStartIsNoop", testDuplicateStart},
		{"ReplayedStartAfterCloseIsNoop", testReplayedStartAfterClose},
		{"StartAfterCloseByOtherRequestReplaces", testStartReplacesClosed},
		{"StartKeyTellsReplayFromReentry", testStartKey},
		{"CloseManyActsAsCloseOnEach", testCloseMany},
		{"StartDoesNotReplaceUnackedClose", testStartKeepsPendingClose},
		{"CloseRecordsDecision", testCloseRecordsDecision},
		{"CloseSameKeyReplays", testCloseReplay},
		{"CloseOtherKeyIsErrClosed", testCloseOtherKey},
		{"CloseWithoutKeyDoesNotReplay", testCloseWithoutKey},
		{"UnknownIsErrNotFound", testUnknown},
		{"CloseRejectsInvalidStatus", testCloseInvalidStatus},
		{"DueOrderAndLimit", testDueOrderAndLimit},
		{"DueShardIsolation", testDueShardIsolation},
		{"ClosedTasksLeaveDue", testClosedLeaveDue},
		{"BetweenAcrossShards", testBetween},
		{"PendingUntilAck", testPending},
		{"AckManyAcksEach", testAckMany},
		{"WatermarkNeverGoesBack", testWatermark},
		{"ListFilters", testList},
		{"ListClosedByRoleRefused", testListClosedByRoleRefused},
		{"ListClosedByStatus", testListClosed},
		{"TenantScoping", testTenantScoping},
		{"ViewerVisibility", testViewerVisibility},
		{"FilteredListingPages", testFilteredPages},
		{"ShardOfStable", testShardOf},
		{"CloseCompletedNeedsApprovals", testCloseNeedsApprovals},
		{"CountWaitingFollowsStartsAndCloses", testCountWaiting},
		{"ConcurrentProceedVersusTimeout", testCloseRace},
		// The optional Lifecycle (SPEC §12).
		{"LifecycleFlowAndHistory", testLifecycleFlow},
		{"ApplyRefusals", testApplyRefusals},
		{"DeadlineMoves", testDeadlineMoves},
		{"ReassignmentKeepsIndexes", testReassignmentIndexes},
		{"ClosesAppendToHistory", testCloseHistory},
		{"RaceClaimVersusClaim", testRaceClaimVersusClaim},
		{"RaceCompleteVersusFiring", testRaceCompleteVersusFiring},
		{"RaceApproveVersusCancel", testRaceApproveVersusCancel},
		{"RaceDeadlineVersusFiring", testRaceDeadlineVersusFiring},
		// The inbox (SPEC §12).
		{"ListingAgreesWithVisibility", testListingAgreesWithVisibility},
		{"InboxFilters", testInboxFilters},
		{"InboxCounts", testInboxCounts},
		{"InboxSorts", testInboxSorts},
		{"InboxDeadlineOrderFollowsMoves", testInboxDeadlineOrderFollowsMoves},
		{"InboxPagingUnderChurn", testInboxPagingUnderChurn},
		{"InboxRefusals", testInboxRefusals},
		{"CloseDataKeptForApprovals", testCloseDataKeptForApprovals},
		{"StartedByIsTheStartedActor", testStartedByIsTheStartedActor},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newStore(t))
		})
	}
}

func sampleTask(id string) *statemanager.Task {
	return &statemanager.Task{
		ID:        id,
		Name:      "Job Post Approval",
		Spec:      "job_post_approval",
		Action:    "Approve",
		Roles:     []string{"admin", "manager"},
		User:      "alice",
		Saga:      "job_post_approval",
		StepID:    "approve",
		RequestID: "r-" + id,
		StartedAt: base,
		Deadline:  base + 60_000,
		Data:      json.RawMessage(`{"data":{"productId":"` + id + `","brief":"summer vibes"}}`),
		Envelope:  json.RawMessage(`{"requestMeta":{"requestId":"r-` + id + `"},"payload":{"parameters":{"productId":"` + id + `"}}}`),

		// No RequiredApprovals: a plain COMPLETED close of a task that
		// needs them is refused (ErrNeedsApproval); the lifecycle tests
		// that need them set them.
		PossibleOutcomes: []string{"approve", "reject"},
		ApproverRoles:    []string{"director", "auditor"},
		Priority:         3,
	}
}

func mustStart(t *testing.T, s statemanager.Store, task *statemanager.Task) *statemanager.Task {
	t.Helper()
	got, created, err := s.Start(context.Background(), task)
	if err != nil {
		t.Fatalf("Start(%q): %v", task.ID, err)
	}
	if !created {
		t.Fatalf("Start(%q): created = false, want true", task.ID)
	}
	return got
}

func mustClose(t *testing.T, s statemanager.Store, c statemanager.Close) *statemanager.Task {
	t.Helper()
	got, replay, err := s.Close(context.Background(), c)
	if err != nil {
		t.Fatalf("Close(%q): %v", c.ID, err)
	}
	if replay {
		t.Fatalf("Close(%q): replay = true on first close", c.ID)
	}
	return got
}

func mustGet(t *testing.T, s statemanager.Store, id string) *statemanager.Task {
	t.Helper()
	got, err := s.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("Get(%q): %v", id, err)
	}
	return got
}

// sameTask compares every field, raw JSON byte for byte, and the domain
// against the store's own (whatever the caller passed in).
func sameTask(t *testing.T, what string, got, want *statemanager.Task) {
	t.Helper()
	if got == nil {
		t.Fatalf("%s: nil task", what)
	}
	w := *want
	w.Domain = got.Domain
	if got.Domain == "" {
		t.Errorf("%s: empty Domain", what)
	}
	g := *got
	if !bytes.Equal(g.Data, w.Data) || !bytes.Equal(g.Envelope, w.Envelope) || !bytes.Equal(g.CloseData, w.CloseData) {
		t.Errorf("%s: raw JSON differs:\n got data=%s env=%s close=%s\nwant data=%s env=%s close=%s",
			what, g.Data, g.Envelope, g.CloseData, w.Data, w.Envelope, w.CloseData)
	}
	g.Data, g.Envelope, g.CloseData = nil, nil, nil
	w.Data, w.Envelope, w.CloseData = nil, nil, nil
	if len(g.Roles) == 0 && len(w.Roles) == 0 {
		g.Roles, w.Roles = nil, nil
	}
	if fmt.Sprintf("%+v", g) != fmt.Sprintf("%+v", w) {
		t.Errorf("%s:\n got %+v\nwant %+v", what, g, w)
	}
}

// idsInShard returns n distinct ids that s puts in shard.
func idsInShard(s statemanager.Store, prefix string, shard, n int) []string {
	var ids []string
	for i := 0; len(ids) < n; i++ {
		id := fmt.Sprintf("%s-%d", prefix, i)
		if s.ShardOf(id) == shard {
			ids = append(ids, id)
		}
	}
	return ids
}

func testStartGetRoundTrip(t *testing.T, s statemanager.Store) {
	in := sampleTask("product-1")
	// Fields only a lifecycle change writes are not the caller's to set.
	in.ClaimedBy, in.Outcome, in.Note, in.CompletedBy, in.Version = "mallory", "approve", "n", "mallory", 7
	in.Approvals = []statemanager.Approval{{User: "mallory", At: base}}
	want := *sampleTask("product-1")
	want.Status, want.Version = statemanager.StatusWaiting, 1

	got := mustStart(t, s, in)
	sameTask(t, "Start", got, &want)
	sameTask(t, "Get", mustGet(t, s, "product-1"), &want)
	if !got.Waiting() {
		t.Errorf("Waiting() = false after Start")
	}
}

func testStartFillsDefaults(t *testing.T, s statemanager.Store) {
	got := mustStart(t, s, &statemanager.Task{ID: "bare", Status: statemanager.StatusCompleted})
	if got.Status != statemanager.StatusWaiting {
		t.Errorf("Status = %q, want WAITING", got.Status)
	}
	if got.StartedAt == 0 {
		t.Errorf("StartedAt not filled")
	}
	stored := mustGet(t, s, "bare")
	if stored.StartedAt != got.StartedAt || stored.Deadline != 0 || len(stored.Roles) != 0 || stored.Data != nil {
		t.Errorf("Get = %+v, want StartedAt %d, no deadline, roles or data", stored, got.StartedAt)
	}
}

func testDuplicateStart(t *testing.T, s statemanager.Store) {
	first := mustStart(t, s, sampleTask("dup"))
	again := sampleTask("dup")
	again.RequestID = "r-other"
	again.Data = json.RawMessage(`{"other":true}`)
	again.Deadline = base + 1
	got, created, err := s.Start(context.Background(), again)
	if err != nil {
		t.Fatal(err)
	}
	if created {
		t.Errorf("created = true for a waiting id")
	}
	sameTask(t, "duplicate Start", got, first)
	sameTask(t, "Get", mustGet(t, s, "dup"), first)
	due, err := s.Due(context.Background(), s.ShardOf("dup"), base+1, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(due) != 0 {
		t.Errorf("duplicate Start moved the deadline: Due = %v", due)
	}
}

func testReplayedStartAfterClose(t *testing.T, s statemanager.Store) {
	mustStart(t, s, sampleTask("replayed"))
	closed := mustClose(t, s, statemanager.Close{ID: "replayed", Status: statemanager.StatusCompleted, At: base + 5, Key: "k1"})
	for _, acked := range []bool{false, true} {
		if acked {
			if err := s.Ack(context.Background(), "replayed"); err != nil {
				t.Fatal(err)
			}
		}
		got, created, err := s.Start(context.Background(), sampleTask("replayed"))
		if err != nil {
			t.Fatalf("acked=%v: %v", acked, err)
		}
		if created {
			t.Errorf("acked=%v: replayed Start resurrected a closed task", acked)
		}
		sameTask(t, "replayed Start", got, closed)
	}
	sameTask(t, "Get", mustGet(t, s, "replayed"), closed)
}

func testStartReplacesClosed(t *testing.T, s statemanager.Store) {
	ctx := context.Background()
	mustStart(t, s, sampleTask("reused"))
	mustClose(t, s, statemanager.Close{ID: "reused", Status: statemanager.StatusTimeout, At: base + 5, Key: "k1"})
	if err := s.Ack(ctx, "reused"); err != nil {
		t.Fatal(err)
	}
	next := sampleTask("reused")
	next.RequestID = "r-next"
	next.StartedAt = base + 10
	next.Deadline = base + 20
	next.Roles = []string{"director"}
	next.User = ""
	next.Data = json.RawMessage(`{"round":2}`)
	want := *next
	want.Status, want.Version = statemanager.StatusWaiting, 1

	got := mustStart(t, s, next)
	sameTask(t, "Start", got, &want)
	sameTask(t, "Get", mustGet(t, s, "reused"), &want)

	due, err := s.Due(ctx, s.ShardOf("reused"), base+20, 10)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(due, []statemanager.Due{{ID: "reused", Deadline: base + 20}}) {
		t.Errorf("Due = %v, want the new deadline", due)
	}
	for _, f := range []statemanager.Filter{{User: "alice"}, {Role: "admin"}, {Status: statemanager.StatusTimeout}} {
		if l, err := s.List(ctx, f); err != nil || len(l) != 0 {
			t.Errorf("List(%+v) = %v, %v: old task still indexed", f, taskIDs(l), err)
		}
	}
	if l, err := s.List(ctx, statemanager.Filter{Role: "director"}); err != nil || !slices.Equal(taskIDs(l), []string{"reused"}) {
		t.Errorf("List(director) = %v, %v", taskIDs(l), err)
	}
	// The new task closes normally, with a key the old one used.
	closed := mustClose(t, s, statemanager.Close{ID: "reused", Status: statemanager.StatusCompleted, At: base + 30, Key: "k1"})
	if closed.RequestID != "r-next" || closed.Status != statemanager.StatusCompleted {
		t.Errorf("Close after replace = %+v", closed)
	}
}

func testStartKeepsPendingClose(t *testing.T, s statemanager.Store) {
	mustStart(t, s, sampleTask("unacked"))
	closed := mustClose(t, s, statemanager.Close{ID: "unacked", Status: statemanager.StatusCompleted, At: base + 5, Key: "k1"})
	next := sampleTask("unacked")
	next.RequestID = "r-next"
	got, created, err := s.Start(context.Background(), next)
	if err == nil && created {
		t.Fatalf("Start replaced a close whose effects are not acked: %+v", got)
	}
	sameTask(t, "Get", mustGet(t, s, "unacked"), closed)
	pending, err := s.Pending(context.Background(), s.ShardOf("unacked"), base+5, 10)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(taskIDs(pending), []string{"unacked"}) {
		t.Errorf("Pending = %v, want the unacked close", taskIDs(pending))
	}
}

func testCloseRecordsDecision(t *testing.T, s statemanager.Store) {
	for _, status := range []string{statemanager.StatusCompleted, statemanager.StatusTimeout, statemanager.StatusCancelled} {
		t.Run(status, func(t *testing.T) {
			id := "decided-" + status
			start := mustStart(t, s, sampleTask(id))
			c := statemanager.Close{
				ID: id, Status: status, At: base + 42, By: "bob",
				Data: json.RawMessage(`{"decision":"approved"}`), Key: "req-9:approve", EnrichPath: "decision",
			}
			c.Outcome, c.Note = "approve", "looks good"
			want := *start
			want.Status, want.ClosedAt, want.ClosedBy = status, base+42, "bob"
			want.CloseData, want.CloseKey, want.EnrichPath = c.Data, c.Key, c.EnrichPath
			want.Outcome, want.Note, want.Version = "approve", "looks good", 2

			got := mustClose(t, s, c)
			sameTask(t, "Close", got, &want)
			sameTask(t, "Get", mustGet(t, s, id), &want)
			if got.Waiting() {
				t.Errorf("Waiting() = true after Close")
			}
		})
	}
}

func testCloseReplay(t *testing.T, s statemanager.Store) {
	mustStart(t, s, sampleTask("retried"))
	c := statemanager.Close{ID: "retried", Status: statemanager.StatusCompleted, At: base + 7, By: "bob",
		Data: json.RawMessage(`{"ok":1}`), Key: "k1", EnrichPath: "decision"}
	first := mustClose(t, s, c)
	for _, acked := range []bool{false, true} {
		if acked {
			if err := s.Ack(context.Background(), "retried"); err != nil {
				t.Fatal(err)
			}
		}
		retry := c
		retry.At = base + 99 // a retry carries its own clock; the recorded decision wins
		retry.Data = json.RawMessage(`{"ok":2}`)
		got, replay, err := s.Close(context.Background(), retry)
		if err != nil {
			t.Fatalf("acked=%v: %v", acked, err)
		}
		if !replay {
			t.Errorf("acked=%v: replay = false for the same key", acked)
		}
		sameTask(t, "replayed Close", got, first)
	}
}

func testCloseOtherKey(t *testing.T, s statemanager.Store) {
	mustStart(t, s, sampleTask("taken"))
	first := mustClose(t, s, statemanager.Close{ID: "taken", Status: statemanager.StatusCompleted, At: base + 7, Key: "k1"})
	got, replay, err := s.Close(context.Background(), statemanager.Close{ID: "taken", Status: statemanager.StatusTimeout, At: base + 8, Key: "k2"})
	if !errors.Is(err, statemanager.ErrClosed) {
		t.Fatalf("err = %v, want ErrClosed", err)
	}
	if replay {
		t.Errorf("replay = true for another key")
	}
	sameTask(t, "task with ErrClosed", got, first)
	sameTask(t, "Get", mustGet(t, s, "taken"), first)
}

func testCloseWithoutKey(t *testing.T, s statemanager.Store) {
	mustStart(t, s, sampleTask("keyless"))
	mustClose(t, s, statemanager.Close{ID: "keyless", Status: statemanager.StatusCompleted, At: base + 7})
	_, _, err := s.Close(context.Background(), statemanager.Close{ID: "keyless", Status: statemanager.StatusCompleted, At: base + 7})
	if !errors.Is(err, statemanager.ErrClosed) {
		t.Fatalf("second keyless close: err = %v, want ErrClosed", err)
	}
}

func testUnknown(t *testing.T, s statemanager.Store) {
	ctx := context.Background()
	if _, err := s.Get(ctx, "nope"); !errors.Is(err, statemanager.ErrNotFound) {
		t.Errorf("Get: err = %v, want ErrNotFound", err)
	}
	task, _, err := s.Close(ctx, statemanager.Close{ID: "nope", Status: statemanager.StatusCompleted, At: base, Key: "k"})
	if !errors.Is(err, statemanager.ErrNotFound) || task != nil {
		t.Errorf("Close = %v, %v; want nil, ErrNotFound", task, err)
	}
	if err := s.Ack(ctx, "nope"); err != nil {
		t.Errorf("Ack of unknown id: %v", err)
	}
}

func testCloseInvalidStatus(t *testing.T, s statemanager.Store) {
	mustStart(t, s, sampleTask("strict"))
	for _, status := range []string{"", statemanager.StatusWaiting, "SUCCESS"} {
		_, _, err := s.Close(context.Background(), statemanager.Close{ID: "strict", Status: status, At: base, Key: "k"})
		if err == nil || errors.Is(err, statemanager.ErrClosed) || errors.Is(err, statemanager.ErrNotFound) {
			t.Errorf("status %q: err = %v, want a validation error", status, err)
		}
	}
	if got := mustGet(t, s, "strict"); !got.Waiting() {
		t.Errorf("an invalid close changed the task: %+v", got)
	}
}

func testDueOrderAndLimit(t *testing.T, s statemanager.Store) {
	ctx := context.Background()
	shard := 0
	ids := idsInShard(s, "due", shard, 5)
	// Deadlines out of start order: 3rd, 1st, 5th, 2nd, none.
	deadlines := []int64{base + 300, base + 100, base + 500, base + 200, 0}
	for i, id := range ids {
		task := sampleTask(id)
		task.Deadline = deadlines[i]
		mustStart(t, s, task)
	}
	tests := []struct {
		name  string
		until int64
		limit int
		want  []statemanager.Due
	}{
		{"nothing due yet", base + 99, 10, nil},
		{"deadline is inclusive", base + 100, 10, []statemanager.Due{{ID: ids[1], Deadline: base + 100}}},
		{"earliest first", base + 1000, 10, []statemanager.Due{{ID: ids[1], Deadline: base + 100}, {ID: ids[3], Deadline: base + 200}, {ID: ids[0], Deadline: base + 300}, {ID: ids[2], Deadline: base + 500}}},
		{"limit", base + 1000, 2, []statemanager.Due{{ID: ids[1], Deadline: base + 100}, {ID: ids[3], Deadline: base + 200}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.Due(ctx, shard, tc.until, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("Due = %v, want %v", got, tc.want)
			}
		})
	}
}

func testDueShardIsolation(t *testing.T, s statemanager.Store) {
	ctx := context.Background()
	if s.Shards() < 2 {
		t.Fatalf("Shards() = %d: the suite needs at least 2", s.Shards())
	}
	a := idsInShard(s, "iso", 0, 2)
	b := idsInShard(s, "iso", 1, 2)
	for i, id := range append(append([]string{}, a...), b...) {
		task := sampleTask(id)
		task.Deadline = base + int64(i)
		mustStart(t, s, task)
	}
	for shard, want := range map[int][]string{0: a, 1: b} {
		got, err := s.Due(ctx, shard, base+100, 10)
		if err != nil {
			t.Fatal(err)
		}
		var gotIDs []string
		for _, d := range got {
			gotIDs = append(gotIDs, d.ID)
		}
		if !slices.Equal(gotIDs, want) {
			t.Errorf("Due(shard %d) = %v, want %v", shard, gotIDs, want)
		}
	}
	if _, err := s.Due(ctx, s.Shards(), base, 10); err == nil {
		t.Errorf("Due on shard %d of %d: no error", s.Shards(), s.Shards())
	}
}

func testClosedLeaveDue(t *testing.T, s statemanager.Store) {
	ctx := context.Background()
	ids := idsInShard(s, "leave", 1, 3)
	for _, id := range ids {
		task := sampleTask(id)
		task.Deadline = base + 10
		mustStart(t, s, task)
	}
	mustClose(t, s, statemanager.Close{ID: ids[0], Status: statemanager.StatusCompleted, At: base + 1, Key: "p"})
	mustClose(t, s, statemanager.Close{ID: ids[2], Status: statemanager.StatusTimeout, At: base + 11, Key: "t"})
	got, err := s.Due(ctx, 1, base+100, 10)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []statemanager.Due{{ID: ids[1], Deadline: base + 10}}) {
		t.Errorf("Due = %v, want only %s", got, ids[1])
	}
	between, err := s.Between(ctx, base, base+100, 10)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(between, got) {
		t.Errorf("Between = %v, want %v", between, got)
	}
}

func testBetween(t *testing.T, s statemanager.Store) {
	ctx := context.Background()
	// One task per deadline, spread over every shard.
	var want []statemanager.Due
	for i := 0; i < 3*s.Shards(); i++ {
		id := fmt.Sprintf("between-%d", i)
		task := sampleTask(id)
		task.Deadline = base + int64(i)*10
		mustStart(t, s, task)
		want = append(want, statemanager.Due{ID: id, Deadline: task.Deadline})
	}
	mustStart(t, s, &statemanager.Task{ID: "no-deadline", StartedAt: base})
	n := len(want)
	tests := []struct {
		name     string
		from, to int64
		limit    int
		want     []statemanager.Due
	}{
		{"everything", base - 1000, base + 100000, 1000, want},
		{"bounds inclusive", base + 10, base + 30, 1000, want[1:4]},
		{"limit keeps the earliest across shards", base, base + 100000, 5, want[:5]},
		{"empty range", base + 1, base + 9, 1000, nil},
		{"inverted range", base + 30, base + 10, 1000, nil},
		{"last one", want[n-1].Deadline, want[n-1].Deadline, 1000, want[n-1:]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.Between(ctx, tc.from, tc.to, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("Between = %v, want %v", got, tc.want)
			}
		})
	}
}

func testPending(t *testing.T, s statemanager.Store) {
	ctx := context.Background()
	ids := idsInShard(s, "pending", 1, 3)
	for _, id := range ids {
		mustStart(t, s, sampleTask(id))
	}
	if p, err := s.Pending(ctx, 1, base+1000, 10); err != nil || len(p) != 0 {
		t.Fatalf("Pending before any close = %v, %v", p, err)
	}
	want := map[string]*statemanager.Task{}
	for i, id := range ids {
		want[id] = mustClose(t, s, statemanager.Close{ID: id, Status: statemanager.StatusCompleted,
			At: base + int64(10*(i+1)), Key: "k", Data: json.RawMessage(`{"i":1}`), EnrichPath: "decision"})
	}
	pending := func(before int64, limit int) []*statemanager.Task {
		t.Helper()
		p, err := s.Pending(ctx, 1, before, limit)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	if got := taskIDs(pending(base+1000, 10)); !slices.Equal(got, ids) {
		t.Errorf("Pending = %v, want %v (oldest close first)", got, ids)
	}
	for _, p := range pending(base+1000, 10) {
		sameTask(t, "pending task", p, want[p.ID])
	}
	if got := taskIDs(pending(base+20, 10)); !slices.Equal(got, ids[:2]) {
		t.Errorf("Pending(closedBefore) = %v, want %v", got, ids[:2])
	}
	if got := taskIDs(pending(base+1000, 1)); !slices.Equal(got, ids[:1]) {
		t.Errorf("Pending(limit 1) = %v, want %v", got, ids[:1])
	}
	if other, err := s.Pending(ctx, 0, base+1000, 10); err != nil || len(other) != 0 {
		t.Errorf("Pending(other shard) = %v, %v", taskIDs(other), err)
	}
	for range 2 { // acking twice is harmless
		if err := s.Ack(ctx, ids[1]); err != nil {
			t.Fatal(err)
		}
	}
	if got := taskIDs(pending(base+1000, 10)); !slices.Equal(got, []string{ids[0], ids[2]}) {
		t.Errorf("Pending after Ack = %v, want %v", got, []string{ids[0], ids[2]})
	}
	sameTask(t, "Get after Ack", mustGet(t, s, ids[1]), want[ids[1]])
}

// testAckMany: the optional batch ack has the effect of Ack on each id,
// across shards, and tolerates what Ack tolerates (repeats, unknown ids,
// waiting tasks, acking again).
func testAckMany(t *testing.T, s statemanager.Store) {
	b, ok := s.(statemanager.BatchAcker)
	if !ok {
		t.Skip("store does not implement the optional BatchAcker")
	}
	ctx := context.Background()
	ids := append(idsInShard(s, "ackmany", 0, 2), idsInShard(s, "ackmany", 1, 2)...)
	closed := map[string]*statemanager.Task{}
	for i, id := range ids {
		mustStart(t, s, sampleTask(id))
		closed[id] = mustClose(t, s, statemanager.Close{ID: id, Status: statemanager.StatusCompleted, At: base + int64(i), Key: "k"})
	}
	mustStart(t, s, sampleTask("ackmany-waiting"))
	if err := b.AckMany(ctx, nil); err != nil {
		t.Fatalf("AckMany(nil): %v", err)
	}
	acked, kept := []string{ids[0], ids[1], ids[2]}, ids[3]
	for range 2 { // acking again is harmless
		if err := b.AckMany(ctx, append(slices.Clone(acked), ids[0], "ackmany-unknown", "ackmany-waiting")); err != nil {
			t.Fatalf("AckMany: %v", err)
		}
	}
	var pending []string
	for shard := range s.Shards() {
		p, err := s.Pending(ctx, shard, base+1000, 100)
		if err != nil {
			t.Fatal(err)
		}
		pending = append(pending, taskIDs(p)...)
	}
	if !slices.Equal(pending, []string{kept}) {
		t.Errorf("Pending after AckMany = %v, want only %s", pending, kept)
	}
	for _, id := range ids {
		sameTask(t, "Get after AckMany", mustGet(t, s, id), closed[id])
	}
	if g := mustGet(t, s, "ackmany-waiting"); !g.Waiting() {
		t.Errorf("AckMany changed a waiting task: %+v", g)
	}
	// Acked closes give their id free to another step visit; the unacked
	// one still holds it.
	for _, id := range ids {
		next := sampleTask(id)
		next.RequestID = "r-next"
		_, created, err := s.Start(ctx, next)
		if want := id != kept; created != want {
			t.Errorf("Start(%q) after AckMany: created=%v err=%v, want created=%v", id, created, err, want)
		}
	}
}

func testWatermark(t *testing.T, s statemanager.Store) {
	ctx := context.Background()
	steps := []struct {
		set, want int64
	}{
		{0, 0}, {base, base}, {base - 1, base}, {base + 60_000, base + 60_000}, {base, base + 60_000},
	}
	if got, err := s.Watermark(ctx); err != nil || got != 0 {
		t.Fatalf("initial Watermark = %d, %v; want 0", got, err)
	}
	for _, st := range steps {
		if err := s.SetWatermark(ctx, st.set); err != nil {
			t.Fatal(err)
		}
		got, err := s.Watermark(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got != st.want {
			t.Errorf("after SetWatermark(%d): Watermark = %d, want %d", st.set, got, st.want)
		}
	}
	// Concurrent setters: the largest wins whatever the interleaving.
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.SetWatermark(ctx, base+100_000+int64(i)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if got, _ := s.Watermark(ctx); got != base+100_049 {
		t.Errorf("after concurrent SetWatermark: %d, want %d", got, base+100_049)
	}
}

func testList(t *testing.T, s statemanager.Store) {
	ctx := context.Background()
	seed := []struct {
		id    string
		user  string
		roles []string
	}{
		{"l-alice-admin", "alice", []string{"admin"}},
		{"l-bob-manager", "bob", []string{"manager", "admin"}},
		{"l-none-director", "", []string{"director"}},
		{"l-alice-none", "alice", nil},
		{"l-carol-manager", "carol", []string{"manager"}},
		{"l-closed", "alice", []string{"admin", "manager"}},
	}
	for i, sd := range seed {
		task := sampleTask(sd.id)
		task.User, task.Roles = sd.user, sd.roles
		task.StartedAt = base + int64(len(seed)-i) // newest first, so the order must come from the store
		mustStart(t, s, task)
	}
	mustClose(t, s, statemanager.Close{ID: "l-closed", Status: statemanager.StatusCancelled, At: base + 100, By: "bob", Key: "k"})

	tests := []struct {
		name   string
		filter statemanager.Filter
		want   []string
	}{
		{"all waiting, oldest first", statemanager.Filter{}, []string{"l-carol-manager", "l-alice-none", "l-none-director", "l-bob-manager", "l-alice-admin"}},
		{"explicit WAITING", statemanager.Filter{Status: statemanager.StatusWaiting}, []string{"l-carol-manager", "l-alice-none", "l-none-director", "l-bob-manager", "l-alice-admin"}},
		{"by user", statemanager.Filter{User: "alice"}, []string{"l-alice-none", "l-alice-admin"}},
		{"by role", statemanager.Filter{Role: "manager"}, []string{"l-carol-manager", "l-bob-manager"}},
		{"by user and role", statemanager.Filter{User: "alice", Role: "admin"}, []string{"l-alice-admin"}},
		{"limit", statemanager.Filter{Limit: 2}, []string{"l-carol-manager", "l-alice-none"}},
		{"role limit", statemanager.Filter{Role: "admin", Limit: 1}, []string{"l-bob-manager"}},
		{"unknown user", statemanager.Filter{User: "mallory"}, nil},
		{"closed by status", statemanager.Filter{Status: statemanager.StatusCancelled}, []string{"l-closed"}},
		// For closed tasks the user is who closed them.
		{"closed by status and closer", statemanager.Filter{Status: statemanager.StatusCancelled, User: "bob"}, []string{"l-closed"}},
		{"closed by status, closer and role", statemanager.Filter{Status: statemanager.StatusCancelled, User: "bob", Role: "manager"}, []string{"l-closed"}},
		{"closed by status, closer, other role", statemanager.Filter{Status: statemanager.StatusCancelled, User: "bob", Role: "director"}, nil},
		{"closed by status, other closer", statemanager.Filter{Status: statemanager.StatusCancelled, User: "alice"}, nil},
		{"other closed status", statemanager.Filter{Status: statemanager.StatusCompleted}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.List(ctx, tc.filter)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(taskIDs(got), tc.want) {
				t.Errorf("List(%+v) = %v, want %v", tc.filter, taskIDs(got), tc.want)
			}
			for _, task := range got {
				if task.Domain == "" || task.Envelope == nil {
					t.Errorf("listed task %q lacks domain or envelope: %+v", task.ID, task)
				}
			}
		})
	}
}

// A role alone does not select closed tasks: no index holds them by role,
// and the store refuses rather than scan.
func testListClosedByRoleRefused(t *testing.T, s statemanager.Store) {
	_, err := s.List(context.Background(), statemanager.Filter{Status: statemanager.StatusCompleted, Role: "admin"})
	if !errors.Is(err, statemanager.ErrInvalidFilter) {
		t.Errorf("List(closed, role only): err = %v, want ErrInvalidFilter", err)
	}
	_, err = s.List(context.Background(), statemanager.Filter{Status: "DONE"})
	if !errors.Is(err, statemanager.ErrInvalidFilter) {
		t.Errorf("List(unknown status): err = %v, want ErrInvalidFilter", err)
	}
}

func testListClosed(t *testing.T, s statemanager.Store) {
	ctx := context.Background()
	// Closed in the reverse order of starting: closed tasks list by ClosedAt.
	for i, id := range []string{"c-1", "c-2", "c-3", "c-waiting"} {
		task := sampleTask(id)
		task.StartedAt = base + int64(i)
		mustStart(t, s, task)
	}
	for i, id := range []string{"c-1", "c-2", "c-3"} {
		mustClose(t, s, statemanager.Close{ID: id, Status: statemanager.StatusTimeout, At: base + 100 - int64(i), Key: "k"})
	}
	if err := s.Ack(ctx, "c-2"); err != nil { // acked decisions stay listable
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		filter statemanager.Filter
		want   []string
	}{
		{"oldest close first", statemanager.Filter{Status: statemanager.StatusTimeout}, []string{"c-3", "c-2", "c-1"}},
		{"limit", statemanager.Filter{Status: statemanager.StatusTimeout, Limit: 2}, []string{"c-3", "c-2"}},
		{"waiting unaffected", statemanager.Filter{}, []string{"c-waiting"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.List(ctx, tc.filter)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(taskIDs(got), tc.want) {
				t.Errorf("List(%+v) = %v, want %v", tc.filter, taskIDs(got), tc.want)
			}
		})
	}
}

func testShardOf(t *testing.T, s statemanager.Store) {
	n := s.Shards()
	if n < 1 {
		t.Fatalf("Shards() = %d", n)
	}
	seen := map[int]bool{}
	for i := range 1000 {
		id := fmt.Sprintf("task-%d", i)
		got := s.ShardOf(id)
		if got != s.ShardOf(id) || got != statemanager.ShardOf(id, n) {
			t.Fatalf("ShardOf(%q) = %d, not stable or not statemanager.ShardOf(id, %d) = %d", id, got, n, statemanager.ShardOf(id, n))
		}
		if got < 0 || got >= n {
			t.Fatalf("ShardOf(%q) = %d outside [0,%d)", id, got, n)
		}
		seen[got] = true
	}
	if len(seen) != n {
		t.Errorf("1000 ids fell into %d of %d shards", len(seen), n)
	}
}

// testCloseRace closes each of 1,000 tasks from two goroutines at once, a
// proceed (COMPLETED) against a timeout (TIMEOUT) with different keys: the
// runner's exactly-once promise rests on exactly one of them winning.
func testCloseRace(t *testing.T, s statemanager.Store) {
	const n = 1000
	ctx := context.Background()
	taskID := func(i int) string { return fmt.Sprintf("race-%d", i) }

	var wg sync.WaitGroup
	work := make(chan int)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if _, _, err := s.Start(ctx, sampleTask(taskID(i))); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	if t.Failed() {
		return
	}

	type outcome struct {
		task   *statemanager.Task
		replay bool
		err    error
	}
	contenders := []statemanager.Close{
		{Status: statemanager.StatusCompleted, By: "alice", Key: "proceed", Data: json.RawMessage(`{"decision":"approved"}`), EnrichPath: "decision"},
		{Status: statemanager.StatusTimeout, By: "timer", Key: "timeout"},
	}
	results := make([][]outcome, n)
	startGun := make(chan struct{})
	for i := range n {
		results[i] = make([]outcome, len(contenders))
		for j, c := range contenders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-startGun
				c.ID, c.At = taskID(i), base+int64(1+j)
				task, replay, err := s.Close(ctx, c)
				results[i][j] = outcome{task, replay, err}
			}()
		}
	}
	close(startGun)
	wg.Wait()

	wins := map[string]int{}
	for i := range n {
		id := taskID(i)
		winner := -1
		for j, r := range results[i] {
			switch {
			case r.err == nil && !r.replay:
				if winner >= 0 {
					t.Fatalf("%s: both %s and %s won", id, contenders[winner].Key, contenders[j].Key)
				}
				winner = j
			case errors.Is(r.err, statemanager.ErrClosed):
			default:
				t.Fatalf("%s: %s close: task=%v replay=%v err=%v", id, contenders[j].Key, r.task, r.replay, r.err)
			}
		}
		if winner < 0 {
			t.Fatalf("%s: no close won", id)
		}
		w := results[i][winner].task
		wins[w.Status]++
		if w.CloseKey != contenders[winner].Key || w.Status != contenders[winner].Status {
			t.Fatalf("%s: winner %s recorded %+v", id, contenders[winner].Key, w)
		}
		for j, r := range results[i] {
			if j != winner {
				sameTask(t, id+" loser's view", r.task, w)
			}
		}
		sameTask(t, id+" stored", mustGet(t, s, id), w)
	}
	t.Logf("winners by status: %v", wins)

	pendingIDs := map[string]bool{}
	for shard := range s.Shards() {
		p, err := s.Pending(ctx, shard, base+10, 2*n)
		if err != nil {
			t.Fatal(err)
		}
		for _, task := range p {
			if pendingIDs[task.ID] {
				t.Fatalf("%s pending twice", task.ID)
			}
			pendingIDs[task.ID] = true
		}
	}
	if len(pendingIDs) != n {
		t.Errorf("%d tasks pending, want %d (each closed exactly once)", len(pendingIDs), n)
	}
	if due, err := s.Between(ctx, 0, base+1_000_000, 2*n); err != nil || len(due) != 0 {
		t.Errorf("Between after closing all = %d tasks, %v", len(due), err)
	}
}

func taskIDs(tasks []*statemanager.Task) []string {
	var out []string
	for _, t := range tasks {
		out = append(out, t.ID)
	}
	return out
}

// testStartKey: a saga that loops back into a task step starts the same id
// from the same request and step again; only the StartKey (the step visit)
// tells that re-entry from a replay of the first visit.
func testStartKey(t *testing.T, s statemanager.Store) {
	ctx := context.Background()
	first := sampleTask("loop")
	first.StartKey = "r-loop/approve/1"
	mustStart(t, s, first)
	closed := mustClose(t, s, statemanager.Close{ID: "loop", Status: statemanager.StatusTimeout, At: base + 5, Key: "timeout"})
	if err := s.Ack(ctx, "loop"); err != nil {
		t.Fatal(err)
	}
	got, created, err := s.Start(ctx, first)
	if err != nil || created {
		t.Fatalf("replayed visit: created=%v err=%v, want a no-op", created, err)
	}
	sameTask(t, "replayed visit", got, closed)

	again := sampleTask("loop")
	again.StartKey = "r-loop/approve/4"
	again.StartedAt = base + 10
	got, created, err = s.Start(ctx, again)
	if err != nil || !created {
		t.Fatalf("re-entry: created=%v err=%v, want a new task", created, err)
	}
	if got.Status != statemanager.StatusWaiting || got.StartKey != "r-loop/approve/4" {
		t.Errorf("re-entry: got status %s key %q", got.Status, got.StartKey)
	}
	if g := mustGet(t, s, "loop"); g.StartKey != "r-loop/approve/4" || !g.Waiting() {
		t.Errorf("Get after re-entry: status %s key %q", g.Status, g.StartKey)
	}
}

// testCloseMany: a backend offering BatchCloser must give every id exactly
// what Close would: a decision for the waiting ones, the winner's decision
// with ErrClosed, a replay for ids closed with the same key, ErrNotFound
// for unknown ones.
func testCloseMany(t *testing.T, s statemanager.Store) {
	bc, ok := s.(statemanager.BatchCloser)
	if !ok {
		t.Skip("backend does not implement BatchCloser")
	}
	ctx := context.Background()
	var waiting []string
	for i := range 12 { // enough ids to span several shards
		id := fmt.Sprintf("many-%d", i)
		mustStart(t, s, sampleTask(id))
		waiting = append(waiting, id)
	}
	mustStart(t, s, sampleTask("won-by-other"))
	mustClose(t, s, statemanager.Close{ID: "won-by-other", Status: statemanager.StatusCompleted, At: base + 1, By: "alice", Key: "proceed-1"})
	mustStart(t, s, sampleTask("closed-before"))
	first := mustClose(t, s, statemanager.Close{ID: "closed-before", Status: statemanager.StatusTimeout, At: base + 2, Key: "timeout"})

	ids := append(append([]string{}, waiting...), "won-by-other", "closed-before", "unknown", "")
	res, err := bc.CloseMany(ctx, ids, statemanager.Close{Status: statemanager.StatusTimeout, At: base + 100, Key: "timeout"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != len(ids) {
		t.Fatalf("%d results for %d ids", len(res), len(ids))
	}
	for i, id := range waiting {
		r := res[i]
		if r.Err != nil || r.Replay || r.Task == nil || r.Task.ID != id || r.Task.Status != statemanager.StatusTimeout ||
			r.Task.ClosedAt != base+100 || r.Task.CloseKey != "timeout" || len(r.Task.Envelope) == 0 {
			t.Errorf("%s: result %+v", id, r)
		}
		if got := mustGet(t, s, id); got.Status != statemanager.StatusTimeout || got.ClosedAt != base+100 {
			t.Errorf("%s: stored %s at %d", id, got.Status, got.ClosedAt)
		}
	}
	n := len(waiting)
	if r := res[n]; !errors.Is(r.Err, statemanager.ErrClosed) || r.Task == nil || r.Task.Status != statemanager.StatusCompleted || r.Task.ClosedBy != "alice" {
		t.Errorf("closed by another key: %+v", r)
	}
	if r := res[n+1]; r.Err != nil || !r.Replay || r.Task == nil || r.Task.ClosedAt != first.ClosedAt {
		t.Errorf("closed before with the same key: %+v, want a replay of %d", r, first.ClosedAt)
	}
	for _, i := range []int{n + 2, n + 3} {
		if !errors.Is(res[i].Err, statemanager.ErrNotFound) {
			t.Errorf("%q: err %v, want ErrNotFound", ids[i], res[i].Err)
		}
	}
	// Closed tasks left the deadline index and wait for their ack.
	pending := 0
	for shard := range s.Shards() {
		due, err := s.Due(ctx, shard, base+1_000_000, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range due {
			t.Errorf("%s still due after CloseMany", d.ID)
		}
		p, err := s.Pending(ctx, shard, base+1_000_000, 0)
		if err != nil {
			t.Fatal(err)
		}
		pending += len(p)
	}
	if want := len(waiting) + 2; pending != want {
		t.Errorf("%d pending, want %d", pending, want)
	}
}

// testTenantScoping: a task keeps the tenant of the request that started it,
// through Start, Get, Close and Pending, and a listing never shows another
// tenant's tasks, whatever else it filters on.
func testTenantScoping(t *testing.T, s statemanager.Store) {
	ctx := context.Background()
	tenants := []string{"", "acme", "acme:x", "beta"}
	for i, tn := range tenants {
		task := sampleTask(fmt.Sprintf("tn-%d", i))
		task.Tenant = tn
		task.StartedAt = base + int64(i)
		want := *task
		want.Status, want.Version = statemanager.StatusWaiting, 1
		sameTask(t, "Start", mustStart(t, s, task), &want)
		sameTask(t, "Get", mustGet(t, s, task.ID), &want)
	}
	closed := mustClose(t, s, statemanager.Close{ID: "tn-1", Status: statemanager.StatusCompleted, At: base + 50, By: "alice", Key: "k"})
	if closed.Tenant != "acme" {
		t.Errorf("Close: tenant %q, want acme", closed.Tenant)
	}
	p, err := s.Pending(ctx, s.ShardOf("tn-1"), base+50, 10)
	if err != nil || len(p) != 1 || p[0].Tenant != "acme" {
		t.Errorf("Pending = %+v, %v; want tn-1 of acme", p, err)
	}
	admin := &statemanager.Viewer{Admin: true}
	tests := []struct {
		name   string
		filter statemanager.Filter
		want   []string
	}{
		{"default tenant", statemanager.Filter{}, []string{"tn-0"}},
		{"one tenant", statemanager.Filter{Tenant: "beta"}, []string{"tn-3"}},
		{"a tenant with a colon is its own", statemanager.Filter{Tenant: "acme:x"}, []string{"tn-2"}},
		{"by user", statemanager.Filter{Tenant: "beta", User: "alice"}, []string{"tn-3"}},
		{"by role", statemanager.Filter{Tenant: "beta", Role: "manager"}, []string{"tn-3"}},
		{"closed", statemanager.Filter{Tenant: "acme", Status: statemanager.StatusCompleted}, []string{"tn-1"}},
		{"closed, other tenant", statemanager.Filter{Tenant: "beta", Status: statemanager.StatusCompleted}, nil},
		{"closed by user, other tenant", statemanager.Filter{Tenant: "beta", Status: statemanager.StatusCompleted, User: "alice"}, nil},
		{"admin of a tenant", statemanager.Filter{Tenant: "acme:x", Viewer: admin}, []string{"tn-2"}},
		{"unknown tenant", statemanager.Filter{Tenant: "gamma", Viewer: admin}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.List(ctx, tc.filter)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(taskIDs(got), tc.want) {
				t.Errorf("List(%+v) = %v, want %v", tc.filter, taskIDs(got), tc.want)
			}
			for _, task := range got {
				if task.Tenant != tc.filter.Tenant {
					t.Errorf("listed %q of tenant %q", task.ID, task.Tenant)
				}
			}
		})
	}
}

// testViewerVisibility: a viewer lists the waiting tasks it is a candidate
// for and the closed tasks it closed; an admin every task of its tenant;
// nobody anything of another tenant. Everything listed is VisibleTo it.
func testViewerVisibility(t *testing.T, s statemanager.Store) {
	ctx := context.Background()
	seed := []struct {
		id, tenant, user string
		roles            []string
	}{
		{"v-alice", "acme", "alice", nil},
		{"v-manager", "acme", "", []string{"manager"}},
		{"v-alice-manager", "acme", "alice", []string{"manager", "clerk"}},
		{"v-director", "acme", "", []string{"director"}},
		{"v-open", "acme", "", nil},
		{"v-carol", "acme", "carol", nil},
		{"v-carol-2", "acme", "carol", []string{"director"}},
		{"v-beta-alice", "beta", "alice", []string{"manager"}},
	}
	for i, sd := range seed {
		task := sampleTask(sd.id)
		task.Tenant, task.User, task.Roles = sd.tenant, sd.user, sd.roles
		task.StartedAt = base + int64(i)
		mustStart(t, s, task)
	}
	// alice closes carol's task (say as an admin); the timer closes another.
	mustClose(t, s, statemanager.Close{ID: "v-carol", Status: statemanager.StatusCompleted, At: base + 100, By: "alice", Key: "k"})
	mustClose(t, s, statemanager.Close{ID: "v-carol-2", Status: statemanager.StatusTimeout, At: base + 101, Key: "timeout"})
	mustClose(t, s, statemanager.Close{ID: "v-beta-alice", Status: statemanager.StatusCompleted, At: base + 102, By: "alice", Key: "k"})

	alice := &statemanager.Viewer{User: "alice", Roles: []string{"manager"}}
	tests := []struct {
		name   string
		filter statemanager.Filter
		want   []string
	}{
		{"candidate by user and role, each once", statemanager.Filter{Tenant: "acme", Viewer: alice},
			[]string{"v-alice", "v-manager", "v-alice-manager"}},
		{"limit over the union", statemanager.Filter{Tenant: "acme", Viewer: alice, Limit: 2}, []string{"v-alice", "v-manager"}},
		{"narrowed to own user", statemanager.Filter{Tenant: "acme", Viewer: alice, User: "alice"}, []string{"v-alice", "v-alice-manager"}},
		{"narrowed to own role", statemanager.Filter{Tenant: "acme", Viewer: alice, Role: "manager"}, []string{"v-manager", "v-alice-manager"}},
		{"narrowed to a role it lacks", statemanager.Filter{Tenant: "acme", Viewer: alice, Role: "clerk"}, []string{"v-alice-manager"}},
		{"narrowed to another user", statemanager.Filter{Tenant: "acme", Viewer: alice, User: "carol"}, nil},
		{"role only viewer", statemanager.Filter{Tenant: "acme", Viewer: &statemanager.Viewer{Roles: []string{"director"}}}, []string{"v-director"}},
		{"nobody in particular", statemanager.Filter{Tenant: "acme", Viewer: &statemanager.Viewer{User: "mallory"}}, nil},
		{"closer sees what it closed", statemanager.Filter{Tenant: "acme", Viewer: alice, Status: statemanager.StatusCompleted}, []string{"v-carol"}},
		{"closer asks for another's closes", statemanager.Filter{Tenant: "acme", Viewer: alice, Status: statemanager.StatusCompleted, User: "bob"}, nil},
		{"candidate of a task it did not close", statemanager.Filter{Tenant: "acme", Viewer: &statemanager.Viewer{User: "carol"}, Status: statemanager.StatusCompleted}, nil},
		{"admin sees the tenant", statemanager.Filter{Tenant: "acme", Viewer: &statemanager.Viewer{User: "root", Admin: true}},
			[]string{"v-alice", "v-manager", "v-alice-manager", "v-director", "v-open"}},
		{"admin sees the tenant's closes", statemanager.Filter{Tenant: "acme", Viewer: &statemanager.Viewer{Admin: true}, Status: statemanager.StatusTimeout},
			[]string{"v-carol-2"}},
		{"other tenant sees nothing of acme", statemanager.Filter{Tenant: "beta", Viewer: alice}, nil},
		{"other tenant's admin sees nothing of acme", statemanager.Filter{Tenant: "gamma", Viewer: &statemanager.Viewer{Admin: true}}, nil},
		{"same user in its other tenant", statemanager.Filter{Tenant: "beta", Viewer: alice, Status: statemanager.StatusCompleted}, []string{"v-beta-alice"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.List(ctx, tc.filter)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(taskIDs(got), tc.want) {
				t.Errorf("List(%+v) = %v, want %v", tc.filter, taskIDs(got), tc.want)
			}
			for _, task := range got {
				if !task.VisibleTo(tc.filter.Tenant, tc.filter.Viewer) {
					t.Errorf("listed %q, which is not VisibleTo the viewer", task.ID)
				}
			}
		})
	}
}

// testFilteredPages: a filtered listing among many tasks it does not match
// returns, for every limit, exactly the first tasks of the full answer, in
// order, across shards.
func testFilteredPages(t *testing.T, s statemanager.Store) {
	ctx := context.Background()
	var wantMine, wantClosed []string
	for i := range 120 {
		id := fmt.Sprintf("pg-%03d", i)
		task := sampleTask(id)
		task.Tenant = "acme"
		task.StartedAt = base + int64(i/2) // pairs share a start: ties order by id
		switch i % 4 {
		case 0:
			task.User, task.Roles = "alice", nil
		case 1:
			task.User, task.Roles = "", []string{"manager"}
		case 2:
			task.User, task.Roles = "alice", []string{"manager"}
		default:
			task.User, task.Roles = "zed", []string{"other"}
		}
		mustStart(t, s, task)
		if i%4 != 3 {
			wantMine = append(wantMine, id)
		}
	}
	// Closed by alice in an order unlike the start order, among closes by others.
	for i := 119; i >= 0; i -= 3 {
		id := fmt.Sprintf("pg-%03d", i)
		by := "alice"
		if i%2 == 0 {
			by = "bob"
		}
		mustClose(t, s, statemanager.Close{ID: id, Status: statemanager.StatusCompleted, At: base + 1000 + int64(119-i), By: by, Key: "k"})
		if i%4 != 3 {
			wantMine = slices.DeleteFunc(wantMine, func(x string) bool { return x == id })
		}
		if by == "alice" {
			wantClosed = append(wantClosed, id)
		}
	}
	alice := &statemanager.Viewer{User: "alice", Roles: []string{"manager"}}
	for _, c := range []struct {
		name   string
		filter statemanager.Filter
		want   []string
	}{
		{"waiting", statemanager.Filter{Tenant: "acme", Viewer: alice}, wantMine},
		{"closed by the viewer", statemanager.Filter{Tenant: "acme", Viewer: alice, Status: statemanager.StatusCompleted}, wantClosed},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, limit := range []int{1, 2, 7, 30, len(c.want), len(c.want) + 5} {
				f := c.filter
				f.Limit = limit
				got, err := s.List(ctx, f)
				if err != nil {
					t.Fatal(err)
				}
				want := c.want[:min(limit, len(c.want))]
				if !slices.Equal(taskIDs(got), want) {
					t.Fatalf("limit %d: List = %v, want %v", limit, taskIDs(got), want)
				}
			}
		})
	}
}

// testCountWaiting checks the optional waiting count (statemanager.Counter)
// across tenants: starts add, closes and batch closes subtract, replays and
// duplicate starts change nothing.
func testCountWaiting(t *testing.T, s statemanager.Store) {
	c, ok := s.(statemanager.Counter)
	if !ok {
		t.Skip("the store does not count waiting tasks")
	}
	ctx := context.Background()
	count := func(want int64) {
		t.Helper()
		n, err := c.CountWaiting(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n != want {
			t.Errorf("CountWaiting = %d, want %d", n, want)
		}
	}
	count(0)
	for i, tenant := range []string{"", "acme", "acme", "globex"} {
		task := sampleTask(fmt.Sprintf("count-%d", i))
		task.Tenant = tenant
		mustStart(t, s, task)
	}
	if _, created, err := s.Start(ctx, sampleTask("count-0")); err != nil || created {
		t.Fatalf("duplicate start: created %v, %v", created, err)
	}
	count(4)
	c1 := statemanager.Close{ID: "count-1", Status: statemanager.StatusCompleted, At: base + 1, Key: "k1"}
	mustClose(t, s, c1)
	if _, _, err := s.Close(ctx, c1); err != nil {
		t.Fatalf("replayed close: %v", err)
	}
	count(3)
	if _, err := statemanager.CloseMany(ctx, s, []string{"count-2", "count-3", "count-1", "nope"},
		statemanager.Close{Status: statemanager.StatusTimeout, At: base + 2, Key: "timeout"}); err != nil {
		t.Fatal(err)
	}
	count(1)
}

// testCloseNeedsApprovals: a plain COMPLETED close of a task that needs
// approvals is refused with ErrNeedsApproval and changes nothing; other
// closes (a timeout) still close it.
func testCloseNeedsApprovals(t *testing.T, s statemanager.Store) {
	ctx := context.Background()
	task := sampleTask("needs-approvals")
	task.RequiredApprovals = 2
	mustStart(t, s, task)
	got, _, err := s.Close(ctx, statemanager.Close{ID: task.ID, Status: statemanager.StatusCompleted, At: base + 1, Key: "p"})
	if !errors.Is(err, statemanager.ErrNeedsApproval) {
		t.Fatalf("Close COMPLETED: %v, want ErrNeedsApproval", err)
	}
	if got == nil || got.Status != statemanager.StatusWaiting {
		t.Errorf("Close COMPLETED returned %+v, want the waiting task", got)
	}
	if cur := mustGet(t, s, task.ID); cur.Status != statemanager.StatusWaiting {
		t.Errorf("task is %s after a refused close", cur.Status)
	}
	mustClose(t, s, statemanager.Close{ID: task.ID, Status: statemanager.StatusTimeout, At: base + 2, Key: "timeout"})
}
