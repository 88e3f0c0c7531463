package actions

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/sagarunner/sagarunner/saga/envelope"
	"github.com/sagarunner/sagarunner/statemanager"
)

// The rules of SPEC §12 as pure functions: each takes the task as read, the
// caller, the operation's input and the time, and returns either a refusal
// or the statemanager.Change that carries the task on. Nothing here reads or
// writes a store, so every row of the table is tested without one, and a
// caller that lost a race recomputes from the task it reads again.

// Refusal is an operation refused by the rules: a FAIL code and message.
// Nothing changed.
type Refusal struct {
	Code    string
	Message string
	// Task is the task the refusal was judged on, set only for a conflict
	// with its state (claimed by another, closed, in approval, approved
	// already, changed meanwhile: the 409s of SPEC §12) refused to a
	// caller who may see the task, so the loser of a race learns where the
	// task stands without another read. Nil for every other refusal, so a
	// caller kept out (another tenant, FORBIDDEN) learns nothing of it.
	Task *statemanager.Task
}

func (r *Refusal) Error() string { return r.Code + ": " + r.Message }

func refuse(code, format string, args ...any) *Refusal {
	return &Refusal{Code: code, Message: fmt.Sprintf(format, args...)}
}

// conflict is a refusal of c's operation because of t's state; it carries
// t when c may see it (viewer).
func conflict(t *statemanager.Task, c Caller, code, format string, args ...any) *Refusal {
	r := refuse(code, format, args...)
	if c.viewer(t) {
		r.Task = t
	}
	return r
}

// Fail sets r as env's FAIL result. A conflict that carries its task puts
// the task's state at outputElement, where a success puts it: over HTTP
// the 409's body, over Kafka the reply of a direct action that names an
// outputElement. The result keeps its shape (status, code, message).
func (r *Refusal) Fail(env *envelope.Envelope, outputElement string) {
	if r.Task != nil && outputElement != "" {
		// A payload the element cannot be written into keeps the
		// refusal and goes without the state.
		_ = env.Set(outputElement, taskState(r.Task))
	}
	env.Fail(r.Code, "%s", r.Message)
}

// Changed refuses an operation that kept losing races to other operations
// on t (see the lifecycle actions' Execute): t is the task as last read.
func Changed(t *statemanager.Task, c Caller, op string) *Refusal {
	return conflict(t, c, CodeTaskChanged, "task %q in %q changed while %s was applied; it is %s%s now", t.ID, t.Domain, op, t.Status, claimedNote(t))
}

// Closed refuses an operation whose task closed between its read and its
// write: t is the task as the store answered it, closed.
func Closed(t *statemanager.Task, c Caller) *Refusal {
	return conflict(t, c, CodeTaskClosed, "task %q in %q is closed already (%s)", t.ID, t.Domain, strings.ToLower(t.Status))
}

// Caller is who asks for an operation. A caller without user and roles is
// trusted (a Kafka producer, the command line, a gateway without auth): the
// rules of who may do what do not apply to it, but an operation that
// records a person (claim, approve) needs a user.
type Caller struct {
	User   string
	Roles  []string
	Tenant string
	// Admin: the caller holds one of the admin roles (auth.adminRoles).
	Admin bool
}

// CallerOf is the caller of a request.
func CallerOf(rm envelope.RequestMeta, adminRoles []string) Caller {
	c := Caller{User: rm.User, Roles: rm.Roles, Tenant: rm.Tenant}
	for _, r := range rm.Roles {
		if r != "" && slices.Contains(adminRoles, r) {
			c.Admin = true
		}
	}
	return c
}

// Trusted reports a caller without identity.
func (c Caller) Trusted() bool { return c.User == "" && len(c.Roles) == 0 }

func (c Caller) name() string {
	if c.User != "" {
		return "user " + strconv.Quote(c.User)
	}
	if c.Trusted() {
		return "a trusted caller"
	}
	return "roles " + strconv.Quote(strings.Join(c.Roles, ","))
}

// candidate: the task is offered to the caller (taskUser, one of taskRoles,
// or to everyone when it names neither).
func (c Caller) candidate(t *statemanager.Task) bool {
	if c.Trusted() || c.Admin || (t.User == "" && len(t.Roles) == 0) {
		return true
	}
	if c.User != "" && (c.User == t.User || c.User == t.ClaimedBy) {
		return true
	}
	return c.holds(t.Roles)
}

func (c Caller) holds(roles []string) bool {
	for _, r := range c.Roles {
		if r != "" && slices.Contains(roles, r) {
			return true
		}
	}
	return false
}

