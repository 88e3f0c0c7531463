package storetest

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sagarunner/sagarunner/statemanager"
)

// The inbox half of the suite (SPEC §12 "Inbox"): the claimer and candidate
// filters, the orders, cursor paging, counts, and a listing that agrees
// with Task.VisibleTo.

// allPages walks every page of f with ListPage and returns the ids in the
// order listed.
func allPages(t *testing.T, s statemanager.Store, f statemanager.Filter) []string {
	t.Helper()
	var ids []string
	for pages := 0; ; pages++ {
		if pages > 10_000 {
			t.Fatalf("ListPage(%+v): no last page", f)
		}
		p, err := statemanager.ListPage(context.Background(), s, f)
		if err != nil {
			t.Fatalf("ListPage(%+v): %v", f, err)
		}
		ids = append(ids, taskIDs(p.Tasks)...)
		if p.Next == "" {
			return ids
		}
		if len(p.Tasks) == 0 {
			t.Fatalf("ListPage(%+v): an empty page with a next cursor", f)
		}
		f.Cursor = p.Next
	}
}

func who(user string, roles ...string) *statemanager.Viewer {
	return &statemanager.Viewer{User: user, Roles: roles}
}

// inboxSet starts a mixed set of tasks of tenant acme (and one of beta),
// moved through claims, approvals and closes, and returns them as stored.
func inboxSet(t *testing.T, s statemanager.Store) []*statemanager.Task {
	t.Helper()
	lc := lifecycleOf(t, s)
	ctx := context.Background()
	start := func(id string, edit func(*statemanager.Task)) {
		task := sampleTask(id)
		task.Tenant, task.User, task.Roles, task.ApproverRoles = "acme", "", nil, nil
		edit(task)
		mustStart(t, s, task)
	}
	change := func(c statemanager.Change) {
		t.Helper()
		c.Key = fmt.Sprintf("%s-v%d", c.ID, c.Version)
		if c.Event.Type == "" {
			c.Event = statemanager.Event{Type: statemanager.EventClaimed, At: base + 100, Actor: "x"}
		}
		if _, _, err := lc.Apply(ctx, c); err != nil {
			t.Fatalf("Apply(%q): %v", c.ID, err)
		}
	}
	start("w-alice", func(x *statemanager.Task) { x.User, x.Roles = "alice", []string{"clerk"} })
	start("w-claimed", func(x *statemanager.Task) { x.Roles = []string{"clerk"} })
	change(statemanager.Change{ID: "w-claimed", Version: 1, ClaimedBy: ptr("bob")})
	start("w-carol", func(x *statemanager.Task) { x.User, x.Roles = "carol", []string{"manager"} })
	start("w-nobody", func(*statemanager.Task) {})
	start("a-director", func(x *statemanager.Task) {
		x.Roles, x.ApproverRoles, x.RequiredApprovals = []string{"clerk"}, []string{"director"}, 1
	})
	change(statemanager.Change{ID: "a-director", Version: 1, Status: ptr(statemanager.StatusInApproval), ClaimedBy: ptr("bob"), CompletedBy: ptr("bob"),
		Event: statemanager.Event{Type: statemanager.EventCompleted, At: base + 100, Actor: "bob"}})
	start("a-managers", func(x *statemanager.Task) { x.Roles, x.RequiredApprovals = []string{"manager"}, 2 })
	change(statemanager.Change{ID: "a-managers", Version: 1, Status: ptr(statemanager.StatusInApproval), CompletedBy: ptr("dave"),
		Event: statemanager.Event{Type: statemanager.EventCompleted, At: base + 100, Actor: "dave"}})
	change(statemanager.Change{ID: "a-managers", Version: 2, Approvals: &[]statemanager.Approval{{User: "erin", At: base + 101}},
		Event: statemanager.Event{Type: statemanager.EventApproved, At: base + 101, Actor: "erin"}})
	start("c-frank", func(x *statemanager.Task) { x.Roles, x.RequiredApprovals = []string{"clerk"}, 1 })
	change(statemanager.Change{ID: "c-frank", Version: 1, Status: ptr(statemanager.StatusInApproval), ClaimedBy: ptr("bob"), CompletedBy: ptr("bob"),
		Event: statemanager.Event{Type: statemanager.EventCompleted, At: base + 100, Actor: "bob"}})
	change(statemanager.Change{ID: "c-frank", Version: 2, Approvals: &[]statemanager.Approval{{User: "frank", At: base + 102}},
		Event: statemanager.Event{Type: statemanager.EventApproved, At: base + 102, Actor: "frank"},
		Close: &statemanager.Close{Status: statemanager.StatusCompleted, At: base + 102, By: "frank"}})
	start("t-clerk", func(x *statemanager.Task) { x.Roles = []string{"clerk"} })
	mustClose(t, s, statemanager.Close{ID: "t-clerk", Status: statemanager.StatusTimeout, At: base + 103, Key: "fire"})
	start("beta-alice", func(x *statemanager.Task) { x.Tenant, x.User = "beta", "alice" })

	var out []*statemanager.Task
	for _, id := range []string{"w-alice", "w-claimed", "w-carol", "w-nobody", "a-director", "a-managers", "c-frank", "t-clerk", "beta-alice"} {
		out = append(out, mustGet(t, s, id))
	}
	return out
}

