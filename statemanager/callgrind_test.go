package statemanager_test

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/sagarunner/sagarunner/statemanager"
)

// TestRedisCostWorkload drives a fixed workload through a RedisStore against
// a redis-server the caller started, so the server's own cost can be
// measured deterministically (instructions under callgrind) rather than
// timed. It is skipped unless SAGARUNNER_COST_ADDR names the server; with
// SAGARUNNER_COST_PID set as well it runs `callgrind_control -z` before the
// workload and `callgrind_control -d` after each phase (starts, closes,
// acks), so each phase has its own dump. For example:
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
	const n, workers = 5000, 64
	ctx := context.Background()
	client := redis.NewClient(&redis.Options{Addr: addr, PoolSize: workers})
	t.Cleanup(func() { client.Close() })
	if err := client.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	s, err := statemanager.NewRedisStore(client, "workflow", statemanager.RedisConfig{Prefix: "cost"})
	if err != nil {
		t.Fatal(err)
	}
	// Warm up: load the scripts, open the connections.
	for i := range 2 * workers {
		id := "warm-" + strconv.Itoa(i)
		if _, _, err := s.Start(ctx, benchTask(id)); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.Close(ctx, statemanager.Close{ID: id, Status: statemanager.StatusCompleted, By: "bob", Key: "k-" + id}); err != nil {
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
	phase := func(name string, op func(id string) error) {
		before := evalshas()
		var next atomic.Int64
		var wg sync.WaitGroup
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := next.Add(1) - 1
					if i >= n {
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
		control("-d")
		calls := evalshas() - before
		t.Logf("%s: %d operations, %d EVALSHA calls, %.2f operations a call", name, n, calls, float64(n)/float64(max(calls, 1)))
	}
	control("-z")
	phase("start", func(id string) error {
		_, _, err := s.Start(ctx, benchTask(id))
		return err
	})
	phase("close", func(id string) error {
		_, _, err := s.Close(ctx, statemanager.Close{ID: id, Status: statemanager.StatusCompleted, By: "bob", Key: "k-" + id, Data: []byte(`{"ok":true}`)})
		return err
	})
	phase("ack", func(id string) error { return s.Ack(ctx, id) })
}
