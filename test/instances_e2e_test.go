package test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/sagarunner/sagarunner/config"
	"github.com/sagarunner/sagarunner/instances"
	"github.com/sagarunner/sagarunner/internal/redistest"
	"github.com/sagarunner/sagarunner/internal/testutil"
)

// startInstance starts instance_flow over HTTP and returns its id.
func startInstance(t *testing.T, base, token, order, outcome string) string {
	t.Helper()
	st, body := do(t, "POST", base+"/instance-flow?async=true", token, fmt.Sprintf(`{"orderId":%q,"outcome":%q}`, order, outcome))
	if st != http.StatusAccepted {
		t.Fatalf("start: %d %s", st, body)
	}
	var r struct{ RequestID string }
	if err := json.Unmarshal(body, &r); err != nil || r.RequestID == "" {
		t.Fatalf("start answer %s: %v", body, err)
	}
	return r.RequestID
}

// waitInstance polls GET /instances/{id} until it has the status.
func waitInstance(t *testing.T, base, token, id, status string) instances.Instance {
	t.Helper()
	var in instances.Instance
	testutil.Eventually(t, waitLong, poll, func() error {
		st, body := do(t, "GET", base+"/instances/"+id, token, "")
		if st != http.StatusOK {
			return fmt.Errorf("GET instance: %d %s", st, body)
		}
		in = instances.Instance{}
		if err := json.Unmarshal(body, &in); err != nil {
			return err
		}
		if in.Status != status {
			return fmt.Errorf("instance is %s, want %s: %s", in.Status, status, body)
		}
		return nil
	})
	return in
}

func timeline(t *testing.T, base, token, id string) []instances.Event {
	t.Helper()
	st, body := do(t, "GET", base+"/instances/"+id+"/timeline", token, "")
	if st != http.StatusOK {
		t.Fatalf("timeline: %d %s", st, body)
	}
	var evs []instances.Event
	if err := json.Unmarshal(body, &evs); err != nil {
		t.Fatal(err)
	}
	return evs
}

