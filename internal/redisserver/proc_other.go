//go:build !linux

package redisserver

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
)

// sysProcAttr sets nothing: only Linux can tie a child's life to its
// parent's; elsewhere the next Start sweeps what a dead parent left.
func sysProcAttr() *syscall.SysProcAttr { return nil }

func start(cmd *exec.Cmd) error { return cmd.Start() }

// alive reports whether a process with this pid exists.
func alive(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	err = p.Signal(syscall.Signal(0))
	return err == nil || errors.Is(err, syscall.EPERM)
}

// runsIn cannot prove what a pid runs without /proc, so a sweep only
// removes directories there and never kills.
func runsIn(int, string) bool { return false }
