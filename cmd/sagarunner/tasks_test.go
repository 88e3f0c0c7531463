package main

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
)

// TestMain lets a test run the real main in a child process, to see
// exactly what a user sees on stderr (go-redis logs to the process's own
// stderr, out of reach of cobra's writers).
func TestMain(m *testing.M) {
	if os.Getenv("SAGARUNNER_TEST_RUN_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runMain runs the binary's main with args in a child process.
func runMain(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "SAGARUNNER_TEST_RUN_MAIN=1")
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

func exitCode(t *testing.T, err error) int {
	t.Helper()
	var ee exitError
	switch {
	case errors.As(err, &ee):
		return ee.code
	case err != nil:
		return 1
	}
	return 0
}

func TestTasksRefuseBadFilters(t *testing.T) {
	// Nothing listens here: every case must be refused before connecting.
	const noRedis = "127.0.0.1:1"
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown status", []string{"tasks", "list", "--status", "bogus"},
			`sagarunner tasks list: --status: want one of WAITING, IN_APPROVAL, COMPLETED, TIMEOUT, CANCELLED, got "bogus"`},
		{"zero limit", []string{"tasks", "list", "--limit", "0"}, "--limit: want 1 to 10000, got 0"},
		{"limit not a number", []string{"tasks", "list", "--limit", "x"}, `invalid argument "x" for "--limit"`},
		{"bad domain", []string{"tasks", "list", "--domain", "a b"}, `--domain: want 1 to 64 letters`},
		{"bad domain to get", []string{"tasks", "get", "a{b}", "id"}, `DOMAIN: want 1 to 64 letters`},
		{"closed tasks by role alone", []string{"tasks", "list", "--status", "completed", "--role", "r"}, "not by role"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append(tc.args, "--redis", noRedis)
			if tc.name == "closed tasks by role alone" {
				// The store refuses this one, so it needs a Redis.
				mr := miniredis.RunT(t)
				args = append(tc.args, "--redis", mr.Addr())
			}
			_, errOut, err := execute(t, "", args...)
			if code := exitCode(t, err); code != 2 {
				t.Errorf("exit code %d, want 2 (err %v, stderr %q)", code, err, errOut)
			}
			if !strings.Contains(errOut, tc.want) {
				t.Errorf("stderr %q does not say %q", errOut, tc.want)
			}
		})
	}
}

func TestTasksListFilters(t *testing.T) {
	mr := miniredis.RunT(t)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"status in lower case", []string{"--status", "completed"}},
		{"status in mixed case", []string{"--status", "TimeOut", "--user", "alice"}},
		{"tenant", []string{"--tenant", "acme"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, err := execute(t, "", append([]string{"tasks", "list", "--redis", mr.Addr()}, tc.args...)...)
			if err != nil {
				t.Fatalf("err %v, stderr %q", err, errOut)
			}
			if !strings.HasPrefix(out, "ID") {
				t.Errorf("output %q, want the table header", out)
			}
		})
	}
}

// TestUnreachableDependency checks an unreachable Redis or broker is one
// line on stderr naming its address, within a bounded time.
func TestUnreachableDependency(t *testing.T) {
	for _, tc := range []struct {
		name  string
		stdin string
		args  []string
		want  string
	}{
		{"redis for tasks list", "", []string{"tasks", "list", "--redis", "127.0.0.1:1"},
			"sagarunner: cannot reach Redis at 127.0.0.1:1"},
		{"redis for tasks get", "", []string{"tasks", "get", "workflow", "t-1", "--redis", "127.0.0.1:1"},
			"sagarunner: cannot reach Redis at 127.0.0.1:1"},
		{"broker for publish", "{\"a\":1}\n", []string{"publish", "--topic", "t", "--brokers", "127.0.0.1:1"},
			"sagarunner: cannot reach a Kafka broker at 127.0.0.1:1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			_, errOut, code := runMain(t, tc.stdin, tc.args...)
			if code != 1 {
				t.Errorf("exit code %d, want 1", code)
			}
			lines := strings.Split(strings.TrimSpace(errOut), "\n")
			if len(lines) != 1 || !strings.HasPrefix(lines[0], tc.want) {
				t.Errorf("stderr %q, want one line starting %q", errOut, tc.want)
			}
			if d := time.Since(start); d > 20*time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
}

func TestConfigErrorsOnePerLine(t *testing.T) {
	file := t.TempDir() + "/bad.yaml"
	if err := os.WriteFile(file, []byte("grop: 1\nlog: {level: loud}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := runMain(t, "", "tasks", "list", "--config", file)
	want := "sagarunner: invalid configuration:\n" +
		file + ":1:1: unknown key \"grop\"\n" +
		file + ":2:14: log.level: want debug, info, warn or error, got \"loud\"\n"
	if code != 1 || errOut != want {
		t.Errorf("exit %d, stderr:\n%s\nwant:\n%s", code, errOut, want)
	}
}
