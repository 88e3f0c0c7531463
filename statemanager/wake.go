package statemanager

// Timer wake-ups. A timer loop with nothing due sleeps until its shard's
// earliest deadline (NextDue) instead of polling, capped at its maximum idle
// sleep. A task that starts, or a deadline that moves earlier, while a loop
// sleeps past it must wake that loop: WakeTimers tells the loops of this
// process directly and those of every other process through one Redis
// pub/sub channel per key prefix,
//
//	P:wake            messages "<shard> <deadline> <sender>"
//
// Pub/sub is at-most-once (a message sent while a subscriber reconnects is
// gone), and so a lost wake-up may only delay a deadline up to the loop's
// idle cap, never lose it: the loop looks at the shard again by then.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// WakeHorizon is how far ahead a deadline must be, at most, for WakeTimers to
// wake the loops. A sleeping loop looks at its shard at least once per idle
// cap anyway, so a later deadline needs no wake-up: tasks with deadlines
// hours away publish nothing. A timer loop's idle cap must not exceed it.
const WakeHorizon = 10 * time.Second

// NextDue is what a timer loop needs to plan its sleep: the earliest
// deadline of a shard's open tasks and the earliest expiry of its early
// answers, epoch ms, 0 when there is none.
type NextDue struct {
	Deadline    int64
	EarlyExpiry int64
}

// NextDue reads the earliest deadline and the earliest early-answer expiry of
// shard, in one round trip (both keys are in the shard's slot).
func (s *RedisStore) NextDue(ctx context.Context, shard int) (NextDue, error) {
	if shard < 0 || shard >= s.shards {
		return NextDue{}, fmt.Errorf("statemanager: next due: shard %d outside 0..%d", shard, s.shards-1)
	}
	k := &s.shard[shard]
	var due, early *redis.ZSliceCmd
	_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		due = p.ZRangeWithScores(ctx, k.due, 0, 0)
		early = p.ZRangeWithScores(ctx, k.prefix+"eexp", 0, 0)
		return nil
	})
	if err != nil {
		return NextDue{}, fmt.Errorf("statemanager: redis next due of shard %d: %w", shard, err)
	}
	var n NextDue
	if zs := due.Val(); len(zs) > 0 {
		n.Deadline = scoreMillis(zs[0].Score)
	}
	if zs := early.Val(); len(zs) > 0 {
		n.EarlyExpiry = scoreMillis(zs[0].Score)
	}
	return n, nil
}

// scoreMillis makes a zset score an epoch ms of at least 1, so that a
// score of 0 (or a hand-written negative one) still reads as "due now"
// rather than "none".
func scoreMillis(f float64) int64 {
	if f >= math.MaxInt64 {
		return math.MaxInt64
	}
	return max(int64(f), 1)
}

// WakeTimers wakes the timer loops of id's shard when deadline (epoch ms) is
// within WakeHorizon: call it after a start or a deadline change succeeded,
// with the task's new deadline. It is best effort and never fails the
// caller's operation: a wake-up lost to a Redis error only delays the
// deadline up to the loops' idle cap.
//
// A process publishes a deadline of a shard only when it has not already
// published an earlier one that has not passed yet: the loops woken for
// that one look at the shard again when it falls due and then see this one.
// So a stream of starts with similar deadlines costs about one message per
// shard per deadline length, not one per start.
func (s *RedisStore) WakeTimers(ctx context.Context, id string, deadline int64) {
	if deadline <= 0 || id == "" {
		return
	}
	now := time.Now().UnixMilli()
	if deadline > now+WakeHorizon.Milliseconds() {
		return
	}
	shard := s.ShardOf(id)
	h := s.wakeHub()
	h.deliver(shard, deadline)
	if !h.shouldPublish(shard, deadline, now) {
		return
	}
	msg := strconv.Itoa(shard) + " " + strconv.FormatInt(deadline, 10) + " " + h.sender
	if err := s.client.Publish(ctx, h.channel, msg).Err(); err != nil {
		h.forget(shard, deadline)
	}
}

// WatchDeadlines calls fn(shard, deadline) for every wake-up of this store's
// key prefix, from this process (synchronously, inside WakeTimers) or from
// others (from a goroutine reading the pub/sub channel), until stop is
// called. fn must be quick and must not block. Deliveries from other
// processes begin once the subscription is up, shortly after the first
// watcher of the prefix registers; until then, and whenever the connection
// is lost, wake-ups of other processes are missed.
func (s *RedisStore) WatchDeadlines(fn func(shard int, deadline int64)) (stop func()) {
	wakeHubs.mu.Lock()
	defer wakeHubs.mu.Unlock()
	// Registered under the registry's lock, so the hub cannot be dropped
	// as idle between the lookup and the registration.
	return s.wakeHubLocked().watch(fn)
}

