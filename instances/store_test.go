package instances_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/sagarunner/sagarunner/instances"
	"github.com/sagarunner/sagarunner/internal/redistest"
)

func newStore(t *testing.T, cfg instances.Config) *instances.Store {
	t.Helper()
	_, rdb := redistest.Start(t)
	s, err := instances.NewStore(rdb, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func started(id, tenant, user string, at int64) instances.Event {
	return instances.Event{Instance: id, Key: "start", Type: instances.EventStarted, At: at, Actor: user,
		Saga: "approval", Version: 1, Tenant: tenant, BusinessKey: "bk-" + id}
}

func TestApplyLifecycleAndReplay(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, instances.Config{})
	batch := []instances.Event{
		started("r1", "acme", "alice", 100),
		{Instance: "r1", Key: "s1", Type: instances.EventStep, At: 101, Step: "approve", Action: "StartTask", Status: "WAITING", Domain: "workflow", TaskID: "t1"},
	}
	for range 2 { // the second apply is a replay: nothing changes
		if err := s.Apply(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	in, err := s.Get(ctx, "r1")
	if err != nil {
		t.Fatal(err)
	}
	if n, err := s.CountOpen(ctx); err != nil || n != 1 {
		t.Fatalf("open: %d, %v", n, err)
	}
	if in.Status != instances.StatusWaiting || len(in.OpenTasks) != 1 || in.OpenTasks[0].ID != "t1" || in.Tenant != "acme" || in.Starter != "alice" || in.BusinessKey != "bk-r1" {
		t.Fatalf("after start: %+v", in)
	}
	closeBatch := []instances.Event{
		{Instance: "r1", Key: "tx", Type: instances.EventTask, At: 150, Actor: "bob", Domain: "workflow", TaskID: "t1", Task: "completed", Status: "COMPLETED"},
		{Instance: "r1", Key: "s2", Type: instances.EventStep, At: 160, Step: "publish", Action: "Publish", Status: "SUCCESS"},
		{Instance: "r1", Key: "end", Type: instances.EventFinished, At: 161, Status: "SUCCESS"},
	}
	for range 2 {
		if err := s.Apply(ctx, closeBatch); err != nil {
			t.Fatal(err)
		}
	}
	// A late failure cannot move an ended instance.
	if err := s.Apply(ctx, []instances.Event{{Instance: "r1", Key: "dl", Type: instances.EventDeadLettered, At: 170, Code: "X"}}); err != nil {
		t.Fatal(err)
	}
	if n, err := s.CountOpen(ctx); err != nil || n != 0 {
		t.Fatalf("open after the end: %d, %v", n, err)
	}
	in, _ = s.Get(ctx, "r1")
	if in.Status != instances.StatusCompleted || len(in.OpenTasks) != 0 || in.EndedAt != 161 || !in.VisibleTo("bob") || in.VisibleTo("carol") {
		t.Fatalf("after end: %+v", in)
	}
	tl, err := s.Timeline(ctx, "r1")
	if err != nil {
		t.Fatal(err)
	}
	var types string
	for i, e := range tl {
		if e.Seq != int64(i+1) {
			t.Fatalf("event %d has seq %d", i, e.Seq)
		}
		types += e.Type + " "
	}
	if types != "started step task step finished deadLettered " {
		t.Fatalf("timeline: %s", types)
	}
	if _, err := s.Get(ctx, "nope"); !errors.Is(err, instances.ErrNotFound) {
		t.Fatalf("unknown: %v", err)
	}
	// Events written before the start stay hidden until it comes, then
	// count: a close written first leaves its task closed.
	early := []instances.Event{{Instance: "late", Key: "tx", Type: instances.EventTask, At: 5, Actor: "bob", Domain: "workflow", TaskID: "t9", Task: "completed", Status: "COMPLETED"}}
	if err := s.Apply(ctx, early); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "late"); !errors.Is(err, instances.ErrNotFound) {
		t.Fatalf("before its start: %v", err)
	}
	if _, err := s.Timeline(ctx, "late"); !errors.Is(err, instances.ErrNotFound) {
		t.Fatalf("timeline before its start: %v", err)
	}
	if err := s.Apply(ctx, []instances.Event{started("late", "acme", "alice", 1),
		{Instance: "late", Key: "s1", Type: instances.EventStep, At: 2, Step: "approve", Status: "WAITING", Domain: "workflow", TaskID: "t9"}}); err != nil {
		t.Fatal(err)
	}
	in, err = s.Get(ctx, "late")
	if err != nil || in.Status != instances.StatusRunning || len(in.OpenTasks) != 0 || !in.VisibleTo("bob") {
		t.Fatalf("after its start: %+v, %v", in, err)
	}
	if p, _ := s.List(ctx, instances.Filter{Tenant: "acme", Viewer: "bob"}); len(p.Instances) != 2 {
		t.Fatalf("bob's listing: %d instances", len(p.Instances))
	}
}

func TestTimelineCapKeepsNewest(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, instances.Config{TimelineCap: 5})
	evs := []instances.Event{started("r", "", "u", 1)}
	for i := range 20 {
		evs = append(evs, instances.Event{Instance: "r", Key: fmt.Sprint("s", i), Type: instances.EventStep, At: int64(2 + i), Step: fmt.Sprint("x", i), Status: "SUCCESS"})
	}
	if err := s.Apply(ctx, evs); err != nil {
		t.Fatal(err)
	}
	tl, _ := s.Timeline(ctx, "r")
	if len(tl) != 5 || tl[4].Step != "x19" || tl[4].Seq != 21 {
		t.Fatalf("timeline: %+v", tl)
	}
}

func TestListFiltersPagesAndTenants(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, instances.Config{Shards: 4, Retention: time.Hour})
	var evs []instances.Event
	for i := range 30 {
		id := fmt.Sprintf("r%02d", i)
		evs = append(evs, started(id, "acme", fmt.Sprint("u", i%3), int64(1000+i)))
		if i%2 == 0 {
			evs = append(evs, instances.Event{Instance: id, Key: "end", Type: instances.EventFinished, At: int64(2000 + i)})
		}
	}
	evs = append(evs, started("other", "globex", "u0", 5000))
	if err := s.Apply(ctx, evs); err != nil {
		t.Fatal(err)
	}
	collect := func(f instances.Filter) []string {
		var ids []string
		for pages := 0; ; pages++ {
			if pages > 50 {
				t.Fatal("paging does not end")
			}
			p, err := s.List(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			for _, in := range p.Instances {
				ids = append(ids, in.ID)
			}
			if p.NextCursor == "" {
				return ids
			}
			f.Cursor = p.NextCursor
		}
	}
	tests := []struct {
		name string
		f    instances.Filter
		want int
		pred func(string) bool
	}{
		{"all of a tenant, paged", instances.Filter{Tenant: "acme", Limit: 7}, 30, nil},
		{"completed", instances.Filter{Tenant: "acme", Status: instances.StatusCompleted, Limit: 4}, 15, nil},
		{"running", instances.Filter{Tenant: "acme", Status: instances.StatusRunning}, 15, nil},
		{"viewer u1", instances.Filter{Tenant: "acme", Viewer: "u1", Limit: 3}, 10, nil},
		{"business key", instances.Filter{Tenant: "acme", BusinessKey: "bk-r07"}, 1, nil},
		{"started range", instances.Filter{Tenant: "acme", StartedAfter: 1010, StartedBefore: 1019}, 10, nil},
		{"by start, named", instances.Filter{Tenant: "acme", Sort: instances.SortStartedAt, Limit: 9}, 30, nil},
		{"running, started range", instances.Filter{Tenant: "acme", Status: instances.StatusRunning, StartedAfter: 1010, StartedBefore: 1019}, 5, nil},
		{"saga", instances.Filter{Tenant: "acme", Saga: "approval", Limit: 11}, 30, nil},
		{"other tenant", instances.Filter{Tenant: "globex"}, 1, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ids := collect(tc.f)
			if len(ids) != tc.want {
				t.Fatalf("got %d: %v", len(ids), ids)
			}
			seen := map[string]bool{}
			for _, id := range ids {
				if seen[id] {
					t.Fatalf("%s listed twice: %v", id, ids)
				}
				seen[id] = true
			}
		})
	}
	if _, err := s.List(ctx, instances.Filter{Status: "BOGUS"}); !errors.Is(err, instances.ErrBadFilter) {
		t.Fatalf("bad status: %v", err)
	}
	if _, err := s.List(ctx, instances.Filter{Sort: "updatedAt"}); !errors.Is(err, instances.ErrBadFilter) {
		t.Fatalf("sort by update: %v", err)
	}
	if _, err := s.List(ctx, instances.Filter{Cursor: "!!"}); !errors.Is(err, instances.ErrBadFilter) {
		t.Fatalf("bad cursor: %v", err)
	}
}

