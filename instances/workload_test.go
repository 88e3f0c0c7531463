package instances_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/sagarunner/sagarunner/instances"
	"github.com/sagarunner/sagarunner/internal/redistest"
)

// The events the engine makes for one instance of a one-task saga, per
// handled input: its start (started, the task step waiting, the task's
// started event), the task's close, and the continuation that finishes it.
func startInput(id string, at int64) []instances.Event {
	return []instances.Event{
		{Instance: id, Key: "start", Type: instances.EventStarted, At: at, Actor: "alice", Saga: "approval", Version: 1,
			Tenant: "acme", BusinessKey: "bk-" + id},
		{Instance: id, Key: "s1", Type: instances.EventStep, At: at, Step: "approve", Action: "StartTask", Status: "WAITING",
			Domain: "workflow", TaskID: "t-" + id},
		{Instance: id, Key: "t" + strconv.FormatInt(at, 36) + "a", Type: instances.EventTask, At: at, Actor: "alice",
			Domain: "workflow", TaskID: "t-" + id, Task: "started", Status: "WAITING"},
	}
}

// benchInput is startInput as the bench's saga makes it: no tenant,
// starter or business key, so each start enters the two indexes every
// instance is in (its saga's and the open one).
func benchInput(id string, at int64) []instances.Event {
	in := startInput(id, at)
	in[0].Actor, in[0].Tenant, in[0].BusinessKey = "", "", ""
	in[2].Actor = ""
	return in
}

func closeInput(id string, at int64) []instances.Event {
	return []instances.Event{{Instance: id, Key: "t" + strconv.FormatInt(at, 36) + "b", Type: instances.EventTask, At: at,
		Actor: "bob", Domain: "workflow", TaskID: "t-" + id, Task: "completed", Status: "COMPLETED", Outcome: "approved"}}
}

func finishInput(id string, at int64) []instances.Event {
	return []instances.Event{
		{Instance: id, Key: "s3", Type: instances.EventStep, At: at, Step: "publish", Action: "Publish", Status: "SUCCESS"},
		{Instance: id, Key: "end", Type: instances.EventFinished, At: at, Saga: "approval", Step: "publish", Status: "SUCCESS"},
	}
}

// workload applies n instances' inputs of the kinds phase names, in
// batches of 100 inputs as a runner's batch.
func workload(ctx context.Context, s *instances.Store, n int, kinds ...func(string, int64) []instances.Event) error {
	for _, kind := range kinds {
		for b := 0; b < n; b += 100 {
			var inputs [][]instances.Event
			for i := b; i < b+100 && i < n; i++ {
				inputs = append(inputs, kind(fmt.Sprintf("req-%07d", i), int64(1_700_000_000_000+i)))
			}
			if err := s.Apply(ctx, inputs...); err != nil {
				return err
			}
		}
	}
	return nil
}

// TestWorkload drives a fixed workload through Apply against the Redis at
// INSTANCES_WORKLOAD_ADDR (a redis-server under callgrind, to count the
// instructions the store costs Redis): INSTANCES_WORKLOAD=start applies
// 5,000 starts, =all also their closes and finishes, =bench 5,000 starts
// shaped as the bench's, =ends the closes and finishes of 5,000 instances
// started before the counts are zeroed.
func TestWorkload(t *testing.T) {
	addr := os.Getenv("INSTANCES_WORKLOAD_ADDR")
	if addr == "" {
		t.Skip("INSTANCES_WORKLOAD_ADDR not set")
	}
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	s, err := instances.NewStore(rdb, instances.Config{})
	if err != nil {
		t.Fatal(err)
	}
	// INSTANCES_WORKLOAD_GENERAL=1 sends every group in the general form.
	instances.SetGeneral(s, os.Getenv("INSTANCES_WORKLOAD_GENERAL") == "1")
	kinds := []func(string, int64) []instances.Event{startInput}
	switch os.Getenv("INSTANCES_WORKLOAD") {
	case "none":
		kinds = nil
	case "all":
		kinds = append(kinds, closeInput, finishInput)
	case "bench":
		kinds = []func(string, int64) []instances.Event{benchInput}
	case "ends":
		kinds = []func(string, int64) []instances.Event{closeInput, finishInput}
	}
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if os.Getenv("INSTANCES_WORKLOAD") == "ends" {
		// The starts first, then the counts zeroed: the dump counts the
		// closes and finishes only (INSTANCES_WORKLOAD_PID is the
		// callgrind's).
		if err := workload(ctx, s, 5000, startInput); err != nil {
			t.Fatal(err)
		}
		if pid := os.Getenv("INSTANCES_WORKLOAD_PID"); pid != "" {
			if out, err := exec.Command("callgrind_control", "-z", pid).CombinedOutput(); err != nil {
				t.Fatalf("callgrind_control: %v: %s", err, out)
			}
		}
	}
	if err := workload(ctx, s, 5000, kinds...); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkApply measures what the runner spends on one instance's start,
// close and finish: encoding and applying the events, Redis included.
func BenchmarkApply(b *testing.B) {
	ctx := context.Background()
	_, rdb := redistest.Start(b)
	s, err := instances.NewStore(rdb, instances.Config{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += 100 {
		n := min(100, b.N-i)
		var inputs [][]instances.Event
		for _, kind := range []func(string, int64) []instances.Event{startInput, closeInput, finishInput} {
			inputs = inputs[:0]
			for j := range n {
				inputs = append(inputs, kind(fmt.Sprintf("b%d-%d", i, j), int64(i+j)))
			}
			if err := s.Apply(ctx, inputs...); err != nil {
				b.Fatal(err)
			}
		}
	}
}