var inboxStatuses = []string{statemanager.StatusWaiting, statemanager.StatusInApproval, statemanager.StatusCompleted, statemanager.StatusTimeout, statemanager.StatusCancelled}

// testListingAgreesWithVisibility lists a mixed set as every kind of
// viewer: each listed task is visible to the viewer, and every open task
// visible to it is listed, as is every closed one it acted on.
func testListingAgreesWithVisibility(t *testing.T, s statemanager.Store) {
	tasks := inboxSet(t, s)
	viewers := []*statemanager.Viewer{
		who("alice", "clerk"), who("bob"), who("carol", "director"), who("dave", "manager"),
		who("erin", "manager"), who("frank"), who("zed", "manager", "director"), who("", "clerk"),
		{User: "root", Admin: true},
	}
	for _, v := range viewers {
		for _, status := range inboxStatuses {
			t.Run(fmt.Sprintf("%s %v %s", v.User, v.Roles, status), func(t *testing.T) {
				listed := allPages(t, s, statemanager.Filter{Tenant: "acme", Viewer: v, Status: status, Limit: 2})
				var want []string
				for _, task := range tasks {
					if task.Status != status || !task.VisibleTo("acme", v) {
						continue
					}
					acted := v.User != "" && (task.ClosedBy == v.User || task.ClaimedBy == v.User || task.CompletedBy == v.User)
					if statemanager.Open(status) || acted || v.Admin {
						want = append(want, task.ID)
					}
				}
				for _, id := range listed {
					i := slices.IndexFunc(tasks, func(x *statemanager.Task) bool { return x.ID == id })
					if i < 0 || !tasks[i].VisibleTo("acme", v) {
						t.Errorf("listed %q, which the viewer may not see", id)
					}
				}
				slices.Sort(listed)
				slices.Sort(want)
				if !slices.Equal(listed, want) {
					t.Errorf("listed %v, want %v", listed, want)
				}
			})
		}
	}
}

