// Package redisserver starts and stops a real redis-server process on a free
// port: the test harness (internal/redistest) and the bench both run their
// Redis this way.
//
// A server must not outlive the process that started it, however that
// process ends: on Linux the launcher asks the kernel to SIGKILL the server
// when its parent dies, and every Start first sweeps the directories of
// servers whose parent is gone (killing such a server where the platform
// lets it prove the process is the one it started).
package redisserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// DirPattern is the os.MkdirTemp pattern of every server's directory, in
// os.TempDir(). A check that nothing was left behind looks for it.
const DirPattern = "redisserver-*"

const (
	ownerFile = "owner.pid" // pid of the process that started the server
	pidFile   = "redis.pid" // written by redis-server itself
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
	if s.dir == "" {
		return fmt.Errorf("redisserver: restart %s: its directory was released", s.Addr)
	}
	cmd := command(s.bin, s.args)
	if err := start(cmd); err != nil {
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

// Stop kills the server and removes its directory.
func (s *Server) Stop() {
	s.Kill()
	s.ReleaseDir()
}

// ReleaseDir removes the server's directory while it runs, so nothing is
// left on disk however the process that started it ends. Only for a server
// that persists nothing and is never restarted: its log is dropped from then
// on, and Restart fails.
func (s *Server) ReleaseDir() {
	if s.dir != "" {
		_ = os.RemoveAll(s.dir)
		s.dir = ""
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
// The caller stops it with Stop; should the caller die first, the server is
// killed with it (Linux) or by the next Start (elsewhere, once its parent
// is gone).
func Start(extra ...string) (*Server, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server not on PATH (Debian package redis-server): %w", err)
	}
	sweepOrphans()
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		dir, err := newDir()
		if err != nil {
			return nil, err
		}
		args := []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--daemonize", "no", "--save", "", "--appendonly", "no", "--dir", dir,
			"--pidfile", filepath.Join(dir, pidFile),
			"--logfile", filepath.Join(dir, "redis.log")}
		// Later options override earlier ones in redis-server.
		args = append(args, extra...)
		cmd := command(bin, args)
		if err := start(cmd); err != nil {
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

// newDir makes a server directory and records its owner in it, so a later
// sweep can tell an orphan from a live neighbour's (go test runs packages
// in parallel, each starting servers).
func newDir() (string, error) {
	dir, err := os.MkdirTemp("", DirPattern)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	return dir, nil
}

func command(bin string, args []string) *exec.Cmd {
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = sysProcAttr()
	return cmd
}

// sweepOrphans removes the directories of servers whose starter has died,
// killing the server first when it still runs and provably is that server.
// A directory without an owner yet is skipped while young: its starter may
// be between making it and writing the owner file.
func sweepOrphans() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), DirPattern))
	for _, dir := range dirs {
		owner, err := readPid(filepath.Join(dir, ownerFile))
		if err != nil {
			fi, statErr := os.Stat(dir)
			if statErr != nil || time.Since(fi.ModTime()) < time.Minute {
				continue
			}
		} else if alive(owner) {
			continue
		}
		if pid, err := readPid(filepath.Join(dir, pidFile)); err == nil && runsIn(pid, dir) {
			if p, err := os.FindProcess(pid); err == nil {
				_ = p.Kill()
			}
		}
		_ = os.RemoveAll(dir)
	}
}

func readPid(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, errors.New("redisserver: bad pid file " + path)
	}
	return pid, nil
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

// StartTied starts cmd, any child process, so that the kernel kills it when
// this process dies (on Linux; elsewhere it is cmd.Start): a parent killed
// with SIGKILL leaves none of its children running.
func StartTied(cmd *exec.Cmd) error {
	cmd.SysProcAttr = sysProcAttr()
	return start(cmd)
}
