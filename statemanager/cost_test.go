package statemanager

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"
)

// idsOfShard returns n task ids of one shard of a 4-shard store.
func idsOfShard(shard, n int) []string {
	var ids []string
	for i := 0; len(ids) < n; i++ {
		id := "task-" + strconv.Itoa(i)
		if ShardOf(id, 4) == shard {
			ids = append(ids, id)
		}
	}
	return ids
}

// TestRedisCostWorkload drives a fixed workload through a RedisStore against
// a redis-server the caller started, so the server's own cost can be
// measured deterministically (instructions under callgrind) rather than
// timed. It is skipped unless SAGARUNNER_COST_ADDR names the server; with
// SAGARUNNER_COST_PID set as well it runs `callgrind_control -z` before the
// workload and `callgrind_control -d` after each phase (starts, closes,
// acks), so each phase has its own dump. SAGARUNNER_COST_SHAPE=bench
// stores tasks as the bench saga does. SAGARUNNER_COST_BATCH=k sends the
// calls k at a time, all of one shard, queued behind a held flush slot;
// unset, 64 goroutines call at once. For example:
//
//	valgrind --tool=callgrind --callgrind-out-file=cg.%p \
//	  redis-server --port 6390 --save '' --appendonly no &
//	SAGARUNNER_COST_ADDR=localhost:6390 SAGARUNNER_COST_PID=<pid> \
//	  go test ./statemanager -run TestRedisCostWorkload -v
//	callgrind_annotate cg.<pid>.1 | grep 'PROGRAM TOTALS'
func TestRedisCostWorkload(t *testing.T) {
	addr := os.Getenv("SAGARUNNER_COST_ADDR")
	if addr == "" {
		t.Skip("SAGARUNNER_COST_ADDR is not set")
	}
	const workers = 64
	n := 2000
	if v, err := strconv.Atoi(os.Getenv("SAGARUNNER_COST_N")); err == nil && v > 0 {
		n = v
	}
	batch, _ := strconv.Atoi(os.Getenv("SAGARUNNER_COST_BATCH"))
	ctx := context.Background()
	client := redis.NewClient(&redis.Options{Addr: addr, PoolSize: workers})
	t.Cleanup(func() { client.Close() })
	if err := client.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	s, err := NewRedisStore(client, "workflow", RedisConfig{Shards: 4, PipelineBatches: 1})
	if err != nil {
		t.Fatal(err)
	}
	var g *gate
	if batch > 0 {
		g = newGate()
		client.AddHook(g)
	}
	task := func(id string) *Task {
		return &Task{
			ID: id, Name: "Job Post Approval", Spec: "job_post_approval", Action: "Approve",
			Roles: []string{"admin", "manager"}, Saga: "job_post_approval", StepID: "approve",
			RequestID: "r-" + id, StartedAt: 1_763_800_000_000, Deadline: 1_763_800_060_000,
			Data:     json.RawMessage(`{"data":{"productId":"product-1","brief":"summer vibes"}}`),
			Envelope: json.RawMessage(`{"requestMeta":{"requestId":"r-42","user":"alice"},"sagaMeta":{"saga":"job_post_approval","stepId":"approve"},"payload":{"parameters":{"productId":"product-1","brief":"summer vibes"}}}`),
		}
	}
	// SAGARUNNER_COST_SHAPE=bench stores the bench saga's tasks instead:
	// no roles, so each is in one listing family.
	if os.Getenv("SAGARUNNER_COST_SHAPE") == "bench" {
		full := task
		task = func(id string) *Task {
			t := full(id)
			t.Roles = nil
			return t
		}
	}
	// The ids, in batches of one shard each.
	var batches [][]string
	if batch > 0 {
		for shard := range 4 {
			ids := idsOfShard(shard, n/4)
			for len(ids) > 0 {
				k := min(batch, len(ids))
				batches = append(batches, ids[:k])
				ids = ids[k:]
			}
		}
	}
	// Warm up: load the scripts, open the connections.
	for i := range 2 * workers {
		id := "warm-" + strconv.Itoa(i)
		if _, _, err := s.Start(ctx, task(id)); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.Close(ctx, Close{ID: id, Status: StatusCompleted, By: "bob", Key: "k-" + id}); err != nil {
			t.Fatal(err)
		}
		if err := s.Ack(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	pid := os.Getenv("SAGARUNNER_COST_PID")
	control := func(flag string) {
		if pid == "" {
			return
		}
		if out, err := exec.Command("callgrind_control", flag, pid).CombinedOutput(); err != nil {
			t.Fatalf("callgrind_control %s: %v: %s", flag, err, out)
		}
	}
	evalshas := func() int64 {
		info, err := client.Info(ctx, "commandstats").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(info, "\r\n") {
			if rest, ok := strings.CutPrefix(line, "cmdstat_evalsha:calls="); ok {
				v, _ := strconv.ParseInt(rest[:strings.IndexByte(rest, ',')], 10, 64)
				return v
			}
		}
		return 0
	}
	concurrently := func(op func(id string) error) {
		var next atomic.Int64
		var wg sync.WaitGroup
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := next.Add(1) - 1
					if i >= int64(n) {
						return
					}
					if err := op("task-" + strconv.FormatInt(i, 10)); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
	}
	inBatches := func(op func(id string) error) {
		for _, ids := range batches {
			done := make(chan error, 1)
			g.entered = make(chan struct{})
			g.arm()
			go func() {
				_, err := s.Get(ctx, "holder")
				done <- err
			}()
			<-g.entered
			errs := make(chan error, len(ids))
			for _, id := range ids {
				go func() { errs <- op(id) }()
			}
			waitQueued(t, s, len(ids))
			g.release <- struct{}{}
			<-done
			for range ids {
				if err := <-errs; err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	phase := func(name string, op func(id string) error) {
		before := evalshas()
		if batch > 0 {
			inBatches(op)
		} else {
			concurrently(op)
		}
		control("-d")
		calls := evalshas() - before
		t.Logf("%s: %d operations, %d EVALSHA calls, %.2f operations a call", name, n, calls, float64(n)/float64(max(calls, 1)))
	}
	control("-z")
	phase("start", func(id string) error {
		_, _, err := s.Start(ctx, task(id))
		return err
	})
	phase("close", func(id string) error {
		_, _, err := s.Close(ctx, Close{ID: id, Status: StatusCompleted, By: "bob", Key: "k-" + id, Data: []byte(`{"ok":true}`)})
		return err
	})
	phase("ack", func(id string) error { return s.Ack(ctx, id) })
}
