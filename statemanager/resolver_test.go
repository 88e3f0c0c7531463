package statemanager_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/sagarunner/sagarunner/statemanager"
)

func TestRedisResolver(t *testing.T) {
	def := redis.NewClient(&redis.Options{Addr: miniredis.RunT(t).Addr()})
	other := redis.NewClient(&redis.Options{Addr: miniredis.RunT(t).Addr()})
	t.Cleanup(func() { def.Close(); other.Close() })
	r := statemanager.NewResolver(def, statemanager.RedisConfig{Shards: 2, ClosedTTL: time.Hour},
		map[string]statemanager.DomainConfig{
			"billing": {Client: other, RedisConfig: statemanager.RedisConfig{Prefix: "bill", Shards: 8}},
			"hr":      {RedisConfig: statemanager.RedisConfig{Prefix: "people"}},
		})

	tests := []struct {
		domain    string
		client    *redis.Client
		key       string // the task hash of id "x"
		shards    int
		wantError string
	}{
		{domain: "workflow", client: def, key: "{workflow:", shards: 2},
		{domain: "billing", client: other, key: "{bill:", shards: 8},
		{domain: "hr", client: def, key: "{people:", shards: 2},
		{domain: "", wantError: "empty domain"},
	}
	for _, tc := range tests {
		t.Run("domain "+tc.domain, func(t *testing.T) {
			s, err := r.Store(tc.domain)
			if tc.wantError != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantError) {
					t.Fatalf("err = %v, want %q", err, tc.wantError)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.Shards() != tc.shards {
				t.Errorf("Shards() = %d, want %d", s.Shards(), tc.shards)
			}
			task, _, err := s.Start(context.Background(), &statemanager.Task{ID: "x"})
			if err != nil {
				t.Fatal(err)
			}
			if task.Domain != tc.domain {
				t.Errorf("Domain = %q, want %q", task.Domain, tc.domain)
			}
			keys, err := tc.client.Keys(context.Background(), tc.key+"*:t:x").Result()
			if err != nil || len(keys) != 1 {
				t.Errorf("task hash %s*:t:x on the domain's client: %v, %v", tc.key, keys, err)
			}
		})
	}

	t.Run("cached and concurrency safe", func(t *testing.T) {
		var wg sync.WaitGroup
		got := make([]statemanager.Store, 8)
		for i := range got {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got[i], _ = r.Store("fresh")
			}()
		}
		wg.Wait()
		for _, s := range got {
			if s == nil || s != got[0] {
				t.Fatalf("Store(fresh) returned different stores: %v", got)
			}
		}
	})

	t.Run("configured domains", func(t *testing.T) {
		if got := strings.Join(r.Domains(), ","); got != "billing,hr" {
			t.Errorf("Domains() = %q", got)
		}
	})

	t.Run("no default client", func(t *testing.T) {
		r := statemanager.NewResolver(nil, statemanager.RedisConfig{}, map[string]statemanager.DomainConfig{
			"billing": {Client: other},
		})
		if _, err := r.Store("billing"); err != nil {
			t.Errorf("configured domain: %v", err)
		}
		if _, err := r.Store("workflow"); err == nil || !strings.Contains(err.Error(), "workflow") {
			t.Errorf("unconfigured domain without default client: err = %v", err)
		}
	})

	t.Run("invalid config", func(t *testing.T) {
		r := statemanager.NewResolver(def, statemanager.RedisConfig{}, map[string]statemanager.DomainConfig{
			"bad": {RedisConfig: statemanager.RedisConfig{Prefix: "a{b}"}},
		})
		if _, err := r.Store("bad"); err == nil {
			t.Error("prefix with braces accepted")
		}
	})
}

