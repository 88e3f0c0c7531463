// Command sagarunner runs YAML sagas on Kafka: `dev` starts everything in one
// process with no infrastructure, `run` joins real brokers and Redis, and the
// other commands validate sagas, publish events, read tasks and measure.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/sagarunner/sagarunner/config"
)

// exitError carries an exit code through cobra without printing twice.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// go-redis logs every failed dial of every pooled connection; the
	// runner and the commands report an unreachable Redis themselves, once
	// per retry and rate-limited, with the address.
	redis.SetLogger(quietRedisLog{})
	root := newRoot()
	err := root.ExecuteContext(ctx)
	var ee exitError
	switch {
	case errors.As(err, &ee):
		os.Exit(ee.code)
	case errors.As(err, new(config.Errors)):
		// One problem a line, each starting with its file:line:col, as
		// editors and CI logs expect.
		fmt.Fprintln(os.Stderr, "sagarunner: invalid configuration:")
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	case err != nil:
		fmt.Fprintln(os.Stderr, "sagarunner:", err)
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "sagarunner",
		Short:         "Run declarative YAML sagas with human tasks on Kafka and Redis",
		SilenceUsage:  true,
		SilenceErrors: true,
		// cobra prints Version for --version; the template keeps it the
		// same one line as `sagarunner version`.
		Version: versionLine(debug.ReadBuildInfo()),
	}
	root.SetVersionTemplate("{{.Version}}\n")
	// A misspelt or malformed flag is a usage error: exit 2, as for an
	// invalid filter value.
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error { return usageError(cmd, err) })
	root.AddCommand(newVersionCmd(), newDevCmd(), newRunCmd(), newValidateCmd(), newPublishCmd(), newTasksCmd(), newInstancesCmd(), newActionsCmd())
	addExtraCommands(root)
	return root
}

// addExtraCommands is a hook for commands defined in other files.
var addExtraCommands = func(*cobra.Command) {}
