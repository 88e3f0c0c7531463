package statemanager_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/sagarunner/sagarunner/internal/redistest"
	"github.com/sagarunner/sagarunner/statemanager"
	"github.com/sagarunner/sagarunner/statemanager/storetest"
)

// TestRedisEarlyAnswers runs the early-answer suite against a real
// redis-server.
func TestRedisEarlyAnswers(t *testing.T) {
	_, client := redistest.Start(t)
	var n atomic.Int64
	storetest.RunEarly(t, func(t *testing.T) statemanager.Store {
		s, err := statemanager.NewRedisStore(client, "workflow",
			statemanager.RedisConfig{Prefix: fmt.Sprintf("early%d", n.Add(1)), Shards: 4})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// TestRedisEarlyDomainLimit: the domain's EarlyMax is shared out among its
// shards; a full shard refuses, and frees room as operations leave.
func TestRedisEarlyDomainLimit(t *testing.T) {
	_, client := redistest.Start(t)
	ctx := context.Background()
	s, err := statemanager.NewRedisStore(client, "workflow", statemanager.RedisConfig{Prefix: "earlymax", Shards: 1, EarlyMax: 2})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if ok, err := s.Park(ctx, statemanager.Parked{TaskID: fmt.Sprint("t", i), Key: "r", Value: []byte("{}")}, 1); err != nil || !ok {
			t.Fatalf("Park %d = %v, %v", i, ok, err)
		}
	}
	_, err = s.Park(ctx, statemanager.Parked{TaskID: "t9", Key: "r", Value: []byte("{}")}, 1)
	if !errors.Is(err, statemanager.ErrEarlyFull) {
		t.Fatalf("Park past the domain limit: %v, want ErrEarlyFull", err)
	}
	if err := s.Unpark(ctx, []statemanager.EarlyRef{{TaskID: "t0", Key: "r"}}); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.Park(ctx, statemanager.Parked{TaskID: "t9", Key: "r", Value: []byte("{}")}, 1); err != nil || !ok {
		t.Fatalf("Park after room was freed = %v, %v", ok, err)
	}
}

// TestRedisEarlyConfig: the limits are checked with the store's config.
func TestRedisEarlyConfig(t *testing.T) {
	for _, c := range []statemanager.RedisConfig{{EarlyTTL: -1}, {EarlyMax: -1}} {
		if err := c.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil, want an error", c)
		}
	}
	if c := (statemanager.RedisConfig{}).WithDefaults(); c.EarlyTTL != statemanager.DefaultEarlyTTL || c.EarlyMax != statemanager.DefaultEarlyMax {
		t.Errorf("defaults: %v, %d", c.EarlyTTL, c.EarlyMax)
	}
}
