package test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sagarunner/sagarunner/config"
	"github.com/sagarunner/sagarunner/internal/redistest"
	"github.com/sagarunner/sagarunner/internal/testutil"
)

// notificationFields are the fields of a task-closed notification in the
// order SPEC §6 gives them.
var notificationFields = []string{"taskId", "domain", "status", "saga", "stepId", "requestId",
	"taskName", "taskSpec", "taskAction", "taskRoles", "taskUser", "startedAt", "deadline",
	"closedAt", "closedBy", "data"}

// checkNotification asserts that rec is a task-closed notification with
// exactly the fields of SPEC §6, in order, keyed by its task id, with the
// wanted values. Times are checked for consistency: started, then closed,
// and the deadline deadlineAfter ms after the start.
func checkNotification(t *testing.T, rec *kgo.Record, want map[string]any, deadlineAfter int64) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(string(rec.Value)))
	var keys []string
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("notification is not a JSON object: %s", rec.Value)
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Equal(keys, notificationFields) {
		t.Errorf("notification fields %v, want %v", keys, notificationFields)
	}
	var got map[string]any
	if err := json.Unmarshal(rec.Value, &got); err != nil {
		t.Fatal(err)
	}
	if string(rec.Key) != got["taskId"] {
		t.Errorf("notification key %q, want the task id %v", rec.Key, got["taskId"])
	}
	for k, v := range want {
		if !jsonEqual(mustJSON(t, got[k]), mustJSON(t, v)) {
			t.Errorf("notification %s = %v, want %v (%s)", k, got[k], v, rec.Value)
		}
	}
	started, closed, deadline := gjson.GetBytes(rec.Value, "startedAt").Int(), gjson.GetBytes(rec.Value, "closedAt").Int(), gjson.GetBytes(rec.Value, "deadline").Int()
	if started <= 0 || closed < started {
		t.Errorf("notification times: startedAt %d, closedAt %d", started, closed)
	}
	if deadline != started+deadlineAfter {
		t.Errorf("notification deadline %d, want startedAt+%d = %d", deadline, deadlineAfter, started+deadlineAfter)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestEndToEnd runs one process as the binary builds it and drives it from
// outside only: records on Kafka, HTTP calls, and the topics it writes.
func TestEndToEnd(t *testing.T) {
	redisAddr, _ := redistest.Start(t)
	cluster := newCluster(t)
	brokers := cluster.ListenAddrs()
	cfg := newConfig(t, brokers, redisAddr, sagaDir(t))
	cfg.HTTP.MaxBody = 64 << 10
	p := startProcess(t, "runner", cfg)
	out := readTopics(t, brokers, notificationTopic, deadLetterTopic, "job-posts-approved")
	cl := newClient(t, brokers)

	post := func(topic, key, value string) {
		t.Helper()
		produce(t, cl, &kgo.Record{Topic: topic, Key: []byte(key), Value: []byte(value)})
	}

	t.Run("a record on a trigger topic starts a waiting task", func(t *testing.T) {
		post("job-posts", "r-e2e-1", `{"productId":"e2e-1","brief":"summer vibes"}`)
		task := waitTask(t, p.base, "", "workflow", "e2e-1", "WAITING")
		for k, want := range map[string]any{"saga": "job_post_approval", "stepId": "approve", "requestId": "r-e2e-1",
			"taskName": "Job Post Approval", "taskSpec": "job_post_approval", "taskAction": "Approve"} {
			if task[k] != want {
				t.Errorf("task %s = %v, want %v", k, task[k], want)
			}
		}
		if got := gjson.GetBytes(mustJSON(t, task), "data.data.brief").String(); got != "summer vibes" {
			t.Errorf("stored data lacks the post: %v", task["data"])
		}
		if d, s := task["deadline"].(float64), task["startedAt"].(float64); d != s+60000 {
			t.Errorf("deadline %v, want startedAt+60000", d)
		}
		st, body := do(t, "GET", p.base+"/tasks?domain=workflow", "", "")
		if st != http.StatusOK {
			t.Fatalf("GET /tasks: %d %s", st, body)
		}
		ids := gjson.GetBytes(body, "#.taskId").Array()
		if !slices.ContainsFunc(ids, func(r gjson.Result) bool { return r.String() == "e2e-1" }) {
			t.Errorf("GET /tasks lacks e2e-1: %s", body)
		}
	})

	t.Run("ProceedTask continues the saga", func(t *testing.T) {
		post("job-posts", "r-e2e-2", `{"productId":"e2e-2","brief":"winter sale"}`)
		waitTask(t, p.base, "", "workflow", "e2e-2", "WAITING")
		st, body := do(t, "POST", p.base+"/ProceedTask", "", `{"taskId":"e2e-2","data":{"decision":"approved","user":"alice"}}`)
		if st != http.StatusOK {
			t.Fatalf("POST /ProceedTask: %d %s", st, body)
		}
		// The answer carries the stored event's payload enriched with the
		// decision, at the hook's outputElement.
		if got := gjson.GetBytes(body, "task.parameters.productId").String(); got != "e2e-2" {
			t.Errorf("answer lacks the stored post: %s", body)
		}
		if got := gjson.GetBytes(body, "task.decision.user").String(); got != "alice" {
			t.Errorf("answer lacks the decision: %s", body)
		}

		approved := out.waitFor(t, "job-posts-approved", "r-e2e-2", nil)
		if !jsonEqual(approved.Value, []byte(`{"id":"e2e-2","by":"alice"}`)) {
			t.Errorf("job-posts-approved value %s", approved.Value)
		}
		n := out.waitFor(t, notificationTopic, "e2e-2", nil)
		checkNotification(t, n, map[string]any{
			"taskId": "e2e-2", "domain": "workflow", "status": "COMPLETED", "saga": "job_post_approval",
			"stepId": "approve", "requestId": "r-e2e-2", "taskName": "Job Post Approval",
			"taskSpec": "job_post_approval", "taskAction": "Approve", "taskRoles": []string{"admin", "manager"},
			"taskUser": "", "closedBy": "", "data": map[string]any{"decision": "approved", "user": "alice"},
		}, 60000)
		task := waitTask(t, p.base, "", "workflow", "e2e-2", "COMPLETED")
		if task["closedAt"] != gjson.GetBytes(n.Value, "closedAt").Value() {
			t.Errorf("closedAt of the task %v and of its notification %s differ", task["closedAt"], n.Value)
		}

		tests := []struct {
			name     string
			body     string
			wantCode int
			wantErr  string
		}{
			{"proceeding the closed task again", `{"taskId":"e2e-2","data":{"user":"bob"}}`, http.StatusConflict, "TASK_CLOSED"},
			{"an unknown task", `{"taskId":"e2e-404","data":{}}`, http.StatusNotFound, "TASK_NOT_FOUND"},
			{"a malformed body", `{"taskId":"e2e-2",`, http.StatusBadRequest, "BAD_INPUT"},
			{"a body that is not an object", `["e2e-2"]`, http.StatusBadRequest, "BAD_INPUT"},
			{"a body without a task id", `{"data":{}}`, http.StatusBadRequest, "BAD_INPUT"},
			{"an oversized body", `{"taskId":"e2e-2","data":{"blob":"` + strings.Repeat("x", 128<<10) + `"}}`, http.StatusRequestEntityTooLarge, "BODY_TOO_LARGE"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				st, body := do(t, "POST", p.base+"/ProceedTask", "", tt.body)
				if st != tt.wantCode {
					t.Fatalf("status %d, want %d: %s", st, tt.wantCode, body)
				}
				if got := gjson.GetBytes(body, "code").String(); got != tt.wantErr {
					t.Errorf("code %q, want %q: %s", got, tt.wantErr, body)
				}
				if gjson.GetBytes(body, "error").String() == "" {
					t.Errorf("answer gives no reason: %s", body)
				}
			})
		}
		// Refused requests change nothing: one notification, one approval.
		if got := len(out.byKey(notificationTopic, "e2e-2")); got != 1 {
			t.Errorf("%d notifications for e2e-2, want 1", got)
		}
		if got := len(out.byKey("job-posts-approved", "r-e2e-2")); got != 1 {
			t.Errorf("%d approvals for e2e-2, want 1", got)
		}
	})

	t.Run("a deadline fires by itself and the saga escalates", func(t *testing.T) {
		post("quick-posts", "r-quick-1", `{"productId":"quick-1"}`)
		n := out.waitFor(t, notificationTopic, "quick-1", nil)
		checkNotification(t, n, map[string]any{
			"taskId": "quick-1", "domain": "workflow", "status": "TIMEOUT", "saga": "quick_post",
			"stepId": "approve", "requestId": "r-quick-1", "taskName": "Quick approval",
			"taskRoles": []string{"manager"}, "closedBy": "", "data": nil,
		}, 1000)
		if got := gjson.GetBytes(n.Value, "closedAt").Int(); got < gjson.GetBytes(n.Value, "deadline").Int() {
			t.Errorf("timed out at %d, before its deadline: %s", got, n.Value)
		}
		waitTask(t, p.base, "", "workflow", "quick-1", "TIMEOUT")

		// The TIMEOUT route started the escalation task, offered to
		// directors, with the id of a step visit.
		var esc gjson.Result
		testutil.Eventually(t, waitLong, poll, func() error {
			st, body := do(t, "GET", p.base+"/tasks?domain=workflow&role=director", "", "")
			if st != http.StatusOK {
				return fmt.Errorf("GET /tasks: %d %s", st, body)
			}
			for _, task := range gjson.ParseBytes(body).Array() {
				if task.Get("requestId").String() == "r-quick-1" {
					esc = task
					return nil
				}
			}
			return fmt.Errorf("no escalation task yet: %s", body)
		})
		if esc.Get("stepId").String() != "escalate" || esc.Get("status").String() != "WAITING" ||
			!strings.HasPrefix(esc.Get("taskId").String(), "r-quick-1:escalate:") {
			t.Errorf("escalation task %s", esc.Raw)
		}
		if esc.Get("deadline").Int()-esc.Get("startedAt").Int() != 86400000 {
			t.Errorf("escalation deadline %s", esc.Raw)
		}
	})

	t.Run("poison records are dead-lettered and the partition moves on", func(t *testing.T) {
		// A good record behind each poison one on the same partition
		// proves the partition was not stuck on it.
		post("job-posts", "r-dl-wait", `{"productId":"dl-wait"}`)
		waitTask(t, p.base, "", "workflow", "dl-wait", "WAITING")
		proceed := func(key string) string {
			return `{"requestMeta":{"requestId":"` + key + `","user":"alice","roles":["manager"]},` +
				`"eventMeta":{"action":"ProceedTask","domain":"workflow","inputElement":"parameters",` +
				`"parameters":{"inputPattern":"data","enrichPath":"decision"}},` +
				`"payload":{"parameters":{"taskId":"dl-wait","data":{"user":"alice"}}}}`
		}
		tests := []struct {
			name     string
			topic    string
			poison   string
			wantCode string
			wantErr  string
			next     string // the good record behind it
			nextKey  string
			// nextDone waits until the good record was processed.
			nextDone func(t *testing.T)
		}{
			{
				name: "a value that is not JSON", topic: "job-posts", poison: `{"productId": nope`,
				wantCode: "UNDECODABLE", wantErr: "invalid JSON",
				next: `{"productId":"dl-next-1"}`, nextKey: "r-dl-next-1",
				nextDone: func(t *testing.T) { waitTask(t, p.base, "", "workflow", "dl-next-1", "WAITING") },
			},
			{
				name: "a continuation the runners did not sign", topic: requestTopic,
				poison:   `{"sagaMeta":{"saga":"no_such_saga","stepId":"approve"},"payload":{}}`,
				wantCode: "FORGED_CONTINUATION", wantErr: `without a valid sagarunner-sig header`,
				next: proceed("r-dl-proceed"), nextKey: "r-dl-proceed",
				nextDone: func(t *testing.T) { waitTask(t, p.base, "", "workflow", "dl-wait", "COMPLETED") },
			},
			{
				name: "an unknown action", topic: requestTopic,
				poison:   `{"eventMeta":{"action":"LaunchRocket"},"payload":{}}`,
				wantCode: "UNKNOWN_ACTION", wantErr: `unknown action "LaunchRocket"`,
				next: `{"sagaMeta":{"saga":"job_post_approval"},"payload":{"parameters":{"productId":"dl-next-3"}}}`, nextKey: "r-dl-next-3",
				nextDone: func(t *testing.T) { waitTask(t, p.base, "", "workflow", "dl-next-3", "WAITING") },
			},
		}
		manual := newClient(t, brokers, kgo.RecordPartitioner(kgo.ManualPartitioner()))
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				key := fmt.Sprintf("r-poison-%d", i)
				part := int32(i % partitions)
				produce(t, manual,
					&kgo.Record{Topic: tt.topic, Partition: part, Key: []byte(key), Value: []byte(tt.poison)},
					&kgo.Record{Topic: tt.topic, Partition: part, Key: []byte(tt.nextKey), Value: []byte(tt.next)})
				dl := out.waitFor(t, deadLetterTopic, key, nil)
				v := gjson.ParseBytes(dl.Value)
				if v.Get("code").String() != tt.wantCode || !strings.Contains(v.Get("error").String(), tt.wantErr) {
					t.Errorf("dead letter %s, want code %s and error with %q", dl.Value, tt.wantCode, tt.wantErr)
				}
				if v.Get("topic").String() != tt.topic || v.Get("partition").Int() != int64(part) {
					t.Errorf("dead letter does not say where the record came from: %s", dl.Value)
				}
				// The original value is kept (as a string when it was not
				// JSON) so an operator can fix and replay it.
				orig := v.Get("value")
				if orig.Type == gjson.String {
					if orig.String() != tt.poison {
						t.Errorf("dead letter value %s, want %s", orig.Raw, tt.poison)
					}
				} else if !jsonEqual([]byte(orig.Raw), []byte(tt.poison)) {
					t.Errorf("dead letter value %s, want %s", orig.Raw, tt.poison)
				}
				tt.nextDone(t)
			})
		}
	})
}

