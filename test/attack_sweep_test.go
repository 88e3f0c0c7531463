package test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/sagarunner/sagarunner/config"
	"github.com/sagarunner/sagarunner/internal/redistest"
	"github.com/sagarunner/sagarunner/statemanager"
)

// attackSagas are the sagas of the sweeping attacks, on a domain of their own
// so that a sweep that got through could only ever touch them: a task offered
// to managers, started over HTTP; a sweeping saga behind a path; and the same
// sweep triggered by a topic, which is what a Kafka scheduler tick looks like.
const attackSagas = `
saga: attack_task
version: 1
trigger: {path: /attack-task}
steps:
  - id: approve
    action: StartTask
    domain: attack
    inputElement: parameters
    outputElement: task
    parameters: {taskIdPath: id, taskRoles: manager, timeout: 3600000}
---
saga: attack_sweep_path
version: 1
trigger: {path: /attack-sweep}
steps:
  - id: sweep
    action: TimeoutBetween
    domain: attack
    inputElement: parameters
    outputElement: swept
    parameters: {fromTimePath: from, toTimePath: to}
---
saga: attack_sweep_topic
version: 1
trigger: {topic: attack-sweep-ticks}
steps:
  - id: sweep
    action: TimeoutBetween
    domain: attack
    inputElement: parameters
    parameters: {fromTimePath: from, toTimePath: to}
---
saga: attack_forward
version: 1
trigger: {path: /attack-forward}
steps:
  - id: forward
    action: Publish
    parameters: {topic: attack-relay, pattern: parameters}
---
saga: attack_relay_proceed
version: 1
trigger: {topic: attack-relay}
steps:
  - id: proceed
    action: ProceedTask
    domain: attack
    inputElement: parameters
    parameters: {taskIdPath: taskId}
`

// startAttackProcess runs one process with authentication on, on a Redis of
// its own (a sweep must not reach another test's tasks), serving
// attackSagas and publishing to the sweeping saga's trigger topic over HTTP,
// as `dev` does for every loaded saga's trigger topic.
func startAttackProcess(t *testing.T) (*process, statemanager.Store) {
	t.Helper()
	redisSrv := redistest.StartOwn(t)
	cluster := newCluster(t)
	brokers := cluster.ListenAddrs()
	dir := t.TempDir()
	for i, doc := range splitDocs(attackSagas) {
		if err := os.WriteFile(filepath.Join(dir, "attack_"+string(rune('a'+i))+".yaml"), []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg := newConfig(t, brokers, redisSrv.Addr, dir)
	cfg.Auth.AdminRoles = []string{"admin"}
	cfg.Auth.Tokens = []config.Token{
		{Token: tokAlice, User: "alice", Roles: []string{"manager"}, Tenant: "acme"},
		{Token: tokMallory, User: "mallory", Tenant: "acme"},
		{Token: tokEve, User: "eve", Roles: []string{"admin"}, Tenant: "globex"},
		{Token: tokRoot, User: "root", Roles: []string{"admin"}, Tenant: "acme"},
	}
	cfg.HTTP.PublishTopics = []string{"attack-sweep-ticks"}
	p := startProcess(t, "runner", cfg)
	return p, storeOf(t, cfg, "attack")
}

// splitDocs splits a multi-document YAML text into its documents.
func splitDocs(s string) []string {
	var out []string
	cur := ""
	for _, line := range splitLines(s) {
		if line == "---" {
			out = append(out, cur)
			cur = ""
			continue
		}
		cur += line + "\n"
	}
	return append(out, cur)
}

func splitLines(s string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// startAttackTask has alice start task id in tenant acme and checks it waits.
func startAttackTask(t *testing.T, p *process, store statemanager.Store, id string) {
	t.Helper()
	if st, b := do(t, "POST", p.base+"/attack-task", tokAlice, `{"id":"`+id+`"}`); st != http.StatusOK {
		t.Fatalf("alice starts %s: %d %s", id, st, b)
	}
	task, err := store.Get(context.Background(), id)
	if err != nil || task.Status != statemanager.StatusWaiting || task.Tenant != "acme" {
		t.Fatalf("task %s: %+v, %v; want WAITING in acme", id, task, err)
	}
}

// stillWaiting checks, for a while, that a sweep left task id waiting: the
// sweep is asynchronous when it comes through a topic.
func stillWaiting(t *testing.T, store statemanager.Store, id string, watch time.Duration) {
	t.Helper()
	deadline := time.Now().Add(watch)
	for {
		task, err := store.Get(context.Background(), id)
		if err != nil {
			t.Fatalf("task %s: %v", id, err)
		}
		if task.Status != statemanager.StatusWaiting {
			t.Fatalf("task %s is %s (closed by %q), want WAITING: the sweep got through", id, task.Status, task.ClosedBy)
		}
		if time.Now().After(deadline) {
			return
		}
		time.Sleep(poll)
	}
}

// TestAttackSweepByPublish: POST /topics/{topic} onto the trigger topic of a
// saga that sweeps is a sweep over HTTP, so it needs an admin role exactly
// like the saga's path does (SPEC §11). Before, only the path was guarded:
// any authenticated caller timed out every task of the domain by publishing
// {"to": <far future>} to the trigger topic, which `dev` makes publishable
// for every loaded saga.
func TestAttackSweepByPublish(t *testing.T) {
	p, store := startAttackProcess(t)
	startAttackTask(t, p, store, "sweep-pub-1")

	const far = `{"from":0,"to":10413792000000}`
	if st, b := do(t, "POST", p.base+"/attack-sweep", tokMallory, far); st != http.StatusForbidden {
		t.Errorf("the sweeping path as a non-admin: %d %s, want 403", st, b)
	}
	st, b := do(t, "POST", p.base+"/topics/attack-sweep-ticks", tokMallory, far)
	if st != http.StatusForbidden {
		t.Errorf("publishing to the sweeping saga's trigger topic as a non-admin: %d %s, want 403", st, b)
	}
	if st, b := do(t, "POST", p.base+"/topics/attack-sweep-ticks", tokAlice, far); st != http.StatusForbidden {
		t.Errorf("publishing to the sweeping saga's trigger topic as a candidate: %d %s, want 403", st, b)
	}
	stillWaiting(t, store, "sweep-pub-1", 2*time.Second)

	// The tenant's admin may sweep that way, as on the path.
	if st, b := do(t, "POST", p.base+"/topics/attack-sweep-ticks", tokRoot, `{"from":0,"to":1}`); st != http.StatusAccepted {
		t.Errorf("an admin publishes a sweep tick: %d %s, want 202", st, b)
	}
}

// TestAttackSweepOtherTenant: an admin of one tenant sweeping its domain
// must not time out another tenant's tasks: "everything is scoped to the
// caller's tenant" (SPEC §11).
func TestAttackSweepOtherTenant(t *testing.T) {
	p, store := startAttackProcess(t)
	startAttackTask(t, p, store, "sweep-tenant-1")
	st, b := do(t, "POST", p.base+"/attack-sweep", tokEve, `{"from":0,"to":10413792000000}`)
	if st != http.StatusOK {
		t.Fatalf("globex's admin sweeps: %d %s", st, b)
	}
	if n := gjson.GetBytes(b, "swept.count").Int(); n != 0 {
		t.Errorf("globex's admin swept %d tasks, want 0 (the only task is acme's): %s", n, b)
	}
	stillWaiting(t, store, "sweep-tenant-1", 0)
}
