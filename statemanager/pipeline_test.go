package statemanager

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sagarunner/sagarunner/internal/redistest"
	"github.com/sagarunner/sagarunner/internal/testutil"
)

// gate is a go-redis hook that, once armed, holds the next single command, so a test can fill the pipeliner's queue behind it, and records
// how many scripts every pipeline carried.
type gate struct {
	mu        sync.Mutex
	armed     bool
	entered   chan struct{}
	release   chan struct{}
	pipelines []int
}

func newGate() *gate {
	return &gate{entered: make(chan struct{}), release: make(chan struct{})}
}

func (g *gate) arm() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.armed = true
}

func (g *gate) DialHook(next redis.DialHook) redis.DialHook { return next }

func (g *gate) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		g.mu.Lock()
		hold := g.armed
		g.armed = false
		g.mu.Unlock()
		if hold {
			close(g.entered)
			<-g.release
		}
		return next(ctx, cmd)
	}
}

func (g *gate) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		// Count the store's scripts only: a new connection sends its own
		// set-up pipeline (HELLO, CLIENT SETINFO).
		n := 0
		for _, c := range cmds {
			if c.Name() == "evalsha" {
				n++
			}
		}
		if n > 0 {
			g.mu.Lock()
			g.pipelines = append(g.pipelines, n)
			g.mu.Unlock()
		}
		return next(ctx, cmds)
	}
}

func (g *gate) sizes() []int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.pipelines)
}

// gatedStore is a one-slot pipelined store on client, with a gate hooked
// into client.
func gatedStore(t *testing.T, client *redis.Client) (*RedisStore, *gate) {
	t.Helper()
	g := newGate()
	client.AddHook(g)
	s, err := NewRedisStore(client, "workflow", RedisConfig{Shards: 4, PipelineBatches: 1})
	if err != nil {
		t.Fatal(err)
	}
	return s, g
}

// holdSlot occupies the store's only flush slot with a Get held by the gate
// and returns a channel that yields its error once it finishes.
func holdSlot(t *testing.T, s *RedisStore, g *gate) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	g.arm()
	go func() {
		_, err := s.Get(context.Background(), "holder")
		done <- err
	}()
	<-g.entered
	return done
}

// waitQueued polls until n calls wait in the store's queue.
func waitQueued(t *testing.T, s *RedisStore, n int) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, time.Millisecond, func() error {
		s.pipe.mu.Lock()
		defer s.pipe.mu.Unlock()
		if len(s.pipe.queue) != n {
			return fmt.Errorf("%d calls queued, want %d", len(s.pipe.queue), n)
		}
		return nil
	})
}

// startAsync starts tasks ids[i] concurrently; each error arrives on errs.
func startAsync(ctx context.Context, s *RedisStore, ids []string) <-chan error {
	errs := make(chan error, len(ids))
	for _, id := range ids {
		go func() {
			_, created, err := s.Start(ctx, &Task{ID: id, StartedAt: 1000})
			if err == nil && !created {
				err = fmt.Errorf("start %q: created = false", id)
			}
			errs <- err
		}()
	}
	return errs
}

