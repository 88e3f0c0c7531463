package statemanager

import (
	"context"
	"encoding/json"
	"errors"
	"hash/crc32"
	"slices"
)

// Task statuses. A task is open, WAITING or IN_APPROVAL (StatusInApproval,
// see Open), until exactly one close moves it to one of the other three; that
// move is final.
const (
	StatusWaiting   = "WAITING"
	StatusCompleted = "COMPLETED"
	StatusTimeout   = "TIMEOUT"
	StatusCancelled = "CANCELLED"
)

// Task is one waiting entry and, once closed, the decision that closed it.
type Task struct {
	ID        string   `json:"taskId"`
	Domain    string   `json:"domain"`
	Name      string   `json:"taskName,omitempty"`
	Spec      string   `json:"taskSpec,omitempty"`
	Action    string   `json:"taskAction,omitempty"`
	Roles     []string `json:"taskRoles,omitempty"`
	User      string   `json:"taskUser,omitempty"`
	Saga      string   `json:"saga,omitempty"`
	StepID    string   `json:"stepId,omitempty"`
	RequestID string   `json:"requestId,omitempty"`
	// Tenant is the tenant of the request that started the task; only
	// callers of that tenant see or touch it ("" is the default tenant).
	Tenant string `json:"tenant,omitempty"`
	// StartKey identifies the step visit that started the task. A Start
	// whose StartKey equals a closed task's is a replay (a no-op); one with
	// another key is a new visit (a saga looping back into the step) and
	// replaces the closed task. Empty: RequestID and StepID identify it.
	StartKey string `json:"startKey,omitempty"`
	// StartedBy is the user of the request that started the task, the
	// actor of its started event ("" for a system start).
	StartedBy string `json:"startedBy,omitempty"`
	// StartedAt and Deadline are epoch milliseconds; Deadline 0 means none.
	StartedAt int64 `json:"startedAt"`
	Deadline  int64 `json:"deadline,omitempty"`
	// Data is the (inputPattern-transformed) data handed back on proceeding.
	Data json.RawMessage `json:"data,omitempty"`
	// Envelope is the whole suspended envelope, resumed on close.
	Envelope json.RawMessage `json:"envelope,omitempty"`
	Status   string          `json:"status"`

	// The lifecycle (SPEC §12). ClaimedBy is the operator working on an
	// open task; PossibleOutcomes, RequiredApprovals, ApproverRoles and
	// Priority come from StartTask; Outcome, Note and CompletedBy are the
	// executor's completion, Approvals the approvals it gathered.
	ClaimedBy         string     `json:"claimedBy,omitempty"`
	PossibleOutcomes  []string   `json:"possibleOutcomes,omitempty"`
	RequiredApprovals int        `json:"requiredApprovals,omitempty"`
	ApproverRoles     []string   `json:"approverRoles,omitempty"`
	Priority          int        `json:"priority,omitempty"`
	Outcome           string     `json:"outcome,omitempty"`
	Note              string     `json:"note,omitempty"`
	CompletedBy       string     `json:"completedBy,omitempty"`
	Approvals         []Approval `json:"approvals,omitempty"`
	// Version counts the task's changes; Lifecycle.Apply compares it.
	Version int64 `json:"version,omitempty"`

	// The decision, set once the task is closed.
	ClosedAt  int64           `json:"closedAt,omitempty"`
	ClosedBy  string          `json:"closedBy,omitempty"`
	CloseData json.RawMessage `json:"closeData,omitempty"`
	// CloseKey identifies the close request; a retry with the same key
	// replays the recorded decision instead of failing.
	CloseKey string `json:"closeKey,omitempty"`
	// EnrichPath is where CloseData is written into the stored envelope's
	// payload when the saga resumes ("" writes nothing).
	EnrichPath string `json:"enrichPath,omitempty"`
}

// Waiting reports whether the task is still open: WAITING or IN_APPROVAL
// (see Open). Status tells the two apart.
func (t *Task) Waiting() bool { return Open(t.Status) }

