// Package redistest gives tests a real redis-server on a free port: one
// shared per test binary, or one of their own to kill and restart.
//
// Nothing outlives the test binary: a test's own server stops when the test
// ends, and the shared one, which no test owns, keeps nothing on disk and
// is killed with the binary (see internal/redisserver), so a package needs
// no TestMain for it.
package redistest

import (
	"context"
	"os"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/sagarunner/sagarunner/internal/redisserver"
)

// Server is a redis-server process owned by a test binary.
type Server = redisserver.Server

// startServer starts a redis-server; see redisserver.Start.
var startServer = redisserver.Start

var (
	shared     *Server
	sharedErr  error
	sharedOnce sync.Once
)

// Start returns the address of a redis-server started for this test binary
// (one per package, shared by its tests) and a client on a fresh logical DB
// flushed for the calling test. Without redis-server on PATH the test is
// skipped, unless CI is set, where it fails: CI installs it.
func Start(t testing.TB) (addr string, client *redis.Client) {
	t.Helper()
	sharedOnce.Do(func() {
		shared, sharedErr = startServer()
		if sharedErr == nil {
			// No test is the last to use it, so no cleanup could remove
			// its directory at the right time: remove it now. It
			// persists nothing and is never restarted.
			shared.ReleaseDir()
		}
	})
	if sharedErr != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("redistest: %v", sharedErr)
		}
		t.Fatalf("redistest: %v", sharedErr)
	}
	client = redis.NewClient(&redis.Options{Addr: shared.Addr})
	if err := client.FlushAll(context.Background()).Err(); err != nil {
		t.Fatalf("redistest: flush: %v", err)
	}
	t.Cleanup(func() { client.Close() })
	return shared.Addr, client
}

// StartOwn starts a dedicated redis-server for one test (for tests that stop
// or restart it) and stops it when the test ends.
func StartOwn(t testing.TB) *Server {
	t.Helper()
	s, err := startServer()
	if err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("redistest: %v", err)
		}
		t.Fatalf("redistest: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

// StartDurable starts a dedicated redis-server that appends every write to
// its append-only file before answering, so Kill and Restart lose nothing:
// an outage test needs the data to outlive the process, as it does in
// production. It is stopped when the test ends.
func StartDurable(t testing.TB) *Server {
	t.Helper()
	s, err := startServer("--appendonly", "yes", "--appendfsync", "always")
	if err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("redistest: %v", err)
		}
		t.Fatalf("redistest: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}
