package redisserver

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"
)

func needRedis(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") == "" {
			t.Skip("redis-server not on PATH")
		}
		t.Fatal(err)
	}
}

// waitGone polls until pid no longer runs (a zombie of ours counts as gone
// once reaped, and Stop reaps).
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("redis-server %d still runs", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestStopKillsTheServerAndRemovesItsDirectory(t *testing.T) {
	needRedis(t)
	s, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	pid, dir := s.Pid(), s.dir
	if _, err := os.Stat(filepath.Join(dir, ownerFile)); err != nil {
		t.Errorf("no owner file: %v", err)
	}
	s.Stop()
	waitGone(t, pid)
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("directory %s left behind: %v", dir, err)
	}
}

func TestReleaseDirKeepsTheServerRunning(t *testing.T) {
	needRedis(t)
	s, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	dir := s.dir
	s.ReleaseDir()
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("directory %s still there: %v", dir, err)
	}
	if err := waitReady(s.Addr, time.Second); err != nil {
		t.Errorf("server gone with its directory: %v", err)
	}
	s.Kill()
	if err := s.Restart(); err == nil {
		t.Error("restart without a directory succeeded")
	}
}

// TestSweepRemovesAnOrphan plays a test binary killed before it could stop
// its server: the next Start kills that server and removes its directory.
func TestSweepRemovesAnOrphan(t *testing.T) {
	needRedis(t)
	s, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	// A pid that cannot be running: the owner is gone.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Skip(err)
	}
	if err := os.WriteFile(filepath.Join(s.dir, ownerFile), []byte(strconv.Itoa(dead.Process.Pid)), 0o600); err != nil {
		t.Fatal(err)
	}
	// Release our handle as a dead owner would: the sweep must do the rest.
	pid, dir, cmd := s.Pid(), s.dir, s.cmd
	s.cmd, s.dir = nil, ""
	waited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(waited) }()

	sweepOrphans()
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("orphan directory %s left behind: %v", dir, err)
	}
	if runtime.GOOS == "linux" {
		select {
		case <-waited:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Errorf("orphan redis-server %d not killed", pid)
		}
	} else {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

func TestSweepSparesALiveOwner(t *testing.T) {
	needRedis(t)
	s, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	sweepOrphans()
	if _, err := os.Stat(s.dir); err != nil {
		t.Errorf("sweep removed a live server's directory: %v", err)
	}
	if err := waitReady(s.Addr, time.Second); err != nil {
		t.Errorf("sweep stopped a live server: %v", err)
	}
}

// TestServerDiesWithItsParent kills a process that started a server, as a
// test binary killed by -timeout or SIGKILL would be, and requires the
// server gone with it.
func TestServerDiesWithItsParent(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("only Linux ties a child's life to its parent's")
	}
	needRedis(t)
	if os.Getenv("REDISSERVER_CHILD") == "1" {
		s, err := Start()
		if err != nil {
			os.Exit(3)
		}
		os.Stdout.WriteString(strconv.Itoa(s.Pid()) + " " + s.dir + "\n")
		select {} // wait to be killed
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestServerDiesWithItsParent$")
	cmd.Env = append(os.Environ(), "REDISSERVER_CHILD=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var pid int
	var dir string
	buf := make([]byte, 4096)
	n, _ := out.Read(buf)
	if _, err := fmt.Sscan(string(buf[:n]), &pid, &dir); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("child said %q: %v", buf[:n], err)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	waitGone(t, pid)
	// Its directory is an orphan now; the next Start removes it.
	sweepOrphans()
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("orphan directory %s left behind: %v", dir, err)
	}
}
