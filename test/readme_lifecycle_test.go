package test

import (
	"bytes"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sagarunner/sagarunner/config"
	"github.com/sagarunner/sagarunner/internal/redistest"
)

// readmeLifecycleCommands are the README's "Claim, complete, four eyes",
// line for line; the test below runs each one's equivalent against a
// process configured with examples/dev-users.yaml, as the README starts dev.
var readmeLifecycleCommands = []string{
	"go run ./cmd/sagarunner dev --config examples/dev-users.yaml",
	`echo '{"contractId":"c-1","title":"Supply"}' | kcat -P -b localhost:9092 -t contracts -k k-1`,
	`curl -s -H 'Authorization: Bearer alice-token' 'localhost:8080/tasks?candidate=me'`,
	`curl -s -X POST -H 'Authorization: Bearer alice-token' localhost:8080/tasks/workflow/c-1/claim -d '{}'`,
	`curl -s -X POST -H 'Authorization: Bearer alice-token' localhost:8080/tasks/workflow/c-1/complete -d '{"outcome":"approve","data":{"terms":"standard"},"note":"looks fine"}'`,
	`curl -s -H 'Authorization: Bearer lee-token' 'localhost:8080/tasks?status=IN_APPROVAL&candidate=me'`,
	`curl -s -X POST -H 'Authorization: Bearer lee-token' localhost:8080/tasks/workflow/c-1/approve -d '{}'`,
	`curl -s -X POST -H 'Authorization: Bearer liz-token' localhost:8080/tasks/workflow/c-1/approve -d '{"note":"agreed"}'`,
	`kcat -C -b localhost:9092 -t contracts-approved -e -q`,
	`curl -s -H 'Authorization: Bearer alice-token' localhost:8080/tasks/workflow/c-1/history`,
}

func TestReadmeLifecycleExample(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, cmd := range readmeLifecycleCommands {
		if !bytes.Contains(readme, []byte(cmd)) {
			t.Errorf("README.md no longer holds the command %s; update this test with it", cmd)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	users, err := config.Load("../examples/dev-users.yaml", nil, nil)
	if err != nil {
		t.Fatalf("examples/dev-users.yaml: %v", err)
	}
	redisAddr, _ := redistest.Start(t)
	brokers := newCluster(t).ListenAddrs()
	cfg := newConfig(t, brokers, redisAddr, sagaDir(t))
	cfg.Auth = users.Auth
	p := startProcess(t, "dev", cfg)
	out := readTopics(t, brokers, "contracts-approved")

	call := func(method, path, token, body string, want int) gjson.Result {
		t.Helper()
		st, b := do(t, method, p.base+path, token, body)
		if st != want {
			t.Fatalf("%s %s as %s: %d %s, want %d", method, path, token, st, b, want)
		}
		return gjson.ParseBytes(b)
	}
	produce(t, newClient(t, brokers), &kgo.Record{Topic: "contracts", Key: []byte("k-1"), Value: []byte(`{"contractId":"c-1","title":"Supply"}`)})
	waitTask(t, p.base, "root-token", "workflow", "c-1", "WAITING")
	if got := call("GET", "/tasks?candidate=me", "alice-token", "", http.StatusOK); got.Get("#").Int() != 1 || got.Get("0.taskId").String() != "c-1" {
		t.Fatalf("alice's claimable tasks: %s", got.Raw)
	}
	if got := call("GET", "/tasks?candidate=me", "lee-token", "", http.StatusOK); got.Get("#").Int() != 0 {
		t.Fatalf("lee may claim: %s", got.Raw)
	}
	call("POST", "/tasks/workflow/c-1/claim", "alice-token", `{}`, http.StatusOK)
	call("POST", "/tasks/workflow/c-1/claim", "lee-token", `{}`, http.StatusForbidden)
	call("POST", "/tasks/workflow/c-1/complete", "alice-token", `{"outcome":"maybe"}`, http.StatusBadRequest)
	if got := call("POST", "/tasks/workflow/c-1/complete", "alice-token", `{"outcome":"approve","data":{"terms":"standard"},"note":"looks fine"}`, http.StatusOK); got.Get("status").String() != "IN_APPROVAL" || got.Get("claimedBy").String() != "alice" {
		t.Fatalf("completed: %s", got.Raw)
	}
	if got := call("GET", "/tasks?status=IN_APPROVAL&candidate=me", "lee-token", "", http.StatusOK); got.Get("#").Int() != 1 {
		t.Fatalf("lee's approvals: %s", got.Raw)
	}
	call("POST", "/tasks/workflow/c-1/approve", "alice-token", `{}`, http.StatusForbidden)
	call("POST", "/tasks/workflow/c-1/approve", "lee-token", `{}`, http.StatusOK)
	call("POST", "/tasks/workflow/c-1/approve", "lee-token", `{}`, http.StatusConflict)
	if got := call("POST", "/tasks/workflow/c-1/approve", "liz-token", `{"note":"agreed"}`, http.StatusOK); got.Get("status").String() != "COMPLETED" {
		t.Fatalf("after the second approval: %s", got.Raw)
	}
	if rec := out.waitFor(t, "contracts-approved", "k-1", nil); !jsonEqual(rec.Value, []byte(`{"id":"c-1"}`)) {
		t.Errorf("contracts-approved: %s", rec.Value)
	}
	var types []string
	for _, e := range call("GET", "/tasks/workflow/c-1/history", "alice-token", "", http.StatusOK).Array() {
		types = append(types, e.Get("type").String()+":"+e.Get("actor").String())
	}
	if got, want := strings.Join(types, " "), "started: claimed:alice completed:alice approved:lee approved:liz"; got != want {
		t.Errorf("history %s, want %s", got, want)
	}
}
