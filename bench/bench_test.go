package bench_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sagarunner/sagarunner/actions"
	"github.com/sagarunner/sagarunner/bench"
	"github.com/sagarunner/sagarunner/saga"
)

// TestScenarios runs every scenario end to end with tiny counts, against a
// real redis-server, the embedded broker and a runner child process, so the
// bench cannot rot. It checks that each scenario completes and reports
// every record, never how fast.
func TestScenarios(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil && os.Getenv("CI") == "" {
		t.Skip("redis-server not on PATH")
	}
	tests := []struct {
		name  string
		cfg   bench.Config
		lines int
		check func(t *testing.T, r map[string]any)
	}{
		{name: "start", cfg: bench.Config{N: 300}, lines: 1, check: func(t *testing.T, r map[string]any) {
			wantNum(t, r, "n", 300)
			wantNum(t, r, "sampled", 300)
			wantPositive(t, r, "rate", "runner_peak_rss_mb")
		}},
		{name: "proceed", cfg: bench.Config{N: 200}, lines: 1, check: func(t *testing.T, r map[string]any) {
			wantNum(t, r, "n", 200)
			wantPositive(t, r, "rate", "runner_peak_rss_mb")
			if _, ok := r["done_p99_ms"]; !ok {
				t.Errorf("no continuation latency in %v", r)
			}
		}},
		{name: "lifecycle", cfg: bench.Config{N: 100}, lines: 1, check: func(t *testing.T, r map[string]any) {
			wantNum(t, r, "n", 100)
			wantPositive(t, r, "rate", "runner_peak_rss_mb")
			for _, k := range []string{"start_p99_ms", "claim_p99_ms", "complete_p99_ms", "approve_p99_ms", "done_p99_ms"} {
				if _, ok := r[k]; !ok {
					t.Errorf("no %s in %v", k, r)
				}
			}
		}},
		{name: "timeout", cfg: bench.Config{Waiting: 400, Due: 100, Window: 500 * time.Millisecond}, lines: 1,
			check: func(t *testing.T, r map[string]any) {
				wantNum(t, r, "fired", 100)
				wantNum(t, r, "duplicates", 0)
				wantNum(t, r, "unexpected", 0)
				wantNum(t, r, "waiting", 400)
				if _, ok := r["lateness_p99_ms"]; !ok {
					t.Errorf("no lateness in %v", r)
				}
			}},
		{name: "http", cfg: bench.Config{N: 60, Clients: 4}, lines: 1, check: func(t *testing.T, r map[string]any) {
			wantNum(t, r, "n", 60)
			wantNum(t, r, "errors", 0)
			wantPositive(t, r, "rate")
		}},
		{name: "rss", cfg: bench.Config{Levels: []int{50, 200}, Window: 200 * time.Millisecond}, lines: 2,
			check: func(t *testing.T, r map[string]any) {
				wantNum(t, r, "fired", 5)
				wantNum(t, r, "duplicates", 0)
				wantPositive(t, r, "runner_peak_rss_mb")
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, log bytes.Buffer
			cfg := tc.cfg
			cfg.Scenario = tc.name
			cfg.Partitions = 4
			cfg.Preloaders = 8
			cfg.Timeout = 2 * time.Minute
			cfg.RunnerCommand = []string{os.Args[0], "-test.run=^$"}
			cfg.RunnerEnv = []string{childEnvVar()}
			cfg.Out, cfg.Log = &out, &log
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			if err := bench.Run(ctx, cfg); err != nil {
				t.Fatalf("Run: %v\nlog:\n%s", err, log.String())
			}
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			if len(lines) != tc.lines {
				t.Fatalf("got %d lines, want %d:\n%s", len(lines), tc.lines, out.String())
			}
			for _, l := range lines {
				var r map[string]any
				if err := json.Unmarshal([]byte(l), &r); err != nil {
					t.Fatalf("line %q: %v", l, err)
				}
				if r["scenario"] != tc.name {
					t.Errorf("scenario %v, want %s", r["scenario"], tc.name)
				}
				wantNum(t, r, "partitions", 4)
				if r["redis"] != "redis-server" || r["broker"] != "kfake" {
					t.Errorf("redis %v broker %v, want redis-server and kfake", r["redis"], r["broker"])
				}
				tc.check(t, r)
			}
		})
	}
}

func childEnvVar() string { return childEnv + "=1" }

func wantNum(t *testing.T, r map[string]any, key string, want float64) {
	t.Helper()
	if got, ok := r[key].(float64); !ok || got != want {
		t.Errorf("%s = %v, want %v (line %v)", key, r[key], want, r)
	}
}

func wantPositive(t *testing.T, r map[string]any, keys ...string) {
	t.Helper()
	for _, k := range keys {
		if got, ok := r[k].(float64); !ok || got <= 0 {
			t.Errorf("%s = %v, want > 0 (line %v)", k, r[k], r)
		}
	}
}

// TestSagasLoad proves the embedded bench sagas are valid for the loader
// the runner uses.
func TestSagasLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sagas")
	if err := bench.WriteSagas(dir); err != nil {
		t.Fatal(err)
	}
	set, err := saga.Load(actions.Default, dir)
	if err != nil {
		t.Fatalf("load bench sagas: %v", err)
	}
	if len(set.Sagas) != 3 {
		t.Fatalf("loaded %d sagas, want 3", len(set.Sagas))
	}
}

// TestConfigValidate lists every problem at once.
func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  bench.Config
		want []string
	}{
		{name: "unknown scenario", cfg: bench.Config{Scenario: "nope"}, want: []string{`unknown scenario "nope"`}},
		{name: "external needs addresses", cfg: bench.Config{Scenario: "start", Runner: bench.RunnerExternal},
			want: []string{"needs the brokers", "needs the Redis"}},
		{name: "due above waiting", cfg: bench.Config{Scenario: "timeout", Waiting: 10, Due: 20},
			want: []string{"due 20 exceeds waiting 10"}},
		{name: "levels not increasing", cfg: bench.Config{Scenario: "rss", Levels: []int{100, 10}},
			want: []string{"levels must be positive and increasing"}},
		{name: "defaults are valid", cfg: bench.Config{Scenario: "all"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate passed, want %v", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}
