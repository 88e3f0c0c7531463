package actions_test

import (
	"testing"

	"github.com/tidwall/gjson"

	"github.com/sagarunner/sagarunner/actions"
	"github.com/sagarunner/sagarunner/actions/actionstest"
	"github.com/sagarunner/sagarunner/clock"
	"github.com/sagarunner/sagarunner/saga/envelope"
	"github.com/sagarunner/sagarunner/statemanager"
)

// lifeTask is an open task of tenant acme offered to role clerk, declaring
// two outcomes.
func lifeTask(mod func(t *statemanager.Task)) *statemanager.Task {
	t := &statemanager.Task{ID: "t1", Domain: "workflow", Tenant: "acme", Status: statemanager.StatusWaiting,
		Roles: []string{"clerk"}, PossibleOutcomes: []string{"approve", "reject"}, Deadline: 1000, Version: 7}
	if mod != nil {
		mod(t)
	}
	return t
}

func claimedBy(u string) func(*statemanager.Task) {
	return func(t *statemanager.Task) { t.ClaimedBy = u }
}

func inApproval(t *statemanager.Task) {
	t.Status, t.RequiredApprovals, t.CompletedBy, t.Outcome = statemanager.StatusInApproval, 2, "bob", "approve"
	t.ApproverRoles = []string{"boss"}
}

var (
	bob     = actions.Caller{User: "bob", Roles: []string{"clerk"}, Tenant: "acme"}
	eve     = actions.Caller{User: "eve", Roles: []string{"clerk"}, Tenant: "acme"}
	mallory = actions.Caller{User: "mallory", Roles: []string{"intern"}, Tenant: "acme"}
	admin   = actions.Caller{User: "ann", Roles: []string{"admin"}, Tenant: "acme", Admin: true}
	other   = actions.Caller{User: "oscar", Roles: []string{"admin"}, Tenant: "other", Admin: true}
	boss1   = actions.Caller{User: "carol", Roles: []string{"boss"}, Tenant: "acme"}
	boss2   = actions.Caller{User: "dan", Roles: []string{"boss"}, Tenant: "acme"}
	system  = actions.Caller{}
)

