package instances_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/sagarunner/sagarunner/instances"
	"github.com/sagarunner/sagarunner/internal/redistest"
)

// freshInputs are inputs that start their instances, each a different
// shape of the first group: the fast form must leave exactly what the
// general form leaves.
func freshInputs() [][]instances.Event {
	ev := func(id, key, typ string, at int64, e instances.Event) instances.Event {
		e.Instance, e.Key, e.Type, e.At = id, key, typ, at
		return e
	}
	long := strings.Repeat("é", 400) // cut to maxText in fields and indexes
	return [][]instances.Event{
		// The usual start: a task opened by the step, its started event.
		{
			ev("a", "start", instances.EventStarted, 100, instances.Event{Actor: "alice", Saga: "approval", Version: 2, Tenant: "acme", BusinessKey: "bk-a"}),
			ev("a", "s1", instances.EventStep, 101, instances.Event{Step: "approve", Action: "StartTask", Status: "WAITING", Domain: "workflow", TaskID: "ta"}),
			ev("a", "ta1", instances.EventTask, 101, instances.Event{Actor: "alice", Domain: "workflow", TaskID: "ta", Task: "started", Status: "WAITING"}),
		},
		// No tenant, starter or business key.
		{
			ev("b", "start", instances.EventStarted, 200, instances.Event{Saga: "bench", Version: 1}),
			ev("b", "s1", instances.EventStep, 200, instances.Event{Step: "wait", Action: "StartTask", Status: "WAITING", Domain: "bench", TaskID: "tb"}),
			ev("b", "tb1", instances.EventTask, 199, instances.Event{Domain: "bench", TaskID: "tb", Task: "started", Status: "WAITING"}),
		},
		// Ends in its first input: steps, a failure with a long message.
		{
			ev("c", "start", instances.EventStarted, 300, instances.Event{Actor: "carol", Saga: "quick", Version: 1, BusinessKey: long}),
			ev("c", "s1", instances.EventStep, 301, instances.Event{Step: "check", Action: "Publish", Status: "SUCCESS"}),
			ev("c", "s2", instances.EventStep, 302, instances.Event{Step: "fail", Action: "Fail", Status: "FAIL", Code: "NOPE", Message: long}),
			ev("c", "end", instances.EventFailed, 303, instances.Event{Status: "FAIL", Code: "NOPE", Message: long}),
		},
		// Two tasks; one closed by someone else in the same input, and
		// more events than the timeline keeps.
		{
			ev("d", "start", instances.EventStarted, 400, instances.Event{Actor: "dave", Saga: "two", Version: 1, Tenant: "t"}),
			ev("d", "s1", instances.EventStep, 401, instances.Event{Step: "one", Action: "StartTask", Status: "WAITING", Domain: "w", TaskID: "d1"}),
			ev("d", "d1a", instances.EventTask, 401, instances.Event{Actor: "dave", Domain: "w", TaskID: "d1", Task: "started", Status: "WAITING"}),
			ev("d", "d1b", instances.EventTask, 402, instances.Event{Actor: "erin", Domain: "w", TaskID: "d1", Task: "completed", Status: "COMPLETED"}),
			ev("d", "s2", instances.EventStep, 403, instances.Event{Step: "two", Action: "StartTask", Status: "WAITING", Domain: "w", TaskID: "d2"}),
			ev("d", "d2a", instances.EventTask, 403, instances.Event{Actor: "frank", Domain: "w", TaskID: "d2", Task: "claimed", Status: "WAITING"}),
		},
		// A close written with the start, before the task's open.
		{
			ev("e", "start", instances.EventStarted, 500, instances.Event{Actor: "eve", Saga: "race", Version: 1}),
			ev("e", "e1b", instances.EventTask, 500, instances.Event{Actor: "gina", Domain: "w", TaskID: "e1", Task: "completed", Status: "COMPLETED"}),
			ev("e", "s1", instances.EventStep, 501, instances.Event{Step: "one", Action: "StartTask", Status: "WAITING", Domain: "w", TaskID: "e1"}),
			ev("e", "e1a", instances.EventTask, 501, instances.Event{Actor: "eve", Domain: "w", TaskID: "e1", Task: "started", Status: "WAITING"}),
			ev("e", "end", instances.EventCancelled, 502, instances.Event{Status: "CANCELLED"}),
		},
	}
}

