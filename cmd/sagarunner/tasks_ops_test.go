package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tidwall/gjson"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sagarunner/sagarunner/config"
	"github.com/sagarunner/sagarunner/internal/app"
	"github.com/sagarunner/sagarunner/internal/redistest"
	"github.com/sagarunner/sagarunner/internal/testutil"
	"github.com/sagarunner/sagarunner/statemanager"
)

// reviewSaga parks each record of review-in as a task needing one approval
// by a holder of legal, and publishes the outcome once it closes: the
// continuation the CLI's close must resume.
const reviewSaga = `
saga: cli_review
version: 1
trigger: {topic: review-in}
steps:
  - id: review
    action: StartTask
    domain: workflow
    inputElement: parameters
    parameters:
      taskIdPath: id
      taskName: CLI review
      taskRoles: clerk
      possibleOutcomes: approve,reject
      requiredApprovals: 1
      approverRoles: legal
      timeout: 86400000
    next: {approve: done}   # only the outcome approve reaches review-done
  - id: done
    action: Publish
    parameters: {topic: review-done, pattern: "{id: parameters.id}"}
`

const (
	waitLong = 45 * time.Second
	poll     = 20 * time.Millisecond
)

// cliCluster is a kfake broker, a redis-server and one runner process built
// by internal/app as `run` builds it, in this test binary.
type cliCluster struct {
	brokers []string
	redis   string
	cfg     *config.Config
	cl      *kgo.Client
	store   statemanager.Store
}

func startCLICluster(t *testing.T) *cliCluster {
	t.Helper()
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(2))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kc.Close)
	redisAddr, _ := redistest.Start(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "review.yaml"), []byte(reviewSaga), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load("", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Brokers = kc.ListenAddrs()
	cfg.Redis.Addr = redisAddr
	cfg.RedisExplicit = true
	cfg.Sagas = dir
	// Shards stay the configured default: the commands under test read
	// the store with the configuration alone.
	cfg.Topics.Partitions = 2
	cfg.Timers.PollInterval = 20 * time.Millisecond
	cfg.HTTP.Addr = "127.0.0.1:0"

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var logBuf lockedBuffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("runner log:\n%s", logBuf.String())
		}
	})
	a, err := app.New(cfg, slog.New(slog.NewTextHandler(&logBuf, nil)), app.Options{Registerer: prometheus.NewRegistry(), Listener: ln})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("runner: %v", err)
		}
		a.Close()
	})
	testutil.Eventually(t, waitLong, poll, func() error {
		resp, err := http.Get("http://" + ln.Addr().String() + "/readyz")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(resp.Body)
			return fmt.Errorf("/readyz: %d %s", resp.StatusCode, b)
		}
		return nil
	})
	cl, err := kgo.NewClient(kgo.SeedBrokers(cfg.Brokers...), kgo.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	stores, closeStores, err := app.BuildStores(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closeStores)
	store, err := stores.Store("workflow")
	if err != nil {
		t.Fatal(err)
	}
	return &cliCluster{brokers: cfg.Brokers, redis: redisAddr, cfg: cfg, cl: cl, store: store}
}

// startTask starts a review task by its trigger record and waits until it
// is stored.
func (c *cliCluster) startTask(t *testing.T, id string) {
	t.Helper()
	rec := &kgo.Record{Topic: "review-in", Key: []byte(id), Value: []byte(`{"id":"` + id + `"}`)}
	if err := c.cl.ProduceSync(context.Background(), rec).FirstErr(); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, waitLong, poll, func() error {
		_, err := c.store.Get(context.Background(), id)
		return err
	})
}

// tasks runs `sagarunner tasks ARGS` against the cluster.
func (c *cliCluster) tasks(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	args = append([]string{"tasks"}, args...)
	if args[1] == "history" {
		args = append(args, "--redis", c.redis)
	} else {
		args = append(args, "--brokers", strings.Join(c.brokers, ","), "--wait", "30s")
	}
	out, errOut, err := execute(t, "", args...)
	if err != nil && !errors.As(err, new(exitError)) {
		errOut += err.Error() // main would print it
	}
	return out, errOut, exitCode(t, err)
}

// consumeFrom collects the records of topics from their start.
func consumeFrom(t *testing.T, brokers []string, topics ...string) func() []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var recs []*kgo.Record
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			fs := cl.PollFetches(ctx)
			if ctx.Err() != nil || fs.IsClientClosed() {
				return
			}
			mu.Lock()
			fs.EachRecord(func(r *kgo.Record) { recs = append(recs, r) })
			mu.Unlock()
		}
	}()
	t.Cleanup(func() { cancel(); <-stopped; cl.Close() })
	return func() []*kgo.Record {
		mu.Lock()
		defer mu.Unlock()
		return append([]*kgo.Record(nil), recs...)
	}
}

