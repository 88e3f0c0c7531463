package statemanager_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sagarunner/sagarunner/internal/redistest"
	"github.com/sagarunner/sagarunner/statemanager"
	"github.com/sagarunner/sagarunner/statemanager/storetest"
)

// TestRedisStore runs the conformance suite against a real redis-server.
// Each subtest gets its own key prefix on the shared server, so subtests
// cannot see each other's tasks.
func TestRedisStore(t *testing.T) {
	_, client := redistest.Start(t)
	var n atomic.Int64
	storetest.Run(t, func(t *testing.T) statemanager.Store {
		s, err := statemanager.NewRedisStore(client, "workflow",
			statemanager.RedisConfig{Prefix: fmt.Sprintf("suite%d", n.Add(1)), Shards: 4})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// TestRedisStoreUnpipelined runs the suite with automatic pipelining off,
// the configuration that sends every call as its own round trip.
func TestRedisStoreUnpipelined(t *testing.T) {
	_, client := redistest.Start(t)
	var n atomic.Int64
	storetest.Run(t, func(t *testing.T) statemanager.Store {
		s, err := statemanager.NewRedisStore(client, "workflow",
			statemanager.RedisConfig{Prefix: fmt.Sprintf("direct%d", n.Add(1)), Shards: 4, DisablePipelining: true})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func benchStore(b *testing.B, cfg statemanager.RedisConfig) (*statemanager.RedisStore, *redis.Client) {
	_, client := redistest.Start(b)
	cfg.Prefix = "bench"
	s, err := statemanager.NewRedisStore(client, "workflow", cfg)
	if err != nil {
		b.Fatal(err)
	}
	return s, client
}

// redisCPU is the server process's CPU time so far. The runner shares a
// small machine with Redis, so what an operation costs the server (Lua,
// syscalls per command) matters as much as its latency.
func redisCPU(b *testing.B, client *redis.Client) time.Duration {
	b.Helper()
	info, err := client.Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	var total float64
	for _, line := range strings.Split(info, "\r\n") {
		name, v, ok := strings.Cut(line, ":")
		if ok && (name == "used_cpu_sys" || name == "used_cpu_user") {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				b.Fatalf("INFO cpu %s: %v", line, err)
			}
			total += f
		}
	}
	return time.Duration(total * float64(time.Second))
}

// luaTime is the time the server spent running scripts so far (INFO
// commandstats, EVALSHA and EVAL): what the scripts themselves cost, apart
// from the network and syscalls that pipelining saves.
func luaTime(b *testing.B, client *redis.Client) time.Duration {
	b.Helper()
	info, err := client.Info(context.Background(), "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	var total time.Duration
	for _, line := range strings.Split(info, "\r\n") {
		name, stats, ok := strings.Cut(line, ":")
		if !ok || (name != "cmdstat_evalsha" && name != "cmdstat_eval") {
			continue
		}
		for _, kv := range strings.Split(stats, ",") {
			if v, ok := strings.CutPrefix(kv, "usec="); ok {
				us, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					b.Fatalf("INFO commandstats %s: %v", line, err)
				}
				total += time.Duration(us) * time.Microsecond
			}
		}
	}
	return total
}

// serverCost reports, per operation, the server's CPU and the part of it
// spent in scripts, measured from the state at the start of the timed run.
type serverCost struct {
	client   *redis.Client
	cpu, lua time.Duration
}

func startServerCost(b *testing.B, client *redis.Client) *serverCost {
	return &serverCost{client: client, cpu: redisCPU(b, client), lua: luaTime(b, client)}
}

func (c *serverCost) report(b *testing.B) {
	per := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) / float64(b.N) }
	b.ReportMetric(per(redisCPU(b, c.client)-c.cpu), "redis-µs/op")
	b.ReportMetric(per(luaTime(b, c.client)-c.lua), "lua-µs/op")
}

// measure runs op b.N times from many goroutines, as the runner's partition
// workers call the store, and reports the server's cost per operation beside
// the client's view.
func measure(b *testing.B, client *redis.Client, parallelism int, op func(i int64) error) {
	var n atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(parallelism)
	cost := startServerCost(b, client)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := op(n.Add(1)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	cost.report(b)
}

// startAll starts tasks task-1 .. task-n outside the timer.
func startAll(b *testing.B, s *statemanager.RedisStore, n int) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1); i <= int64(n); i = next.Add(1) {
				if _, _, err := s.Start(context.Background(), benchTask("task-"+strconv.FormatInt(i, 10))); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func benchTask(id string) *statemanager.Task {
	return &statemanager.Task{
		ID: id, Name: "Job Post Approval", Spec: "job_post_approval", Action: "Approve",
		Roles: []string{"admin", "manager"}, Saga: "job_post_approval", StepID: "approve",
		RequestID: "r-" + id, StartedAt: 1_763_800_000_000, Deadline: 1_763_800_060_000,
		Data:     json.RawMessage(`{"data":{"productId":"product-1","brief":"summer vibes"}}`),
		Envelope: json.RawMessage(`{"requestMeta":{"requestId":"r-42","user":"alice"},"sagaMeta":{"saga":"job_post_approval","stepId":"approve"},"payload":{"parameters":{"productId":"product-1","brief":"summer vibes"}}}`),
	}
}

// benchModes are the store configurations every benchmark compares.
var benchModes = []struct {
	name string
	cfg  statemanager.RedisConfig
}{
	{"direct", statemanager.RedisConfig{DisablePipelining: true}},
	{"pipelined", statemanager.RedisConfig{}},
	{"pipelined1", statemanager.RedisConfig{PipelineBatches: 1}},
	{"pipelined4", statemanager.RedisConfig{PipelineBatches: 4}},
}

// BenchmarkStart is one StartTask's store call (Start) under the
// concurrency of many partition workers.
func BenchmarkStart(b *testing.B) {
	for _, m := range benchModes {
		b.Run(m.name, func(b *testing.B) {
			s, client := benchStore(b, m.cfg)
			ctx := context.Background()
			measure(b, client, 16, func(i int64) error {
				_, _, err := s.Start(ctx, benchTask("task-"+strconv.FormatInt(i, 10)))
				return err
			})
		})
	}
}

// BenchmarkStartSerial is Start with one caller at a time: the latency of a
// lone partition, which batching must not make worse.
func BenchmarkStartSerial(b *testing.B) {
	for _, m := range benchModes {
		b.Run(m.name, func(b *testing.B) {
			s, client := benchStore(b, m.cfg)
			ctx := context.Background()
			var n int64
			cost := startServerCost(b, client)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				n++
				if _, _, err := s.Start(ctx, benchTask("task-"+strconv.FormatInt(n, 10))); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			cost.report(b)
		})
	}
}

// BenchmarkClose is the close alone; every close hits its own waiting task.
func BenchmarkClose(b *testing.B) {
	for _, m := range benchModes {
		b.Run(m.name, func(b *testing.B) {
			s, client := benchStore(b, m.cfg)
			startAll(b, s, b.N)
			ctx := context.Background()
			data := json.RawMessage(`{"decision":"approved"}`)
			measure(b, client, 16, func(i int64) error {
				id := "task-" + strconv.FormatInt(i, 10)
				_, _, err := s.Close(ctx, statemanager.Close{ID: id, Status: statemanager.StatusCompleted,
					At: 1_763_800_001_000, By: "alice", Data: data, Key: "k-" + id, EnrichPath: "decision"})
				return err
			})
		})
	}
}

// BenchmarkProceed is every store call of one ProceedTask record as the
// actions and the engine make them: Get (authorisation, patterns), Close,
// then Ack once the effects are produced.
func BenchmarkProceed(b *testing.B) {
	for _, m := range benchModes {
		b.Run(m.name, func(b *testing.B) {
			s, client := benchStore(b, m.cfg)
			startAll(b, s, b.N)
			ctx := context.Background()
			data := json.RawMessage(`{"decision":"approved"}`)
			measure(b, client, 16, func(i int64) error {
				id := "task-" + strconv.FormatInt(i, 10)
				if _, err := s.Get(ctx, id); err != nil {
					return err
				}
				if _, _, err := s.Close(ctx, statemanager.Close{ID: id, Status: statemanager.StatusCompleted,
					At: 1_763_800_001_000, By: "alice", Data: data, Key: "k-" + id, EnrichPath: "decision"}); err != nil {
					return err
				}
				return s.Ack(ctx, id)
			})
		})
	}
}