// Close asks for an open task to be closed.
type Close struct {
	ID string
	// Status is COMPLETED, TIMEOUT or CANCELLED.
	Status string
	// At is the close time in epoch ms, recorded as ClosedAt.
	At int64
	By string
	// Data is recorded as CloseData (for ProceedTask, the proceed input).
	Data json.RawMessage
	// Key makes the close idempotent: closing again with the same Key
	// returns the recorded decision with replay=true.
	Key string
	// EnrichPath is recorded with the decision, so effects rebuilt after a
	// crash are identical to the first ones.
	EnrichPath string
	// Outcome and Note are the executor's, recorded with the decision and
	// in the closing history event.
	Outcome string
	Note    string
	// OnlyIfDue makes the close a deadline firing: it closes only a task
	// whose deadline is set and at or before At. A task whose deadline
	// moved later or went since the caller read it (a deadline change won
	// the race) is left open, and the close returns it with ErrStale.
	OnlyIfDue bool
}

// Due is a waiting task whose deadline has come.
type Due struct {
	ID       string
	Deadline int64
}

// Filter selects tasks to list. Empty fields match everything; Status
// defaults to WAITING. Every listing covers one tenant, Tenant, and reads
// only indexes of it, so its cost follows the page and not the number of
// tasks stored:
//
//   - WAITING or IN_APPROVAL (the open statuses, each listed on its own):
//     User selects the tasks offered to that taskUser, Role those offered to
//     that role, ClaimedBy those that user claimed, Candidate those the
//     candidate may take up; given together, each narrows the others.
//   - a closed status: User selects the tasks that user acted on (closed,
//     had claimed, or completed as executor), which is what a person's
//     history is; ClaimedBy those the user had claimed; Role narrows them
//     further. A Role without a User has no index for closed tasks and is
//     refused with ErrInvalidFilter; closed tasks have no candidates.
//
// An unknown Status or Sort, a Sort on closed tasks and a bad Cursor are
// ErrInvalidFilter.
type Filter struct {
	User   string
	Role   string
	Status string
	// ClaimedBy selects the tasks that user claimed (for closed ones: held
	// when they closed).
	ClaimedBy string
	// Candidate, when set, selects the open tasks it may take up (SPEC
	// §12): WAITING ones offered to its User or one of its Roles and not
	// claimed by anyone else; IN_APPROVAL ones it may approve, holding one
	// of their approver roles (taskRoles when none were given), neither
	// completed nor approved by it yet. Its Admin is ignored. For a viewer
	// that is not an admin the candidate is the viewer itself.
	Candidate *Viewer
	// Sort orders open tasks: SortStartedAt (""), SortDeadline or
	// SortPriority. Closed tasks are listed by ClosedAt only.
	Sort string
	// Cursor, from CursorAfter (or ListPage's Page.Next), lists the tasks
	// after the page it ended; it belongs to one Status, Sort and set of
	// filters.
	Cursor string
	Limit  int
	// Tenant is the tenant whose tasks are listed ("" is the default
	// tenant); other tenants' tasks are never listed.
	Tenant string
	// Viewer, when set, keeps only the tasks the viewer may act on or has
	// acted on (Task.VisibleTo); nil lists as a trusted caller. A viewer
	// that is not an admin is listed the open tasks offered to its user or
	// one of its roles, claimed or completed by it, and the IN_APPROVAL
	// ones it may approve (it holds an approver role); and the closed tasks
	// it acted on (closed, had claimed, or completed). An admin sees every
	// task of the tenant. The filters narrow what the viewer sees, never
	// widen it.
	Viewer *Viewer
}

// Viewer is who asks to see tasks; see Task.VisibleTo.
type Viewer struct {
	User  string
	Roles []string
	Admin bool
}

// VisibleTo reports whether v, a caller of tenant, may see t. A nil viewer
// is a trusted caller (a Kafka producer, the command line) and sees
// everything. Anyone else sees only tasks of its own tenant, and of those
// every one when it is an admin, otherwise the ones it may act on or has
// acted on: it is a candidate (t.User, one of t.Roles), the claimer, the
// executor (CompletedBy) or the closer, or, while the task is IN_APPROVAL,
// holds one of its approver roles (EffectiveApproverRoles). A task with
// neither taskUser nor taskRoles nor anyone who acted on it is shown to
// admins only: no index of a person reaches it.
//
// The listings agree: a viewer's listing of an open status is exactly the
// tasks of that status it may see; of a closed status, the ones it acted
// on (a candidate who never acted on a closed task still sees it by id).
func (t *Task) VisibleTo(tenant string, v *Viewer) bool {
	if v == nil {
		return true
	}
	if t.Tenant != tenant {
		return false
	}
	if v.Admin {
		return true
	}
	if v.User != "" && (t.User == v.User || t.ClosedBy == v.User || t.ClaimedBy == v.User || t.CompletedBy == v.User) {
		return true
	}
	// An approver acted on the task too, and keeps seeing it once its
	// approval closed it.
	for _, a := range t.Approvals {
		if v.User != "" && a.User == v.User {
			return true
		}
	}
	approving := t.Status == StatusInApproval
	for _, r := range v.Roles {
		if r != "" && (slices.Contains(t.Roles, r) || approving && slices.Contains(t.EffectiveApproverRoles(), r)) {
			return true
		}
	}
	return false
}

