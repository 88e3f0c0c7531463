package gateway

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/sagarunner/sagarunner/actions"
	"github.com/sagarunner/sagarunner/auth"
	"github.com/sagarunner/sagarunner/internal/testutil"
	"github.com/sagarunner/sagarunner/statemanager"
)

// TestTaskLifecycleOverHTTP drives the task operations of SPEC §12 through
// the gateway, a real runner and Redis: the shipped contract_review saga
// starts a task for clerks, and the operations on it answer with the
// task's state or with the action's refusal mapped to a status.
func TestTaskLifecycleOverHTTP(t *testing.T) {
	s := serveThroughRunner(t, "gateway-lifecycle",
		actions.Topics{Notifications: "gw-lc-notifications", TaskEvents: "gw-lc-task-events"}, "gw-lc-dead",
		[]string{"contracts", "contracts-approved", "contracts-rework"}, []string{"contracts-approved", "contracts-rework"},
		Config{PublishTopics: []string{"contracts"}, Auth: auth.Config{Tokens: map[string]auth.Identity{
			"svc":   {User: "svc", Roles: []string{"system"}},
			"carol": {User: "carol", Roles: []string{"clerk"}},
			"cid":   {User: "cid", Roles: []string{"clerk"}},
			"eve":   {User: "eve", Roles: []string{"clerk"}, Tenant: "acme"},
		}}})
	if r := do(t, "POST", s.base+"/topics/contracts", "svc", []byte(`{"contractId": "c-1", "title": "Supply"}`)); r.status != 202 {
		t.Fatalf("publish contract: %d %s", r.status, r.raw)
	}
	task := s.base + "/tasks/workflow/c-1"
	testutil.Eventually(t, 20*time.Second, 20*time.Millisecond, func() error {
		if r := do(t, "GET", task, "carol", nil); r.status != 200 {
			return fmt.Errorf("task not started: %d %s", r.status, r.raw)
		}
		return nil
	})

	// The steps run in order: each acts on the task as the ones before
	// left it.
	steps := []struct {
		name       string
		method     string
		op         string
		token      string
		body       string
		wantStatus int
		wantCode   string
		// want are gjson paths of the answer and their values ("" for
		// none, "*" for any).
		want map[string]string
	}{
		{name: "a candidate claims", op: "claim", token: "carol", body: `{}`, wantStatus: 200,
			want: map[string]string{"taskId": "c-1", "domain": "workflow", "status": "WAITING", "claimedBy": "carol"}},
		// The loser of a conflict is told where the task stands; a
		// caller who may not see the task is told nothing of it.
		{name: "another candidate's claim", op: "claim", token: "cid", body: `{}`, wantStatus: 409, wantCode: actions.CodeTaskClaimed,
			want: map[string]string{"task.taskId": "c-1", "task.status": "WAITING", "task.claimedBy": "carol", "task.version": "2",
				"task.approvals": "[]", "task.envelope": "", "requestId": "*"}},
		{name: "a caller of another tenant", op: "claim", token: "eve", body: `{}`, wantStatus: 404, wantCode: actions.CodeTaskNotFound,
			want: map[string]string{"task": ""}},
		{name: "a cancel by a non-admin", op: "cancel", token: "cid", body: `{"reason": "mine now"}`, wantStatus: 403, wantCode: actions.CodeForbidden,
			want: map[string]string{"task": ""}},
		{name: "a body that is no object", op: "complete", token: "carol", body: `[1]`, wantStatus: 400, wantCode: actions.CodeBadInput},
		{name: "a body that is no JSON", op: "complete", token: "carol", body: `{"outcome":`, wantStatus: 400, wantCode: actions.CodeBadInput},
		{name: "an outcome not declared", op: "complete", token: "carol", body: `{"outcome": "maybe"}`, wantStatus: 400, wantCode: actions.CodeBadInput},
		{name: "an unknown operation", op: "frobnicate", token: "carol", body: `{}`, wantStatus: 404},
		{name: "an operation read with GET", method: "GET", op: "claim", token: "carol", wantStatus: 405},
		{name: "the claimer completes, naming another task in the body", op: "complete", token: "carol",
			body: `{"outcome": "approve", "note": "fine", "data": {"ok": true}, "taskId": "c-404", "domain": "elsewhere"}`, wantStatus: 200,
			want: map[string]string{"taskId": "c-1", "status": statemanager.StatusInApproval, "outcome": "approve", "claimedBy": "carol"}},
		{name: "an executor's claim while in approval", op: "claim", token: "cid", body: `{}`, wantStatus: 409, wantCode: actions.CodeInApproval,
			want: map[string]string{"task.status": statemanager.StatusInApproval, "task.completedBy": "carol", "task.claimedBy": "carol"}},
		{name: "a comment", op: "comments", token: "carol", body: `{"text": "over to legal"}`, wantStatus: 200,
			want: map[string]string{"status": statemanager.StatusInApproval}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			method := st.method
			if method == "" {
				method = "POST"
			}
			var body []byte
			if st.body != "" {
				body = []byte(st.body)
			}
			r := do(t, method, task+"/"+st.op, st.token, body)
			if r.status != st.wantStatus {
				t.Fatalf("status %d, want %d (body %s)", r.status, st.wantStatus, r.raw)
			}
			if st.wantCode != "" && r.body["code"] != st.wantCode {
				t.Fatalf("code %v, want %s (body %s)", r.body["code"], st.wantCode, r.raw)
			}
			for path, want := range st.want {
				got := gjson.GetBytes(r.raw, path).String()
				if want == "*" && got != "" {
					continue
				}
				if got != want {
					t.Errorf("%s = %q, want %q (body %s)", path, got, want, r.raw)
				}
			}
		})
	}

	t.Run("history", func(t *testing.T) {
		r := do(t, "GET", task+"/history", "carol", nil)
		if r.status != 200 {
			t.Fatalf("status %d: %s", r.status, r.raw)
		}
		var got []string
		for _, e := range gjson.ParseBytes(r.raw).Array() {
			got = append(got, e.Get("type").String()+":"+e.Get("actor").String())
		}
		want := []string{
			// The started event's actor is who started the task's
			// saga: the caller that published the contract.
			statemanager.EventStarted + ":svc",
			statemanager.EventClaimed + ":carol",
			statemanager.EventCompleted + ":carol",
			statemanager.EventCommented + ":carol",
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("history %v, want %v (body %s)", got, want, r.raw)
		}
		if e := gjson.GetBytes(r.raw, "2"); e.Get("outcome").String() != "approve" || e.Get("note").String() != "fine" {
			t.Errorf("the completed event lacks outcome and note: %s", e.Raw)
		}
	})
	t.Run("history of another tenant's task", func(t *testing.T) {
		if r := do(t, "GET", task+"/history", "eve", nil); r.status != 404 {
			t.Fatalf("status %d, want 404: %s", r.status, r.raw)
		}
	})
	t.Run("history of an unknown task", func(t *testing.T) {
		if r := do(t, "GET", s.base+"/tasks/workflow/c-404/history", "carol", nil); r.status != 404 {
			t.Fatalf("status %d, want 404: %s", r.status, r.raw)
		}
	})
}