// testInboxFilters checks claimedBy and candidate on the mixed set, for
// trusted callers and viewers.
func testInboxFilters(t *testing.T, s statemanager.Store) {
	inboxSet(t, s)
	waiting, approval := statemanager.StatusWaiting, statemanager.StatusInApproval
	for _, c := range []struct {
		name string
		f    statemanager.Filter
		want []string
	}{
		{"claimed by bob", statemanager.Filter{ClaimedBy: "bob"}, []string{"w-claimed"}},
		{"claimed by bob, in approval", statemanager.Filter{ClaimedBy: "bob", Status: approval}, []string{"a-director"}},
		{"claimed by bob, completed", statemanager.Filter{ClaimedBy: "bob", Status: statemanager.StatusCompleted}, []string{"c-frank"}},
		{"claimed by bob as bob", statemanager.Filter{ClaimedBy: "bob", Viewer: who("bob")}, []string{"w-claimed"}},
		{"claimed by bob as alice", statemanager.Filter{ClaimedBy: "bob", Viewer: who("alice", "clerk")}, []string{"w-claimed"}},
		{"claimed by bob as carol", statemanager.Filter{ClaimedBy: "bob", Viewer: who("carol")}, nil},
		{"claimed by nobody", statemanager.Filter{ClaimedBy: "alice"}, nil},
		{"candidate alice", statemanager.Filter{Candidate: who("alice", "clerk")}, []string{"w-alice"}},
		{"candidate bob", statemanager.Filter{Candidate: who("bob", "clerk")}, []string{"w-alice", "w-claimed"}},
		{"candidate dave", statemanager.Filter{Candidate: who("dave", "manager")}, []string{"w-carol"}},
		{"candidate of nothing", statemanager.Filter{Candidate: who("")}, nil},
		{"approver carol", statemanager.Filter{Candidate: who("carol", "director"), Status: approval}, []string{"a-director"}},
		{"approver who completed it", statemanager.Filter{Candidate: who("dave", "manager"), Status: approval}, nil},
		{"approver who approved it", statemanager.Filter{Candidate: who("erin", "manager"), Status: approval}, nil},
		{"another approver", statemanager.Filter{Candidate: who("zed", "manager"), Status: approval}, []string{"a-managers"}},
		{"candidate of a closed status", statemanager.Filter{Candidate: who("bob", "clerk"), Status: statemanager.StatusTimeout}, nil},
		{"candidate as viewer", statemanager.Filter{Candidate: who("anyone"), Viewer: who("alice", "clerk")}, []string{"w-alice"}},
		{"candidate and role", statemanager.Filter{Candidate: who("alice", "clerk"), Role: "clerk"}, []string{"w-alice"}},
		{"candidate and claimer", statemanager.Filter{Candidate: who("bob", "clerk"), ClaimedBy: "bob"}, []string{"w-claimed"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.f.Tenant = "acme"
			if c.f.Status == "" {
				c.f.Status = waiting
			}
			got := allPages(t, s, c.f)
			slices.Sort(got)
			if !slices.Equal(got, c.want) {
				t.Errorf("listed %v, want %v", got, c.want)
			}
			if tc, ok := s.(statemanager.TaskCounter); ok {
				n, exact, err := tc.Count(context.Background(), c.f)
				if err != nil || n != int64(len(c.want)) || !exact {
					t.Errorf("Count = %d (exact %v), %v; want %d", n, exact, err, len(c.want))
				}
			}
		})
	}
}

