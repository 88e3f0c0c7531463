// Package redisserver starts and stops a real redis-server process on a free
// port: the test harness (internal/redistest) and the bench both run their
// Redis this way.
package redisserver

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is a redis-server process started by Start.
type Server struct {
	Addr string
	cmd  *exec.Cmd
	dir  string
	// bin and args start the server again on the same port and directory.
	bin  string
	args []string
}

// Pid is the server's process id (0 once killed).
func (s *Server) Pid() int {
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
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
		return fmt.Errorf("redisserver: restart %s: still running", s.Addr)
	}
	cmd := exec.Command(s.bin, s.args...)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("redisserver: restart %s: %w", s.Addr, err)
	}
	s.cmd = cmd
	// The port was just released; retry the readiness wait a little
	// longer than a fresh start would need.
	if err := waitReady(s.Addr, 10*time.Second); err != nil {
		s.Kill()
		return fmt.Errorf("redisserver: restart %s: %w", s.Addr, err)
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

// FreePort returns a TCP port free on 127.0.0.1 at the time of asking.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Start starts a redis-server from PATH on a free port of 127.0.0.1, with
// persistence off and its files in a fresh temporary directory; extra
// arguments override those settings. It returns once the server answers.
func Start(extra ...string) (*Server, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server not on PATH (Debian package redis-server): %w", err)
	}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		dir, err := os.MkdirTemp("", "redisserver")
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
