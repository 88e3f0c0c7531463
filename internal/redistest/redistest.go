// Package redistest starts a real redis-server on a free port for tests.
package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is a redis-server process owned by a test binary.
type Server struct {
	Addr string
	cmd  *exec.Cmd
	dir  string
	// bin and args start the server again on the same port and directory.
	bin  string
	args []string
}

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
	sharedOnce.Do(func() { shared, sharedErr = startServer() })
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

// Kill ends the server abruptly (SIGKILL) and keeps its data directory, so
// Restart brings back whatever it had persisted.
func (s *Server) Kill() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
		s.cmd = nil
	}
}

// Restart starts a killed server again on the same port and data directory
// and waits until it answers. Clients reconnect to the same address.
func (s *Server) Restart() error {
	if s.cmd != nil {
		return fmt.Errorf("redistest: restart %s: still running", s.Addr)
	}
	cmd := exec.Command(s.bin, s.args...)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("redistest: restart %s: %w", s.Addr, err)
	}
	s.cmd = cmd
	// The port was just released; retry the readiness wait a little
	// longer than a fresh start would need.
	if err := waitReady(s.Addr, 10*time.Second); err != nil {
		s.Kill()
		return fmt.Errorf("redistest: restart %s: %w", s.Addr, err)
	}
	return nil
}

// Stop kills the server.
func (s *Server) Stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
		s.cmd = nil
	}
	if s.dir != "" {
		_ = os.RemoveAll(s.dir)
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func startServer(extra ...string) (*Server, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server not on PATH (Debian package redis-server): %w", err)
	}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		dir, err := os.MkdirTemp("", "redistest")
		if err != nil {
			return nil, err
		}
		args := []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", dir,
			"--logfile", filepath.Join(dir, "redis.log")}
		// Later options override earlier ones in redis-server.
		args = append(args, extra...)
		cmd := exec.Command(bin, args...)
		if err := cmd.Start(); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("start redis-server: %w", err)
		}
		s := &Server{Addr: fmt.Sprintf("127.0.0.1:%d", port), cmd: cmd, dir: dir, bin: bin, args: args}
		if err := waitReady(s.Addr, 5*time.Second); err != nil {
			s.Stop()
			lastErr = err
			continue
		}
		return s, nil
	}
	return nil, fmt.Errorf("redis-server did not start: %w", lastErr)
}

func waitReady(addr string, within time.Duration) error {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(within)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}
