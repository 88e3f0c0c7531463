package actions

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/tidwall/gjson"

	"github.com/sagarunner/sagarunner/saga/envelope"
	"github.com/sagarunner/sagarunner/statemanager"
)

// The task lifecycle operations of SPEC §12 as actions: each reads its task
// id (and domain) from its input like ProceedTask, its operation's fields
// from fixed names of the same input, computes the change with the rules of
// lifecyclerules.go and applies it through statemanager.Lifecycle.

// staleRetries is how many times an operation that lost a race re-reads the
// task and computes again before answering TASK_CHANGED: a second loss in
// a row means the task is busy, which its caller should see.
const staleRetries = 3

// lifecycleOp computes one operation's change from its input.
type lifecycleOp func(t *statemanager.Task, c Caller, in []byte, key string, now int64, o opConfig) (*statemanager.Change, *Refusal)

// opConfig is what an operation takes from its action's parameters rather
// than from its input.
type opConfig struct {
	// EnrichPath is where a completion's data enters the waiting saga's
	// payload (CompleteTask's parameter).
	EnrichPath string
}

// lifecycleSpec declares one operation as an action.
func lifecycleSpec(name, doc, fields string, asStep bool, op lifecycleOp, extra ...Param) *Spec {
	if asStep {
		doc += " Usable as a saga step as well as a direct action."
	}
	return &Spec{
		Name:          name,
		Doc:           doc + " The input holds " + fields + ". " + lifecycleAuthDoc,
		Domain:        Required,
		InputElement:  Optional,
		OutputElement: Optional,
		Params: append([]Param{
			{Name: "taskIdPath", Type: Path, Default: "taskId", Doc: "Path of the task id in the input; when it resolves to nothing the id is <requestId>:<stepId>:<runnerPartition>", Example: "id"},
			{Name: "domainPath", Type: Path, Doc: "Path of a domain in the input that overrides the step's domain when present (letters, digits, '.', '_', '-')", Example: "domain"},
		}, extra...),
		New: func(c Config) (Action, error) {
			if !validDomain(c.Domain) {
				return nil, fmt.Errorf("%s: %s", name, domainReason(c.Domain))
			}
			return &lifecycleAction{name: name, op: op, domain: c.Domain, inputElement: c.InputElement,
				outputElement: c.OutputElement, taskIDPath: c.String("taskIdPath"), domainPath: c.String("domainPath"),
				enrichPath: c.String("enrichPath")}, nil
		},
	}
}

const lifecycleAuthDoc = "Who may: a candidate (taskUser, taskRoles, an admin) claims, and completes while nobody else holds the task; " +
	"the claimer or an admin unclaims, assigns and moves the deadline; a holder of approverRoles approves and rejects; " +
	"an admin cancels; anyone who may see the task comments. A caller without identity is trusted. Another tenant's task " +
	"is TASK_NOT_FOUND; a refused caller FORBIDDEN; an operation that lost a race to another, after re-reading " +
	"the task, TASK_CHANGED; a store without the lifecycle " + CodeUnsupported + ". Idempotent on the requestId. " +
	"At outputElement: the task's taskId, domain, status, claimedBy, completedBy, version, deadline, outcome and approvals after the operation; " +
	"a refusal caused by the task's state (TASK_CLAIMED, TASK_CLOSED, TASK_CHANGED, the approval codes) puts the same there, to a caller who may see the task. " +
	"Every event is published to the task-event topic, keyed by task id."

