package statemanager_test

import (
	"fmt"
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