// TestTaskOpsCommandLine drives a task through claim → complete → approve
// from the command line against a real runner: each answer is the task's
// state, the approval closes it so the saga resumes (its Publish step runs
// with the outcome) and the COMPLETED notification is out, and the history
// reads back exactly those steps. Refusals exit 1 with their code and
// change nothing.
func TestTaskOpsCommandLine(t *testing.T) {
	c := startCLICluster(t)
	seen := consumeFrom(t, c.brokers, c.cfg.Topics.Notifications, "review-done")
	c.startTask(t, "c-1")

	out, errOut, code := c.tasks(t, "claim", "workflow", "c-1", "--as", "ann", "--roles", "clerk", "--json")
	if code != 0 {
		t.Fatalf("claim: exit %d, stderr %q", code, errOut)
	}
	if st := gjson.Parse(out); st.Get("status").String() != "WAITING" || st.Get("claimedBy").String() != "ann" {
		t.Fatalf("claim answered %s", out)
	}

	t.Run("another clerk's claim is refused", func(t *testing.T) {
		out, errOut, code := c.tasks(t, "claim", "workflow", "c-1", "--as", "bob", "--roles", "clerk", "--json")
		if code != 1 || !strings.Contains(errOut, "TASK_CLAIMED") {
			t.Fatalf("exit %d, stderr %q; want 1 and TASK_CLAIMED", code, errOut)
		}
		if gjson.Get(out, "code").String() != "TASK_CLAIMED" {
			t.Errorf("--json refusal %q lacks the code", out)
		}
	})
	t.Run("an unknown task is refused at once", func(t *testing.T) {
		_, errOut, code := c.tasks(t, "claim", "workflow", "nope", "--as", "ann", "--roles", "clerk")
		if code != 1 || !strings.Contains(errOut, "TASK_NOT_FOUND") {
			t.Fatalf("exit %d, stderr %q; want 1 and TASK_NOT_FOUND", code, errOut)
		}
	})
	t.Run("an undeclared outcome is refused", func(t *testing.T) {
		_, errOut, code := c.tasks(t, "complete", "workflow", "c-1", "--as", "ann", "--roles", "clerk", "--outcome", "maybe")
		if code != 1 || !strings.Contains(errOut, "BAD_INPUT") || !strings.Contains(errOut, "maybe") {
			t.Fatalf("exit %d, stderr %q; want 1 and BAD_INPUT naming the outcome", code, errOut)
		}
	})

	out, errOut, code = c.tasks(t, "complete", "workflow", "c-1", "--as", "ann", "--roles", "clerk",
		"--outcome", "approve", "--data", `{"amount": 12}`, "--note", "looks fine")
	if code != 0 {
		t.Fatalf("complete: exit %d, stderr %q", code, errOut)
	}
	if !strings.HasPrefix(out, "ID") || !strings.Contains(out, "IN_APPROVAL") || !strings.Contains(out, "approve") {
		t.Fatalf("complete printed %q, want the table with IN_APPROVAL and the outcome", out)
	}

	t.Run("the executor may not approve", func(t *testing.T) {
		_, errOut, code := c.tasks(t, "approve", "workflow", "c-1", "--as", "ann", "--roles", "legal")
		if code != 1 || !strings.Contains(errOut, "SELF_APPROVAL") {
			t.Fatalf("exit %d, stderr %q; want 1 and SELF_APPROVAL", code, errOut)
		}
	})

	out, errOut, code = c.tasks(t, "approve", "workflow", "c-1", "--as", "lee", "--roles", "legal", "--note", "ok", "--json")
	if code != 0 {
		t.Fatalf("approve: exit %d, stderr %q", code, errOut)
	}
	if st := gjson.Parse(out); st.Get("status").String() != "COMPLETED" || st.Get("approvals.0.user").String() != "lee" {
		t.Fatalf("approve answered %s", out)
	}

	// The close went through the runner: the saga resumed on the outcome
	// and the notification is out, once.
	testutil.Eventually(t, waitLong, poll, func() error {
		var notes, done int
		for _, r := range seen() {
			switch r.Topic {
			case c.cfg.Topics.Notifications:
				if string(r.Key) == "c-1" {
					notes++
					if s := gjson.GetBytes(r.Value, "status").String(); s != "COMPLETED" {
						return fmt.Errorf("notification status %s", s)
					}
				}
			case "review-done":
				if gjson.GetBytes(r.Value, "id").String() == "c-1" {
					done++
				}
			}
		}
		if notes != 1 || done != 1 {
			return fmt.Errorf("%d notifications and %d continuations, want one each", notes, done)
		}
		return nil
	})

	t.Run("an operation on the closed task is refused", func(t *testing.T) {
		_, errOut, code := c.tasks(t, "cancel", "workflow", "c-1", "--reason", "late")
		if code != 1 || !strings.Contains(errOut, "TASK_CLOSED") {
			t.Fatalf("exit %d, stderr %q; want 1 and TASK_CLOSED", code, errOut)
		}
	})

	out, errOut, code = c.tasks(t, "history", "workflow", "c-1", "--json")
	if code != 0 {
		t.Fatalf("history: exit %d, stderr %q", code, errOut)
	}
	var types []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var e statemanager.Event
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("history line %q: %v", line, err)
		}
		types = append(types, e.Type+":"+e.Actor)
	}
	if got := strings.Join(types, " "); !strings.Contains(got, "claimed:ann") || !strings.Contains(got, "completed:ann") ||
		!strings.HasSuffix(got, "approved:lee") || strings.Count(got, ":") != 4 {
		t.Errorf("history %s, want started, claimed, completed and approved only", got)
	}
	out, _, code = c.tasks(t, "history", "workflow", "c-1")
	if code != 0 || !strings.HasPrefix(out, "SEQ") || !strings.Contains(out, "looks fine") {
		t.Errorf("history table %q", out)
	}
}

