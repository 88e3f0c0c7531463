package redisserver

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
)

// sysProcAttr has the kernel SIGKILL the server when its parent dies, so a
// test binary killed mid-run (a -timeout panic, SIGKILL) leaves no server.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

var (
	spawnOnce sync.Once
	spawns    chan spawn
)

type spawn struct {
	cmd  *exec.Cmd
	done chan error
}

// start starts cmd from one OS thread that never exits. Pdeathsig fires
// when the parent *thread* ends, not the process, and Go ends a thread
// whose goroutine exits while locked to it; forking from a thread held for
// the life of the process makes the signal mean "the process died".
func start(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		spawns = make(chan spawn)
		go func() {
			runtime.LockOSThread() // never unlocked: this thread lives as long as the process
			for s := range spawns {
				s.done <- s.cmd.Start()
			}
		}()
	})
	s := spawn{cmd: cmd, done: make(chan error, 1)}
	spawns <- s
	return <-s.done
}

// alive reports whether a process with this pid runs. A zombie does not:
// where nothing reaps orphans (a container whose init does not), a killed
// server stays a zombie.
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	// The state follows the parenthesised command name, which may hold spaces.
	if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) {
		return stat[i+2] != 'Z'
	}
	return true
}

// runsIn reports whether pid is a redis-server working in dir (it chdirs
// to its --dir; its command line is rewritten to a title, so cwd is what
// names the server), so a sweep never kills a process that merely reused
// an orphan's pid.
func runsIn(pid int, dir string) bool {
	proc := "/proc/" + strconv.Itoa(pid)
	comm, err := os.ReadFile(proc + "/comm")
	if err != nil || !bytes.HasPrefix(comm, []byte("redis-server")) {
		return false
	}
	cwd, err := os.Readlink(proc + "/cwd")
	if err != nil {
		return false
	}
	want, err := filepath.EvalSymlinks(dir)
	if err != nil {
		want = dir
	}
	return cwd == dir || cwd == want
}
