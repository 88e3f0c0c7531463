package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
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

// TestTaskInbox covers the inbox's query over HTTP (SPEC §12 "Inbox"):
// claimedBy=me, candidate=me for claims and approvals, the orders, paging
// with X-Next-Cursor, GET /tasks/count, and the 400s and 403s of bad
// queries.
func TestTaskInbox(t *testing.T) {
	_, rdb := redistest.Start(t)
	ctx := context.Background()
	store, err := statemanager.NewRedisStore(rdb, "workflow", statemanager.RedisConfig{Shards: 4})
	if err != nil {
		t.Fatal(err)
	}
	start := func(task statemanager.Task) {
		t.Helper()
		task.Domain = "workflow"
		if _, _, err := store.Start(ctx, &task); err != nil {
			t.Fatal(err)
		}
	}
	apply := func(c statemanager.Change) {
		t.Helper()
		c.Key = fmt.Sprint(c.ID, c.Version)
		if _, _, err := store.Apply(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	claimed := func(id, who string) statemanager.Change {
		return statemanager.Change{ID: id, Version: 1, ClaimedBy: &who, Event: statemanager.Event{Type: statemanager.EventClaimed, At: 1, Actor: who}}
	}
	// Ten clerk tasks: priorities and deadlines disagree with the starts.
	for i := range 10 {
		start(statemanager.Task{ID: fmt.Sprintf("c-%d", i), Roles: []string{"clerk"}, StartedAt: int64(1000 + i),
			Priority: i % 3, Deadline: int64(9000 - 100*i)})
	}
	apply(claimed("c-0", "alice"))
	apply(claimed("c-1", "bob"))
	start(statemanager.Task{ID: "review", Roles: []string{"clerk"}, ApproverRoles: []string{"director"}, RequiredApprovals: 1, StartedAt: 500})
	inApproval := statemanager.StatusInApproval
	bob := "bob"
	apply(statemanager.Change{ID: "review", Version: 1, Status: &inApproval, CompletedBy: &bob, ClaimedBy: &bob,
		Event: statemanager.Event{Type: statemanager.EventCompleted, At: 2, Actor: "bob"}})

	brokers := newCluster(t, requestTopic, replyTopic)
	s := serve(t, brokers, Config{Auth: auth.Config{
		AdminRoles: []string{"ops"},
		Tokens: map[string]auth.Identity{
			"alice": {User: "alice", Roles: []string{"clerk"}},
			"bob":   {User: "bob", Roles: []string{"clerk"}},
			"dora":  {User: "dora", Roles: []string{"director"}},
			"boss":  {User: "boss", Roles: []string{"ops"}},
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
		name, token, path string
		wantStatus        int
		wantCode, wantIDs string
		wantCount         int64
	}{
		{name: "claimed by me", token: "alice", path: "/tasks?claimedBy=me", wantStatus: 200, wantIDs: "[c-0]"},
		{name: "claimed by me by name", token: "bob", path: "/tasks?claimedBy=bob", wantStatus: 200, wantIDs: "[c-1]"},
		{name: "another's claims are an admin's business", token: "alice", path: "/tasks?claimedBy=bob", wantStatus: 403, wantCode: "FORBIDDEN"},
		{name: "an admin reads anyone's claims", token: "boss", path: "/tasks?claimedBy=bob&status=IN_APPROVAL", wantStatus: 200, wantIDs: "[review]"},
		{name: "candidate: not claimed by another", token: "alice", path: "/tasks?candidate=me&limit=3", wantStatus: 200, wantIDs: "[c-0 c-2 c-3]"},
		{name: "an approver finds what to approve", token: "dora", path: "/tasks?status=IN_APPROVAL&candidate=me", wantStatus: 200, wantIDs: "[review]"},
		{name: "and sees it", token: "dora", path: "/tasks?status=IN_APPROVAL", wantStatus: 200, wantIDs: "[review]"},
		{name: "the executor approves nothing of its own", token: "bob", path: "/tasks?status=IN_APPROVAL&candidate=me", wantStatus: 200, wantIDs: "[]"},
		{name: "but sees it", token: "bob", path: "/tasks?status=IN_APPROVAL", wantStatus: 200, wantIDs: "[review]"},
		{name: "by priority", token: "alice", path: "/tasks?sort=priority&limit=4", wantStatus: 200, wantIDs: "[c-2 c-5 c-8 c-1]"},
		{name: "by deadline", token: "alice", path: "/tasks?sort=deadline&limit=3", wantStatus: 200, wantIDs: "[c-9 c-8 c-7]"},
		{name: "by start", token: "alice", path: "/tasks?sort=startedAt&limit=2", wantStatus: 200, wantIDs: "[c-0 c-1]"},
		{name: "count", token: "alice", path: "/tasks/count", wantStatus: 200, wantCount: 10},
		{name: "count of candidates", token: "alice", path: "/tasks/count?candidate=me", wantStatus: 200, wantCount: 9},
		{name: "count of approvals", token: "dora", path: "/tasks/count?status=IN_APPROVAL&candidate=me", wantStatus: 200, wantCount: 1},
		{name: "an admin's count", token: "boss", path: "/tasks/count?role=clerk", wantStatus: 200, wantCount: 10},
		{name: "unknown sort", token: "alice", path: "/tasks?sort=name", wantStatus: 400, wantCode: "BAD_INPUT"},
		{name: "sort of closed tasks", token: "alice", path: "/tasks?sort=deadline&status=COMPLETED", wantStatus: 400, wantCode: "BAD_INPUT"},
		{name: "garbage cursor", token: "alice", path: "/tasks?cursor=%21%21", wantStatus: 400, wantCode: "BAD_INPUT"},
		{name: "a cursor that is no cursor", token: "alice", path: "/tasks?cursor=eyJ2IjoxfQ", wantStatus: 400, wantCode: "BAD_INPUT"},
		{name: "candidate of someone else", token: "alice", path: "/tasks?candidate=bob", wantStatus: 400, wantCode: "BAD_INPUT"},
		{name: "bad limit on count", token: "alice", path: "/tasks/count?limit=-1", wantStatus: 400, wantCode: "BAD_INPUT"},
		{name: "count needs a token", path: "/tasks/count", wantStatus: 401, wantCode: "MISSING_TOKEN"},
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
			if strings.HasPrefix(tt.path, "/tasks/count") && tt.wantStatus == 200 {
				if got := gjson.GetBytes(r.raw, "count"); got.Int() != tt.wantCount || gjson.GetBytes(r.raw, "exact").Exists() {
					t.Errorf("body %s, want count %d", r.raw, tt.wantCount)
				}
			}
		})
	}

	t.Run("paging", func(t *testing.T) {
		for _, sort := range []string{"startedAt", "deadline", "priority"} {
			all := do(t, "GET", s.base+"/tasks?sort="+sort, "alice", nil)
			if all.header.Get("X-Next-Cursor") != "" {
				t.Errorf("%s: a single page has a next cursor", sort)
			}
			var walked []string
			cursor := ""
			for pages := 0; ; pages++ {
				if pages > 20 {
					t.Fatalf("%s: no last page", sort)
				}
				r := do(t, "GET", s.base+"/tasks?limit=3&sort="+sort+"&cursor="+url.QueryEscape(cursor), "alice", nil)
				if r.status != 200 {
					t.Fatalf("%s: %d %s", sort, r.status, r.raw)
				}
				for _, v := range gjson.ParseBytes(r.raw).Array() {
					walked = append(walked, v.Get("taskId").String())
				}
				if cursor = r.header.Get("X-Next-Cursor"); cursor == "" {
					break
				}
			}
			if got := fmt.Sprint(walked); got != ids(all.raw) {
				t.Errorf("%s: pages %s, one listing %s", sort, got, ids(all.raw))
			}
			if len(walked) != 10 {
				t.Errorf("%s: walked %d tasks, want 10", sort, len(walked))
			}
		}
		// A cursor belongs to its listing.
		first := do(t, "GET", s.base+"/tasks?limit=3", "alice", nil)
		next := first.header.Get("X-Next-Cursor")
		if r := do(t, "GET", s.base+"/tasks?limit=3&sort=priority&cursor="+next, "alice", nil); r.status != 400 {
			t.Errorf("a cursor of another order: %d %s", r.status, r.raw)
		}
		// And shows its bearer only what it may see.
		if r := do(t, "GET", s.base+"/tasks?limit=3&cursor="+next, "dora", nil); r.status != 200 || ids(r.raw) != "[]" {
			t.Errorf("alice's cursor in dora's hands: %d %s", r.status, r.raw)
		}
	})
}
