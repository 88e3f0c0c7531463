package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/tidwall/gjson"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sagarunner/sagarunner/actions"
	"github.com/sagarunner/sagarunner/auth"
	"github.com/sagarunner/sagarunner/internal/redistest"
	"github.com/sagarunner/sagarunner/internal/testutil"
	"github.com/sagarunner/sagarunner/runner"
	"github.com/sagarunner/sagarunner/saga"
	"github.com/sagarunner/sagarunner/statemanager"
)

// TestThroughTheRunner drives the shipped sagas end to end: a job post
// published over HTTP starts a task, and the generic /ProceedTask hook
// closes it through the real engine and runner, with the gateway's answers
// mapped from the actions' result codes.
func TestThroughTheRunner(t *testing.T) {
	s := serveThroughRunner(t, "gateway-e2e", actions.Topics{Notifications: "gw-notifications"}, "gw-dead",
		[]string{"job-posts", "job-posts-approved"}, []string{"job-posts-approved"},
		Config{PublishTopics: []string{"job-posts"}, Auth: auth.Config{Tokens: map[string]auth.Identity{
			"svc":   {User: "svc", Roles: []string{"system"}},
			"alice": {User: "alice", Roles: []string{"manager"}},
			"bob":   {User: "bob", Roles: []string{"clerk"}},
		}}})

	if r := do(t, "POST", s.base+"/topics/job-posts", "svc", []byte(`{"productId": "product-1", "brief": "summer vibes"}`)); r.status != 202 {
		t.Fatalf("publish job post: %d %s", r.status, r.raw)
	}
	testutil.Eventually(t, 20*time.Second, 20*time.Millisecond, func() error {
		r := do(t, "GET", s.base+"/tasks/workflow/product-1", "alice", nil)
		if r.status != 200 {
			return fmt.Errorf("task not started: %d %s", r.status, r.raw)
		}
		return nil
	})

	tests := []struct {
		name       string
		token      string
		body       string
		wantStatus int
		wantCode   string
	}{
		{"a caller without the task's roles", "bob", `{"taskId": "product-1", "data": {"approved": true}}`, 403, "FORBIDDEN"},
		{"an unknown task", "alice", `{"taskId": "product-404", "data": {}}`, 404, "TASK_NOT_FOUND"},
		{"a holder of the task's role", "alice", `{"taskId": "product-1", "data": {"approved": true, "user": "alice"}}`, 200, ""},
		{"the task once closed", "alice", `{"taskId": "product-1", "data": {"approved": true}}`, 409, "TASK_CLOSED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, "POST", s.base+"/ProceedTask", tt.token, []byte(tt.body))
			if r.status != tt.wantStatus {
				t.Fatalf("status %d, want %d (body %s)", r.status, tt.wantStatus, r.raw)
			}
			if tt.wantCode != "" && r.body["code"] != tt.wantCode {
				t.Fatalf("code %v, want %s", r.body["code"], tt.wantCode)
			}
			if tt.wantStatus == 200 && !gjson.GetBytes(r.raw, "task").Exists() {
				t.Fatalf("the response payload lacks the task output: %s", r.raw)
			}
		})
	}

	r := do(t, "GET", s.base+"/tasks/workflow/product-1", "alice", nil)
	if gjson.GetBytes(r.raw, "status").String() != "COMPLETED" || gjson.GetBytes(r.raw, "closedBy").String() != "alice" {
		t.Fatalf("closed task: %s", r.raw)
	}
}

// serveThroughRunner serves cfg in front of a real runner and engine over
// the shipped sagas, a real redis-server and the embedded broker, and waits
// until /readyz answers. topics names the engine's notification and task
// event topics (the request topic is the harness's), dead its dead-letter
// topic; created are the topics created up front besides the runner's own,
// outputs those the runner produces to besides replies.
func serveThroughRunner(t *testing.T, group string, topics actions.Topics, dead string, created, outputs []string, cfg Config) *served {
	t.Helper()
	_, rdb := redistest.Start(t)
	topics.Continuations = requestTopic
	all := append([]string{requestTopic, replyTopic, topics.Notifications, dead}, created...)
	if topics.TaskEvents != "" {
		all = append(all, topics.TaskEvents)
		outputs = append(outputs, topics.TaskEvents)
	}
	brokers := newCluster(t, all...)
	set, err := saga.Load(actions.Default, "../sagas")
	if err != nil {
		t.Fatal(err)
	}
	stores := statemanager.NewResolver(rdb, statemanager.RedisConfig{Shards: 4}, nil)
	eng, err := saga.NewEngine(set, saga.Config{Topics: topics, DeadLetter: dead, Stores: stores})
	if err != nil {
		t.Fatal(err)
	}
	run, err := runner.New(runner.Config{
		Brokers:        brokers,
		Group:          group,
		RequestTopic:   requestTopic,
		OutputTopics:   append([]string{replyTopic}, outputs...),
		CommitInterval: 20 * time.Millisecond,
	}, eng, stores, runner.WithLogger(slog.New(slog.DiscardHandler)),
		runner.WithKafkaOptions(kgo.HeartbeatInterval(100*time.Millisecond), kgo.FetchMaxWait(100*time.Millisecond)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- run.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-ran; err != nil {
			t.Errorf("runner: %v", err)
		}
	})
	s := serve(t, brokers, cfg, Deps{Sagas: set, Stores: stores, Ready: run.Readiness})
	testutil.Eventually(t, 20*time.Second, 20*time.Millisecond, func() error {
		if r := do(t, "GET", s.base+"/readyz", "", nil); r.status != 200 {
			return fmt.Errorf("readyz %d", r.status)
		}
		return nil
	})
	return s
}