// dump reads every key of prefix as text: its type, whether it expires,
// and its content in a fixed order, with the prefix cut off.
func dump(t *testing.T, rdb *redis.Client, prefix string) []string {
	t.Helper()
	ctx := context.Background()
	keys, err := rdb.Keys(ctx, "{"+prefix+":*").Result()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, k := range keys {
		typ := rdb.Type(ctx, k).Val()
		ttl := rdb.PTTL(ctx, k).Val() > 0
		var v string
		switch typ {
		case "hash":
			h := rdb.HGetAll(ctx, k).Val()
			var fs []string
			for f, x := range h {
				fs = append(fs, f+"="+x)
			}
			slices.Sort(fs)
			v = strings.Join(fs, " ")
		case "list":
			v = strings.Join(rdb.LRange(ctx, k, 0, -1).Val(), "\n")
		case "zset":
			v = fmt.Sprint(rdb.ZRangeWithScores(ctx, k, 0, -1).Val())
		case "string":
			v = rdb.Get(ctx, k).Val()
		}
		out = append(out, fmt.Sprintf("%s %s ttl=%v %s", strings.TrimPrefix(k, "{"+prefix), typ, ttl, v))
	}
	slices.Sort(out)
	return out
}

// TestFreshFormEqualsGeneral applies the same inputs through the fast
// form of a starting group and through the general form, each to a store
// of its own prefix, and compares every key they leave: after the starts,
// after a replay of them, and after inputs that follow.
func TestFreshFormEqualsGeneral(t *testing.T) {
	ctx := context.Background()
	_, rdb := redistest.Start(t)
	cfg := instances.Config{Shards: 3, TimelineCap: 4}
	fast, general := cfg, cfg
	fast.Prefix, general.Prefix = "fast", "general"
	sf, err := instances.NewStore(rdb, fast)
	if err != nil {
		t.Fatal(err)
	}
	sg, err := instances.NewStore(rdb, general)
	if err != nil {
		t.Fatal(err)
	}
	instances.SetGeneral(sg, true)
	apply := func(inputs ...[]instances.Event) {
		t.Helper()
		for _, s := range []*instances.Store{sf, sg} {
			if err := s.Apply(ctx, inputs...); err != nil {
				t.Fatal(err)
			}
		}
		a, b := dump(t, rdb, "fast"), dump(t, rdb, "general")
		if !slices.Equal(a, b) {
			t.Fatalf("the fast form left\n%s\n\nthe general form left\n%s", strings.Join(a, "\n"), strings.Join(b, "\n"))
		}
		if len(a) == 0 {
			t.Fatal("nothing written")
		}
	}
	apply(freshInputs()...)
	apply(freshInputs()...) // a replay: the fast form finds the records and goes general
	apply([]instances.Event{
		{Instance: "a", Key: "ta2", Type: instances.EventTask, At: 600, Actor: "bob", Domain: "workflow", TaskID: "ta", Task: "completed", Status: "COMPLETED"},
		{Instance: "a", Key: "s2", Type: instances.EventStep, At: 601, Step: "publish", Action: "Publish", Status: "SUCCESS"},
		{Instance: "a", Key: "end", Type: instances.EventFinished, At: 602, Status: "SUCCESS"},
	}, []instances.Event{
		{Instance: "b", Key: "tb2", Type: instances.EventTask, At: 600, Domain: "bench", TaskID: "tb", Task: "timedOut", Status: "TIMEOUT"},
		{Instance: "b", Key: "end", Type: instances.EventFinished, At: 601, Status: "TIMEOUT"},
	})
	// A task event written before its instance's start: the start finds a
	// record and goes general.
	late := []instances.Event{{Instance: "f", Key: "f1b", Type: instances.EventTask, At: 700, Actor: "hal", Domain: "w", TaskID: "f1", Task: "completed", Status: "COMPLETED"}}
	apply(late)
	apply([]instances.Event{
		{Instance: "f", Key: "start", Type: instances.EventStarted, At: 699, Actor: "fay", Saga: "late", Version: 1},
		{Instance: "f", Key: "s1", Type: instances.EventStep, At: 699, Step: "one", Action: "StartTask", Status: "WAITING", Domain: "w", TaskID: "f1"},
	})
	// Starts of several instances in one call, one a replay among new ones.
	var many [][]instances.Event
	for i := range 20 {
		id := fmt.Sprintf("m%d", i)
		many = append(many, freshInputs()[1])
		for j := range many[i] {
			many[i][j].Instance = id
		}
	}
	apply(many[:5]...)
	apply(many...)
}
