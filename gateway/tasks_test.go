package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/sagarunner/sagarunner/auth"
	"github.com/sagarunner/sagarunner/internal/redistest"
	"github.com/sagarunner/sagarunner/statemanager"
)

// domains resolves a fixed set of real Redis stores.
type domains map[string]statemanager.Store

func (d domains) Store(domain string) (statemanager.Store, error) {
	s, ok := d[domain]
	if !ok {
		return nil, fmt.Errorf("no state manager %q", domain)
	}
	return s, nil
}

func TestTasks(t *testing.T) {
	_, rdb := redistest.Start(t)
	ctx := context.Background()
	stores := domains{}
	for _, d := range []string{"workflow", "hr"} {
		s, err := statemanager.NewRedisStore(rdb, d, statemanager.RedisConfig{Shards: 4})
		if err != nil {
			t.Fatal(err)
		}
		stores[d] = s
	}
	start := func(domain string, task statemanager.Task) {
		t.Helper()
		task.Domain = domain
		task.Envelope = json.RawMessage(`{"requestMeta": {"requestId": "r-` + task.ID + `"}}`)
		task.Data = json.RawMessage(`{"productId": "` + task.ID + `"}`)
		if _, _, err := stores[domain].Start(ctx, &task); err != nil {
			t.Fatal(err)
		}
	}
	start("workflow", statemanager.Task{ID: "p-1", Name: "Approve", Roles: []string{"manager"}, StartedAt: 1000, Deadline: 5000})
	start("workflow", statemanager.Task{ID: "p-2", Name: "Approve", User: "bob", StartedAt: 2000})
	start("workflow", statemanager.Task{ID: "p-3", Name: "Approve", User: "bob", StartedAt: 3000})
	start("hr", statemanager.Task{ID: "h-1", Name: "Onboard", StartedAt: 1000})
	if _, _, err := stores["workflow"].Close(ctx, statemanager.Close{ID: "p-3", Status: statemanager.StatusCompleted, At: 4000, By: "bob", Key: "k"}); err != nil {
		t.Fatal(err)
	}

	brokers := newCluster(t, requestTopic, replyTopic)
	s := serve(t, brokers, Config{}, Deps{Stores: stores})

	ids := func(raw []byte) string {
		var out []string
		for _, v := range gjson.ParseBytes(raw).Array() {
			out = append(out, v.Get("taskId").String())
		}
		return fmt.Sprint(out)
	}
	tests := []struct {
		name       string
		path       string
		wantStatus int
		wantCode   string
		wantIDs    string
		check      func(t *testing.T, raw []byte)
	}{
		{name: "inbox of the default domain, without envelopes", path: "/tasks", wantStatus: 200, wantIDs: "[p-1 p-2]",
			check: func(t *testing.T, raw []byte) {
				first := gjson.ParseBytes(raw).Array()[0]
				if first.Get("envelope").Exists() {
					t.Errorf("envelope listed without full=true: %s", first.Raw)
				}
				if first.Get("data.productId").String() != "p-1" || first.Get("deadline").Int() != 5000 || first.Get("status").String() != "WAITING" {
					t.Errorf("task fields: %s", first.Raw)
				}
			}},
		{name: "full=true includes envelopes", path: "/tasks?full=true", wantStatus: 200, wantIDs: "[p-1 p-2]",
			check: func(t *testing.T, raw []byte) {
				if got := gjson.GetBytes(raw, "0.envelope.requestMeta.requestId").String(); got != "r-p-1" {
					t.Errorf("envelope requestId %q", got)
				}
			}},
		{name: "by user", path: "/tasks?user=bob", wantStatus: 200, wantIDs: "[p-2]"},
		{name: "by role", path: "/tasks?role=manager", wantStatus: 200, wantIDs: "[p-1]"},
		{name: "closed ones", path: "/tasks?status=completed", wantStatus: 200, wantIDs: "[p-3]"},
		{name: "limit", path: "/tasks?limit=1", wantStatus: 200, wantIDs: "[p-1]"},
		{name: "another domain", path: "/tasks?domain=hr", wantStatus: 200, wantIDs: "[h-1]"},
		{name: "empty list is an array", path: "/tasks?user=nobody", wantStatus: 200, wantIDs: "[]",
			check: func(t *testing.T, raw []byte) {
				if string(raw) != "[]\n" {
					t.Errorf("body %q", raw)
				}
			}},
		{name: "bad status", path: "/tasks?status=DONE", wantStatus: 400, wantCode: "BAD_INPUT"},
		{name: "bad limit", path: "/tasks?limit=0", wantStatus: 400, wantCode: "BAD_INPUT"},
		{name: "bad domain", path: "/tasks?domain=a%7Bb", wantStatus: 400, wantCode: "BAD_INPUT"},
		{name: "unknown domain", path: "/tasks?domain=sales", wantStatus: 404, wantCode: "UNKNOWN_DOMAIN"},
		{name: "one task", path: "/tasks/workflow/p-2", wantStatus: 200,
			check: func(t *testing.T, raw []byte) {
				if gjson.GetBytes(raw, "taskId").String() != "p-2" || gjson.GetBytes(raw, "taskUser").String() != "bob" || gjson.GetBytes(raw, "envelope").Exists() {
					t.Errorf("body %s", raw)
				}
			}},
		{name: "one closed task shows its decision", path: "/tasks/workflow/p-3", wantStatus: 200,
			check: func(t *testing.T, raw []byte) {
				if gjson.GetBytes(raw, "status").String() != "COMPLETED" || gjson.GetBytes(raw, "closedBy").String() != "bob" {
					t.Errorf("body %s", raw)
				}
			}},
		{name: "missing task", path: "/tasks/workflow/nope", wantStatus: 404, wantCode: "TASK_NOT_FOUND"},
		{name: "task of another domain is not here", path: "/tasks/hr/p-1", wantStatus: 404, wantCode: "TASK_NOT_FOUND"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, "GET", s.base+tt.path, "", nil)
			if r.status != tt.wantStatus {
				t.Fatalf("status %d, want %d (body %s)", r.status, tt.wantStatus, r.raw)
			}
			if tt.wantCode != "" && r.body["code"] != tt.wantCode {
				t.Errorf("code %v, want %s", r.body["code"], tt.wantCode)
			}
			if tt.wantIDs != "" {
				if got := ids(r.raw); got != tt.wantIDs {
					t.Errorf("ids %s, want %s", got, tt.wantIDs)
				}
			}
			if tt.check != nil {
				tt.check(t, r.raw)
			}
		})
	}

	t.Run("no state managers", func(t *testing.T) {
		bare := serve(t, brokers, Config{}, Deps{})
		if r := do(t, "GET", bare.base+"/tasks", "", nil); r.status != 503 || r.body["code"] != "NO_STATE_MANAGER" {
			t.Fatalf("%d %s", r.status, r.raw)
		}
	})
}