func init() {
	Default.Register(lifecycleSpec("ClaimTask", "Claims a waiting task for the caller (requestMeta.user), so other candidates cannot complete it.",
		"an optional override (boolean: an admin takes the task from whoever holds it)", false,
		func(t *statemanager.Task, c Caller, in []byte, key string, now int64, o opConfig) (*statemanager.Change, *Refusal) {
			return Claim(t, c, gjson.GetBytes(in, "override").Bool(), key, now)
		}))
	Default.Register(lifecycleSpec("UnclaimTask", "Gives a claimed task back to its candidates.", "nothing else", false,
		func(t *statemanager.Task, c Caller, _ []byte, key string, now int64, o opConfig) (*statemanager.Change, *Refusal) {
			return Unclaim(t, c, key, now)
		}))
	Default.Register(lifecycleSpec("AssignTask", "Reassigns a waiting task to a user (claimed by them) or back to a group (unclaimed, that role a candidate).",
		"user or role (strings, exactly one)", false,
		func(t *statemanager.Task, c Caller, in []byte, key string, now int64, o opConfig) (*statemanager.Change, *Refusal) {
			user, r := stringField(in, "user")
			if r != nil {
				return nil, r
			}
			role, r := stringField(in, "role")
			if r != nil {
				return nil, r
			}
			return Assign(t, c, user, role, key, now)
		}))
	Default.Register(lifecycleSpec("CompleteTask", "Completes a waiting task with an outcome, exactly as ProceedTask; with requiredApprovals the task "+
		"moves to IN_APPROVAL instead of closing.",
		"outcome (one of possibleOutcomes when declared), data (recorded as the close data) and note", false,
		func(t *statemanager.Task, c Caller, in []byte, key string, now int64, o opConfig) (*statemanager.Change, *Refusal) {
			outcome, r := stringField(in, "outcome")
			if r != nil {
				return nil, r
			}
			note, r := stringField(in, "note")
			if r != nil {
				return nil, r
			}
			var data []byte
			if d := gjson.GetBytes(in, "data"); d.Exists() {
				data = []byte(d.Raw)
			}
			return Complete(t, c, Completion{Outcome: outcome, Note: note, Data: data, EnrichPath: o.EnrichPath}, key, now)
		},
		// The same default as the generic /ProceedTask saga's, so a
		// completion over POST /tasks/{domain}/{id}/complete reaches the
		// waiting saga where a ProceedTask's would.
		Param{Name: "enrichPath", Type: Path, Default: "decision", Doc: "Path in the stored event's payload to write the completion's data at, as ProceedTask's enrichPath", Example: "decision"}))
	Default.Register(lifecycleSpec("ApproveTask", "Approves a completed task awaiting approval; the requiredApprovals-th distinct approval closes it COMPLETED. "+
		"The executor may not approve (SELF_APPROVAL), nor anyone twice (ALREADY_APPROVED); a task not awaiting approval is NOT_IN_APPROVAL.",
		"an optional note", false,
		func(t *statemanager.Task, c Caller, in []byte, key string, now int64, o opConfig) (*statemanager.Change, *Refusal) {
			note, r := stringField(in, "note")
			if r != nil {
				return nil, r
			}
			return Approve(t, c, note, key, now)
		}))
	Default.Register(lifecycleSpec("RejectTask", "Rejects a completion awaiting approval: the task goes back to WAITING, claimed by its executor, its approvals reset.",
		"an optional note", false,
		func(t *statemanager.Task, c Caller, in []byte, key string, now int64, o opConfig) (*statemanager.Change, *Refusal) {
			note, r := stringField(in, "note")
			if r != nil {
				return nil, r
			}
			return Reject(t, c, note, key, now)
		}))
	Default.Register(lifecycleSpec("CancelTask", "Cancels an open task: it closes CANCELLED and its saga continues from the StartTask step with status "+
		"CANCELLED; a CANCELLED notification is published. As a saga step it cancels the task named in the event.",
		"an optional reason", true,
		func(t *statemanager.Task, c Caller, in []byte, key string, now int64, o opConfig) (*statemanager.Change, *Refusal) {
			reason, r := stringField(in, "reason")
			if r != nil {
				return nil, r
			}
			return Cancel(t, c, reason, key, now)
		}))
	Default.Register(lifecycleSpec("SetDeadline", "Moves an open task's deadline atomically; one in the past makes it time out at once.",
		"timeout (ms from now) or timeoutOn (epoch ms), exactly one", true,
		func(t *statemanager.Task, c Caller, in []byte, key string, now int64, o opConfig) (*statemanager.Change, *Refusal) {
			var d Deadline
			var r *Refusal
			if d.Timeout, d.HasTimeout, r = intField(in, "timeout"); r != nil {
				return nil, r
			}
			if d.TimeoutOn, d.HasTimeoutOn, r = intField(in, "timeoutOn"); r != nil {
				return nil, r
			}
			return MoveDeadline(t, c, d, key, now)
		}))
	Default.Register(lifecycleSpec("CommentTask", "Adds a comment to an open task's history.", "text (the comment)", false,
		func(t *statemanager.Task, c Caller, in []byte, key string, now int64, o opConfig) (*statemanager.Change, *Refusal) {
			text, r := stringField(in, "text")
			if r != nil {
				return nil, r
			}
			return Comment(t, c, text, key, now)
		}))
}

func stringField(in []byte, name string) (string, *Refusal) {
	v := gjson.GetBytes(in, name)
	switch v.Type {
	case gjson.Null:
		return "", nil
	case gjson.String:
		return v.Str, nil
	}
	return "", refuse(CodeBadInput, "%s must be a string, got %.40s", name, v.Raw)
}

func intField(in []byte, name string) (int64, bool, *Refusal) {
	v := gjson.GetBytes(in, name)
	switch v.Type {
	case gjson.Null:
		return 0, false, nil
	case gjson.Number:
		if n, err := strconv.ParseInt(v.Raw, 10, 64); err == nil {
			return n, true, nil
		}
	}
	return 0, false, refuse(CodeBadInput, "%s must be an integer (ms), got %.40s", name, v.Raw)
}