func (c Caller) claimer(t *statemanager.Task) bool {
	return c.User != "" && t.ClaimedBy == c.User
}

// approver: a holder of approverRoles (taskRoles when none were given) or
// an admin.
func (c Caller) approver(t *statemanager.Task) bool {
	roles := t.ApproverRoles
	if len(roles) == 0 {
		roles = t.Roles
	}
	return c.Admin || c.holds(roles)
}

// seer: may see the task (and comment on it): a candidate, its claimer, its
// executor, its closer, an admin, whoever approved it, and an approver while
// it awaits approval;
// the same people statemanager's Task.VisibleTo shows it to, so what an
// operation tells a caller matches what its inbox lists.
func (c Caller) seer(t *statemanager.Task) bool {
	if c.candidate(t) {
		return true
	}
	if c.User != "" && (c.User == t.CompletedBy || c.User == t.ClosedBy) {
		return true
	}
	for _, a := range t.Approvals {
		if c.User != "" && a.User == c.User {
			return true
		}
	}
	return t.Status == statemanager.StatusInApproval && c.approver(t)
}

// viewer: a seer of the task's own tenant, who may be shown its state.
func (c Caller) viewer(t *statemanager.Task) bool {
	return (c.Trusted() || t.Tenant == c.Tenant) && c.seer(t)
}

// Bounds of the free texts an operation records in the history.
const (
	maxNoteLen    = 4096
	maxCommentLen = 16384
)

// MaxTaskChanges bounds the changes an open task takes (its Version): each
// keeps its request id with the task, for replays, and an event in its
// history, and nothing else bounds how often a seer comments or a claimer
// claims and unclaims. Past it only a change that closes the task is
// accepted, so the task can still be completed, approved, cancelled or
// time out. No task a person works on comes near it.
const MaxTaskChanges = 10_000

// CodeTooManyChanges refuses a change of a task that took MaxTaskChanges
// already and would stay open after it.
const CodeTooManyChanges = "TOO_MANY_CHANGES"

// Bounded refuses ch, a change computed for t, when t took MaxTaskChanges
// already and ch does not close it.
func Bounded(t *statemanager.Task, c Caller, ch *statemanager.Change) *Refusal {
	if ch == nil || ch.Close != nil || t.Version < MaxTaskChanges {
		return nil
	}
	return conflict(t, c, CodeTooManyChanges, "task %q in %q took %d changes, as many as a task may: only a close is accepted now", t.ID, t.Domain, t.Version)
}

// open checks what every operation checks first: the tenant (another
// tenant's task is unknown, so ids cannot be probed), then that the task is
// open, telling a closed task only to a caller that may see it.
func open(t *statemanager.Task, c Caller) *Refusal {
	if !c.Trusted() && t.Tenant != c.Tenant {
		return refuse(CodeTaskNotFound, "no task %q in %q", t.ID, t.Domain)
	}
	if !statemanager.Open(t.Status) {
		if !c.seer(t) {
			return refuse(CodeForbidden, "%s may not act on task %q in %q", c.name(), t.ID, t.Domain)
		}
		return Closed(t, c)
	}
	return nil
}

// waiting refuses an executor's operation on a task awaiting approval.
func waiting(t *statemanager.Task, c Caller) *Refusal {
	if t.Status != statemanager.StatusWaiting {
		return conflict(t, c, CodeInApproval, "task %q in %q awaits approval", t.ID, t.Domain)
	}
	return nil
}

func forbidden(t *statemanager.Task, c Caller, what string) *Refusal {
	return refuse(CodeForbidden, "%s may not %s task %q in %q", c.name(), what, t.ID, t.Domain)
}

func badText(what, s string, max int) *Refusal {
	switch {
	case len(s) > max:
		return refuse(CodeBadInput, "%s of %d bytes is longer than %d", what, len(s), max)
	case !utf8.ValidString(s):
		return refuse(CodeBadInput, "%s is not valid UTF-8", what)
	}
	return nil
}

// change starts a Change of t by c at now, keyed by the request.
func change(t *statemanager.Task, c Caller, key, typ string, now int64) statemanager.Change {
	return statemanager.Change{ID: t.ID, Version: t.Version, Key: key,
		Event: statemanager.Event{Type: typ, At: now, Actor: c.User, RequestID: key}}
}

func ptr[T any](v T) *T { return &v }

