package bench_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"testing"

	"github.com/sagarunner/sagarunner/config"
	"github.com/sagarunner/sagarunner/internal/app"
)

// childEnv makes the test binary act as the runner under test, the way
// `sagarunner run` does: configured by SAGARUNNER_* variables, stopped by
// SIGTERM. Re-running the test binary spares the tests a build of the
// command.
const childEnv = "SAGARUNNER_BENCH_TEST_RUNNER"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "" {
		os.Exit(m.Run())
	}
	if err := runChild(); err != nil {
		fmt.Fprintln(os.Stderr, "bench test runner:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func runChild() error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := config.Load("", nil, nil)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	a, err := app.New(cfg, log, app.Options{})
	if err != nil {
		return err
	}
	defer a.Close()
	return a.Run(ctx)
}