// TestTasksWithAuth shows each caller only the tasks of its tenant it may
// act on or has acted on, answers 404 for the others as for unknown ones,
// keeps suspended envelopes for admins and narrows a non-admin's filters to
// itself.
func TestTasksWithAuth(t *testing.T) {
	_, rdb := redistest.Start(t)
	ctx := context.Background()
	store, err := statemanager.NewRedisStore(rdb, "workflow", statemanager.RedisConfig{Shards: 4})
	if err != nil {
		t.Fatal(err)
	}
	start := func(task statemanager.Task) {
		t.Helper()
		task.Domain = "workflow"
		task.Envelope = json.RawMessage(`{"requestMeta": {"requestId": "r-` + task.ID + `"}}`)
		if _, _, err := store.Start(ctx, &task); err != nil {
			t.Fatal(err)
		}
	}
	start(statemanager.Task{ID: "for-managers", Roles: []string{"manager"}, StartedAt: 1000})
	start(statemanager.Task{ID: "for-bob", User: "bob", StartedAt: 2000})
	start(statemanager.Task{ID: "for-alice", User: "alice", StartedAt: 3000})
	start(statemanager.Task{ID: "closed-by-alice", User: "carol", StartedAt: 4000})
	start(statemanager.Task{ID: "acme-for-alice", User: "alice", Tenant: "acme", StartedAt: 5000})
	if _, _, err := store.Close(ctx, statemanager.Close{ID: "closed-by-alice", Status: statemanager.StatusCompleted, At: 4500, By: "alice", Key: "k"}); err != nil {
		t.Fatal(err)
	}

	brokers := newCluster(t, requestTopic, replyTopic)
	s := serve(t, brokers, Config{Auth: auth.Config{
		AdminRoles: []string{"ops"},
		Tokens: map[string]auth.Identity{
			"alice":      {User: "alice", Roles: []string{"clerk"}},
			"boss":       {User: "boss", Roles: []string{"ops"}},
			"acme-alice": {User: "alice", Tenant: "acme"},
			"acme-boss":  {User: "boss", Roles: []string{"ops"}, Tenant: "acme"},
		},
	}}, Deps{Stores: domains{"workflow": store}})

	ids := func(raw []byte) string {
		var out []string
		for _, v := range gjson.ParseBytes(raw).Array() {
			out = append(out, v.Get("taskId").String())
		}
		return fmt.Sprint(out)
	}
	tests := []struct {
		name       string
		token      string
		path       string
		wantStatus int
		wantCode   string
		wantIDs    string
		check      func(t *testing.T, raw []byte)
	}{
		{name: "no token", path: "/tasks", wantStatus: 401, wantCode: "MISSING_TOKEN"},
		{name: "an inbox holds only what the caller may act on", token: "alice", path: "/tasks", wantStatus: 200, wantIDs: "[for-alice]"},
		{name: "a non-admin cannot read another user's inbox", token: "alice", path: "/tasks?user=bob", wantStatus: 200, wantIDs: "[for-alice]"},
		{name: "nor a role's it does not hold", token: "alice", path: "/tasks?role=manager", wantStatus: 200, wantIDs: "[]"},
		{name: "what the caller closed stays visible", token: "alice", path: "/tasks?status=completed", wantStatus: 200, wantIDs: "[closed-by-alice]"},
		{name: "an admin sees its whole tenant", token: "boss", path: "/tasks", wantStatus: 200, wantIDs: "[for-managers for-bob for-alice]"},
		{name: "an admin may read another user's inbox", token: "boss", path: "/tasks?user=bob", wantStatus: 200, wantIDs: "[for-bob]"},
		{name: "another tenant's inbox", token: "acme-alice", path: "/tasks", wantStatus: 200, wantIDs: "[acme-for-alice]"},
		{name: "another tenant's admin", token: "acme-boss", path: "/tasks", wantStatus: 200, wantIDs: "[acme-for-alice]"},
		{name: "full=true is for admins", token: "alice", path: "/tasks?full=true", wantStatus: 403, wantCode: "FORBIDDEN"},
		{name: "full=true on one task is for admins", token: "alice", path: "/tasks/workflow/for-alice?full=true", wantStatus: 403, wantCode: "FORBIDDEN"},
		{name: "an admin reads envelopes", token: "boss", path: "/tasks/workflow/for-bob?full=true", wantStatus: 200,
			check: func(t *testing.T, raw []byte) {
				if gjson.GetBytes(raw, "envelope.requestMeta.requestId").String() != "r-for-bob" {
					t.Errorf("body %s", raw)
				}
			}},
		{name: "one's own task", token: "alice", path: "/tasks/workflow/for-alice", wantStatus: 200},
		{name: "a task one closed", token: "alice", path: "/tasks/workflow/closed-by-alice", wantStatus: 200},
		{name: "another user's task is not found", token: "alice", path: "/tasks/workflow/for-bob", wantStatus: 404, wantCode: "TASK_NOT_FOUND"},
		{name: "another tenant's task is not found", token: "alice", path: "/tasks/workflow/acme-for-alice", wantStatus: 404, wantCode: "TASK_NOT_FOUND"},
		{name: "another tenant's admin does not find it either", token: "acme-boss", path: "/tasks/workflow/for-bob", wantStatus: 404, wantCode: "TASK_NOT_FOUND"},
		{name: "a bad domain in the path", token: "alice", path: "/tasks/a%7Bb%7D/x", wantStatus: 400, wantCode: "BAD_INPUT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, "GET", s.base+tt.path, tt.token, nil)
			if r.status != tt.wantStatus {
				t.Fatalf("status %d, want %d (body %s)", r.status, tt.wantStatus, r.raw)
			}
			if tt.wantCode != "" && r.body["code"] != tt.wantCode {
				t.Errorf("code %v, want %s", r.body["code"], tt.wantCode)
			}
			if tt.wantIDs != "" {
				if got := ids(r.raw); got != tt.wantIDs {
					t.Errorf("ids %s, want %s", got, tt.wantIDs)
				}
			}
			if tt.wantStatus == 200 && tt.check == nil && gjson.GetBytes(r.raw, "0.envelope").Exists() {
				t.Errorf("envelope shown without full=true: %s", r.raw)
			}
			if tt.check != nil {
				tt.check(t, r.raw)
			}
		})
	}
}