// A batch's inputs are deduplicated each on its own: two inputs of one
// instance both apply, a replay of either applies nothing, and closes of
// several tasks gathered in one input (recovered after a crash) apply
// those not applied before.
func TestApplyGroupsPerInput(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, instances.Config{})
	start := []instances.Event{started("r", "acme", "alice", 1),
		{Instance: "r", Key: "s1", Type: instances.EventStep, At: 2, Step: "a", Status: "WAITING", Domain: "d", TaskID: "ta"},
		{Instance: "r", Key: "s2", Type: instances.EventStep, At: 2, Step: "b", Status: "WAITING", Domain: "d", TaskID: "tb"}}
	closeA := []instances.Event{{Instance: "r", Key: "xa", Type: instances.EventTask, At: 3, Actor: "bob", Domain: "d", TaskID: "ta", Status: "COMPLETED"}}
	closeB := instances.Event{Instance: "r", Key: "xb", Type: instances.EventTask, At: 4, Actor: "carol", Domain: "d", TaskID: "tb", Status: "COMPLETED"}
	if err := s.Apply(ctx, start, closeA); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(ctx, start, closeA, append(closeA[:1:1], closeB)); err != nil {
		t.Fatal(err)
	}
	in, err := s.Get(ctx, "r")
	if err != nil || in.Status != instances.StatusRunning || len(in.OpenTasks) != 0 || !in.VisibleTo("bob") || !in.VisibleTo("carol") {
		t.Fatalf("record: %+v, %v", in, err)
	}
	tl, _ := s.Timeline(ctx, "r")
	var keys string
	for _, e := range tl {
		keys += fmt.Sprint(e.Seq, e.Key, " ")
	}
	if keys != "1start 2s1 3s2 4xa 5xb " {
		t.Fatalf("timeline: %s", keys)
	}
}