type lifecycleAction struct {
	name          string
	op            lifecycleOp
	domain        string
	inputElement  string
	outputElement string
	taskIDPath    string
	domainPath    string
	// enrichPath is where a completion's data enters the waiting saga's
	// payload (CompleteTask's parameter; "" for the other operations).
	enrichPath string
}

// Execute reads the task, computes the change and applies it. A change
// computed from a task another operation changed meanwhile is refused by
// the store (ErrStale); the operation then starts over from the task as it
// is, so of two racing operations the loser is judged by the winner's
// result (a second claim becomes TASK_CLAIMED).
func (a *lifecycleAction) Execute(ctx context.Context, x *Exec, env *envelope.Envelope) (Outcome, error) {
	in, ok := input(env, a.inputElement)
	if !ok {
		return Outcome{Env: env}, nil
	}
	id, ok := taskID(env, x, in, a.taskIDPath)
	if !ok {
		return Outcome{Env: env}, nil
	}
	if reason := badTaskID(id); reason != "" {
		env.Fail(CodeBadInput, "task id %s", reason)
		return Outcome{Env: env}, nil
	}
	domain, ok := domainOf(env, in, a.domainPath, a.domain)
	if !ok {
		return Outcome{Env: env}, nil
	}
	store, err := storeOf(x, domain)
	if err != nil {
		return Outcome{}, fmt.Errorf("%s %q: %w", a.name, id, err)
	}
	lc, ok := store.(statemanager.Lifecycle)
	if !ok {
		env.Fail(CodeUnsupported, "the state manager of %q has no task lifecycle", domain)
		return Outcome{Env: env}, nil
	}
	c := CallerOf(env.RequestMeta, x.AdminRoles)
	key := env.RequestMeta.RequestID
	var t *statemanager.Task
	for attempt := 0; attempt < staleRetries; attempt++ {
		if t, err = store.Get(ctx, id); errors.Is(err, statemanager.ErrNotFound) {
			// An operation on Kafka may come before its task (early.go).
			rerun := func(x *Exec) (Outcome, error) { return a.Execute(ctx, x, env) }
			if o, done, err := parkUnknown(ctx, x, env, store, domain, id, namedID(env, in, a.taskIDPath), rerun); done {
				return o, err
			}
			env.Fail(CodeTaskNotFound, "no task %q in %q", id, domain)
			return Outcome{Env: env}, nil
		} else if err != nil {
			return Outcome{}, fmt.Errorf("%s: get task %q in %q: %w: %w", a.name, id, domain, ErrRetryable, err)
		}
		now := nowMillis(x)
		ch, refusal := a.op(t, c, in, key, now, opConfig{EnrichPath: a.enrichPath})
		if refusal == nil && ch != nil {
			if refusal = Bounded(t, c, ch); refusal == nil {
				refusal = unenrichable(t, ch)
			}
		}
		if refusal != nil {
			// A redelivered operation meets the task it changed: the rules
			// refuse it (approved already, closed), the history knows it.
			// A caller kept out as of another tenant never changed the
			// task, so its refusals cost no read of the history.
			if refusal.Code != CodeTaskNotFound {
				if out, replayed, err := a.replayed(ctx, x, lc, env, domain, t, key); err != nil || replayed {
					return out, err
				}
			}
			refusal.Fail(env, a.outputElement)
			return Outcome{Env: env}, nil
		}
		if ch == nil {
			// Nothing to change (a claim of one's own task).
			return a.answer(env, t, Outcome{Env: env}), nil
		}
		after, _, recs, err := ApplyTask(ctx, x, domain, *ch)
		switch {
		case errors.Is(err, statemanager.ErrStale):
			continue
		case errors.Is(err, statemanager.ErrNotFound):
			env.Fail(CodeTaskNotFound, "no task %q in %q", id, domain)
			return Outcome{Env: env}, nil
		case errors.Is(err, statemanager.ErrClosed):
			if after == nil {
				after = t
			}
			Closed(after, c).Fail(env, a.outputElement)
			return Outcome{Env: env}, nil
		case err != nil:
			return Outcome{}, fmt.Errorf("%s: %w", a.name, err)
		}
		out := Outcome{Env: env, Records: recs}
		if ch.Close != nil {
			out.Acks = []Ack{{Domain: domain, ID: after.ID}}
		}
		return a.answer(env, after, out), nil
	}
	Changed(t, c, a.name).Fail(env, a.outputElement)
	return Outcome{Env: env}, nil
}

func claimedNote(t *statemanager.Task) string {
	if t.ClaimedBy == "" {
		return ""
	}
	return ", claimed by " + strconv.Quote(t.ClaimedBy)
}

