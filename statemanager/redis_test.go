package statemanager_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

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

func benchStore(b *testing.B) *statemanager.RedisStore {
	_, client := redistest.Start(b)
	s, err := statemanager.NewRedisStore(client, "workflow", statemanager.RedisConfig{Prefix: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	return s
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

// BenchmarkStart is the baseline of one StartTask's Redis round trip.
func BenchmarkStart(b *testing.B) {
	s := benchStore(b)
	ctx := context.Background()
	var n atomic.Int64
	b.ReportAllocs()
	// Many requests in flight, as the runner's partition workers have: the
	// numbers are throughput through one connection pool, not latency.
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, _, err := s.Start(ctx, benchTask("task-"+strconv.FormatInt(n.Add(1), 10))); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkClose is the baseline of one ProceedTask's close; every close
// hits its own waiting task.
func BenchmarkClose(b *testing.B) {
	s := benchStore(b)
	ctx := context.Background()
	var started atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := started.Add(1); i <= int64(b.N); i = started.Add(1) {
				if _, _, err := s.Start(ctx, benchTask("task-"+strconv.FormatInt(i, 10))); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	var n atomic.Int64
	data := json.RawMessage(`{"decision":"approved"}`)
	b.ReportAllocs()
	// Many requests in flight, as the runner's partition workers have: the
	// numbers are throughput through one connection pool, not latency.
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := "task-" + strconv.FormatInt(n.Add(1), 10)
			_, _, err := s.Close(ctx, statemanager.Close{ID: id, Status: statemanager.StatusCompleted,
				At: 1_763_800_001_000, By: "alice", Data: data, Key: "k-" + id, EnrichPath: "decision"})
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
}