// testInboxCounts checks counts read off the index cardinalities follow
// the tasks through the lifecycle: into IN_APPROVAL, back, and closed.
func testInboxCounts(t *testing.T, s statemanager.Store) {
	tc, ok := s.(statemanager.TaskCounter)
	if !ok {
		t.Skip("the store does not implement the optional TaskCounter")
	}
	lc := lifecycleOf(t, s)
	ctx := context.Background()
	for i := range 9 {
		task := sampleTask(fmt.Sprintf("n-%d", i))
		task.Tenant, task.User, task.Roles = "acme", "", []string{"clerk"}
		mustStart(t, s, task)
	}
	count := func(f statemanager.Filter) int64 {
		t.Helper()
		f.Tenant = "acme"
		n, exact, err := tc.Count(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		if listed := allPages(t, s, f); int64(len(listed)) != n {
			t.Errorf("Count(%+v) = %d, List %d", f, n, len(listed))
		}
		if !exact && f.Viewer == nil {
			t.Errorf("Count(%+v) inexact", f)
		}
		return n
	}
	check := func(stage string, waiting, approval int64) {
		t.Helper()
		for _, f := range []statemanager.Filter{{}, {Role: "clerk"}, {Viewer: who("", "clerk")}} {
			f.Status = statemanager.StatusWaiting
			if n := count(f); n != waiting {
				t.Errorf("%s: Count(%+v) = %d, want %d", stage, f, n, waiting)
			}
			f.Status = statemanager.StatusInApproval
			if n := count(f); n != approval {
				t.Errorf("%s: Count(%+v) = %d, want %d", stage, f, n, approval)
			}
		}
		if n := count(statemanager.Filter{Status: statemanager.StatusInApproval, Role: "clerk", Candidate: who("x", "director", "auditor")}); n != approval {
			t.Errorf("%s: approvers' count = %d, want %d", stage, n, approval)
		}
	}
	check("started", 9, 0)
	for i := range 3 {
		mustApply(t, lc, statemanager.Change{ID: fmt.Sprintf("n-%d", i), Version: 1, Key: "c", Status: ptr(statemanager.StatusInApproval), CompletedBy: ptr("bob"),
			Event: statemanager.Event{Type: statemanager.EventCompleted, At: base + 1, Actor: "bob"}})
	}
	check("three in approval", 6, 3)
	mustApply(t, lc, statemanager.Change{ID: "n-0", Version: 2, Key: "r", Status: ptr(statemanager.StatusWaiting),
		Event: statemanager.Event{Type: statemanager.EventRejected, At: base + 2, Actor: "carol"}})
	check("one rejected", 7, 2)
	mustApply(t, lc, statemanager.Change{ID: "n-1", Version: 2, Key: "cancel", Close: &statemanager.Close{Status: statemanager.StatusCancelled, At: base + 3, By: "root"}})
	mustClose(t, s, statemanager.Close{ID: "n-5", Status: statemanager.StatusTimeout, At: base + 3, Key: "fire"})
	check("closed", 6, 1)
	if n := count(statemanager.Filter{Status: statemanager.StatusCancelled}); n != 1 {
		t.Errorf("cancelled count = %d", n)
	}
}

// sortSet starts tasks of one role with starts, deadlines and priorities
// that disagree, and returns their ids in each order.
func sortSet(t *testing.T, s statemanager.Store, n int) map[string][]string {
	t.Helper()
	type row struct {
		id            string
		started, dl   int64
		priority      int
		deadlineOrder []int64
	}
	r := rand.New(rand.NewPCG(1, 2))
	rows := make([]row, n)
	for i := range rows {
		x := row{id: fmt.Sprintf("s-%03d", i), started: base + int64(r.IntN(n/3+1)), priority: r.IntN(5) - 2}
		if r.IntN(4) > 0 {
			x.dl = base + 1_000 + int64(r.IntN(n/2+1))
		}
		rows[i] = x
		task := sampleTask(x.id)
		task.Tenant, task.User, task.Roles = "acme", "", []string{"clerk"}
		task.StartedAt, task.Deadline, task.Priority = x.started, x.dl, x.priority
		mustStart(t, s, task)
	}
	order := func(less func(a, b row) int) []string {
		sorted := slices.Clone(rows)
		slices.SortFunc(sorted, func(a, b row) int {
			if c := less(a, b); c != 0 {
				return c
			}
			if a.started != b.started {
				return int(a.started - b.started)
			}
			if a.id < b.id {
				return -1
			}
			return 1
		})
		ids := make([]string, len(sorted))
		for i, x := range sorted {
			ids[i] = x.id
		}
		return ids
	}
	noDeadlineLast := func(x row) int64 {
		if x.dl == 0 {
			return 1 << 62
		}
		return x.dl
	}
	return map[string][]string{
		statemanager.SortStartedAt: order(func(a, b row) int { return 0 }),
		statemanager.SortDeadline: order(func(a, b row) int {
			da, db := noDeadlineLast(a), noDeadlineLast(b)
			switch {
			case da < db:
				return -1
			case da > db:
				return 1
			}
			return 0
		}),
		statemanager.SortPriority: order(func(a, b row) int { return b.priority - a.priority }),
	}
}

// testInboxSorts lists one set in each order, through every kind of
// index (the tenant's, a role's, a candidate's, a viewer's inbox), page
// by page.
func testInboxSorts(t *testing.T, s statemanager.Store) {
	want := sortSet(t, s, 40)
	for sort, ids := range want {
		for _, f := range []statemanager.Filter{
			{}, {Role: "clerk"}, {Candidate: who("x", "clerk")}, {Viewer: who("x", "clerk")}, {Viewer: &statemanager.Viewer{Admin: true}},
		} {
			f.Tenant, f.Sort = "acme", sort
			for _, limit := range []int{1, 3, 40, 100} {
				f.Limit = limit
				if got := allPages(t, s, f); !slices.Equal(got, ids) {
					t.Errorf("%s, %+v: listed\n%v\nwant\n%v", sort, f, got, ids)
				}
			}
		}
	}
}

// testInboxDeadlineOrderFollowsMoves checks a moved deadline moves the task
// in the deadline order, and that a task closed leaves every order.
func testInboxDeadlineOrderFollowsMoves(t *testing.T, s statemanager.Store) {
	lc := lifecycleOf(t, s)
	for i, dl := range []int64{base + 10, base + 20, 0} {
		task := sampleTask(fmt.Sprintf("m-%d", i))
		task.Tenant, task.User, task.Roles, task.Deadline = "acme", "", []string{"clerk"}, dl
		mustStart(t, s, task)
	}
	list := func() []string {
		return allPages(t, s, statemanager.Filter{Tenant: "acme", Role: "clerk", Sort: statemanager.SortDeadline, Limit: 2})
	}
	if got := list(); !slices.Equal(got, []string{"m-0", "m-1", "m-2"}) {
		t.Fatalf("before = %v", got)
	}
	mustApply(t, lc, statemanager.Change{ID: "m-2", Version: 1, Key: "d", Deadline: ptr(base + 5),
		Event: statemanager.Event{Type: statemanager.EventDeadline, At: base + 1}})
	mustApply(t, lc, statemanager.Change{ID: "m-0", Version: 1, Key: "d", Deadline: ptr(int64(0)),
		Event: statemanager.Event{Type: statemanager.EventDeadline, At: base + 1}})
	if got := list(); !slices.Equal(got, []string{"m-2", "m-1", "m-0"}) {
		t.Errorf("after the moves = %v", got)
	}
	mustClose(t, s, statemanager.Close{ID: "m-1", Status: statemanager.StatusCancelled, At: base + 2, Key: "c"})
	for _, sort := range statemanager.Sorts {
		got := allPages(t, s, statemanager.Filter{Tenant: "acme", Sort: sort})
		if slices.Contains(got, "m-1") || len(got) != 2 {
			t.Errorf("%s after the close = %v", sort, got)
		}
	}
}

// testInboxPagingUnderChurn walks a static set page by page in every order
// while other tasks of the same inbox start and close: each static task is
// listed exactly once, and no task twice.
func testInboxPagingUnderChurn(t *testing.T, s statemanager.Store) {
	want := sortSet(t, s, 60)
	ctx := context.Background()
	var stop atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; !stop.Load(); i++ {
			id := fmt.Sprintf("churn-%d", i)
			task := sampleTask(id)
			task.Tenant, task.User, task.Roles = "acme", "", []string{"clerk"}
			task.StartedAt, task.Priority, task.Deadline = base+int64(i%25), i%5-2, base+1_000+int64(i%30)
			if _, _, err := s.Start(ctx, task); err != nil {
				errs <- err
				return
			}
			if i%2 == 0 {
				if _, _, err := s.Close(ctx, statemanager.Close{ID: id, Status: statemanager.StatusCancelled, At: base + 5_000, Key: "c"}); err != nil {
					errs <- err
					return
				}
			}
		}
	}()
	for sort, ids := range want {
		for _, f := range []statemanager.Filter{{Role: "clerk"}, {Viewer: who("x", "clerk")}} {
			f.Tenant, f.Sort, f.Limit = "acme", sort, 4
			got := allPages(t, s, f)
			seen := map[string]int{}
			for _, id := range got {
				seen[id]++
			}
			for id, n := range seen {
				if n > 1 {
					t.Errorf("%s, %+v: %q listed %d times", sort, f, id, n)
				}
			}
			var static []string
			for _, id := range got {
				if slices.Contains(ids, id) {
					static = append(static, id)
				}
			}
			if !slices.Equal(static, ids) {
				t.Errorf("%s, %+v: the static tasks listed\n%v\nwant\n%v", sort, f, static, ids)
			}
		}
	}
	stop.Store(true)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
}

