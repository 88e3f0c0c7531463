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

// TestClusterLayout runs the cluster layout (a Redis Cluster of three
// redis-server processes and two runner children in one group) with tiny
// counts, and --compare with the single layout, checking that every record
// is accounted for in each, never how fast.
func TestClusterLayout(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("redis-server not on PATH under CI")
		}
		t.Skip("redis-server not on PATH: the cluster layout needs real redis-server processes")
	}
	clusterLine := func(t *testing.T, r map[string]any) {
		t.Helper()
		if r["layout"] != "cluster" {
			t.Errorf("layout %v, want cluster", r["layout"])
		}
		wantNum(t, r, "redis_nodes", 3)
		wantNum(t, r, "runners", 2)
		wantEach(t, r, "redis_cpu_s_each", 3)
		wantEach(t, r, "runner_cpu_s_each", 2)
		wantEach(t, r, "runner_peak_rss_mb_each", 2)
		// Both runners own partitions of the request topic, and together
		// all of them.
		parts, _ := r["runner_partitions_each"].([]any)
		sum := 0.0
		for _, p := range parts {
			if f, _ := p.(float64); f > 0 {
				sum += f
			} else {
				t.Errorf("a runner owns no partition: %v", parts)
			}
		}
		if len(parts) != 2 || sum != 4 {
			t.Errorf("runner_partitions_each %v, want two runners splitting 4 partitions", r["runner_partitions_each"])
		}
		shards, _ := r["redis_shards_each"].([]any)
		total := 0.0
		for _, s := range shards {
			f, _ := s.(float64)
			total += f
		}
		if len(shards) != 3 || total != 4 {
			t.Errorf("redis_shards_each %v, want the 4 shards over 3 nodes", r["redis_shards_each"])
		}
		wantPositive(t, r, "rate", "runner_peak_rss_mb", "redis_cpu_s")
	}
	tests := []struct {
		name  string
		cfg   bench.Config
		check func(t *testing.T, lines []map[string]any)
	}{
		{name: "compare start", cfg: bench.Config{Scenario: "start", N: 300, Compare: true},
			check: func(t *testing.T, lines []map[string]any) {
				if len(lines) != 3 {
					t.Fatalf("got %d lines, want single, cluster and the comparison", len(lines))
				}
				single, cluster, cmp := lines[0], lines[1], lines[2]
				if single["layout"] != "single" {
					t.Errorf("first line's layout %v, want single", single["layout"])
				}
				if _, ok := single["runner_cpu_s_each"]; ok {
					t.Errorf("single layout line has per-runner figures: %v", single)
				}
				for _, r := range []map[string]any{single, cluster} {
					wantNum(t, r, "n", 300)
					wantNum(t, r, "sampled", 300)
				}
				clusterLine(t, cluster)
				if cmp["compare"] != "cluster/single" || cmp["scenario"] != "start" {
					t.Errorf("comparison line %v", cmp)
				}
				wantNum(t, cmp, "single_rate", single["rate"].(float64))
				wantNum(t, cmp, "cluster_rate", cluster["rate"].(float64))
				wantPositive(t, cmp, "rate_ratio", "single_redis_cpu_us_per_step", "cluster_redis_cpu_us_per_step")
			}},
		{name: "proceed", cfg: bench.Config{Scenario: "proceed", N: 200, Layout: bench.LayoutCluster},
			check: func(t *testing.T, lines []map[string]any) {
				if len(lines) != 1 {
					t.Fatalf("got %d lines, want 1", len(lines))
				}
				r := lines[0]
				wantNum(t, r, "n", 200)
				wantNum(t, r, "duplicates", 0)
				if _, ok := r["done_p99_ms"]; !ok {
					t.Errorf("no continuation latency in %v", r)
				}
				clusterLine(t, r)
			}},
		{name: "timeout", cfg: bench.Config{Scenario: "timeout", Waiting: 400, Due: 100, Window: 500 * time.Millisecond,
			Layout: bench.LayoutCluster},
			check: func(t *testing.T, lines []map[string]any) {
				if len(lines) != 1 {
					t.Fatalf("got %d lines, want 1", len(lines))
				}
				r := lines[0]
				wantNum(t, r, "fired", 100)
				wantNum(t, r, "duplicates", 0)
				wantNum(t, r, "unexpected", 0)
				clusterLine(t, r)
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, log bytes.Buffer
			cfg := tc.cfg
			cfg.Partitions = 4
			cfg.Preloaders = 8
			cfg.Timeout = 2 * time.Minute
			cfg.RunnerCommand = []string{os.Args[0], "-test.run=^$"}
			cfg.RunnerEnv = []string{childEnvVar()}
			cfg.Out, cfg.Log = &out, &log
			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
			defer cancel()
			if err := bench.Run(ctx, cfg); err != nil {
				t.Fatalf("Run: %v\nlog:\n%s", err, log.String())
			}
			var lines []map[string]any
			for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
				var r map[string]any
				if err := json.Unmarshal([]byte(l), &r); err != nil {
					t.Fatalf("line %q: %v", l, err)
				}
				lines = append(lines, r)
			}
			tc.check(t, lines)
		})
	}
}

func wantEach(t *testing.T, r map[string]any, key string, n int) {
	t.Helper()
	each, ok := r[key].([]any)
	if !ok || len(each) != n {
		t.Errorf("%s = %v, want %d figures", key, r[key], n)
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
		{name: "unknown layout", cfg: bench.Config{Scenario: "start", Layout: "ring"},
			want: []string{`--layout must be single or cluster, got "ring"`}},
		{name: "cluster starts its own Redis and runners",
			cfg: bench.Config{Scenario: "start", Layout: bench.LayoutCluster, Runner: bench.RunnerExternal,
				Brokers: []string{"b:9092"}, Redis: "r:6379"},
			want: []string{"starts its own runners", "starts its own Redis Cluster"}},
		{name: "compare drives no gateway", cfg: bench.Config{Scenario: "http", Compare: true},
			want: []string{"--compare runs", "not http"}},
		{name: "more runners than partitions", cfg: bench.Config{Scenario: "start", Layout: bench.LayoutCluster, Runners: 5, Partitions: 4},
			want: []string{"runners 5 exceed partitions 4"}},
		{name: "defaults are valid", cfg: bench.Config{Scenario: "all"}},
		{name: "cluster all is valid", cfg: bench.Config{Scenario: "all", Layout: bench.LayoutCluster}},
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