// replayed answers an operation whose request id is in the task's history
// already with the effects it had the first time.
func (a *lifecycleAction) replayed(ctx context.Context, x *Exec, lc statemanager.Lifecycle, env *envelope.Envelope, domain string, t *statemanager.Task, key string) (Outcome, bool, error) {
	if key == "" {
		return Outcome{}, false, nil
	}
	if !statemanager.Open(t.Status) && t.CloseKey == key {
		recs, err := TaskEffects(t, x.Topics)
		if err != nil {
			return Outcome{}, false, fmt.Errorf("%s: %w", a.name, err)
		}
		return a.answer(env, t, Outcome{Env: env, Records: recs, Acks: []Ack{{Domain: domain, ID: t.ID}}}), true, nil
	}
	e, ok, err := storedEvent(ctx, lc, t.ID, key)
	if err != nil {
		return Outcome{}, false, fmt.Errorf("%s: history of task %q in %q: %w: %w", a.name, t.ID, domain, ErrRetryable, err)
	}
	if !ok {
		return Outcome{}, false, nil
	}
	out := Outcome{Env: env}
	if x.Topics.TaskEvents != "" {
		out.Records = []envelope.Record{TaskEventRecord(x.Topics.TaskEvents, t, e)}
	}
	return a.answer(env, t, out), true, nil
}

// answer succeeds with the task's state at outputElement.
func (a *lifecycleAction) answer(env *envelope.Envelope, t *statemanager.Task, out Outcome) Outcome {
	env.Succeed()
	if a.outputElement == "" {
		return out
	}
	if err := env.Set(a.outputElement, taskState(t)); err != nil {
		env.Fail(CodeBadInput, "output element %q: %v", a.outputElement, err)
	}
	return out
}

// taskState is what an operation answers: where the task stands now.
func taskState(t *statemanager.Task) []byte {
	b := make([]byte, 0, 160+len(t.ID)+len(t.Domain)+len(t.ClaimedBy)+len(t.CompletedBy)+len(t.Outcome))
	b = envelope.AppendString(append(b, `{"taskId":`...), t.ID, false)
	b = envelope.AppendString(append(b, `,"domain":`...), t.Domain, false)
	b = envelope.AppendString(append(b, `,"status":`...), t.Status, false)
	b = envelope.AppendString(append(b, `,"claimedBy":`...), t.ClaimedBy, false)
	b = envelope.AppendString(append(b, `,"completedBy":`...), t.CompletedBy, false)
	b = strconv.AppendInt(append(b, `,"version":`...), t.Version, 10)
	b = strconv.AppendInt(append(b, `,"deadline":`...), t.Deadline, 10)
	b = envelope.AppendString(append(b, `,"outcome":`...), t.Outcome, false)
	b = append(b, `,"approvals":[`...)
	for i, ap := range t.Approvals {
		if i > 0 {
			b = append(b, ',')
		}
		b = envelope.AppendString(append(b, `{"user":`...), ap.User, false)
		b = append(strconv.AppendInt(append(b, `,"at":`...), ap.At, 10), '}')
	}
	return append(b, "]}"...)
}

// domainOf is the domain named at path in the input, else dflt; ok=false
// (FAIL set) for a name that is no safe domain.
func domainOf(env *envelope.Envelope, in []byte, path, dflt string) (string, bool) {
	if path == "" {
		return dflt, true
	}
	d := envelope.GetIn(in, path)
	if !d.Exists() || d.String() == "" {
		return dflt, true
	}
	if !validDomain(d.String()) {
		env.Fail(CodeBadInput, "domain %q at %q: want 1 to 64 letters, digits, '.', '_' or '-'", d.String(), path)
		return "", false
	}
	return d.String(), true
}

// unenrichable refuses a change whose completion data cannot be written
// into the waiting saga's payload at its enrich path (an array where the
// path names a key). The continuation is built only after the close is
// durable (TaskEffects), so such a close would leave the task closed, its
// instance waiting forever and the operation failing on every retry; the
// stored payload does not change while the task is open, so the check
// made now holds at the close, whether this change makes it or the last
// approval does.
func unenrichable(t *statemanager.Task, ch *statemanager.Change) *Refusal {
	if ch.Close != nil {
		if r := enrichRefusal(t, ch.Close.EnrichPath, ch.Close.Data); r != nil {
			return r
		}
	}
	if ch.CloseData != nil && ch.EnrichPath != nil {
		return enrichRefusal(t, *ch.EnrichPath, *ch.CloseData)
	}
	return nil
}

// enrichRefusal refuses data that cannot enter t's saga payload at path.
func enrichRefusal(t *statemanager.Task, path string, data []byte) *Refusal {
	if t.Saga == "" || path == "" || len(data) == 0 {
		return nil
	}
	if _, err := enrich(storedPayload(t), path, data); err != nil {
		return refuse(CodeBadInput, "the data cannot enter the waiting saga's payload at %q: %v", path, err)
	}
	return nil
}
