package statemanager_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sagarunner/sagarunner/internal/redistest"
	"github.com/sagarunner/sagarunner/internal/testutil"
	"github.com/sagarunner/sagarunner/statemanager"
)

func TestNextDue(t *testing.T) {
	ctx := context.Background()
	_, client := redistest.Start(t)
	s, err := statemanager.NewRedisStore(client, "workflow", statemanager.RedisConfig{Prefix: "next", Shards: 2, EarlyTTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	idsOf := func(shard int, n int) []string {
		var ids []string
		for i := 0; len(ids) < n; i++ {
			if id := "t" + strconv.Itoa(i); s.ShardOf(id) == shard {
				ids = append(ids, id)
			}
		}
		return ids
	}
	ids := idsOf(0, 4)

	if got, err := s.NextDue(ctx, 0); err != nil || got != (statemanager.NextDue{}) {
		t.Fatalf("empty shard: %+v, %v; want zero", got, err)
	}
	for i, d := range []int64{5_000, 3_000, 0} { // the third has no deadline
		if _, _, err := s.Start(ctx, &statemanager.Task{ID: ids[i], Deadline: d}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Park(ctx, statemanager.Parked{TaskID: ids[3], Key: "r1", Value: []byte("op")}, 1_000); err != nil {
		t.Fatal(err)
	}
	want := statemanager.NextDue{Deadline: 3_000, EarlyExpiry: 1_000 + time.Minute.Milliseconds()}
	if got, err := s.NextDue(ctx, 0); err != nil || got != want {
		t.Errorf("shard 0: %+v, %v; want %+v", got, err, want)
	}
	if got, err := s.NextDue(ctx, 1); err != nil || got != (statemanager.NextDue{}) {
		t.Errorf("shard 1: %+v, %v; want zero: the other shard's tasks are not its", got, err)
	}
	for _, sh := range []int{-1, 2} {
		if _, err := s.NextDue(ctx, sh); err == nil || !strings.Contains(err.Error(), "outside") {
			t.Errorf("shard %d: err %v, want out of range", sh, err)
		}
	}
}

// wakeLog collects the wake-ups a watcher is told.
type wakeLog struct {
	mu  sync.Mutex
	got []string
}

func (w *wakeLog) fn(shard int, deadline int64) {
	w.mu.Lock()
	w.got = append(w.got, fmt.Sprintf("%d@%d", shard, deadline))
	w.mu.Unlock()
}

func (w *wakeLog) all() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.got)
}

// subscribers waits until n subscriptions listen on channel.
func subscribers(t *testing.T, c *redis.Client, channel string, n int64) {
	t.Helper()
	testutil.Eventually(t, 5*time.Second, 5*time.Millisecond, func() error {
		m, err := c.PubSubNumSub(context.Background(), channel).Result()
		if err != nil {
			return err
		}
		if m[channel] != n {
			return fmt.Errorf("%d subscribers on %s, want %d", m[channel], channel, n)
		}
		return nil
	})
}

// publishes reads how many PUBLISH commands the server ran since the last
// CONFIG RESETSTAT.
func publishes(t *testing.T, c *redis.Client) int {
	t.Helper()
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		if rest, ok := strings.CutPrefix(line, "cmdstat_publish:calls="); ok {
			n, _ := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
			return n
		}
	}
	return 0
}

// TestWakeTimersAcrossProcesses: two clients on one server stand for two
// runner processes. A wake-up reaches the watchers of the process that made
// it directly, once, and those of the other through Redis; far deadlines
// publish nothing, and a stream of starts publishes once per shard while
// the deadline published first has not passed.
func TestWakeTimersAcrossProcesses(t *testing.T) {
	ctx := context.Background()
	srv := redistest.StartOwn(t)
	newClient := func() *redis.Client {
		c := redis.NewClient(&redis.Options{Addr: srv.Addr})
		t.Cleanup(func() { c.Close() })
		return c
	}
	ca, cb := newClient(), newClient()
	newStore := func(c *redis.Client) *statemanager.RedisStore {
		s, err := statemanager.NewRedisStore(c, "workflow", statemanager.RedisConfig{Shards: 4})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	a, b := newStore(ca), newStore(cb)
	var inA, inB wakeLog
	stopA := a.WatchDeadlines(inA.fn)
	stopB := b.WatchDeadlines(inB.fn)
	subscribers(t, ca, "workflow:wake", 2)

	now := time.Now().UnixMilli()
	id := "task-1"
	sh := a.ShardOf(id)
	msg := func(d int64) string { return fmt.Sprintf("%d@%d", sh, d) }

	// Made in B: B's watcher is told at once, A's through Redis.
	if err := cb.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	b.WakeTimers(ctx, id, now+5000)
	if got := inB.all(); !slices.Equal(got, []string{msg(now + 5000)}) {
		t.Fatalf("B's watcher got %v at once, want %v", got, msg(now+5000))
	}
	testutil.Eventually(t, 5*time.Second, 5*time.Millisecond, func() error {
		if got := inA.all(); !slices.Equal(got, []string{msg(now + 5000)}) {
			return fmt.Errorf("A's watcher got %v", got)
		}
		return nil
	})

	// Far deadlines publish nothing; later deadlines of the same shard do
	// not either while the one published is still ahead; an earlier one
	// does.
	b.WakeTimers(ctx, id, now+time.Hour.Milliseconds())
	b.WakeTimers(ctx, id, 0)
	for i := range 100 {
		b.WakeTimers(ctx, id, now+6000+int64(i))
	}
	b.WakeTimers(ctx, id, now+4000)
	if n := publishes(t, cb); n != 2 {
		t.Errorf("%d PUBLISH, want 2: the first wake-up and the earlier one", n)
	}
	testutil.Eventually(t, 5*time.Second, 5*time.Millisecond, func() error {
		if got := inA.all(); !slices.Equal(got, []string{msg(now + 5000), msg(now + 4000)}) {
			return fmt.Errorf("A's watcher got %v", got)
		}
		return nil
	})

	// Junk on the channel wakes nobody; A's own wake-up reaches its
	// watcher once, not again through Redis (the message B sends after it
	// arrives after it).
	for _, junk := range []string{"", "x", "1 2", "-1 5 s", "1 -5 s", "1 5 s extra", strings.Repeat("9", 200)} {
		if err := cb.Publish(ctx, "workflow:wake", junk).Err(); err != nil {
			t.Fatal(err)
		}
	}
	a.WakeTimers(ctx, id, now+100)
	b.WakeTimers(ctx, id, now+50)
	want := []string{msg(now + 5000), msg(now + 4000), msg(now + 100), msg(now + 50)}
	testutil.Eventually(t, 5*time.Second, 5*time.Millisecond, func() error {
		if got := inA.all(); !slices.Equal(got, want) {
			return fmt.Errorf("A's watcher got %v, want %v", got, want)
		}
		return nil
	})

	// B's own watcher was told every one of its wake-ups directly (this
	// process's loops decide for themselves), and A's through Redis.
	testutil.Eventually(t, 5*time.Second, 5*time.Millisecond, func() error {
		if got := inB.all(); len(got) != 1+100+1+1+1 || !slices.Contains(got, msg(now+100)) {
			return fmt.Errorf("B's watcher got %d wake-ups, want 104 with A's %s", len(got), msg(now+100))
		}
		return nil
	})

	// Stopped watchers are told nothing, and the last one of a process
	// ends its subscription.
	stopA()
	stopA() // harmless
	subscribers(t, ca, "workflow:wake", 1)
	stopB()
	subscribers(t, ca, "workflow:wake", 0)
	b.WakeTimers(ctx, "task-2", now+20)
	if got := inB.all(); len(got) != 104 {
		t.Errorf("B's stopped watcher got %d wake-ups, want the 104 before", len(got))
	}
}

// TestWakeUpsResumeAfterRedisRestart: wake-ups sent while Redis is down are
// lost (the loops' idle cap covers them), and the subscription comes back
// by itself once Redis does.
func TestWakeUpsResumeAfterRedisRestart(t *testing.T) {
	ctx := context.Background()
	srv := redistest.StartOwn(t)
	ca := redis.NewClient(&redis.Options{Addr: srv.Addr})
	cb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { ca.Close(); cb.Close() })
	a, err := statemanager.NewRedisStore(ca, "workflow", statemanager.RedisConfig{Shards: 4})
	if err != nil {
		t.Fatal(err)
	}
	b, err := statemanager.NewRedisStore(cb, "workflow", statemanager.RedisConfig{Shards: 4})
	if err != nil {
		t.Fatal(err)
	}
	var inA wakeLog
	defer a.WatchDeadlines(inA.fn)()
	subscribers(t, cb, "workflow:wake", 1)

	srv.Kill()
	now := time.Now().UnixMilli()
	b.WakeTimers(ctx, "task-1", now+5000) // lost: nobody hears it, and it does not block
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	subscribers(t, cb, "workflow:wake", 1)
	b.WakeTimers(ctx, "task-1", now+4000)
	want := []string{fmt.Sprintf("%d@%d", a.ShardOf("task-1"), now+4000)}
	testutil.Eventually(t, 5*time.Second, 5*time.Millisecond, func() error {
		if got := inA.all(); !slices.Equal(got, want) {
			return fmt.Errorf("A's watcher got %v, want %v", got, want)
		}
		return nil
	})
}

// TestWakeUpsOfManyDomains: domain names arrive in requests, so the wake-ups
// of a process keep bounded state; the domains it watches keep being told.
func TestWakeUpsOfManyDomains(t *testing.T) {
	ctx := context.Background()
	_, client := redistest.Start(t)
	store := func(domain string) *statemanager.RedisStore {
		s, err := statemanager.NewRedisStore(client, domain, statemanager.RedisConfig{Shards: 4})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	kept := store("kept")
	var in wakeLog
	defer kept.WatchDeadlines(in.fn)()
	now := time.Now().UnixMilli()
	for i := range 3000 {
		store("d"+strconv.Itoa(i)).WakeTimers(ctx, "task", now+1000)
	}
	kept.WakeTimers(ctx, "task", now+2000)
	if got, want := in.all(), []string{fmt.Sprintf("%d@%d", kept.ShardOf("task"), now+2000)}; !slices.Equal(got, want) {
		t.Errorf("watcher of kept got %v, want %v", got, want)
	}
}

// BenchmarkWakeTimers is what the start path pays: nothing for a deadline
// past the horizon, a lookup and a local delivery for a near one whose
// shard already published an earlier deadline.
func BenchmarkWakeTimers(b *testing.B) {
	ctx := context.Background()
	_, client := redistest.Start(b)
	s, err := statemanager.NewRedisStore(client, "workflow", statemanager.RedisConfig{Shards: 16})
	if err != nil {
		b.Fatal(err)
	}
	defer s.WatchDeadlines(func(int, int64) {})()
	for _, bc := range []struct {
		name string
		in   time.Duration
	}{{"far", time.Hour}, {"near", 5 * time.Second}} {
		b.Run(bc.name, func(b *testing.B) {
			d := time.Now().Add(bc.in).UnixMilli()
			s.WakeTimers(ctx, "task", d-1) // the earlier one, published
			b.ReportAllocs()
			for b.Loop() {
				s.WakeTimers(ctx, "task", d)
			}
		})
	}
}