// EffectiveApproverRoles are the roles whose holders approve t: its
// ApproverRoles, or its Roles when it has none (SPEC §12).
func (t *Task) EffectiveApproverRoles() []string {
	if len(t.ApproverRoles) > 0 {
		return t.ApproverRoles
	}
	return t.Roles
}

// ValidDomain reports whether d may name a domain: 1 to 64 ASCII letters,
// digits, '.', '_' or '-'. A domain becomes a Redis key prefix and a cache
// entry, so anything else (braces that would break the hash tags, huge
// names that would pin memory) is refused before it reaches either.
func ValidDomain(d string) bool {
	if len(d) == 0 || len(d) > 64 {
		return false
	}
	for i := 0; i < len(d); i++ {
		switch c := d[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// Errors returned by Store methods. Both are business outcomes the caller
// turns into a FAIL result; any other error is infrastructure trouble that the
// runner retries with backoff.
var (
	// ErrNotFound: no task has that id (never started, or expired after close).
	ErrNotFound = errors.New("statemanager: task not found")
	// ErrClosed: the task was already closed by another request. The returned
	// task carries that decision.
	ErrClosed = errors.New("statemanager: task already closed")
	// ErrClosePending: Start found the id taken by a closed task of another
	// step visit whose effects (continuation, notification) are not acked
	// yet. Replacing it could lose them, so the start is refused; it is
	// transient, and the runner retries it like infrastructure trouble.
	ErrClosePending = errors.New("statemanager: previous close of the task is not acked yet")
	// ErrInvalidDomain: a Resolver was asked for a domain name ValidDomain
	// refuses. It is permanent: the same name is refused on every retry, so
	// the runner dead-letters the record (and the gateway answers 400).
	ErrInvalidDomain = errors.New("statemanager: invalid domain name")
	// ErrInvalidFilter: List was given a filter no index answers (a role
	// filter on closed tasks without a user). It is the caller's mistake:
	// answer 400, never retry.
	ErrInvalidFilter = errors.New("statemanager: invalid task filter")
)

// Store is one domain's state manager. Implementations are safe for concurrent
// use. Every method that changes a task is atomic: a proceed racing a timeout
// has exactly one winner.
type Store interface {
	// Start stores t as WAITING at Version 1, filling StartedAt if zero and
	// Status, and starts its history with a started event. Of the lifecycle
	// fields it stores those StartTask gives (PossibleOutcomes,
	// RequiredApprovals, ApproverRoles, Priority); the others begin empty.
	// When a task with t.ID is already open, or was started by the same step
	// visit (same StartKey, or same RequestID and StepID when it is empty: a
	// replay), nothing changes and Start returns that task with
	// created=false. A closed task of another visit is replaced once its
	// close is acked; before that Start returns ErrClosePending (retry).
	Start(ctx context.Context, t *Task) (stored *Task, created bool, err error)

	// Get returns the task, waiting or closed, or ErrNotFound.
	Get(ctx context.Context, id string) (*Task, error)

	// Close records the decision on an open task (WAITING or IN_APPROVAL) and
	// returns the closed task. The decision is recorded before any effect and
	// kept pending until Ack, so a crash after Close loses nothing: Pending
	// returns it, and a retry with the same Key returns it again with
	// replay=true. Unknown id: ErrNotFound. Closed by another key: the task
	// and ErrClosed. With c.OnlyIfDue, a task not due at c.At: the task and
	// ErrStale. A store that keeps history (Lifecycle) appends the closing
	// event (completed, timedout or cancelled, actor c.By, with c.Outcome
	// and c.Note).
	Close(ctx context.Context, c Close) (task *Task, replay bool, err error)

	// Ack says the effects of a close (continuation, notification) are
	// durable; the task leaves the pending set. Acking twice is harmless.
	Ack(ctx context.Context, id string) error

	// Due returns up to limit open tasks of one shard whose deadline is at
	// or before until, earliest first.
	Due(ctx context.Context, shard int, until int64, limit int) ([]Due, error)

	// Between returns up to limit waiting tasks, across all shards, whose
	// deadline lies in [from, to], earliest first.
	Between(ctx context.Context, from, to int64, limit int) ([]Due, error)

	// Pending returns up to limit closed tasks of one shard whose effects were
	// not acked and that closed at or before closedBefore.
	Pending(ctx context.Context, shard int, closedBefore int64, limit int) ([]*Task, error)

	// Watermark returns the end of the last TimeoutBetween range (0 if none).
	Watermark(ctx context.Context) (int64, error)
	// SetWatermark moves the watermark forward to ms; it never moves back.
	SetWatermark(ctx context.Context, ms int64) error

	// List returns up to f.Limit tasks of f.Tenant matching f and visible
	// to f.Viewer (see Filter) after f.Cursor: open tasks in f.Sort's
	// order (oldest first by default), closed ones by ClosedAt. A filter no
	// index answers, or a bad sort or cursor, is ErrInvalidFilter. ListPage
	// pages through it.
	List(ctx context.Context, f Filter) ([]*Task, error)

	// Shards is the number of deadline shards; ShardOf maps a task id to one.
	Shards() int
	ShardOf(id string) int
}

// BatchAcker is an optional extension of Store for callers that ack the
// closes of a whole batch of records at once (the engine after producing a
// batch's effects): check for it with a type assertion and fall back to Ack
// per id.
//
// AckMany has the effect of Ack on each id, in far fewer round trips (the
// Redis store needs one). Ids may repeat, be unknown or be acked already:
// like Ack, that is harmless. It is not atomic across ids: on error some ids
// may be acked and others not; the caller retries them all, which is safe.
type BatchAcker interface {
	AckMany(ctx context.Context, ids []string) error
}

// BatchCloser is an optional extension of Store for callers that close many
// tasks with one decision (the timers firing a shard's due deadlines): check
// for it with a type assertion and fall back to Close per id.
//
// CloseMany has the effect of Close on each id with c (c.ID is ignored), in
// far fewer round trips and script calls. Results are in the order of ids;
// each Err is nil, ErrNotFound, ErrClosed or (with c.OnlyIfDue) ErrStale
// exactly as Close would return,
// and Task and Replay are what Close would return. A non-nil error means
// infrastructure trouble: some ids may be closed and others not, and a retry
// with the same Key replays the closed ones.
type BatchCloser interface {
	CloseMany(ctx context.Context, ids []string, c Close) ([]CloseResult, error)
}

// Counter is an optional extension of Store for the waiting-tasks gauge:
// CountWaiting returns how many tasks of every tenant wait in the store. It
// must cost a few round trips whatever the number of tasks.
type Counter interface {
	CountWaiting(ctx context.Context) (int64, error)
}

// CloseMany closes ids with one decision through s's BatchCloser, or with
// Close per id when s has none; see BatchCloser for the results.
func CloseMany(ctx context.Context, s Store, ids []string, c Close) ([]CloseResult, error) {
	if bc, ok := s.(BatchCloser); ok {
		return bc.CloseMany(ctx, ids, c)
	}
	res := make([]CloseResult, len(ids))
	for i, id := range ids {
		c.ID = id
		t, replay, err := s.Close(ctx, c)
		if err != nil && !errors.Is(err, ErrClosed) && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrStale) && !errors.Is(err, ErrNeedsApproval) {
			return nil, err
		}
		res[i] = CloseResult{Task: t, Replay: replay, Err: err}
	}
	return res, nil
}

// AckMany acks ids through s's BatchAcker, or with Ack per id when s has
// none.
func AckMany(ctx context.Context, s Store, ids []string) error {
	if b, ok := s.(BatchAcker); ok {
		return b.AckMany(ctx, ids)
	}
	for _, id := range ids {
		if err := s.Ack(ctx, id); err != nil {
			return err
		}
	}
	return nil
}

// CloseResult is the outcome of closing one id in CloseMany.
type CloseResult struct {
	Task   *Task
	Replay bool
	Err    error
}

// ShardOf is the shard function every backend uses, so that any process can
// find a task's shard from its id alone.
func ShardOf(id string, shards int) int {
	if shards <= 1 {
		return 0
	}
	return int(crc32.ChecksumIEEE([]byte(id)) % uint32(shards))
}

// Resolver returns the Store of a domain.
type Resolver interface {
	Store(domain string) (Store, error)
}
