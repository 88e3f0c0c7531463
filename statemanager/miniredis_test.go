package statemanager_test

import (
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/sagarunner/sagarunner/statemanager"
	"github.com/sagarunner/sagarunner/statemanager/storetest"
)

// TestRedisStoreOnMiniredis runs the conformance suite against miniredis:
// `sagarunner dev` embeds miniredis instead of a redis-server, so the same Lua
// scripts must behave identically on its interpreter.
func TestRedisStoreOnMiniredis(t *testing.T) {
	storetest.Run(t, func(t *testing.T) statemanager.Store {
		m := miniredis.RunT(t)
		client := redis.NewClient(&redis.Options{Addr: m.Addr()})
		t.Cleanup(func() { client.Close() })
		s, err := statemanager.NewRedisStore(client, "workflow", statemanager.RedisConfig{Shards: 4})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
