package gateway

import (
	"context"
	"encoding/base64"
	"fmt"
	"hash/crc32"
	"net/url"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/sagarunner/sagarunner/auth"
	"github.com/sagarunner/sagarunner/internal/redistest"
	"github.com/sagarunner/sagarunner/statemanager"
)

// TestInboxAttacks holds the inbox's query against a caller who probes:
// other tenants' and other users' tasks never show in a listing or a
// count, whatever filters, cursors or combinations it sends, and a cursor
// only ever says where to go on.
func TestInboxAttacks(t *testing.T) {
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
	// Tenant acme has many clerk tasks and one of bob's; the default
	// tenant has two of alice's role and one of bob's.
	for i := range 7 {
		start(statemanager.Task{ID: fmt.Sprintf("acme-%d", i), Tenant: "acme", Roles: []string{"clerk"}, StartedAt: int64(100 + i)})
	}
	start(statemanager.Task{ID: "acme-bob", Tenant: "acme", User: "bob", StartedAt: 90})
	start(statemanager.Task{ID: "d-0", Roles: []string{"clerk"}, StartedAt: 200})
	start(statemanager.Task{ID: "d-1", Roles: []string{"clerk"}, StartedAt: 201})
	start(statemanager.Task{ID: "d-bob", User: "bob", Roles: []string{"legal"}, StartedAt: 202})

	brokers := newCluster(t, requestTopic, replyTopic)
	s := serve(t, brokers, Config{Auth: auth.Config{
		AdminRoles: []string{"ops"},
		Tokens: map[string]auth.Identity{
			"alice": {User: "alice", Roles: []string{"clerk"}},
			"eve":   {User: "eve", Roles: []string{"clerk"}, Tenant: "acme"},
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
	forged := func(status, sort, tenant, key string) string {
		fp := crc32.ChecksumIEEE([]byte(status + "\x00" + sort + "\x00\x00\x00\x00" + tenant))
		return base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf(`{"v":1,"f":%d,"k":%q}`, fp, key)))
	}
	eveFirst := do(t, "GET", s.base+"/tasks?limit=2", "eve", nil)
	eveCursor := eveFirst.header.Get("X-Next-Cursor")
	if eveFirst.status != 200 || eveCursor == "" {
		t.Fatalf("eve's first page: %d %s (cursor %q)", eveFirst.status, eveFirst.raw, eveCursor)
	}

	tests := []struct {
		name, token, path string
		wantStatus        int
		wantIDs           string
		// wantCount is checked on /tasks/count paths.
		wantCount int64
	}{
		{name: "count sees only the caller's tenant", token: "alice", path: "/tasks/count", wantStatus: 200, wantCount: 2},
		{name: "count of a role of another tenant", token: "alice", path: "/tasks/count?role=clerk", wantStatus: 200, wantCount: 2},
		{name: "count of another user's inbox", token: "alice", path: "/tasks/count?user=bob", wantStatus: 200, wantCount: 0},
		{name: "count of a role not held", token: "alice", path: "/tasks/count?role=legal", wantStatus: 200, wantCount: 0},
		{name: "count of closed tasks of another", token: "alice", path: "/tasks/count?status=COMPLETED&user=bob", wantStatus: 200, wantCount: 0},
		{name: "an admin's count stays in its tenant", token: "boss", path: "/tasks/count", wantStatus: 200, wantCount: 3},
		{name: "candidate=me beside another user", token: "alice", path: "/tasks?candidate=me&user=bob", wantStatus: 200, wantIDs: "[]"},
		{name: "candidate=me beside a role not held", token: "alice", path: "/tasks?candidate=me&role=legal", wantStatus: 200, wantIDs: "[]"},
		{name: "claimedBy=me beside another user", token: "alice", path: "/tasks?claimedBy=me&user=bob", wantStatus: 200, wantIDs: "[]"},
		{name: "claimedBy of another, spelt differently", token: "alice", path: "/tasks?claimedBy=Alice", wantStatus: 403},
		{name: "another tenant's cursor", token: "alice", path: "/tasks?limit=2&cursor=" + url.QueryEscape(eveCursor), wantStatus: 400},
		{name: "a cursor replayed with a wider filter", token: "eve", path: "/tasks?limit=2&role=clerk&cursor=" + url.QueryEscape(eveCursor), wantStatus: 400},
		{name: "the same cursor goes on", token: "eve", path: "/tasks?limit=2&cursor=" + url.QueryEscape(eveCursor), wantStatus: 200, wantIDs: "[acme-2 acme-3]"},
		{name: "a forged cursor from the start shows only what is visible", token: "alice",
			path: "/tasks?cursor=" + forged("WAITING", "startedAt", "", "0000000000000000"+"x"), wantStatus: 200, wantIDs: "[d-0 d-1]"},
		{name: "a forged cursor naming another tenant's fingerprint", token: "alice",
			path: "/tasks?cursor=" + forged("WAITING", "startedAt", "acme", "0000000000000000"+"x"), wantStatus: 400},
		{name: "a forged cursor of the deadline order with bytes past the digits", token: "alice",
			path: "/tasks?sort=deadline&cursor=" + forged("WAITING", "deadline", "", "00000000000000000000000000000000ÿ[+-("), wantStatus: 200, wantIDs: "[d-0 d-1]"},
		{name: "a forged cursor whose key is no number", token: "alice",
			path: "/tasks?cursor=" + forged("WAITING", "startedAt", "", "-inf+inf+inf+inf+x"), wantStatus: 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, "GET", s.base+tt.path, tt.token, nil)
			if r.status != tt.wantStatus {
				t.Fatalf("status %d, want %d (body %s)", r.status, tt.wantStatus, r.raw)
			}
			if tt.wantStatus != 200 {
				return
			}
			if tt.wantIDs != "" {
				if got := ids(r.raw); got != tt.wantIDs {
					t.Errorf("ids %s, want %s", got, tt.wantIDs)
				}
				return
			}
			if got := gjson.GetBytes(r.raw, "count").Int(); got != tt.wantCount {
				t.Errorf("count %d, want %d (body %s)", got, tt.wantCount, r.raw)
			}
		})
	}
}
