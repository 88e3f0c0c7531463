package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/tidwall/gjson"

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