// testInboxRefusals checks bad sorts and cursors are ErrInvalidFilter, and
// that a cursor never widens what its bearer sees.
func testInboxRefusals(t *testing.T, s statemanager.Store) {
	ctx := context.Background()
	inboxSet(t, s)
	f := statemanager.Filter{Tenant: "acme", Limit: 1}
	first, err := statemanager.ListPage(ctx, s, f)
	if err != nil || first.Next == "" {
		t.Fatalf("first page: %+v, %v", first, err)
	}
	enc := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	var c map[string]any
	raw, _ := base64.RawURLEncoding.DecodeString(first.Next)
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatalf("the cursor is not base64url JSON: %v", err)
	}
	with := func(k string, v any) string {
		m := maps(c)
		m[k] = v
		return enc(m)
	}
	for _, bad := range []struct {
		name string
		f    statemanager.Filter
	}{
		{"unknown sort", statemanager.Filter{Sort: "name"}},
		{"sort of closed tasks", statemanager.Filter{Status: statemanager.StatusCompleted, Sort: statemanager.SortPriority}},
		{"garbage cursor", statemanager.Filter{Cursor: "!!not base64!!"}},
		{"json garbage", statemanager.Filter{Cursor: enc("nope")}},
		{"other version", statemanager.Filter{Cursor: with("v", 99)}},
		{"other listing", statemanager.Filter{Cursor: first.Next, Sort: statemanager.SortDeadline}},
		{"other status", statemanager.Filter{Cursor: first.Next, Status: statemanager.StatusInApproval}},
		{"other filter", statemanager.Filter{Cursor: first.Next, Role: "clerk"}},
		{"key not a number", statemanager.Filter{Cursor: with("k", "abc")}},
		{"empty key", statemanager.Filter{Cursor: with("k", "")}},
		{"huge cursor", statemanager.Filter{Cursor: with("k", string(make([]byte, 5000)))}},
	} {
		t.Run(bad.name, func(t *testing.T) {
			bad.f.Tenant = "acme"
			if _, err := s.List(ctx, bad.f); !errors.Is(err, statemanager.ErrInvalidFilter) {
				t.Errorf("List = %v, want ErrInvalidFilter", err)
			}
			if tc, ok := s.(statemanager.TaskCounter); ok && bad.f.Cursor == "" {
				if _, _, err := tc.Count(ctx, bad.f); !errors.Is(err, statemanager.ErrInvalidFilter) {
					t.Errorf("Count = %v, want ErrInvalidFilter", err)
				}
			}
		})
	}
	// A forged position only says where to go on from.
	for _, k := range []string{"0000000000000000a", "0000000000000000a-director", "9000000000000000"} {
		for _, v := range []*statemanager.Viewer{who("alice", "clerk"), who("carol")} {
			g := statemanager.Filter{Tenant: "acme", Viewer: v, Cursor: with("k", k)}
			got, err := s.List(ctx, g)
			if err != nil && !errors.Is(err, statemanager.ErrInvalidFilter) {
				t.Fatal(err)
			}
			for _, task := range got {
				if !task.VisibleTo("acme", v) {
					t.Errorf("a forged cursor showed %q to %+v", task.ID, v)
				}
			}
		}
	}
}

