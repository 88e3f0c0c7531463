package statemanager_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/sagarunner/sagarunner/statemanager"
)

// TestRedisKeyLayout pins the documented key layout and the lifetime of a
// closed task's hash: kept with no TTL until Ack, so the decision outlives
// any delay of its effects, then expired after ClosedTTL. It runs on
// miniredis so the TTL can be fast-forwarded instead of waited for.
func TestRedisKeyLayout(t *testing.T) {
	ctx := context.Background()
	m := miniredis.RunT(t)
	client := redis.NewClient(&redis.Options{Addr: m.Addr()})
	t.Cleanup(func() { client.Close() })
	s, err := statemanager.NewRedisStore(client, "workflow", statemanager.RedisConfig{Prefix: "wf", Shards: 4, ClosedTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	const id = "product-1"
	p := fmt.Sprintf("{wf:%d}:", s.ShardOf(id))
	task := &statemanager.Task{ID: id, User: "alice", Roles: []string{"admin", "manager"}, StartedAt: 1000, Deadline: 5000, RequestID: "r-1"}
	if _, _, err := s.Start(ctx, task); err != nil {
		t.Fatal(err)
	}
	zsets := []string{p + "due", p + "waiting", p + "u:alice", p + "r:admin", p + "r:manager", p + "pending", p + "closed:TIMEOUT"}
	member := func(key string) bool {
		t.Helper()
		ok, err := client.ZScore(ctx, key, id).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			t.Fatal(err)
		}
		return ok != 0 || err == nil
	}
	check := func(stage string, want map[string]bool) {
		t.Helper()
		for _, k := range zsets {
			if member(k) != want[k] {
				t.Errorf("%s: %s in %s = %v, want %v", stage, id, k, !want[k], want[k])
			}
		}
	}
	check("waiting", map[string]bool{p + "due": true, p + "waiting": true, p + "u:alice": true, p + "r:admin": true, p + "r:manager": true})
	if n, _ := client.Exists(ctx, p+"t:"+id).Result(); n != 1 {
		t.Fatalf("task hash %st:%s missing", p, id)
	}

	if _, _, err := s.Close(ctx, statemanager.Close{ID: id, Status: statemanager.StatusTimeout, At: 6000, Key: "k"}); err != nil {
		t.Fatal(err)
	}
	check("closed", map[string]bool{p + "pending": true, p + "closed:TIMEOUT": true})
	m.FastForward(30 * 24 * time.Hour)
	if _, err := s.Get(ctx, id); err != nil {
		t.Fatalf("an unacked decision expired: %v", err)
	}

	if err := s.SetWatermark(ctx, 42); err != nil {
		t.Fatal(err)
	}
	if v, _ := client.Get(ctx, "wf:watermark").Result(); v != "42" {
		t.Errorf("wf:watermark = %q, want 42", v)
	}

	if err := s.Ack(ctx, id); err != nil {
		t.Fatal(err)
	}
	check("acked", map[string]bool{p + "closed:TIMEOUT": true})
	if ttl := m.TTL(p + "t:" + id); ttl != time.Hour {
		t.Errorf("TTL after Ack = %v, want ClosedTTL", ttl)
	}
	m.FastForward(time.Hour)
	if _, err := s.Get(ctx, id); !errors.Is(err, statemanager.ErrNotFound) {
		t.Errorf("Get after ClosedTTL: err = %v, want ErrNotFound", err)
	}
	if l, err := s.List(ctx, statemanager.Filter{Status: statemanager.StatusTimeout}); err != nil || len(l) != 0 {
		t.Errorf("List(TIMEOUT) after expiry = %d tasks, %v", len(l), err)
	}
	// An expired decision no longer blocks its id.
	if _, created, err := s.Start(ctx, task); err != nil || !created {
		t.Errorf("Start after expiry: created=%v err=%v", created, err)
	}
}

// TestRedisTenantKeyLayout pins where another tenant's indexes live (under
// its own length-qualified prefix, never in the default tenant's keys), the
// per-closer index and its expiry, and that a listing drops the entries of
// decisions that expired.
func TestRedisTenantKeyLayout(t *testing.T) {
	ctx := context.Background()
	m := miniredis.RunT(t)
	client := redis.NewClient(&redis.Options{Addr: m.Addr()})
	t.Cleanup(func() { client.Close() })
	s, err := statemanager.NewRedisStore(client, "workflow", statemanager.RedisConfig{Prefix: "wf", Shards: 4, ClosedTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	const id = "product-1"
	p := fmt.Sprintf("{wf:%d}:", s.ShardOf(id))
	tp := p + "n6:acme:x:" // tenant "acme:x"
	task := &statemanager.Task{ID: id, Tenant: "acme:x", User: "alice", Roles: []string{"manager"}, StartedAt: 1000, RequestID: "r-1"}
	if _, _, err := s.Start(ctx, task); err != nil {
		t.Fatal(err)
	}
	zsets := []string{p + "waiting", p + "u:alice", p + "r:manager", p + "closed:COMPLETED", p + "cb:COMPLETED:bob",
		tp + "waiting", tp + "u:alice", tp + "r:manager", tp + "closed:COMPLETED", tp + "cb:COMPLETED:bob"}
	check := func(stage string, want ...string) {
		t.Helper()
		for _, k := range zsets {
			_, err := client.ZScore(ctx, k, id).Result()
			if got := err == nil; got != slices.Contains(want, k) {
				t.Errorf("%s: %s in %s = %v", stage, id, k, got)
			}
		}
	}
	check("waiting", tp+"waiting", tp+"u:alice", tp+"r:manager")
	if got := mustGetTask(t, s, id); got.Tenant != "acme:x" {
		t.Errorf("Get: tenant %q", got.Tenant)
	}
	if _, _, err := s.Close(ctx, statemanager.Close{ID: id, Status: statemanager.StatusCompleted, At: 2000, By: "bob", Key: "k"}); err != nil {
		t.Fatal(err)
	}
	check("closed", tp+"closed:COMPLETED", tp+"cb:COMPLETED:bob")
	if ttl := m.TTL(tp + "cb:COMPLETED:bob"); ttl != time.Hour {
		t.Errorf("per-closer index TTL = %v, want ClosedTTL", ttl)
	}
	if err := s.Ack(ctx, id); err != nil {
		t.Fatal(err)
	}
	m.FastForward(30 * time.Minute)
	f := statemanager.Filter{Tenant: "acme:x", Status: statemanager.StatusCompleted}
	if l, err := s.List(ctx, f); err != nil || len(l) != 1 {
		t.Fatalf("List before expiry = %d tasks, %v", len(l), err)
	}
	m.FastForward(time.Hour)
	if l, err := s.List(ctx, f); err != nil || len(l) != 0 {
		t.Errorf("List after expiry = %d tasks, %v", len(l), err)
	}
	if n, _ := client.ZCard(ctx, tp+"closed:COMPLETED").Result(); n != 0 {
		t.Errorf("the listing left %d expired entries in the closed index", n)
	}
	if n, _ := client.Exists(ctx, tp+"cb:COMPLETED:bob").Result(); n != 0 {
		t.Errorf("an idle per-closer index outlived ClosedTTL")
	}
}

func mustGetTask(t *testing.T, s statemanager.Store, id string) *statemanager.Task {
	t.Helper()
	got, err := s.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestRedisErrorsAreInfrastructure checks that a Redis outage is not
// mistaken for a business outcome: the runner retries it instead of
// answering FAIL.
func TestRedisErrorsAreInfrastructure(t *testing.T) {
	m := miniredis.RunT(t)
	client := redis.NewClient(&redis.Options{Addr: m.Addr(), MaxRetries: -1, DialerRetries: 1, DialerRetryTimeout: time.Millisecond})
	t.Cleanup(func() { client.Close() })
	s, err := statemanager.NewRedisStore(client, "workflow", statemanager.RedisConfig{})
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	ctx := context.Background()
	calls := map[string]error{}
	_, _, calls["Start"] = s.Start(ctx, &statemanager.Task{ID: "x"})
	_, calls["Get"] = s.Get(ctx, "x")
	_, _, calls["Close"] = s.Close(ctx, statemanager.Close{ID: "x", Status: statemanager.StatusCompleted, Key: "k"})
	calls["Ack"] = s.Ack(ctx, "x")
	_, calls["Due"] = s.Due(ctx, 0, 1, 1)
	_, calls["Between"] = s.Between(ctx, 0, 1, 1)
	_, calls["Pending"] = s.Pending(ctx, 0, 1, 1)
	_, calls["Watermark"] = s.Watermark(ctx)
	calls["SetWatermark"] = s.SetWatermark(ctx, 1)
	_, calls["List"] = s.List(ctx, statemanager.Filter{})
	for name, err := range calls {
		t.Run(name, func(t *testing.T) {
			if err == nil || errors.Is(err, statemanager.ErrNotFound) || errors.Is(err, statemanager.ErrClosed) {
				t.Errorf("err = %v, want an infrastructure error", err)
			}
		})
	}
}

// TestRedisHistoryLayout pins where a task's history and change keys live,
// that they expire with the decision (no TTL until Ack, then ClosedTTL),
// that a new start of the id drops them, and the cap of 1,000 events, the
// newest kept.
func TestRedisHistoryLayout(t *testing.T) {
	ctx := context.Background()
	m := miniredis.RunT(t)
	client := redis.NewClient(&redis.Options{Addr: m.Addr()})
	t.Cleanup(func() { client.Close() })
	s, err := statemanager.NewRedisStore(client, "workflow", statemanager.RedisConfig{Prefix: "wf", Shards: 4, ClosedTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	const id = "product-1"
	p := fmt.Sprintf("{wf:%d}:", s.ShardOf(id))
	h, k := p+"h:"+id, p+"k:"+id
	task := &statemanager.Task{ID: id, User: "alice", StartedAt: 1000, RequestID: "r-1"}
	if _, _, err := s.Start(ctx, task); err != nil {
		t.Fatal(err)
	}
	// The started event is implied by the task: the start writes no list.
	if got, _ := client.LRange(ctx, h, 0, -1).Result(); len(got) != 0 {
		t.Errorf("%s = %q after a start, want nothing written", h, got)
	}
	if events, err := s.History(ctx, id); err != nil || !slices.Equal(events, []statemanager.Event{{Seq: 1, Type: statemanager.EventStarted, At: 1000}}) {
		t.Errorf("history after a start = %+v, %v", events, err)
	}

	// 999 stored events; two changes reach the cap and pass it.
	filler := make([]interface{}, 999)
	for i := range filler {
		filler[i] = fmt.Sprintf(`{"seq":%d,"type":"commented","at":1000}`, i+2)
	}
	if err := client.RPush(ctx, h, filler...).Err(); err != nil {
		t.Fatal(err)
	}
	for v := int64(1); v <= 2; v++ {
		if _, _, err := s.Apply(ctx, statemanager.Change{ID: id, Version: v, Key: fmt.Sprint("c", v), Note: ptr("n"),
			Event: statemanager.Event{Type: statemanager.EventCommented, At: 2000, Actor: "alice", Note: "n"}}); err != nil {
			t.Fatal(err)
		}
	}
	events, err := s.History(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	// The oldest stored event went, so the started event is not implied
	// any more; the filler's second and the two changes (versions 2 and 3)
	// are the ends.
	first, last := statemanager.Event{Seq: 3, Type: statemanager.EventCommented, At: 1000},
		statemanager.Event{Seq: 3, Type: statemanager.EventCommented, At: 2000, Actor: "alice", Note: "n"}
	if len(events) != 1000 || events[0] != first || events[999] != last || events[998].At != 2000 {
		t.Errorf("capped history: %d events, first %+v, last %+v", len(events), events[0], events[len(events)-1])
	}
	if got, _ := client.SMembers(ctx, k).Result(); len(got) != 2 {
		t.Errorf("%s = %q, want the two change keys", k, got)
	}

	if _, _, err := s.Close(ctx, statemanager.Close{ID: id, Status: statemanager.StatusCancelled, At: 3000, Key: "cancel"}); err != nil {
		t.Fatal(err)
	}
	m.FastForward(30 * 24 * time.Hour)
	for _, key := range []string{h, k} {
		if ttl := m.TTL(key); ttl != 0 {
			t.Errorf("%s: TTL %v before Ack", key, ttl)
		}
	}
	if err := s.Ack(ctx, id); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{p + "t:" + id, h, k} {
		if ttl := m.TTL(key); ttl != time.Hour {
			t.Errorf("%s: TTL %v after Ack, want ClosedTTL", key, ttl)
		}
	}

	// Another visit replaces the closed task: a history of its own.
	task.RequestID = "r-2"
	if _, created, err := s.Start(ctx, task); err != nil || !created {
		t.Fatalf("Start of another visit: created=%v %v", created, err)
	}
	if n, _ := client.Exists(ctx, k).Result(); n != 0 {
		t.Errorf("%s outlived the replaced task", k)
	}
	if got, _ := client.LRange(ctx, h, 0, -1).Result(); len(got) != 0 {
		t.Errorf("%s after the new start = %q, TTL %v", h, got, m.TTL(h))
	}
	m.FastForward(2 * time.Hour)
	if _, err := s.History(ctx, id); err != nil {
		t.Errorf("an open task's history expired: %v", err)
	}
}

func ptr[T any](v T) *T { return &v }