// TestAuthorization runs a process with static bearer tokens: callers must
// authenticate, and only the task's roles may proceed it.
func TestAuthorization(t *testing.T) {
	redisAddr, _ := redistest.Start(t)
	cluster := newCluster(t)
	brokers := cluster.ListenAddrs()
	cfg := newConfig(t, brokers, redisAddr, sagaDir(t))
	cfg.Auth.Tokens = []config.Token{
		{Token: "tok-alice", User: "alice", Roles: []string{"manager"}},
		{Token: "tok-bob", User: "bob", Roles: []string{"clerk"}},
	}
	p := startProcess(t, "runner", cfg)
	out := readTopics(t, brokers, notificationTopic)
	produce(t, newClient(t, brokers), &kgo.Record{Topic: "job-posts", Key: []byte("r-auth-1"), Value: []byte(`{"productId":"auth-1"}`)})
	waitTask(t, p.base, "tok-alice", "workflow", "auth-1", "WAITING")

	const body = `{"taskId":"auth-1","data":{"decision":"approved"}}`
	tests := []struct {
		name     string
		token    string
		wantCode int
		wantErr  string
	}{
		{"no token", "", http.StatusUnauthorized, ""},
		{"an unknown token", "tok-mallory", http.StatusUnauthorized, ""},
		{"a user without the task's roles", "tok-bob", http.StatusForbidden, "FORBIDDEN"},
		{"a holder of one of the task's roles", "tok-alice", http.StatusOK, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, got := do(t, "POST", p.base+"/ProceedTask", tt.token, body)
			if st != tt.wantCode {
				t.Fatalf("status %d, want %d: %s", st, tt.wantCode, got)
			}
			if tt.wantErr != "" && gjson.GetBytes(got, "code").String() != tt.wantErr {
				t.Errorf("code %s, want %s", gjson.GetBytes(got, "code"), tt.wantErr)
			}
		})
	}
	t.Run("the inbox needs a token too", func(t *testing.T) {
		if st, got := do(t, "GET", p.base+"/tasks?domain=workflow", "", ""); st != http.StatusUnauthorized {
			t.Errorf("GET /tasks without a token: %d %s", st, got)
		}
	})
	// Refused callers left the task alone; the one accepted close is
	// recorded with the caller's identity.
	n := out.waitFor(t, notificationTopic, "auth-1", nil)
	checkNotification(t, n, map[string]any{"status": "COMPLETED", "closedBy": "alice", "data": map[string]any{"decision": "approved"}}, 60000)
	if got := len(out.byKey(notificationTopic, "auth-1")); got != 1 {
		t.Errorf("%d notifications for auth-1, want 1", got)
	}
}