// describe is a timeline in short: type, and step or task event.
func describe(evs []instances.Event) string {
	var parts []string
	for _, e := range evs {
		if e.Task == "started" {
			// Whether a start publishes its task's started event is the
			// task lifecycle's business; the step names the task already.
			continue
		}
		s := e.Type
		switch {
		case e.Step != "" && e.Type == instances.EventStep:
			s += ":" + e.Step + ":" + e.Status
		case e.Task != "":
			s += ":" + e.Task
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

// TestInstancesEndings follows instances to each of their ends through a
// real runner and gateway: the record, the timeline, and the audit topic
// carrying the same events in the same order.
func TestInstancesEndings(t *testing.T) {
	c := newCluster(t)
	addr, _ := redistest.Start(t)
	cfg := newConfig(t, c.ListenAddrs(), addr, sagaDir(t))
	p := startProcess(t, "runner", cfg)
	audit := readTopics(t, c.ListenAddrs(), cfg.Topics.Audit)

	tests := []struct {
		name, outcome, status, want string
	}{
		{"completed", "ok", instances.StatusCompleted,
			"started step:approve:WAITING task:completed step:done:SUCCESS finished"},
		{"failed by a Fail step", "fail", instances.StatusFailed,
			"started step:approve:WAITING task:completed step:reject:FAIL failed"},
		{"failed by a dead-lettered continuation", "bad", instances.StatusFailed,
			"started step:approve:WAITING task:completed failed deadLettered"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			order := fmt.Sprintf("order-%d", i)
			id := startInstance(t, p.base, "", order, tc.outcome)
			in := waitInstance(t, p.base, "", id, instances.StatusWaiting)
			if in.BusinessKey != order || in.Saga != "instance_flow" || in.Version != 1 ||
				!slices.Equal(in.OpenTasks, []instances.TaskRef{{Domain: "workflow", ID: order}}) {
				t.Fatalf("waiting instance: %+v", in)
			}
			if st, body := do(t, "POST", p.base+"/ProceedTask", "", fmt.Sprintf(`{"taskId":%q,"data":{"ok":true}}`, order)); st != http.StatusOK {
				t.Fatalf("proceed: %d %s", st, body)
			}
			in = waitInstance(t, p.base, "", id, tc.status)
			if len(in.OpenTasks) != 0 || in.EndedAt == 0 {
				t.Fatalf("ended instance: %+v", in)
			}
			if tc.outcome == "fail" && in.LastResult.Code != "FAILED" || tc.outcome == "bad" && in.LastResult.Code != "PATTERN_ERROR" {
				t.Fatalf("failed instance's last result: %+v", in.LastResult)
			}
			var tl []instances.Event
			testutil.Eventually(t, waitLong, poll, func() error {
				tl = timeline(t, p.base, "", id)
				if got := describe(tl); got != tc.want {
					return fmt.Errorf("timeline %q, want %q", got, tc.want)
				}
				return nil
			})
			// The audit topic carries the same events, in order, keyed
			// by the instance.
			testutil.Eventually(t, waitLong, poll, func() error {
				var keys []string
				for _, rec := range audit.byKey(cfg.Topics.Audit, id) {
					var a struct {
						InstanceID string            `json:"instanceId"`
						Events     []instances.Event `json:"events"`
					}
					if err := json.Unmarshal(rec.Value, &a); err != nil || a.InstanceID != id {
						return fmt.Errorf("audit record %s: %v", rec.Value, err)
					}
					for _, e := range a.Events {
						keys = append(keys, e.Key)
					}
				}
				var want []string
				for _, e := range tl {
					want = append(want, e.Key)
				}
				if !slices.Equal(keys, want) {
					return fmt.Errorf("audit keys %v, timeline keys %v", keys, want)
				}
				return nil
			})
			// The listing finds it by its business key and its status.
			st, body := do(t, "GET", p.base+"/instances?businessKey="+order+"&status="+tc.status, "", "")
			if st != http.StatusOK || !strings.Contains(string(body), id) {
				t.Fatalf("listing: %d %s", st, body)
			}
		})
	}
	if st, body := do(t, "GET", p.base+"/instances?status=BOGUS", "", ""); st != http.StatusBadRequest {
		t.Fatalf("bad filter: %d %s", st, body)
	}
	if st, body := do(t, "GET", p.base+"/instances/nope", "", ""); st != http.StatusNotFound {
		t.Fatalf("unknown instance: %d %s", st, body)
	}
}

// TestInstanceCancel cancels a waiting instance over HTTP: its task closes
// CANCELLED, its onCancel step runs, it ends CANCELLED, and a second
// cancel is refused with its state.
func TestInstanceCancel(t *testing.T) {
	c := newCluster(t)
	addr, _ := redistest.Start(t)
	cfg := newConfig(t, c.ListenAddrs(), addr, sagaDir(t))
	p := startProcess(t, "runner", cfg)

	id := startInstance(t, p.base, "", "order-c", "ok")
	waitInstance(t, p.base, "", id, instances.StatusWaiting)
	if st, body := do(t, "POST", p.base+"/instances/"+id+"/cancel", "", `{"reason":"customer withdrew"}`); st != http.StatusOK {
		t.Fatalf("cancel: %d %s", st, body)
	}
	in := waitInstance(t, p.base, "", id, instances.StatusCancelled)
	if len(in.OpenTasks) != 0 || in.LastResult.Code != "INSTANCE_CANCELLED" || in.LastResult.Message != "customer withdrew" {
		t.Fatalf("cancelled instance: %+v", in)
	}
	waitTask(t, p.base, "", "workflow", "order-c", "CANCELLED")
	want := "started step:approve:WAITING task:cancelled step:cleanup:SUCCESS cancelled"
	if got := describe(timeline(t, p.base, "", id)); got != want {
		t.Fatalf("timeline %q, want %q", got, want)
	}
	st, body := do(t, "POST", p.base+"/instances/"+id+"/cancel", "", `{}`)
	if st != http.StatusConflict || !strings.Contains(string(body), `"status":"CANCELLED"`) {
		t.Fatalf("second cancel: %d %s", st, body)
	}
	if st, body := do(t, "POST", p.base+"/instances/"+id+"/cancel", "", `{"reason":7}`); st != http.StatusConflict && st != http.StatusBadRequest {
		t.Fatalf("bad reason: %d %s", st, body)
	}
}

// TestInstanceVisibility holds GET /instances to SPEC §13: admins of the
// instance's tenant, its starter and the people who acted on its tasks see
// it; anyone else gets 404 as for an unknown one, and lists nothing.
func TestInstanceVisibility(t *testing.T) {
	c := newCluster(t)
	addr, _ := redistest.Start(t)
	cfg := newConfig(t, c.ListenAddrs(), addr, sagaDir(t))
	cfg.Auth.AdminRoles = []string{"admin"}
	cfg.Auth.Tokens = []config.Token{
		{Token: "alice", User: "alice", Roles: []string{"clerk"}, Tenant: "acme"},
		{Token: "bob", User: "bob", Roles: []string{"clerk"}, Tenant: "acme"},
		{Token: "carol", User: "carol", Roles: []string{"clerk"}, Tenant: "acme"},
		{Token: "boss", User: "boss", Roles: []string{"admin"}, Tenant: "acme"},
		{Token: "eve", User: "eve", Roles: []string{"admin"}, Tenant: "globex"},
	}
	p := startProcess(t, "runner", cfg)

	id := startInstance(t, p.base, "alice", "order-v", "ok")
	waitInstance(t, p.base, "alice", id, instances.StatusWaiting)
	if st, body := do(t, "POST", p.base+"/tasks/workflow/order-v/claim", "bob", `{}`); st != http.StatusOK {
		t.Fatalf("bob claims: %d %s", st, body)
	}
	// bob acted on its task: he sees it once the claim is recorded.
	testutil.Eventually(t, waitLong, poll, func() error {
		if st, body := do(t, "GET", p.base+"/instances/"+id, "bob", ""); st != http.StatusOK {
			return fmt.Errorf("bob: %d %s", st, body)
		}
		return nil
	})
	for _, tc := range []struct {
		token string
		see   bool
	}{{"alice", true}, {"bob", true}, {"boss", true}, {"carol", false}, {"eve", false}} {
		t.Run(tc.token, func(t *testing.T) {
			st, body := do(t, "GET", p.base+"/instances/"+id+"/timeline", tc.token, "")
			if tc.see != (st == http.StatusOK) || !tc.see && st != http.StatusNotFound {
				t.Fatalf("timeline: %d %s", st, body)
			}
			st, body = do(t, "GET", p.base+"/instances", tc.token, "")
			if st != http.StatusOK || tc.see != strings.Contains(string(body), id) {
				t.Fatalf("listing: %d %s", st, body)
			}
		})
	}
	// A participant may see it but not cancel it; its starter may.
	if st, body := do(t, "POST", p.base+"/instances/"+id+"/cancel", "bob", `{}`); st != http.StatusForbidden {
		t.Fatalf("bob cancels: %d %s", st, body)
	}
	if st, body := do(t, "POST", p.base+"/instances/"+id+"/cancel", "carol", `{}`); st != http.StatusNotFound {
		t.Fatalf("carol cancels: %d %s", st, body)
	}
	if st, body := do(t, "POST", p.base+"/instances/"+id+"/cancel", "alice", `{"reason":"no longer needed"}`); st != http.StatusOK {
		t.Fatalf("alice cancels: %d %s", st, body)
	}
	waitInstance(t, p.base, "alice", id, instances.StatusCancelled)
}

// TestInstanceEscalation: a task times out, the saga escalates to a second
// task, which completes; the timeline shows each step.
func TestInstanceEscalation(t *testing.T) {
	c := newCluster(t)
	addr, _ := redistest.Start(t)
	cfg := newConfig(t, c.ListenAddrs(), addr, sagaDir(t))
	p := startProcess(t, "runner", cfg)

	st, body := do(t, "POST", p.base+"/instance-escalation?async=true", "", `{"orderId":"esc-1","escalationId":"esc-1-director"}`)
	if st != http.StatusAccepted {
		t.Fatalf("start: %d %s", st, body)
	}
	var r struct{ RequestID string }
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatal(err)
	}
	waitTask(t, p.base, "", "workflow", "esc-1-director", "WAITING")
	testutil.Eventually(t, waitLong, poll, func() error {
		in := waitInstance(t, p.base, "", r.RequestID, instances.StatusWaiting)
		if !slices.Equal(in.OpenTasks, []instances.TaskRef{{Domain: "workflow", ID: "esc-1-director"}}) {
			return fmt.Errorf("escalated instance: %+v", in)
		}
		return nil
	})
	if st, body := do(t, "POST", p.base+"/ProceedTask", "", `{"taskId":"esc-1-director","data":{}}`); st != http.StatusOK {
		t.Fatalf("proceed: %d %s", st, body)
	}
	waitInstance(t, p.base, "", r.RequestID, instances.StatusCompleted)
	want := "started step:approve:WAITING task:timedout step:escalate:WAITING task:completed step:done:SUCCESS finished"
	testutil.Eventually(t, waitLong, poll, func() error {
		if got := describe(timeline(t, p.base, "", r.RequestID)); got != want {
			return fmt.Errorf("timeline %q, want %q", got, want)
		}
		return nil
	})
}
