package statemanager_test

import (
	"testing"

	"github.com/sagarunner/sagarunner/statemanager"
)

func TestTaskVisibleTo(t *testing.T) {
	task := &statemanager.Task{ID: "t", Tenant: "acme", User: "alice", Roles: []string{"manager", "clerk"}, ClosedBy: "bob"}
	open := &statemanager.Task{ID: "o", Tenant: "acme"}
	worked := &statemanager.Task{ID: "w", Tenant: "acme", Status: statemanager.StatusWaiting, Roles: []string{"clerk"},
		ApproverRoles: []string{"director"}, ClaimedBy: "dave", CompletedBy: "erin"}
	approving := *worked
	approving.Status = statemanager.StatusInApproval
	byRoles := approving
	byRoles.ApproverRoles = nil
	approved := *worked
	approved.Status, approved.Approvals = statemanager.StatusCompleted, []statemanager.Approval{{User: "zed", At: 1}}
	tests := []struct {
		name   string
		task   *statemanager.Task
		tenant string
		viewer *statemanager.Viewer
		want   bool
	}{
		{"trusted caller", task, "other", nil, true},
		{"candidate user", task, "acme", &statemanager.Viewer{User: "alice"}, true},
		{"candidate role", task, "acme", &statemanager.Viewer{User: "carol", Roles: []string{"viewer", "clerk"}}, true},
		{"closer", task, "acme", &statemanager.Viewer{User: "bob"}, true},
		{"admin", task, "acme", &statemanager.Viewer{Admin: true}, true},
		{"no relation", task, "acme", &statemanager.Viewer{User: "carol", Roles: []string{"viewer"}}, false},
		{"empty role matches nothing", task, "acme", &statemanager.Viewer{Roles: []string{""}}, false},
		{"candidate of another tenant", task, "beta", &statemanager.Viewer{User: "alice"}, false},
		{"admin of another tenant", task, "", &statemanager.Viewer{Admin: true}, false},
		{"unassigned task, no admin", open, "acme", &statemanager.Viewer{User: "alice"}, false},
		{"unassigned task, admin", open, "acme", &statemanager.Viewer{Admin: true}, true},
		{"claimer", worked, "acme", &statemanager.Viewer{User: "dave"}, true},
		{"executor", worked, "acme", &statemanager.Viewer{User: "erin"}, true},
		{"approver of a waiting task", worked, "acme", &statemanager.Viewer{User: "zed", Roles: []string{"director"}}, false},
		{"approver of a task in approval", &approving, "acme", &statemanager.Viewer{User: "zed", Roles: []string{"director"}}, true},
		{"approver by taskRoles", &byRoles, "acme", &statemanager.Viewer{Roles: []string{"clerk"}}, true},
		{"approver of another tenant", &approving, "beta", &statemanager.Viewer{Roles: []string{"director"}}, false},
		{"approver of a task its approval closed", &approved, "acme", &statemanager.Viewer{User: "zed"}, true},
		{"approver role of a closed task, no approval", &approved, "acme", &statemanager.Viewer{User: "yan", Roles: []string{"director"}}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.task.VisibleTo(tc.tenant, tc.viewer); got != tc.want {
				t.Errorf("VisibleTo(%q, %+v) = %v, want %v", tc.tenant, tc.viewer, got, tc.want)
			}
		})
	}
}

func TestValidDomain(t *testing.T) {
	for d, want := range map[string]bool{
		"workflow": true, "Work_flow-1.v2": true, "": false, "a{b}": false, "a:b": false, "a b": false,
		"é": false, "x\x00": false, string(make([]byte, 64)): false,
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa":  true,
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa": false,
	} {
		if got := statemanager.ValidDomain(d); got != want {
			t.Errorf("ValidDomain(%q) = %v, want %v", d, got, want)
		}
	}
}