// Claim: a candidate takes the task; an admin with override takes it from
// whoever holds it. Claiming a task one holds changes nothing (nil, nil).
func Claim(t *statemanager.Task, c Caller, override bool, key string, now int64) (*statemanager.Change, *Refusal) {
	if r := open(t, c); r != nil {
		return nil, r
	}
	if r := waiting(t, c); r != nil {
		return nil, r
	}
	if c.User == "" {
		return nil, refuse(CodeBadInput, "a claim needs a user in requestMeta")
	}
	if !c.candidate(t) {
		return nil, forbidden(t, c, "claim")
	}
	switch {
	case t.ClaimedBy == c.User:
		return nil, nil
	case t.ClaimedBy != "" && !(override && c.Admin):
		return nil, conflict(t, c, CodeTaskClaimed, "task %q in %q is claimed by %q", t.ID, t.Domain, t.ClaimedBy)
	}
	ch := change(t, c, key, statemanager.EventClaimed, now)
	ch.Event.From, ch.Event.To = t.ClaimedBy, c.User
	ch.ClaimedBy = ptr(c.User)
	return &ch, nil
}

// Unclaim: the claimer or an admin gives the task back to its candidates.
// An unclaimed task changes nothing (nil, nil).
func Unclaim(t *statemanager.Task, c Caller, key string, now int64) (*statemanager.Change, *Refusal) {
	if r := open(t, c); r != nil {
		return nil, r
	}
	if r := waiting(t, c); r != nil {
		return nil, r
	}
	if !c.Trusted() && !c.Admin && !c.claimer(t) {
		return nil, forbidden(t, c, "unclaim")
	}
	if t.ClaimedBy == "" {
		return nil, nil
	}
	ch := change(t, c, key, statemanager.EventUnclaimed, now)
	ch.Event.From = t.ClaimedBy
	ch.ClaimedBy = ptr("")
	return &ch, nil
}

// Assign: the claimer or an admin hands the task to a user (it becomes
// their task, claimed by them) or back to a group (unclaimed, the role one
// of its candidates, no taskUser). The history records "user" or
// "role:<name>" as From and To.
func Assign(t *statemanager.Task, c Caller, user, role, key string, now int64) (*statemanager.Change, *Refusal) {
	if (user == "") == (role == "") {
		return nil, refuse(CodeBadInput, "assign needs a user or a role, not both")
	}
	for _, n := range []string{user, role} {
		if reason := badName(n); reason != "" || len(n) > 256 {
			return nil, refuse(CodeBadInput, "assignee %.40q is not a user or role name", n)
		}
	}
	if r := open(t, c); r != nil {
		return nil, r
	}
	if r := waiting(t, c); r != nil {
		return nil, r
	}
	if !c.Trusted() && !c.Admin && !c.claimer(t) {
		return nil, forbidden(t, c, "assign")
	}
	ch := change(t, c, key, statemanager.EventAssigned, now)
	ch.Event.From = assignee(t.ClaimedBy, t.User)
	if user != "" {
		ch.Event.To = user
		ch.User, ch.ClaimedBy = ptr(user), ptr(user)
		return &ch, nil
	}
	ch.Event.To = "role:" + role
	roles := t.Roles
	if !slices.Contains(roles, role) {
		roles = append(slices.Clip(roles), role)
	}
	ch.User, ch.ClaimedBy, ch.Roles = ptr(""), ptr(""), &roles
	return &ch, nil
}

func assignee(claimedBy, user string) string {
	if claimedBy != "" {
		return claimedBy
	}
	return user
}

// Completion is the input of Complete.
type Completion struct {
	Outcome string
	Note    string
	// Data and EnrichPath are the close's (see statemanager.Close).
	Data       json.RawMessage
	EnrichPath string
}