// Every row of SPEC §12's table, and every refusal, without a store.
func TestLifecycleRules(t *testing.T) {
	closed := func(t *statemanager.Task) { t.Status = statemanager.StatusCompleted }
	tests := []struct {
		name string
		run  func() (*statemanager.Change, *actions.Refusal)
		code string // "" for a change
		// check inspects the change.
		check func(t *testing.T, c *statemanager.Change)
	}{
		{"claim by a candidate", func() (*statemanager.Change, *actions.Refusal) {
			return actions.Claim(lifeTask(nil), bob, false, "k", 5)
		}, "",
			func(t *testing.T, c *statemanager.Change) {
				if *c.ClaimedBy != "bob" || c.Version != 7 || c.Key != "k" || c.Event.Type != statemanager.EventClaimed || c.Event.To != "bob" {
					t.Fatalf("change = %+v", c)
				}
			}},
		{"claim by a stranger", func() (*statemanager.Change, *actions.Refusal) {
			return actions.Claim(lifeTask(nil), mallory, false, "k", 5)
		}, actions.CodeForbidden, nil},
		{"claim of a held task", func() (*statemanager.Change, *actions.Refusal) {
			return actions.Claim(lifeTask(claimedBy("eve")), bob, false, "k", 5)
		}, actions.CodeTaskClaimed, nil},
		{"claim override by a candidate", func() (*statemanager.Change, *actions.Refusal) {
			return actions.Claim(lifeTask(claimedBy("eve")), bob, true, "k", 5)
		}, actions.CodeTaskClaimed, nil},
		{"claim override by an admin", func() (*statemanager.Change, *actions.Refusal) {
			return actions.Claim(lifeTask(claimedBy("eve")), admin, true, "k", 5)
		}, "", func(t *testing.T, c *statemanager.Change) {
			if *c.ClaimedBy != "ann" || c.Event.From != "eve" {
				t.Fatalf("change = %+v", c)
			}
		}},
		{"claim of one's own task", func() (*statemanager.Change, *actions.Refusal) {
			return actions.Claim(lifeTask(claimedBy("bob")), bob, false, "k", 5)
		}, "",
			func(t *testing.T, c *statemanager.Change) {
				if c != nil {
					t.Fatalf("change = %+v, want none", c)
				}
			}},
		{"claim without a user", func() (*statemanager.Change, *actions.Refusal) {
			return actions.Claim(lifeTask(nil), system, false, "k", 5)
		}, actions.CodeBadInput, nil},
		{"claim of another tenant's task", func() (*statemanager.Change, *actions.Refusal) {
			return actions.Claim(lifeTask(nil), other, false, "k", 5)
		}, actions.CodeTaskNotFound, nil},
		{"claim of a closed task", func() (*statemanager.Change, *actions.Refusal) {
			return actions.Claim(lifeTask(closed), bob, false, "k", 5)
		}, actions.CodeTaskClosed, nil},
		{"closed task to a stranger", func() (*statemanager.Change, *actions.Refusal) {
			return actions.Claim(lifeTask(closed), mallory, false, "k", 5)
		}, actions.CodeForbidden, nil},
		{"claim in approval", func() (*statemanager.Change, *actions.Refusal) {
			return actions.Claim(lifeTask(inApproval), bob, false, "k", 5)
		}, actions.CodeInApproval, nil},

		{"unclaim by the claimer", func() (*statemanager.Change, *actions.Refusal) {
			return actions.Unclaim(lifeTask(claimedBy("bob")), bob, "k", 5)
		}, "",
			func(t *testing.T, c *statemanager.Change) {
				if *c.ClaimedBy != "" || c.Event.From != "bob" {
					t.Fatalf("change = %+v", c)
				}
			}},
		{"unclaim by an admin", func() (*statemanager.Change, *actions.Refusal) {
			return actions.Unclaim(lifeTask(claimedBy("bob")), admin, "k", 5)
		}, "", nil},
		{"unclaim by another candidate", func() (*statemanager.Change, *actions.Refusal) {
			return actions.Unclaim(lifeTask(claimedBy("bob")), eve, "k", 5)
		}, actions.CodeForbidden, nil},

		{"assign to a user", func() (*statemanager.Change, *actions.Refusal) {
			return actions.Assign(lifeTask(claimedBy("bob")), bob, "eve", "", "k", 5)
		}, "", func(t *testing.T, c *statemanager.Change) {
			if *c.ClaimedBy != "eve" || *c.User != "eve" || c.Event.From != "bob" || c.Event.To != "eve" {
				t.Fatalf("change = %+v", c)
			}
		}},
		{"assign to a role", func() (*statemanager.Change, *actions.Refusal) {
			return actions.Assign(lifeTask(claimedBy("bob")), admin, "", "auditor", "k", 5)
		}, "", func(t *testing.T, c *statemanager.Change) {
			if *c.ClaimedBy != "" || len(*c.Roles) != 2 || (*c.Roles)[1] != "auditor" || c.Event.To != "role:auditor" {
				t.Fatalf("change = %+v", c)
			}
		}},
		{"assign by a non-claimer", func() (*statemanager.Change, *actions.Refusal) {
			return actions.Assign(lifeTask(claimedBy("bob")), eve, "eve", "", "k", 5)
		}, actions.CodeForbidden, nil},
		{"assign to both", func() (*statemanager.Change, *actions.Refusal) {
			return actions.Assign(lifeTask(nil), admin, "eve", "clerk", "k", 5)
		}, actions.CodeBadInput, nil},

		{"complete by the claimer", func() (*statemanager.Change, *actions.Refusal) {
			return actions.Complete(lifeTask(claimedBy("bob")), bob, actions.Completion{Outcome: "approve", Note: "ok", Data: []byte(`{"a":1}`)}, "k", 5)
		}, "", func(t *testing.T, c *statemanager.Change) {
			if c.Close == nil || c.Close.Status != statemanager.StatusCompleted || c.Close.Outcome != "approve" || c.Close.Note != "ok" || c.Close.Key != "k" ||
				string(c.Close.Data) != `{"a":1}` || c.Event.Type != statemanager.EventCompleted {
				t.Fatalf("change = %+v close %+v", c, c.Close)
			}
		}},
		{"complete by a candidate when unclaimed", func() (*statemanager.Change, *actions.Refusal) {
			return actions.Complete(lifeTask(nil), eve, actions.Completion{Outcome: "reject"}, "k", 5)
		}, "", nil},
		{"complete of another's claim", func() (*statemanager.Change, *actions.Refusal) {
			return actions.Complete(lifeTask(claimedBy("bob")), eve, actions.Completion{Outcome: "reject"}, "k", 5)
		}, actions.CodeTaskClaimed, nil},
		{"complete by a stranger", func() (*statemanager.Change, *actions.Refusal) {
			return actions.Complete(lifeTask(nil), mallory, actions.Completion{Outcome: "reject"}, "k", 5)
		}, actions.CodeForbidden, nil},
		{"complete with an undeclared outcome", func() (*statemanager.Change, *actions.Refusal) {
			return actions.Complete(lifeTask(nil), bob, actions.Completion{Outcome: "maybe"}, "k", 5)
		}, actions.CodeBadInput, nil},
		{"complete without an outcome", func() (*statemanager.Change, *actions.Refusal) {
			return actions.Complete(lifeTask(nil), bob, actions.Completion{}, "k", 5)
		}, actions.CodeBadInput, nil},
		{"complete with approvals", func() (*statemanager.Change, *actions.Refusal) {
			return actions.Complete(lifeTask(func(t *statemanager.Task) { t.RequiredApprovals = 2 }), bob, actions.Completion{Outcome: "approve"}, "k", 5)
		}, "", func(t *testing.T, c *statemanager.Change) {
			if c.Close != nil || *c.Status != statemanager.StatusInApproval || *c.CompletedBy != "bob" || *c.Outcome != "approve" || len(*c.Approvals) != 0 {
				t.Fatalf("change = %+v", c)
			}
		}},
		{"complete with approvals, anonymously", func() (*statemanager.Change, *actions.Refusal) {
			return actions.Complete(lifeTask(func(t *statemanager.Task) { t.RequiredApprovals = 2 }), system, actions.Completion{Outcome: "approve"}, "k", 5)
		}, actions.CodeBadInput, nil},
		{"complete in approval", func() (*statemanager.Change, *actions.Refusal) {
			return actions.Complete(lifeTask(inApproval), bob, actions.Completion{Outcome: "approve"}, "k", 5)
		}, actions.CodeInApproval, nil},

		{"first approval", func() (*statemanager.Change, *actions.Refusal) {
			return actions.Approve(lifeTask(inApproval), boss1, "fine", "k", 5)
		}, "",
			func(t *testing.T, c *statemanager.Change) {
				if c.Close != nil || len(*c.Approvals) != 1 || (*c.Approvals)[0] != (statemanager.Approval{User: "carol", At: 5}) || c.Event.Note != "fine" {
					t.Fatalf("change = %+v", c)
				}
			}},
		{"last approval closes", func() (*statemanager.Change, *actions.Refusal) {
			return actions.Approve(lifeTask(func(t *statemanager.Task) {
				inApproval(t)
				t.Approvals = []statemanager.Approval{{User: "carol", At: 4}}
			}), boss2, "", "k", 5)
		}, "", func(t *testing.T, c *statemanager.Change) {
			if c.Close == nil || c.Close.Status != statemanager.StatusCompleted || c.Close.Outcome != "approve" || c.Close.By != "bob" || len(*c.Approvals) != 2 {
				t.Fatalf("change = %+v close %+v", c, c.Close)
			}
		}},
		{"approval twice", func() (*statemanager.Change, *actions.Refusal) {
			return actions.Approve(lifeTask(func(t *statemanager.Task) {
				inApproval(t)
				t.Approvals = []statemanager.Approval{{User: "carol", At: 4}}
			}), boss1, "", "k", 5)
		}, actions.CodeAlreadyApproved, nil},
		{"self approval", func() (*statemanager.Change, *actions.Refusal) {
			return actions.Approve(lifeTask(inApproval), actions.Caller{User: "bob", Roles: []string{"boss"}, Tenant: "acme"}, "", "k", 5)
		}, actions.CodeSelfApproval, nil},
		{"approval by a non-approver", func() (*statemanager.Change, *actions.Refusal) {
			return actions.Approve(lifeTask(inApproval), eve, "", "k", 5)
		}, actions.CodeForbidden, nil},
		{"approval of a waiting task", func() (*statemanager.Change, *actions.Refusal) {
			return actions.Approve(lifeTask(func(t *statemanager.Task) { t.ApproverRoles = []string{"boss"} }), boss1, "", "k", 5)
		}, actions.CodeNotInApproval, nil},
		{"approval without a user", func() (*statemanager.Change, *actions.Refusal) {
			return actions.Approve(lifeTask(inApproval), system, "", "k", 5)
		}, actions.CodeForbidden, nil},
		{"reject", func() (*statemanager.Change, *actions.Refusal) {
			return actions.Reject(lifeTask(func(t *statemanager.Task) {
				inApproval(t)
				t.Approvals = []statemanager.Approval{{User: "carol", At: 4}}
			}), boss2, "redo", "k", 5)
		}, "", func(t *testing.T, c *statemanager.Change) {
			if *c.Status != statemanager.StatusWaiting || *c.ClaimedBy != "bob" || len(*c.Approvals) != 0 || *c.CompletedBy != "" || c.Event.Note != "redo" {
				t.Fatalf("change = %+v", c)
			}
		}},
		{"self reject", func() (*statemanager.Change, *actions.Refusal) {
			return actions.Reject(lifeTask(inApproval), actions.Caller{User: "bob", Roles: []string{"boss"}, Tenant: "acme"}, "", "k", 5)
		}, actions.CodeSelfApproval, nil},

		{"cancel by an admin", func() (*statemanager.Change, *actions.Refusal) {
			return actions.Cancel(lifeTask(inApproval), admin, "gone", "k", 5)
		}, "",
			func(t *testing.T, c *statemanager.Change) {
				if c.Close == nil || c.Close.Status != statemanager.StatusCancelled || c.Close.Note != "gone" || c.Event.Type != statemanager.EventCancelled {
					t.Fatalf("change = %+v", c)
				}
			}},
		{"cancel by a trusted caller", func() (*statemanager.Change, *actions.Refusal) {
			return actions.Cancel(lifeTask(nil), system, "", "k", 5)
		}, "", nil},
		{"cancel by the claimer", func() (*statemanager.Change, *actions.Refusal) {
			return actions.Cancel(lifeTask(claimedBy("bob")), bob, "", "k", 5)
		}, actions.CodeForbidden, nil},
		{"cancel of a closed task", func() (*statemanager.Change, *actions.Refusal) {
			return actions.Cancel(lifeTask(closed), admin, "", "k", 5)
		}, actions.CodeTaskClosed, nil},

		{"deadline by the claimer", func() (*statemanager.Change, *actions.Refusal) {
			return actions.MoveDeadline(lifeTask(claimedBy("bob")), bob, actions.Deadline{Timeout: 100, HasTimeout: true}, "k", 5)
		}, "", func(t *testing.T, c *statemanager.Change) {
			if *c.Deadline != 105 || c.Event.From != "1000" || c.Event.To != "105" {
				t.Fatalf("change = %+v", c)
			}
		}},
		{"deadline in the past by an admin", func() (*statemanager.Change, *actions.Refusal) {
			return actions.MoveDeadline(lifeTask(nil), admin, actions.Deadline{TimeoutOn: 1, HasTimeoutOn: true}, "k", 5)
		}, "", func(t *testing.T, c *statemanager.Change) {
			if *c.Deadline != 1 {
				t.Fatalf("change = %+v", c)
			}
		}},
		{"deadline by a candidate", func() (*statemanager.Change, *actions.Refusal) {
			return actions.MoveDeadline(lifeTask(nil), bob, actions.Deadline{Timeout: 100, HasTimeout: true}, "k", 5)
		}, actions.CodeForbidden, nil},
		{"deadline with both", func() (*statemanager.Change, *actions.Refusal) {
			return actions.MoveDeadline(lifeTask(nil), admin, actions.Deadline{Timeout: 1, HasTimeout: true, TimeoutOn: 1, HasTimeoutOn: true}, "k", 5)
		}, actions.CodeBadInput, nil},
		{"deadline with none", func() (*statemanager.Change, *actions.Refusal) {
			return actions.MoveDeadline(lifeTask(nil), admin, actions.Deadline{}, "k", 5)
		}, actions.CodeBadInput, nil},
		{"negative timeout", func() (*statemanager.Change, *actions.Refusal) {
			return actions.MoveDeadline(lifeTask(nil), admin, actions.Deadline{Timeout: -1, HasTimeout: true}, "k", 5)
		}, actions.CodeBadInput, nil},

		{"comment by a candidate", func() (*statemanager.Change, *actions.Refusal) {
			return actions.Comment(lifeTask(nil), eve, "hi", "k", 5)
		}, "",
			func(t *testing.T, c *statemanager.Change) {
				if c.Event.Type != statemanager.EventCommented || c.Event.Note != "hi" || c.Event.Actor != "eve" {
					t.Fatalf("change = %+v", c)
				}
			}},
		{"comment by an approver", func() (*statemanager.Change, *actions.Refusal) {
			return actions.Comment(lifeTask(inApproval), boss1, "hi", "k", 5)
		}, "", nil},
		{"comment by a stranger", func() (*statemanager.Change, *actions.Refusal) {
			return actions.Comment(lifeTask(nil), mallory, "hi", "k", 5)
		}, actions.CodeForbidden, nil},
		{"empty comment", func() (*statemanager.Change, *actions.Refusal) {
			return actions.Comment(lifeTask(nil), eve, " ", "k", 5)
		}, actions.CodeBadInput, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, r := tc.run()
			switch {
			case tc.code != "" && (r == nil || r.Code != tc.code):
				t.Fatalf("refusal = %v, change = %+v, want %s", r, c, tc.code)
			case tc.code == "" && r != nil:
				t.Fatalf("refused: %v", r)
			}
			if tc.code != "" && c != nil {
				t.Fatalf("a refusal came with a change %+v", c)
			}
			if tc.check != nil {
				tc.check(t, c)
			}
		})
	}
}