// Domain names come from requests: a resolver refuses the ones that could
// break its keys or pin memory, and keeps at most MaxStores stores whatever
// the number of names it is asked for.
func TestRedisResolverBounds(t *testing.T) {
	def := redis.NewClient(&redis.Options{Addr: miniredis.RunT(t).Addr()})
	t.Cleanup(func() { def.Close() })

	t.Run("invalid names", func(t *testing.T) {
		r := statemanager.NewResolver(def, statemanager.RedisConfig{}, nil)
		for _, d := range []string{"", "a{b}", "a b", "wf:1", "é", strings.Repeat("x", 65), strings.Repeat("y", 300_000)} {
			if _, err := r.Store(d); !errors.Is(err, statemanager.ErrInvalidDomain) {
				t.Errorf("Store(%.20q): err = %v, want ErrInvalidDomain", d, err)
			} else if len(err.Error()) > 200 {
				t.Errorf("Store(%.20q): error of %d bytes quotes the whole name", d, len(err.Error()))
			}
		}
		if n := r.Cached(); n != 0 {
			t.Errorf("refused names left %d stores", n)
		}
		if _, err := r.Store("Work_flow-1.v2"); err != nil {
			t.Errorf("valid name: %v", err)
		}
	})

	t.Run("least recently used stores are dropped", func(t *testing.T) {
		const max = 64
		r := statemanager.NewResolver(def, statemanager.RedisConfig{Shards: 2}, nil, statemanager.WithMaxStores(max))
		hot, err := r.Store("hot")
		if err != nil {
			t.Fatal(err)
		}
		for i := range 5000 {
			if _, err := r.Store(fmt.Sprintf("d%d", i)); err != nil {
				t.Fatal(err)
			}
			if i%10 == 0 {
				if s, _ := r.Store("hot"); s != hot {
					t.Fatal("a store in constant use was dropped")
				}
			}
			if n := r.Cached(); n > max {
				t.Fatalf("%d stores cached after %d domains, want at most %d", n, i+1, max)
			}
		}
		// A dropped store still works for a caller holding it, and the
		// domain resolves again to a store over the same keys.
		old, _ := r.Store("d0")
		if _, _, err := old.Start(context.Background(), &statemanager.Task{ID: "x"}); err != nil {
			t.Fatal(err)
		}
		for i := range max {
			r.Store(fmt.Sprintf("e%d", i))
		}
		again, _ := r.Store("d0")
		if again == old {
			t.Fatal("d0 was never dropped")
		}
		if _, err := again.Get(context.Background(), "x"); err != nil {
			t.Errorf("task started through the dropped store: %v", err)
		}
	})

	t.Run("default bound", func(t *testing.T) {
		r := statemanager.NewResolver(def, statemanager.RedisConfig{Shards: 1}, nil)
		for i := range statemanager.DefaultMaxStores + 10 {
			r.Store(fmt.Sprintf("d%d", i))
		}
		if n := r.Cached(); n != statemanager.DefaultMaxStores {
			t.Errorf("%d stores cached, want %d", n, statemanager.DefaultMaxStores)
		}
	})
}

func TestRedisConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  statemanager.RedisConfig
		ok   bool
	}{
		{"zero takes defaults", statemanager.RedisConfig{}, true},
		{"explicit", statemanager.RedisConfig{Prefix: "wf", Shards: 64, ClosedTTL: time.Hour}, true},
		{"brace in prefix", statemanager.RedisConfig{Prefix: "{wf}"}, false},
		{"negative shards", statemanager.RedisConfig{Shards: -1}, false},
		{"too many shards", statemanager.RedisConfig{Shards: 16385}, false},
		{"negative TTL", statemanager.RedisConfig{ClosedTTL: -time.Second}, false},
		{"sub-millisecond TTL", statemanager.RedisConfig{ClosedTTL: time.Microsecond}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.cfg.Validate(); (err == nil) != tc.ok {
				t.Errorf("Validate() = %v, want ok=%v", err, tc.ok)
			}
		})
	}
	d := statemanager.RedisConfig{}.WithDefaults()
	if d.Shards != statemanager.DefaultShards || d.ClosedTTL != statemanager.DefaultClosedTTL {
		t.Errorf("WithDefaults() = %+v", d)
	}
}