// TestPipelineCoalescesQueuedCalls: calls that arrive while the flush slot
// is busy go out together as one pipeline, the starts of one shard merged
// into one script call, and each caller gets its own reply; a script the
// server lost (restart, SCRIPT FLUSH) is loaded and the calls sent once
// more.
func TestPipelineCoalescesQueuedCalls(t *testing.T) {
	ids := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	shards := map[int]bool{}
	for _, id := range ids {
		shards[ShardOf(id, 4)] = true
	}
	if len(shards) == len(ids) {
		t.Fatal("no two ids share a shard: nothing to merge")
	}
	n := len(shards)
	tests := []struct {
		name          string
		flushScripts  bool
		wantPipelines []int
	}{
		{"scripts loaded", false, []int{n}},
		{"scripts flushed", true, []int{n, n}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			_, client := redistest.Start(t)
			s, g := gatedStore(t, client)
			if err := startScript.Load(ctx, client).Err(); err != nil {
				t.Fatal(err)
			}
			if tc.flushScripts {
				if err := client.ScriptFlush(ctx).Err(); err != nil {
					t.Fatal(err)
				}
			}
			held := holdSlot(t, s, g)
			errs := startAsync(ctx, s, ids)
			waitQueued(t, s, len(ids))
			close(g.release)
			if err := <-held; !errors.Is(err, ErrNotFound) {
				t.Fatalf("held Get: %v, want ErrNotFound", err)
			}
			for range ids {
				if err := <-errs; err != nil {
					t.Error(err)
				}
			}
			for _, id := range ids {
				if got, err := s.Get(ctx, id); err != nil || !got.Waiting() {
					t.Errorf("Get(%q) = %+v, %v", id, got, err)
				}
			}
			if got := g.sizes(); !slices.Equal(got, tc.wantPipelines) {
				t.Errorf("pipelines = %v, want %v", got, tc.wantPipelines)
			}
		})
	}
}

// TestPipelineDropsAbandonedCalls: a queued call whose caller gave up
// returns the ctx error and is never sent, so it changes nothing.
func TestPipelineDropsAbandonedCalls(t *testing.T) {
	_, client := redistest.Start(t)
	s, g := gatedStore(t, client)
	held := holdSlot(t, s, g)

	ctx, cancel := context.WithCancel(context.Background())
	abandoned := startAsync(ctx, s, []string{"abandoned"})
	waitQueued(t, s, 1)
	kept := startAsync(context.Background(), s, []string{"kept"})
	waitQueued(t, s, 2)
	cancel()
	if err := <-abandoned; !errors.Is(err, context.Canceled) {
		t.Fatalf("abandoned Start: %v, want context.Canceled", err)
	}
	close(g.release)
	<-held
	if err := <-kept; err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(context.Background(), "abandoned"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(abandoned) = %v, want ErrNotFound: the abandoned call was sent", err)
	}
}

// TestPipelineFailsQueuedCallsWhenRedisIsGone: queued calls get an
// infrastructure error, never a hang or a business outcome, when Redis goes
// away under them.
func TestPipelineFailsQueuedCallsWhenRedisIsGone(t *testing.T) {
	srv := redistest.StartOwn(t)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1,
		DialTimeout: 200 * time.Millisecond, DialerRetries: 1, DialerRetryTimeout: time.Millisecond})
	t.Cleanup(func() { client.Close() })
	s, g := gatedStore(t, client)
	held := holdSlot(t, s, g)
	ids := []string{"a", "b", "c"}
	errs := startAsync(context.Background(), s, ids)
	waitQueued(t, s, len(ids))
	srv.Stop()
	close(g.release)
	if err := <-held; err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("held Get: %v, want an infrastructure error", err)
	}
	for range ids {
		if err := <-errs; err == nil || errors.Is(err, ErrNotFound) || errors.Is(err, ErrClosed) {
			t.Errorf("queued Start: %v, want an infrastructure error", err)
		}
	}
}

func TestRedisConfigValidatePipelining(t *testing.T) {
	tests := []struct {
		name string
		cfg  RedisConfig
		ok   bool
	}{
		{"defaults", RedisConfig{}, true},
		{"tuned", RedisConfig{PipelineBatches: 4, PipelineMaxBatch: 64}, true},
		{"disabled", RedisConfig{DisablePipelining: true}, true},
		{"negative batches", RedisConfig{PipelineBatches: -1}, false},
		{"negative max batch", RedisConfig{PipelineMaxBatch: -1}, false},
		{"tuned but disabled", RedisConfig{DisablePipelining: true, PipelineBatches: 2}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.cfg.Validate(); (err == nil) != tc.ok {
				t.Errorf("Validate() = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}