// An end closes what is open and starts the retention; an instance whose
// events came before its start keeps none once it starts.
func TestApplyEndAndExpiry(t *testing.T) {
	ctx := context.Background()
	_, rdb := redistest.Start(t)
	s, err := instances.NewStore(rdb, instances.Config{Shards: 1, Retention: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	p := "{sagarunner-instances:0}:"
	early := []instances.Event{{Instance: "r", Key: "tx", Type: instances.EventTask, At: 1, Actor: "bob", Domain: "d", TaskID: "t0", Status: "COMPLETED"}}
	if err := s.Apply(ctx, early); err != nil {
		t.Fatal(err)
	}
	if ttl := rdb.PTTL(ctx, p+"i:r").Val(); ttl <= 0 {
		t.Fatalf("before its start: ttl %v", ttl)
	}
	if err := s.Apply(ctx, []instances.Event{started("r", "acme", "alice", 2),
		{Instance: "r", Key: "s1", Type: instances.EventStep, At: 3, Step: "a", Status: "WAITING", Domain: "d", TaskID: "t1"}}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"i:r", "l:r"} {
		if ttl := rdb.PTTL(ctx, p+k).Val(); ttl != -1 {
			t.Fatalf("%s after its start: ttl %v", k, ttl)
		}
	}
	if in, _ := s.Get(ctx, "r"); in.Status != instances.StatusWaiting || len(in.OpenTasks) != 1 {
		t.Fatalf("waiting: %+v", in)
	}
	if err := s.Apply(ctx, []instances.Event{{Instance: "r", Key: "end", Type: instances.EventFailed, At: 9, Status: "FAIL", Code: "E1", Message: "boom"}}); err != nil {
		t.Fatal(err)
	}
	in, _ := s.Get(ctx, "r")
	if in.Status != instances.StatusFailed || len(in.OpenTasks) != 0 || in.LastResult.Code != "E1" || in.EndedAt != 9 || in.UpdatedAt != 9 {
		t.Fatalf("ended: %+v", in)
	}
	for _, k := range []string{"i:r", "l:r"} {
		if ttl := rdb.PTTL(ctx, p+k).Val(); ttl <= 0 || ttl > time.Hour {
			t.Fatalf("%s after its end: ttl %v", k, ttl)
		}
	}
	if n, _ := s.CountOpen(ctx); n != 0 {
		t.Fatalf("open: %d", n)
	}
	if pg, _ := s.List(ctx, instances.Filter{Tenant: "acme", Status: instances.StatusFailed}); len(pg.Instances) != 1 {
		t.Fatalf("failed listing: %+v", pg)
	}
}

// A batch encodes each event once: the audit record of an instance holds
// the same events, in order, as the timeline.
func TestBatchAuditRecords(t *testing.T) {
	var b instances.Batch
	audits := b.Add([]instances.Event{started("x", "", "u", 1), started("y", "", "u", 1),
		{Instance: "x", Key: "s1", Type: instances.EventStep, At: 2, Step: "a", Status: "SUCCESS", Message: "m\"q"}})
	if len(audits) != 2 || audits[0].Instance != "x" || audits[1].Instance != "y" {
		t.Fatalf("audits: %+v", audits)
	}
	var rec struct {
		InstanceID string            `json:"instanceId"`
		Events     []instances.Event `json:"events"`
	}
	if err := json.Unmarshal(audits[0].Value, &rec); err != nil {
		t.Fatal(err)
	}
	if rec.InstanceID != "x" || len(rec.Events) != 2 || rec.Events[1].Message != "m\"q" || b.Len() != 3 {
		t.Fatalf("x's record: %s", audits[0].Value)
	}
}

// A start's input carries the task's started event beside the step that
// opened the task, applied together; the same task event reaching the store
// again on its own (recovered, replayed with other events) is recognised by
// its key, and so is the start run when only the task event was applied
// before.
func TestApplyTaskEventRunsInOneGroup(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, instances.Config{})
	task := instances.Event{Instance: "r", Key: "t1", Type: instances.EventTask, At: 2, Actor: "alice", Domain: "d", TaskID: "ta", Task: "started", Status: "WAITING"}
	start := []instances.Event{started("r", "acme", "alice", 1),
		{Instance: "r", Key: "s1", Type: instances.EventStep, At: 2, Step: "a", Status: "WAITING", Domain: "d", TaskID: "ta"}, task}
	closeA := instances.Event{Instance: "r", Key: "t2", Type: instances.EventTask, At: 3, Actor: "bob", Domain: "d", TaskID: "ta", Task: "completed", Status: "COMPLETED"}
	after := instances.Event{Instance: "r", Key: "s2", Type: instances.EventStep, At: 4, Step: "b", Status: "SUCCESS"}
	// The task event alone first (another input was quicker), then the
	// start, then the start again beside a close and a step, then each
	// event again on its own.
	if err := s.Apply(ctx, []instances.Event{task}); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(ctx, start, start); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(ctx, append(start[:3:3], closeA, after), []instances.Event{task}, []instances.Event{closeA}); err != nil {
		t.Fatal(err)
	}
	in, err := s.Get(ctx, "r")
	if err != nil || in.Status != instances.StatusRunning || len(in.OpenTasks) != 0 || in.Step != "b" || !in.VisibleTo("bob") {
		t.Fatalf("record: %+v, %v", in, err)
	}
	tl, _ := s.Timeline(ctx, "r")
	var keys string
	for _, e := range tl {
		keys += fmt.Sprint(e.Seq, e.Key, " ")
	}
	if keys != "1t1 2start 3s1 4t2 5s2 " {
		t.Fatalf("timeline: %s", keys)
	}
	if n, _ := s.CountOpen(ctx); n != 1 {
		t.Fatalf("open: %d", n)
	}
}

// An instance that starts and ends within one batch is counted and listed
// as ended only, however its inputs share the shard's call.
func TestApplyStartAndEndInOneBatch(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, instances.Config{Shards: 1})
	var inputs [][]instances.Event
	for i := range 5 {
		id := fmt.Sprint("r", i)
		inputs = append(inputs, []instances.Event{started(id, "acme", "alice", int64(10+i))})
		if i%2 == 0 {
			inputs = append(inputs, []instances.Event{{Instance: id, Key: "end", Type: instances.EventFinished, At: int64(20 + i), Status: "SUCCESS"}})
		}
	}
	if err := s.Apply(ctx, inputs...); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.CountOpen(ctx); n != 2 {
		t.Fatalf("open: %d", n)
	}
	for status, want := range map[string]string{instances.StatusRunning: "r3 r1 ", instances.StatusCompleted: "r4 r2 r0 ", "": "r4 r3 r2 r1 r0 "} {
		pg, err := s.List(ctx, instances.Filter{Tenant: "acme", Status: status})
		if err != nil {
			t.Fatal(err)
		}
		var got string
		for _, in := range pg.Instances {
			got += in.ID + " "
		}
		if got != want {
			t.Fatalf("status %q: %s, want %s", status, got, want)
		}
	}
	pg, _ := s.List(ctx, instances.Filter{Tenant: "acme", Viewer: "alice", Saga: "approval"})
	if len(pg.Instances) != 5 {
		t.Fatalf("alice's: %+v", pg)
	}
}