// TestTaskOpRecord holds the record a task operation produces to the
// contract: a direct action request keyed by its requestId, identity from
// authentication alone, and the task named by the URL whatever the body
// says.
func TestTaskOpRecord(t *testing.T) {
	brokers := newCluster(t, requestTopic, replyTopic, triggerTopic)
	resp := startResponder(t, brokers)
	s := serve(t, brokers, Config{Auth: auth.Config{Tokens: map[string]auth.Identity{
		"carol": {User: "carol", Roles: []string{"clerk"}, Tenant: "t1"},
	}}}, Deps{})

	r := do(t, "POST", s.base+"/tasks/workflow/c-1/assign", "carol",
		[]byte(`{"role": "legal", "taskId": "c-2", "domain": "other", "requestMeta": {"user": "root", "roles": ["admin"]}}`))
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.raw)
	}
	reqID := r.header.Get(HeaderRequestID)
	got, ok := resp.get(reqID)
	if !ok {
		t.Fatalf("the responder saw no request %q", reqID)
	}
	env := got.Env
	checks := []struct{ name, got, want string }{
		{"topic", got.Topic, requestTopic},
		{"key", got.Key, reqID},
		{"action", env.EventMeta.Action, "AssignTask"},
		{"domain", env.EventMeta.Domain, "workflow"},
		{"inputElement", env.EventMeta.InputElement, "parameters"},
		{"outputElement", env.EventMeta.OutputElement, "task"},
		{"user", env.RequestMeta.User, "carol"},
		{"roles", fmt.Sprint(env.RequestMeta.Roles), "[clerk]"},
		{"tenant", env.RequestMeta.Tenant, "t1"},
		{"replyTo", env.RequestMeta.ReplyTo, replyTopic},
		{"saga", env.SagaMeta.Saga, ""},
		{"taskId", env.Get("parameters.taskId").String(), "c-1"},
		{"parameters.domain", env.Get("parameters.domain").String(), "workflow"},
		{"role", env.Get("parameters.role").String(), "legal"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}

	refused := []struct {
		name, path string
		wantStatus int
	}{
		{"a domain no store can have", "/tasks/no%20such/c-1/claim", 400},
		{"a task id over 512 bytes", "/tasks/workflow/" + strings.Repeat("x", 513) + "/claim", 400},
		{"the history of a task id over 512 bytes", "/tasks/workflow/" + strings.Repeat("x", 513) + "/history", 400},
		{"history without state managers", "/tasks/workflow/c-1/history", 503},
		{"an unknown operation", "/tasks/workflow/c-1/frobnicate", 404},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			method := "POST"
			if strings.HasSuffix(tt.path, "/history") {
				method = "GET"
			}
			if r := do(t, method, s.base+tt.path, "carol", []byte(`{}`)); r.status != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", r.status, tt.wantStatus, r.raw)
			}
		})
	}
}