// The executor's completion waits with a task in approval and is what the
// last approval closes it with; a reject, or a cancel of the approval,
// forgets it, and a completion after a reject replaces it.
func TestCompletionKeptForApproval(t *testing.T) {
	needsTwo := func(t *statemanager.Task) { t.RequiredApprovals, t.ApproverRoles = 2, []string{"boss"} }
	in := actions.Completion{Outcome: "approve", Note: "good", Data: []byte(`{"ok":true}`), EnrichPath: "decision"}
	ch, r := actions.Complete(lifeTask(needsTwo), bob, in, "k", 5)
	if r != nil {
		t.Fatal(r)
	}
	if ch.Close != nil || *ch.Status != statemanager.StatusInApproval || ch.CloseData == nil || string(*ch.CloseData) != `{"ok":true}` ||
		ch.EnrichPath == nil || *ch.EnrichPath != "decision" {
		t.Fatalf("completion into approval = %+v", ch)
	}
	// Without data, a completion still writes both: it replaces what a
	// rejected one left.
	ch, _ = actions.Complete(lifeTask(needsTwo), bob, actions.Completion{Outcome: "reject"}, "k", 5)
	if ch.CloseData == nil || len(*ch.CloseData) != 0 || ch.EnrichPath == nil || *ch.EnrichPath != "" {
		t.Fatalf("completion without data = %+v", ch)
	}
	// A completion that closes at once carries its data on the close only.
	ch, _ = actions.Complete(lifeTask(nil), bob, in, "k", 5)
	if ch.CloseData != nil || ch.Close == nil || string(ch.Close.Data) != `{"ok":true}` || ch.Close.EnrichPath != "decision" {
		t.Fatalf("completion without approvals = %+v", ch)
	}

	recorded := func(t *statemanager.Task) {
		inApproval(t)
		t.Note, t.CloseData, t.EnrichPath = "good", []byte(`{"ok":true}`), "decision"
	}
	ch, r = actions.Approve(lifeTask(recorded), boss1, "", "k", 5)
	if r != nil || ch.Close != nil {
		t.Fatalf("first approval = %+v, %v", ch, r)
	}
	ch, r = actions.Approve(lifeTask(func(t *statemanager.Task) {
		recorded(t)
		t.Approvals = []statemanager.Approval{{User: "carol", At: 4}}
	}), boss2, "yes", "k2", 6)
	if r != nil || ch.Close == nil {
		t.Fatalf("last approval = %+v, %v", ch, r)
	}
	if cl := ch.Close; cl.Status != statemanager.StatusCompleted || cl.By != "bob" || cl.Outcome != "approve" || cl.Note != "good" ||
		string(cl.Data) != `{"ok":true}` || cl.EnrichPath != "decision" || cl.Key != "k2" || cl.At != 6 {
		t.Fatalf("last approval's close = %+v", cl)
	}

	ch, r = actions.Reject(lifeTask(recorded), boss1, "redo", "k", 5)
	if r != nil || ch.CloseData == nil || len(*ch.CloseData) != 0 || ch.EnrichPath == nil || *ch.EnrichPath != "" || *ch.Outcome != "" || *ch.Note != "" {
		t.Fatalf("reject = %+v, %v", ch, r)
	}
	ch, r = actions.Cancel(lifeTask(recorded), admin, "gone", "k", 5)
	if r != nil || ch.CloseData == nil || len(*ch.CloseData) != 0 || ch.EnrichPath == nil || *ch.EnrichPath != "" || len(ch.Close.Data) != 0 {
		t.Fatalf("cancel in approval = %+v, %v", ch, r)
	}
	if ch, _ = actions.Cancel(lifeTask(nil), admin, "gone", "k", 5); ch.CloseData != nil || ch.EnrichPath != nil {
		t.Fatalf("cancel of a waiting task touches the completion: %+v", ch)
	}
}