// Complete: the claimer, or a candidate while nobody holds it, completes
// the task with one of its possibleOutcomes (when declared). Without
// requiredApprovals the change closes it COMPLETED; with them it moves to
// IN_APPROVAL, recording the executor.
func Complete(t *statemanager.Task, c Caller, in Completion, key string, now int64) (*statemanager.Change, *Refusal) {
	if r := open(t, c); r != nil {
		return nil, r
	}
	if r := waiting(t, c); r != nil {
		return nil, r
	}
	if !c.candidate(t) {
		return nil, forbidden(t, c, "complete")
	}
	if !c.Trusted() && t.ClaimedBy != "" && !c.claimer(t) {
		return nil, conflict(t, c, CodeTaskClaimed, "task %q in %q is claimed by %q", t.ID, t.Domain, t.ClaimedBy)
	}
	if r := checkOutcome(t, in.Outcome); r != nil {
		return nil, r
	}
	if r := badText("note", in.Note, maxNoteLen); r != nil {
		return nil, r
	}
	ch := change(t, c, key, statemanager.EventCompleted, now)
	ch.Event.Outcome, ch.Event.Note = in.Outcome, in.Note
	ch.Outcome, ch.Note = ptr(in.Outcome), ptr(in.Note)
	if t.RequiredApprovals > 0 {
		if c.User == "" {
			// Four eyes compare the approvers with the executor: an
			// anonymous completion could be approved by anyone.
			return nil, refuse(CodeBadInput, "task %q in %q needs approvals: its completion needs a user in requestMeta", t.ID, t.Domain)
		}
		ch.Status, ch.CompletedBy, ch.Approvals = ptr(statemanager.StatusInApproval), ptr(c.User), &[]statemanager.Approval{}
		// The executor's data waits with the task for the last approval,
		// whose close hands it to the saga. Both are always written, so a
		// completion after a reject replaces what the rejected one gave
		// (no data included) instead of inheriting it.
		ch.CloseData, ch.EnrichPath = ptr(json.RawMessage(in.Data)), ptr(in.EnrichPath)
		return &ch, nil
	}
	ch.CompletedBy = ptr(c.User)
	ch.Close = &statemanager.Close{ID: t.ID, Status: statemanager.StatusCompleted, At: now, By: c.User,
		Data: in.Data, Key: key, EnrichPath: in.EnrichPath, Outcome: in.Outcome, Note: in.Note}
	return &ch, nil
}

func checkOutcome(t *statemanager.Task, outcome string) *Refusal {
	if len(t.PossibleOutcomes) > 0 && !slices.Contains(t.PossibleOutcomes, outcome) {
		if outcome == "" {
			return refuse(CodeBadInput, "task %q in %q needs an outcome (one of %s)", t.ID, t.Domain, strings.Join(t.PossibleOutcomes, ", "))
		}
		return refuse(CodeBadInput, "outcome %.64q is not one of %s", outcome, strings.Join(t.PossibleOutcomes, ", "))
	}
	if outcome != "" {
		if reason := badOutcome(outcome); reason != "" {
			return refuse(CodeBadInput, "outcome %.64q %s", outcome, reason)
		}
	}
	return nil
}

// approval checks what approve and reject share: a task in approval, an
// approver who is not its executor and has not approved it.
func approval(t *statemanager.Task, c Caller, note string) *Refusal {
	if r := open(t, c); r != nil {
		return r
	}
	if c.User == "" {
		return refuse(CodeForbidden, "an approval needs a user in requestMeta")
	}
	if !c.approver(t) {
		return forbidden(t, c, "approve or reject")
	}
	if t.Status != statemanager.StatusInApproval {
		return conflict(t, c, CodeNotInApproval, "task %q in %q is not awaiting approval", t.ID, t.Domain)
	}
	if c.User == t.CompletedBy {
		return conflict(t, c, CodeSelfApproval, "%s completed task %q in %q and may not approve or reject it", c.name(), t.ID, t.Domain)
	}
	if slices.ContainsFunc(t.Approvals, func(a statemanager.Approval) bool { return a.User == c.User }) {
		return conflict(t, c, CodeAlreadyApproved, "%s approved task %q in %q already", c.name(), t.ID, t.Domain)
	}
	return badText("note", note, maxNoteLen)
}

// Approve adds the caller's approval; the one that makes requiredApprovals
// distinct approvals closes the task COMPLETED with the executor's
// completion (outcome, note, data and where the data enriches the stored
// event, as Complete recorded them), closed by the executor: the decision
// is theirs, so the saga resumes exactly as a completion without approvals
// would have resumed it.
func Approve(t *statemanager.Task, c Caller, note, key string, now int64) (*statemanager.Change, *Refusal) {
	if r := approval(t, c, note); r != nil {
		return nil, r
	}
	ch := change(t, c, key, statemanager.EventApproved, now)
	ch.Event.Note = note
	approvals := append(slices.Clip(t.Approvals), statemanager.Approval{User: c.User, At: now})
	ch.Approvals = &approvals
	if len(approvals) >= t.RequiredApprovals {
		ch.Close = &statemanager.Close{ID: t.ID, Status: statemanager.StatusCompleted, At: now, By: t.CompletedBy,
			Key: key, Outcome: t.Outcome, Note: t.Note, Data: t.CloseData, EnrichPath: t.EnrichPath}
	}
	return &ch, nil
}

