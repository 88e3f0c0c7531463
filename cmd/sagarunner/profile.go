package main

import (
	"fmt"
	"os"
	"runtime/pprof"

	"github.com/spf13/cobra"
)

// cpuProfileEnv names a file to write a CPU profile of the whole command to.
// It is an environment variable rather than a flag so that `sagarunner bench`
// can profile the runner it starts without the runner's flags changing.
const cpuProfileEnv = "SAGARUNNER_CPUPROFILE"

func init() {
	prev := addExtraCommands
	addExtraCommands = func(root *cobra.Command) {
		prev(root)
		path := os.Getenv(cpuProfileEnv)
		if path == "" {
			return
		}
		var f *os.File
		root.PersistentPreRunE = func(*cobra.Command, []string) error {
			var err error
			if f, err = os.Create(path); err != nil {
				return fmt.Errorf("%s: %w", cpuProfileEnv, err)
			}
			if err := pprof.StartCPUProfile(f); err != nil {
				f.Close()
				return fmt.Errorf("%s: %w", cpuProfileEnv, err)
			}
			return nil
		}
		// Runs after a graceful return, which is how `run` and `dev`
		// end on SIGTERM or Ctrl-C.
		root.PersistentPostRunE = func(*cobra.Command, []string) error {
			pprof.StopCPUProfile()
			return f.Close()
		}
	}
}