// A conflict with the task's state carries the task to a caller who may
// see it, and nothing to anyone else; Fail writes it where a success
// writes the task's state, and keeps the FAIL result as it is.
func TestConflictCarriesTheTask(t *testing.T) {
	closed := func(t *statemanager.Task) { t.Status = statemanager.StatusCompleted }
	tests := []struct {
		name     string
		r        *actions.Refusal
		code     string
		withTask bool
	}{
		{"a claim of a claimed task", refusal(actions.Claim(lifeTask(claimedBy("eve")), bob, false, "k", 5)), actions.CodeTaskClaimed, true},
		{"a completion of a claimed task", refusal(actions.Complete(lifeTask(claimedBy("eve")), bob, actions.Completion{Outcome: "approve"}, "k", 5)), actions.CodeTaskClaimed, true},
		{"an operation on a closed task", refusal(actions.Comment(lifeTask(closed), eve, "hi", "k", 5)), actions.CodeTaskClosed, true},
		{"a claim of a task in approval", refusal(actions.Claim(lifeTask(inApproval), eve, false, "k", 5)), actions.CodeInApproval, true},
		{"a claim of a task in approval by a stranger", refusal(actions.Claim(lifeTask(inApproval), mallory, false, "k", 5)), actions.CodeInApproval, false},
		{"a self-approval", refusal(actions.Approve(lifeTask(inApproval), actions.Caller{User: "bob", Roles: []string{"boss"}, Tenant: "acme"}, "", "k", 5)), actions.CodeSelfApproval, true},
		{"a second approval", refusal(actions.Approve(lifeTask(func(t *statemanager.Task) {
			inApproval(t)
			t.Approvals = []statemanager.Approval{{User: "carol", At: 4}}
		}), boss1, "", "k", 5)), actions.CodeAlreadyApproved, true},
		{"an approval of a waiting task", refusal(actions.Approve(lifeTask(func(t *statemanager.Task) { t.ApproverRoles = []string{"boss"} }), boss1, "", "k", 5)), actions.CodeNotInApproval, false},
		{"a lost race", actions.Changed(lifeTask(claimedBy("eve")), bob, "ClaimTask"), actions.CodeTaskChanged, true},
		{"a task closed meanwhile", actions.Closed(lifeTask(closed), bob), actions.CodeTaskClosed, true},
		{"a task closed meanwhile, to another tenant", actions.Closed(lifeTask(closed), other), actions.CodeTaskClosed, false},
		{"a lost race, to a stranger", actions.Changed(lifeTask(nil), mallory, "CommentTask"), actions.CodeTaskChanged, false},
		{"a forbidden caller", refusal(actions.Claim(lifeTask(nil), mallory, false, "k", 5)), actions.CodeForbidden, false},
		{"another tenant", refusal(actions.Claim(lifeTask(claimedBy("eve")), other, false, "k", 5)), actions.CodeTaskNotFound, false},
		{"a closed task to a stranger", refusal(actions.Comment(lifeTask(closed), mallory, "hi", "k", 5)), actions.CodeForbidden, false},
		{"bad input", refusal(actions.Complete(lifeTask(nil), bob, actions.Completion{Outcome: "maybe"}, "k", 5)), actions.CodeBadInput, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.r == nil || tc.r.Code != tc.code {
				t.Fatalf("refusal = %v, want %s", tc.r, tc.code)
			}
			if (tc.r.Task != nil) != tc.withTask {
				t.Fatalf("refusal carries task %+v, want one: %v", tc.r.Task, tc.withTask)
			}
			env := &envelope.Envelope{Payload: []byte(`{"parameters": {"taskId": "t1"}}`)}
			tc.r.Fail(env, "task")
			if env.Result.Status != envelope.StatusFail || env.Result.Code != tc.code || env.Result.Message != tc.r.Message {
				t.Fatalf("result = %+v", env.Result)
			}
			state := env.Get("task")
			if state.Exists() != tc.withTask {
				t.Fatalf("payload %s: state written: %v, want %v", env.Payload, state.Exists(), tc.withTask)
			}
			if !tc.withTask {
				return
			}
			for _, k := range []string{"taskId", "status", "claimedBy", "completedBy", "approvals", "deadline", "version"} {
				if !state.Get(k).Exists() {
					t.Errorf("state %s lacks %s", state.Raw, k)
				}
			}
			if state.Get("taskId").String() != "t1" || state.Get("version").Int() != 7 || state.Get("envelope").Exists() || state.Get("data").Exists() {
				t.Errorf("state = %s", state.Raw)
			}
		})
	}
	t.Run("no output element", func(t *testing.T) {
		env := &envelope.Envelope{Payload: []byte(`{}`)}
		actions.Changed(lifeTask(nil), bob, "ClaimTask").Fail(env, "")
		if string(env.Payload) != `{}` || env.Result.Code != actions.CodeTaskChanged {
			t.Fatalf("payload %s, result %+v", env.Payload, env.Result)
		}
	})
}