func maps(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// testCloseDataKeptForApprovals: the executor's data and enrich path,
// written with the change into IN_APPROVAL, are what the last approval's
// close hands on; a cancel drops them.
func testCloseDataKeptForApprovals(t *testing.T, s statemanager.Store) {
	lc := lifecycleOf(t, s)
	data := json.RawMessage(`{"decision":"ok"}`)
	for _, id := range []string{"cd-approved", "cd-cancelled"} {
		task := sampleTask(id)
		task.RequiredApprovals = 1
		mustStart(t, s, task)
		got := mustApply(t, lc, statemanager.Change{ID: id, Version: 1, Key: "complete", Status: ptr(statemanager.StatusInApproval),
			CompletedBy: ptr("alice"), CloseData: &data, EnrichPath: ptr("decision"),
			Event: statemanager.Event{Type: statemanager.EventCompleted, At: base + 1, Actor: "alice"}})
		if string(got.CloseData) != string(data) || got.EnrichPath != "decision" || !got.Waiting() {
			t.Errorf("%s in approval: data %s, path %q, status %s", id, got.CloseData, got.EnrichPath, got.Status)
		}
	}
	closed := mustApply(t, lc, statemanager.Change{ID: "cd-approved", Version: 2, Key: "approve",
		Approvals: &[]statemanager.Approval{{User: "dave", At: base + 2}},
		Event:     statemanager.Event{Type: statemanager.EventApproved, At: base + 2, Actor: "dave"},
		Close:     &statemanager.Close{Status: statemanager.StatusCompleted, At: base + 2, By: "dave"}})
	if string(closed.CloseData) != string(data) || closed.EnrichPath != "decision" || closed.Status != statemanager.StatusCompleted {
		t.Errorf("closed by the last approval: data %s, path %q, status %s", closed.CloseData, closed.EnrichPath, closed.Status)
	}
	if got := mustGet(t, s, "cd-approved"); string(got.CloseData) != string(data) || got.EnrichPath != "decision" {
		t.Errorf("Get after the close: data %s, path %q", got.CloseData, got.EnrichPath)
	}
	cancelled := mustApply(t, lc, statemanager.Change{ID: "cd-cancelled", Version: 2, Key: "cancel",
		Close: &statemanager.Close{Status: statemanager.StatusCancelled, At: base + 2, By: "root"}})
	if len(cancelled.CloseData) != 0 || cancelled.EnrichPath != "" {
		t.Errorf("cancelled: data %s, path %q: the executor's data must not reach a cancel", cancelled.CloseData, cancelled.EnrichPath)
	}
}

// testStartedByIsTheStartedActor: the starter is stored and is the actor
// of the implied started event.
func testStartedByIsTheStartedActor(t *testing.T, s statemanager.Store) {
	lc := lifecycleOf(t, s)
	task := sampleTask("by")
	task.StartedBy = "olivia"
	mustStart(t, s, task)
	if got := mustGet(t, s, "by"); got.StartedBy != "olivia" {
		t.Errorf("StartedBy = %q", got.StartedBy)
	}
	h := mustHistory(t, lc, "by")
	if len(h) != 1 || h[0].Type != statemanager.EventStarted || h[0].Actor != "olivia" {
		t.Errorf("history = %+v, want the started event by olivia", h)
	}
	anon := sampleTask("anon")
	mustStart(t, s, anon)
	if h := mustHistory(t, lc, "anon"); len(h) != 1 || h[0].Actor != "" {
		t.Errorf("history of a system start = %+v", h)
	}
}
