package actions_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/sagarunner/sagarunner/actions"
	"github.com/sagarunner/sagarunner/saga/envelope"
	"github.com/sagarunner/sagarunner/statemanager"
)

// closedTask is a task as the store returns it after a proceed.
func closedTask() *statemanager.Task {
	return &statemanager.Task{
		ID: "product-1", Domain: "workflow",
		Name: "Job Post Approval", Spec: "job_post_approval", Action: "Approve",
		Roles: []string{"admin", "manager"},
		Saga:  "job_post_approval", StepID: "approve", RequestID: "r-42",
		StartedAt: 1763800000000, Deadline: 1763800060000,
		Data: json.RawMessage(`{"data":{"productId":"product-1"}}`),
		Envelope: json.RawMessage(`{"requestMeta":{"requestId":"r-42","replyTo":"responses"},` +
			`"sagaMeta":{"saga":"job_post_approval","version":1,"stepId":"approve","runnerPartition":3},` +
			`"eventMeta":{},"payload":{"parameters":{"productId":"product-1"}},"result":{"status":"SUCCESS"}}`),
		Status:   statemanager.StatusCompleted,
		ClosedAt: 1763800012345, ClosedBy: "alice",
		CloseData: json.RawMessage(`{"decision":"approved"}`), CloseKey: "p-1", EnrichPath: "decision",
	}
}

// The notification is the one of SPEC §6, field for field and in order.
func TestTaskEffectsNotificationShape(t *testing.T) {
	recs, err := actions.TaskEffects(closedTask(), topics)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 {
		t.Fatalf("got %d records, want continuation and notification", len(recs))
	}
	n := recs[1]
	want := compact(t, `{"taskId": "product-1", "domain": "workflow", "status": "COMPLETED",
	  "saga": "job_post_approval", "stepId": "approve", "requestId": "r-42",
	  "taskName": "Job Post Approval", "taskSpec": "job_post_approval", "taskAction": "Approve",
	  "taskRoles": ["admin", "manager"], "taskUser": "", "startedAt": 1763800000000,
	  "deadline": 1763800060000, "closedAt": 1763800012345, "closedBy": "alice",
	  "data": {"decision": "approved"}}`)
	if n.Topic != topics.Notifications || string(n.Key) != "product-1" || string(n.Value) != want {
		t.Fatalf("notification %s/%s %s\nwant %s/product-1 %s", n.Topic, n.Key, n.Value, topics.Notifications, want)
	}
}