// TestTaskOpsReplayAndDeadline: a repeated request id answers the first
// result and changes nothing; a deadline moved to the past times the task
// out at once.
func TestTaskOpsReplayAndDeadline(t *testing.T) {
	c := startCLICluster(t)
	c.startTask(t, "d-1")
	for i := 0; i < 2; i++ {
		_, errOut, code := c.tasks(t, "comment", "workflow", "d-1", "--text", "first", "--request-id", "cli-test-comment")
		if code != 0 {
			t.Fatalf("comment %d: exit %d, stderr %q", i, code, errOut)
		}
	}
	out, errOut, code := c.tasks(t, "history", "workflow", "d-1", "--json")
	if code != 0 {
		t.Fatalf("history: exit %d, stderr %q", code, errOut)
	}
	if n := strings.Count(out, `"commented"`); n != 1 {
		t.Errorf("%d comment events after a replay, want 1:\n%s", n, out)
	}
	past := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)
	if _, errOut, code := c.tasks(t, "deadline", "workflow", "d-1", "--timeout-on", past); code != 0 {
		t.Fatalf("deadline: exit %d, stderr %q", code, errOut)
	}
	testutil.Eventually(t, waitLong, poll, func() error {
		tk, err := c.store.Get(context.Background(), "d-1")
		if err != nil {
			return err
		}
		if tk.Status != statemanager.StatusTimeout {
			return fmt.Errorf("status %s", tk.Status)
		}
		return nil
	})
}

// TestTaskOpsWithoutRunner: on a cluster no runner ever joined, an
// operation says so at once instead of waiting for an answer nobody sends.
func TestTaskOpsWithoutRunner(t *testing.T) {
	kc, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kc.Close)
	_, errOut, err := execute(t, "", "tasks", "cancel", "workflow", "t-1", "--brokers", strings.Join(kc.ListenAddrs(), ","), "--wait", "30s")
	if code := exitCode(t, err); code != 1 || err == nil || !strings.Contains(err.Error(), "reply topic sagarunner-replies does not exist") {
		t.Errorf("exit %d, err %v, stderr %q; want 1 and the missing reply topic", code, err, errOut)
	}
}

// TestTaskOpsRefuseBadFlags: every misuse exits 2 before anything
// connects (nothing listens on the broker given).
func TestTaskOpsRefuseBadFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"claim without a user", []string{"claim", "workflow", "t-1"}, "claim needs a user: give --as"},
		{"approve without a user", []string{"approve", "workflow", "t-1"}, "approve needs a user"},
		{"assign to nobody", []string{"assign", "workflow", "t-1"}, "assign needs --user or --role"},
		{"assign to both", []string{"assign", "workflow", "t-1", "--user", "a", "--role", "b"}, "not both"},
		{"bad domain", []string{"cancel", "a b", "t-1"}, "DOMAIN: want 1 to 64"},
		{"id too long", []string{"cancel", "workflow", strings.Repeat("x", 513)}, "ID of 513 bytes"},
		{"data not JSON", []string{"complete", "workflow", "t-1", "--data", "{nope"}, "--data: not valid JSON"},
		{"data file missing", []string{"complete", "workflow", "t-1", "--data", "@/nonexistent/x.json"}, "--data: open"},
		{"deadline without a time", []string{"deadline", "workflow", "t-1"}, "--timeout or --timeout-on"},
		{"deadline with both", []string{"deadline", "workflow", "t-1", "--timeout", "1m", "--timeout-on", "1"}, "--timeout or --timeout-on"},
		{"deadline in a bad format", []string{"deadline", "workflow", "t-1", "--timeout-on", "tomorrow"}, "want RFC 3339"},
		{"negative timeout", []string{"deadline", "workflow", "t-1", "--timeout=-1m"}, "not negative"},
		{"empty comment", []string{"comment", "workflow", "t-1", "--text", " "}, "comment needs --text"},
		{"unknown flag", []string{"claim", "workflow", "t-1", "--as", "a", "--outcome", "x"}, "unknown flag: --outcome"},
		{"missing id", []string{"cancel", "workflow"}, "want DOMAIN and ID, got 1"},
		{"request id with a newline", []string{"cancel", "workflow", "t-1", "--request-id", "a\nb"}, "--request-id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append(append([]string{"tasks"}, tc.args...), "--brokers", "127.0.0.1:1")
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

// lockedBuffer is a log sink written by the runner's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