// wakeHubs holds one hub per (client, channel), so that every RedisStore of
// a prefix on one client (a resolver may evict and rebuild a store) shares
// its watchers and its record of what it published.
var wakeHubs = struct {
	mu sync.Mutex
	m  map[wakeHubKey]*wakeHub
}{m: make(map[wakeHubKey]*wakeHub)}

// maxWakeHubs bounds the registry: domain names arrive in requests, and a
// hub that nobody watches holds only what its process published, which may
// be forgotten (the next start publishes again).
const maxWakeHubs = 1024

type wakeHubKey struct {
	client  redis.UniversalClient
	channel string
}

// wakeHub fans one prefix's wake-ups out to this process's watchers.
type wakeHub struct {
	client  redis.UniversalClient
	channel string
	// sender names this hub in the messages it publishes, so that its own
	// subscription skips them: its watchers were told directly.
	sender string

	mu        sync.Mutex
	watchers  map[int]func(shard int, deadline int64)
	nextID    int
	cancel    context.CancelFunc // of the subscription; nil when none runs
	published map[int]int64      // shard -> the earliest deadline published and not yet passed
}

func (s *RedisStore) wakeHub() *wakeHub {
	wakeHubs.mu.Lock()
	defer wakeHubs.mu.Unlock()
	return s.wakeHubLocked()
}

func (s *RedisStore) wakeHubLocked() *wakeHub {
	channel := strings.TrimSuffix(s.watermark, ":watermark") + ":wake"
	key := wakeHubKey{client: s.client, channel: channel}
	if h, ok := wakeHubs.m[key]; ok {
		return h
	}
	if len(wakeHubs.m) >= maxWakeHubs {
		for k, h := range wakeHubs.m {
			if h.idle() {
				delete(wakeHubs.m, k)
			}
		}
	}
	h := &wakeHub{client: s.client, channel: channel, sender: newSender(),
		watchers: make(map[int]func(int, int64)), published: make(map[int]int64)}
	wakeHubs.m[key] = h
	return h
}

func (h *wakeHub) idle() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.watchers) == 0
}

func newSender() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

func (h *wakeHub) watch(fn func(int, int64)) func() {
	h.mu.Lock()
	defer h.mu.Unlock()
	id := h.nextID
	h.nextID++
	h.watchers[id] = fn
	if h.cancel == nil {
		ctx, cancel := context.WithCancel(context.Background())
		h.cancel = cancel
		go h.listen(ctx)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			h.mu.Lock()
			defer h.mu.Unlock()
			delete(h.watchers, id)
			if len(h.watchers) == 0 && h.cancel != nil {
				h.cancel()
				h.cancel = nil
			}
		})
	}
}

// listen delivers the messages of other processes until ctx ends. The
// go-redis PubSub reconnects and resubscribes by itself after a connection
// loss.
func (h *wakeHub) listen(ctx context.Context) {
	ps := h.client.Subscribe(ctx, h.channel)
	defer ps.Close()
	msgs := ps.Channel(redis.WithChannelSize(256))
	for {
		select {
		case <-ctx.Done():
			return
		case m, ok := <-msgs:
			if !ok {
				return
			}
			shard, deadline, sender, err := parseWake(m.Payload)
			if err != nil || sender == h.sender {
				continue // junk on the channel wakes nobody
			}
			h.deliver(shard, deadline)
		}
	}
}

// parseWake reads "<shard> <deadline> <sender>".
func parseWake(p string) (shard int, deadline int64, sender string, err error) {
	if len(p) > 128 {
		return 0, 0, "", errors.New("wake message too long")
	}
	f := strings.Fields(p)
	if len(f) != 3 {
		return 0, 0, "", fmt.Errorf("wake message %q: want 3 fields", p)
	}
	shard, err = strconv.Atoi(f[0])
	if err != nil || shard < 0 {
		return 0, 0, "", fmt.Errorf("wake message %q: bad shard", p)
	}
	deadline, err = strconv.ParseInt(f[1], 10, 64)
	if err != nil || deadline <= 0 {
		return 0, 0, "", fmt.Errorf("wake message %q: bad deadline", p)
	}
	return shard, deadline, f[2], nil
}

func (h *wakeHub) deliver(shard int, deadline int64) {
	h.mu.Lock()
	if len(h.watchers) == 0 {
		h.mu.Unlock()
		return
	}
	fns := make([]func(int, int64), 0, len(h.watchers))
	for _, fn := range h.watchers {
		fns = append(fns, fn)
	}
	h.mu.Unlock()
	for _, fn := range fns {
		fn(shard, deadline)
	}
}

// shouldPublish records deadline as published for shard unless an earlier
// deadline, still in the future, was published already.
func (h *wakeHub) shouldPublish(shard int, deadline, now int64) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if p, ok := h.published[shard]; ok && p > now && p <= deadline {
		return false
	}
	h.published[shard] = deadline
	return true
}

// forget undoes shouldPublish after a failed publish, so the next start
// tries again.
func (h *wakeHub) forget(shard int, deadline int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.published[shard] == deadline {
		delete(h.published, shard)
	}
}