func refusal(_ *statemanager.Change, r *actions.Refusal) *actions.Refusal { return r }

// Through the actions on an in-memory lifecycle store: the saga resumes
// from the last approval with the data the executor's ProceedTask gave,
// enriched where its step said, and the notification carries it.
func TestApprovedCompletionResumesWithItsData(t *testing.T) {
	stores := actionstest.NewResolver()
	x := &actions.Exec{Stores: stores, Clock: clock.NewFake(t0), Topics: lifeTopics, Partition: 3, AdminRoles: []string{"admin"}}
	start := build(t, "StartTask", actions.Input{Domain: "workflow", InputElement: "parameters", Params: map[string]any{
		"taskIdPath": "productId", "taskRoles": "clerk", "possibleOutcomes": "approve,reject", "requiredApprovals": 2, "approverRoles": "boss"}})
	if out := run(t, start, x, decode(t, startEvent)); !out.Suspend {
		t.Fatalf("start = %+v", out.Env.Result)
	}
	clerk, boss := []string{"clerk"}, []string{"boss"}
	proceed := build(t, "ProceedTask", actions.Input{Domain: "workflow", InputElement: "parameters",
		Params: map[string]any{"inputPattern": "data", "enrichPath": "decision"}})
	complete := func(reqID, outcome, data string) {
		t.Helper()
		env := &envelope.Envelope{RequestMeta: envelope.RequestMeta{RequestID: reqID, User: "bob", Roles: clerk},
			Payload: []byte(`{"parameters": {"taskId": "product-1", "outcome": "` + outcome + `", "data": ` + data + `}}`)}
		wantResult(t, run(t, proceed, x, env), envelope.StatusSuccess, "")
	}
	complete("p1", "reject", `{"first": true}`)
	wantResult(t, op(t, x, "RejectTask", "r1", "carol", boss, `{"taskId": "product-1", "note": "no"}`), envelope.StatusSuccess, "")
	complete("p2", "approve", `{"second": true}`)
	wantResult(t, op(t, x, "ApproveTask", "a1", "carol", boss, `{"taskId": "product-1"}`), envelope.StatusSuccess, "")
	out := op(t, x, "ApproveTask", "a2", "dan", boss, `{"taskId": "product-1"}`)
	wantResult(t, out, envelope.StatusSuccess, "")
	cont, notes := records(out, "requests"), records(out, "notes")
	if len(cont) != 1 || len(notes) != 1 {
		t.Fatalf("closing approval produced %+v", out.Records)
	}
	c := gjson.ParseBytes(cont[0].Value)
	if c.Get("payload.decision").Raw != `{"second":true}` || c.Get("result.outcome").String() != "approve" {
		t.Fatalf("continuation = %s", cont[0].Value)
	}
	if d := gjson.GetBytes(notes[0].Value, "data").Raw; d != `{"second":true}` {
		t.Fatalf("notification data = %s", d)
	}
}
