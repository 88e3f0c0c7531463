package actions_test

import (
	"encoding/json"
	"testing"

	"github.com/sagarunner/sagarunner/actions"
	"github.com/sagarunner/sagarunner/statemanager"
)

// TestNotificationBytes pins the notification to json.Marshal's bytes: a
// re-emitted notification must equal the first one byte for byte (SPEC §6),
// including ones emitted before the encoder was written by hand.
func TestNotificationBytes(t *testing.T) {
	base := statemanager.Task{
		ID: "product-1", Domain: "workflow", Status: statemanager.StatusCompleted, Saga: "job_post_approval",
		StepID: "approve", RequestID: "r-42", Name: "Job Post Approval", Spec: "job_post_approval", Action: "Approve",
		Roles: []string{"admin", "manager"}, StartedAt: 1763800000000, Deadline: 1763800060000,
		ClosedAt: 1763800012345, ClosedBy: "alice", CloseData: json.RawMessage(`{"decision":"approved"}`),
	}
	tests := []struct {
		name string
		edit func(t *statemanager.Task)
	}{
		{"spec example", func(*statemanager.Task) {}},
		{"no roles, no data", func(t *statemanager.Task) { t.Roles, t.CloseData = nil, nil }},
		{"empty strings and zero times", func(t *statemanager.Task) {
			*t = statemanager.Task{ID: "x", Status: statemanager.StatusTimeout}
		}},
		{"strings that need escaping", func(t *statemanager.Task) {
			t.ID, t.ClosedBy, t.Name = "a\"b\\c\n", "<bob> & \u2028", "bad \xff utf-8 \x01"
			t.Roles = []string{"r<1>", ""}
		}},
		{"data with whitespace and HTML", func(t *statemanager.Task) {
			t.CloseData = json.RawMessage("{ \"note\" : \"<b>a & b</b>\",\n \"l\": [1, 2],\t\"s\": \"\u2028 x\" }")
		}},
		{"data with negative numbers and unicode", func(t *statemanager.Task) {
			t.CloseData = json.RawMessage(`[-1.5e3,"é",null,true,{}]`)
			t.StartedAt, t.Deadline = -5, 0
		}},
		{"scalar data", func(t *statemanager.Task) { t.CloseData = json.RawMessage(`"approved"`) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			task := base
			task.Roles = append([]string(nil), base.Roles...)
			tc.edit(&task)
			n := actions.NewNotification(&task)
			rec, err := n.Record("notes")
			if err != nil {
				t.Fatal(err)
			}
			want, err := json.Marshal(n)
			if err != nil {
				t.Fatal(err)
			}
			if string(rec.Value) != string(want) {
				t.Errorf("notification\n got %s\nwant %s", rec.Value, want)
			}
			if rec.Topic != "notes" || string(rec.Key) != task.ID {
				t.Errorf("record %s/%s, want notes/%s", rec.Topic, rec.Key, task.ID)
			}
		})
	}
	t.Run("a nil role list is null, as json.Marshal writes it", func(t *testing.T) {
		n := actions.NewNotification(&base)
		n.TaskRoles = nil
		rec, err := n.Record("notes")
		want, _ := json.Marshal(n)
		if err != nil || string(rec.Value) != string(want) {
			t.Errorf("notification = %s, %v; want %s", rec.Value, err, want)
		}
	})
	t.Run("invalid data is an error", func(t *testing.T) {
		for _, data := range []string{`{"a":`, `{"a": }`, `nul`} {
			task := base
			task.CloseData = json.RawMessage(data)
			if rec, err := actions.NewNotification(&task).Record("notes"); err == nil {
				t.Errorf("data %q: notification %s, want an error", data, rec.Value)
			}
		}
	})
}
