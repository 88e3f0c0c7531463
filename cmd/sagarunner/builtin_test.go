package main

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sagarunner/sagarunner/internal/app"
)

// TestBuiltInSagas checks /ProceedTask and /TimeoutTask are served whatever
// the sagas folder holds, and that a user's saga on one of their paths
// replaces the built-in with exactly one warning naming both.
func TestBuiltInSagas(t *testing.T) {
	const onTopic = "saga: mine\ntrigger: {topic: my-topic}\nsteps:\n  - id: f\n    action: Finish\n"
	const onProceed = "saga: my_proceed\ntrigger: {path: /ProceedTask}\nsteps:\n  - id: f\n    action: Finish\n"
	for _, tc := range []struct {
		name        string
		dir         string // a folder to load; "" writes user into a fresh one
		user        string
		wantProceed string // the saga served on /ProceedTask
		wantWarn    []string
	}{
		{name: "a folder of the user's own saga", user: onTopic, wantProceed: "proceed_task"},
		{name: "the user's saga on /ProceedTask wins", user: onProceed, wantProceed: "my_proceed",
			wantWarn: []string{"my_proceed", "proceed_task", "/ProceedTask"}},
		{name: "the shipped folder holds copies: no warning", dir: "../../sagas", wantProceed: "proceed_task"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := tc.dir
			if dir == "" {
				dir = t.TempDir()
				if err := os.WriteFile(filepath.Join(dir, "user.yaml"), []byte(tc.user), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			var logs bytes.Buffer
			set, err := app.LoadSagas(dir, slog.New(slog.NewTextHandler(&logs, nil)))
			if err != nil {
				t.Fatal(err)
			}
			g, ok := set.ByPath("/ProceedTask")
			if !ok || g.Name != tc.wantProceed {
				t.Errorf("/ProceedTask served by %v (found %v), want %q", g, ok, tc.wantProceed)
			}
			if g, ok := set.ByPath("/TimeoutTask"); !ok || g.Name != "timeout_task" {
				t.Errorf("/TimeoutTask not served by the built-in: %v %v", g, ok)
			}
			lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
			if logs.Len() == 0 {
				lines = nil
			}
			if len(tc.wantWarn) == 0 {
				if len(lines) != 0 {
					t.Errorf("logged %q, want nothing", lines)
				}
				return
			}
			if len(lines) != 1 || !strings.Contains(lines[0], "level=WARN") {
				t.Fatalf("logged %q, want one warning", lines)
			}
			for _, w := range tc.wantWarn {
				if !strings.Contains(lines[0], w) {
					t.Errorf("warning %q does not name %q", lines[0], w)
				}
			}
		})
	}
}
