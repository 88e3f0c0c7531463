package timers_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sagarunner/sagarunner/clock"
	"github.com/sagarunner/sagarunner/internal/redistest"
	"github.com/sagarunner/sagarunner/internal/testutil"
	"github.com/sagarunner/sagarunner/timers"
)

// ownServer starts a redis-server for one test and returns n clients on it,
// each standing for a process of its own.
func ownServer(t *testing.T, n int) []*redis.Client {
	t.Helper()
	srv := redistest.StartOwn(t)
	out := make([]*redis.Client, n)
	for i := range out {
		out[i] = redis.NewClient(&redis.Options{Addr: srv.Addr})
		t.Cleanup(func() { out[i].Close() })
	}
	return out
}

// subscribed waits until n subscriptions listen to the wake-ups of domain.
func subscribed(t *testing.T, c *redis.Client, domain string, n int64) {
	t.Helper()
	ch := domain + ":wake"
	testutil.Eventually(t, 5*time.Second, 5*time.Millisecond, func() error {
		m, err := c.PubSubNumSub(context.Background(), ch).Result()
		if err != nil {
			return err
		}
		if m[ch] != n {
			return fmt.Errorf("%d subscribers, want %d", m[ch], n)
		}
		return nil
	})
}

// TestWakeUpFromAnotherProcess: on the real clock, a runner whose loops
// sleep up to 10 s fires a task that another runner started, due 2 s later,
// on time: the other runner's wake-up reached it through Redis.
func TestWakeUpFromAnotherProcess(t *testing.T) {
	clients := ownServer(t, 2)
	const maxIdle = 10 * time.Second
	firing := newFixtureOn(t, timers.Config{MaxIdle: maxIdle}, clients[0], quickSaga, clock.Real{})
	starting := newFixtureOn(t, timers.Config{MaxIdle: maxIdle}, clients[1], quickSaga, clock.Real{})
	firing.sched.Assign(firing.ctx, 0, 1)
	subscribed(t, clients[0], "workflow", 1)
	// Every loop has read its empty shard and sleeps for maxIdle.
	testutil.Eventually(t, 5*time.Second, 5*time.Millisecond, func() error {
		if n := firing.stores.nexts.Load(); n < shards {
			return fmt.Errorf("%d loops asleep", n)
		}
		return nil
	})

	starting.startOn("quick", "x-1")
	starting.wake("x-1")
	testutil.Eventually(t, maxIdle/2, 10*time.Millisecond, func() error {
		if n := len(firing.sink.on(notifyTopic)); n != 1 {
			return fmt.Errorf("%d notifications", n)
		}
		return nil
	})
	// Observed once the emit returned, just after the sink saw it.
	testutil.Eventually(t, time.Second, 5*time.Millisecond, func() error {
		if l := firing.late.all(); len(l) != 1 {
			return fmt.Errorf("lateness %v, want one observation", l)
		}
		return nil
	})
	// Generous for a loaded machine; a lost wake-up would make it about 8 s.
	if l := firing.late.all(); l[0] > time.Second {
		t.Errorf("lateness %v, want under 1s", l[0])
	}
	if n := len(starting.sink.on(notifyTopic)); n != 0 {
		t.Errorf("the starting runner owns no shard but fired %d", n)
	}
}

// TestIdleRedisCalls counts the commands idle loops send to a real
// redis-server over a few seconds: one read per shard and MaxIdle, where
// polling sent one per shard and PollInterval.
func TestIdleRedisCalls(t *testing.T) {
	clients := ownServer(t, 1)
	c := clients[0]
	f := newFixtureOn(t, timers.Config{}, c, approvalSaga, clock.Real{})
	f.startTask("far")
	f.sched.Assign(f.ctx, 0, 1)
	subscribed(t, c, "workflow", 1)
	// Past the loops' first FireDue, recovery and early sweep.
	testutil.Eventually(t, 5*time.Second, 5*time.Millisecond, func() error {
		if n := f.stores.nexts.Load(); n < shards {
			return fmt.Errorf("%d loops asleep", n)
		}
		return nil
	})
	if err := c.ConfigResetStat(f.ctx).Err(); err != nil {
		t.Fatal(err)
	}
	const window = 3 * time.Second
	begin := time.Now()
	<-time.After(window) // the measurement window itself, not a wait for an effect
	took := time.Since(begin)
	info, err := c.Info(f.ctx, "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	calls := map[string]int{}
	total := 0
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":calls=")
		if !ok {
			continue
		}
		name = strings.TrimPrefix(name, "cmdstat_")
		if strings.HasPrefix(name, "config") || name == "info" {
			continue // this test's own
		}
		n, _ := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
		calls[name] = n
		total += n
	}
	perSecond := float64(total) / took.Seconds()
	polling := float64(shards) * float64(time.Second/timers.DefaultPollInterval)
	t.Logf("%d idle shards over %v: %d commands (%.1f/s) %v; polling every %v sent %.0f/s",
		shards, took.Round(time.Millisecond), total, perSecond, calls, timers.DefaultPollInterval, polling)
	// One pipelined read (two ZRANGE) per shard and second, with slack
	// for a pub/sub health check.
	if limit := float64(shards)*2*(took.Seconds()+1) + 4; float64(total) > limit {
		t.Errorf("%d commands in %v, want at most %.0f", total, took, limit)
	}
}