// Reject sends a completion back to its executor: WAITING, claimed by
// them, the approvals reset, and the rejected completion forgotten (its
// outcome, note and data): a close keeps a recorded value it has none of
// its own for, so a task timing out after a reject would otherwise hand
// the saga data that was rejected.
func Reject(t *statemanager.Task, c Caller, note, key string, now int64) (*statemanager.Change, *Refusal) {
	if r := approval(t, c, note); r != nil {
		return nil, r
	}
	ch := change(t, c, key, statemanager.EventRejected, now)
	ch.Event.Note, ch.Event.To = note, t.CompletedBy
	ch.Status, ch.ClaimedBy = ptr(statemanager.StatusWaiting), ptr(t.CompletedBy)
	ch.Approvals, ch.Outcome, ch.Note, ch.CompletedBy = &[]statemanager.Approval{}, ptr(""), ptr(""), ptr("")
	ch.CloseData, ch.EnrichPath = ptr(json.RawMessage(nil)), ptr("")
	return &ch, nil
}

// Cancel: an admin (or a trusted caller) closes an open task CANCELLED,
// the reason as its note.
func Cancel(t *statemanager.Task, c Caller, reason, key string, now int64) (*statemanager.Change, *Refusal) {
	if r := open(t, c); r != nil {
		return nil, r
	}
	if !c.Trusted() && !c.Admin {
		return nil, forbidden(t, c, "cancel")
	}
	if r := badText("reason", reason, maxNoteLen); r != nil {
		return nil, r
	}
	ch := change(t, c, key, statemanager.EventCancelled, now)
	ch.Event.Note = reason
	if t.Status == statemanager.StatusInApproval {
		// The completion awaiting approval decided nothing: the
		// cancelled saga must not resume with its data.
		ch.CloseData, ch.EnrichPath = ptr(json.RawMessage(nil)), ptr("")
	}
	ch.Close = &statemanager.Close{ID: t.ID, Status: statemanager.StatusCancelled, At: now, By: c.User, Key: key, Note: reason}
	return &ch, nil
}

// Deadline is the input of MoveDeadline: Timeout ms from now, or the epoch
// ms TimeoutOn; exactly one.
type Deadline struct {
	Timeout, TimeoutOn int64
	// Given says which were present in the input, so a zero is told from
	// an absent field.
	HasTimeout, HasTimeoutOn bool
}

// MoveDeadline: the claimer or an admin moves an open task's deadline. A
// deadline in the past makes it due at once; the history records the
// deadlines (epoch ms) from and to.
func MoveDeadline(t *statemanager.Task, c Caller, in Deadline, key string, now int64) (*statemanager.Change, *Refusal) {
	var at int64
	switch {
	case in.HasTimeout == in.HasTimeoutOn:
		return nil, refuse(CodeBadInput, "a deadline needs timeout (ms) or timeoutOn (epoch ms), one of them")
	case in.HasTimeout && in.Timeout < 0:
		return nil, refuse(CodeBadInput, "timeout must not be negative, got %d", in.Timeout)
	case in.HasTimeout:
		at = now + in.Timeout
	case in.TimeoutOn <= 0:
		return nil, refuse(CodeBadInput, "timeoutOn must be a positive epoch time in ms, got %d", in.TimeoutOn)
	default:
		at = in.TimeoutOn
	}
	if r := open(t, c); r != nil {
		return nil, r
	}
	if !c.Trusted() && !c.Admin && !c.claimer(t) {
		return nil, forbidden(t, c, "move the deadline of")
	}
	ch := change(t, c, key, statemanager.EventDeadline, now)
	ch.Event.From, ch.Event.To = strconv.FormatInt(t.Deadline, 10), strconv.FormatInt(at, 10)
	ch.Deadline = &at
	return &ch, nil
}

// Comment: anyone who may see an open task adds text to its history.
func Comment(t *statemanager.Task, c Caller, text, key string, now int64) (*statemanager.Change, *Refusal) {
	if strings.TrimSpace(text) == "" {
		return nil, refuse(CodeBadInput, "a comment needs a text")
	}
	if r := badText("text", text, maxCommentLen); r != nil {
		return nil, r
	}
	if r := open(t, c); r != nil {
		return nil, r
	}
	if !c.seer(t) {
		return nil, forbidden(t, c, "comment on")
	}
	ch := change(t, c, key, statemanager.EventCommented, now)
	ch.Event.Note = text
	return &ch, nil
}