func TestTaskEffects(t *testing.T) {
	tests := []struct {
		name   string
		change func(*statemanager.Task)
		// wantStatus is the continuation's status; "" means no continuation.
		wantStatus  string
		wantPayload string
		wantNotify  map[string]string // notification fields as raw JSON
	}{
		{"completed continues as SUCCESS, enriched", func(*statemanager.Task) {},
			envelope.StatusSuccess, `{"parameters":{"productId":"product-1"},"decision":{"decision":"approved"}}`,
			map[string]string{"status": `"COMPLETED"`, "data": `{"decision":"approved"}`}},
		{"timeout continues as TIMEOUT", func(tk *statemanager.Task) {
			tk.Status, tk.ClosedBy, tk.CloseData, tk.CloseKey, tk.EnrichPath = statemanager.StatusTimeout, "", nil, actions.TimeoutKey, ""
		}, envelope.StatusTimeout, `{"parameters":{"productId":"product-1"}}`,
			map[string]string{"status": `"TIMEOUT"`, "data": `null`, "closedBy": `""`}},
		{"cancelled continues as CANCELLED", func(tk *statemanager.Task) { tk.Status = statemanager.StatusCancelled },
			envelope.StatusCancelled, `{"parameters":{"productId":"product-1"},"decision":{"decision":"approved"}}`,
			map[string]string{"status": `"CANCELLED"`}},
		{"no enrich path writes nothing", func(tk *statemanager.Task) { tk.EnrichPath = "" },
			envelope.StatusSuccess, `{"parameters":{"productId":"product-1"}}`, nil},
		{"nested enrich path", func(tk *statemanager.Task) { tk.EnrichPath = "parameters.decision" },
			envelope.StatusSuccess, `{"parameters":{"productId":"product-1","decision":{"decision":"approved"}}}`, nil},
		{"outside a saga only notifies", func(tk *statemanager.Task) { tk.Saga = "" },
			"", "", map[string]string{"saga": `""`}},
		{"no roles is an empty array", func(tk *statemanager.Task) { tk.Roles, tk.User = nil, "bob" },
			envelope.StatusSuccess, "", map[string]string{"taskRoles": `[]`, "taskUser": `"bob"`}},
		{"a tenant is named", func(tk *statemanager.Task) { tk.Tenant = "acme" },
			envelope.StatusSuccess, "", map[string]string{"tenant": `"acme"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			task := closedTask()
			tc.change(task)
			recs, err := actions.TaskEffects(task, topics)
			if err != nil {
				t.Fatal(err)
			}
			again, err := actions.TaskEffects(task, topics)
			if err != nil {
				t.Fatal(err)
			}
			if len(again) != len(recs) {
				t.Fatal("effects differ between two calls")
			}
			for i := range recs {
				if recs[i].Topic != again[i].Topic || !bytes.Equal(recs[i].Key, again[i].Key) || !bytes.Equal(recs[i].Value, again[i].Value) {
					t.Fatalf("record %d differs between two calls:\n%s\n%s", i, recs[i].Value, again[i].Value)
				}
			}
			wantN := 1
			if tc.wantStatus != "" {
				wantN = 2
			}
			if len(recs) != wantN {
				t.Fatalf("got %d records, want %d", len(recs), wantN)
			}
			if tc.wantStatus != "" {
				c := recs[0]
				if c.Topic != topics.Continuations || string(c.Key) != "r-42" {
					t.Fatalf("continuation %s/%s, want %s/r-42", c.Topic, c.Key, topics.Continuations)
				}
				env, err := envelope.Decode(c.Value, nil)
				if err != nil {
					t.Fatal(err)
				}
				if env.Result != (envelope.Result{Status: tc.wantStatus}) {
					t.Fatalf("continuation result %+v, want %s", env.Result, tc.wantStatus)
				}
				if env.SagaMeta.StepID != "approve" || env.SagaMeta.Saga != "job_post_approval" || env.RequestMeta.ReplyTo != "responses" {
					t.Fatalf("continuation lost its place: %s", c.Value)
				}
				if tc.wantPayload != "" {
					jsonEq(t, "continuation payload", env.Payload, tc.wantPayload)
				}
			}
			var fields map[string]json.RawMessage
			if err := json.Unmarshal(recs[len(recs)-1].Value, &fields); err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.wantNotify {
				if string(fields[k]) != v {
					t.Errorf("notification %s = %s, want %s", k, fields[k], v)
				}
			}
		})
	}
}

func TestTaskEffectsRefusesWaitingTask(t *testing.T) {
	task := closedTask()
	task.Status = statemanager.StatusWaiting
	if _, err := actions.TaskEffects(task, topics); err == nil || !strings.Contains(err.Error(), "not closed") {
		t.Fatalf("err = %v, want a refusal to emit effects of a waiting task", err)
	}
}

// A task of a tenant names it last in its notification, with the bytes
// json.Marshal writes; the default tenant leaves the field out, so
// single-tenant notifications keep their shape.
func TestNotificationTenant(t *testing.T) {
	for _, tenant := range []string{"", "acme", "<a&b>\u2028"} {
		t.Run(tenant, func(t *testing.T) {
			task := closedTask()
			task.Tenant = tenant
			n := actions.NewNotification(task)
			rec, err := n.Record("notes")
			if err != nil {
				t.Fatal(err)
			}
			want, _ := json.Marshal(n)
			if !bytes.Equal(rec.Value, want) {
				t.Fatalf("notification\n got %s\nwant %s", rec.Value, want)
			}
			if has := strings.Contains(string(rec.Value), `"tenant":`); has != (tenant != "") {
				t.Fatalf("tenant field present=%v for tenant %q: %s", has, tenant, rec.Value)
			}
		})
	}
}

// The lifecycle's fields follow SPEC §6's (and tenant), each only when set,
// with exactly the bytes json.Marshal writes, so a redelivered notification
// of an approved task is byte-identical too.
func TestNotificationLifecycleFields(t *testing.T) {
	task := closedTask()
	task.Tenant = "acme"
	task.Outcome, task.Note, task.ClaimedBy = "approve", "looks <fine> & done", "bob"
	task.Approvals = []statemanager.Approval{{User: "carol", At: 5}, {User: "dan\u2028", At: 6}}
	n := actions.NewNotification(task)
	rec, err := n.Record("notes")
	if err != nil {
		t.Fatal(err)
	}
	want, _ := json.Marshal(n)
	if !bytes.Equal(rec.Value, want) {
		t.Fatalf("notification\n got %s\nwant %s", rec.Value, want)
	}
	if i, j := strings.Index(string(rec.Value), `"data":`), strings.Index(string(rec.Value), `"outcome":"approve","note":`); i < 0 || j < i {
		t.Fatalf("lifecycle fields not after data: %s", rec.Value)
	}
	again, _ := actions.NewNotification(task).Record("notes")
	if !bytes.Equal(again.Value, rec.Value) {
		t.Fatal("a second notification of the same task differs")
	}
}
