package actions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jmespath/go-jmespath"
	"github.com/tidwall/gjson"

	"github.com/sagarunner/sagarunner/saga/envelope"
	"github.com/sagarunner/sagarunner/statemanager"
)

func init() {
	Default.Register(closeSpec("ProceedTask", statemanager.StatusCompleted,
		"Proceeds (completes) a waiting task: the stored event is enriched with the input and its saga continues "+
			"from the StartTask step with status SUCCESS and result.outcome; a COMPLETED notification is published. "+
			"The outcome and note are read next to the data (outcomePath, notePath); the outcome must be one of the "+
			"task's possibleOutcomes when it declares some (else BAD_INPUT). A task with requiredApprovals moves to "+
			"IN_APPROVAL instead of closing (its store must have the task lifecycle, else "+CodeUnsupported+"), and "+
			"closes once approved (ApproveTask). A task claimed by another operator is TASK_CLAIMED, one awaiting "+
			"approval TASK_IN_APPROVAL. "+closeAuthDoc,
		"proceeding"))
	Default.Register(closeSpec("TimeoutTask", statemanager.StatusTimeout,
		"Times a waiting task out by hand: the stored event is enriched with the input and its saga "+
			"continues from the StartTask step with status TIMEOUT; a TIMEOUT notification is published. "+closeAuthDoc,
		"timed out"))
}

// closeAuthDoc is the authorization rule of the close actions, for the docs.
const closeAuthDoc = "A caller with an identity (user or roles in requestMeta) may close only a task of its own " +
	"tenant (any other is TASK_NOT_FOUND, as an unknown id) for which it is the taskUser, holds one of the " +
	"taskRoles or holds an admin role (else FORBIDDEN); a task with neither taskUser nor taskRoles is open " +
	"to every caller of its tenant. A caller without identity (a Kafka producer, a gateway without auth) is trusted."

// closeSpec declares ProceedTask and TimeoutTask, which differ only in the
// status they close with.
func closeSpec(name, status, doc, verb string) *Spec {
	s := &Spec{
		Name:          name,
		Doc:           doc,
		ClosesTask:    true,
		Domain:        Required,
		InputElement:  Optional,
		OutputElement: Optional,
		Params: []Param{
			{Name: "inputPattern", Type: Pattern, Doc: "JMESPath pattern to apply on data input", Example: "{data: newData}"},
			{Name: "outputPattern", Type: Pattern, Doc: "JMESPath pattern to apply on the enriched stored data before returning the response", Example: "{stored: oldData}"},
			{Name: "taskIdPath", Type: Path, Default: "taskId", Doc: "Path of the id of the " + verb + " task in the input; when it resolves to nothing the id is <requestId>:<stepId>:<runnerPartition>", Example: "id"},
			{Name: "enrichPath", Type: Path, Doc: "Path in the stored event's payload to write the " + verb + " data at", Example: "newData"},
			{Name: "domainPath", Type: Path, Doc: "Path of a domain in the input that overrides the step's domain when present (letters, digits, '.', '_', '-')", Example: "domain"},
		},
		New: func(c Config) (Action, error) {
			if !validDomain(c.Domain) {
				return nil, fmt.Errorf("%s: %s", name, domainReason(c.Domain))
			}
			return &closeTask{
				name:          name,
				status:        status,
				domain:        c.Domain,
				inputElement:  c.InputElement,
				outputElement: c.OutputElement,
				inputPattern:  c.Pattern("inputPattern"),
				outputPattern: c.Pattern("outputPattern"),
				raw:           c.Raw,
				taskIDPath:    c.String("taskIdPath"),
				enrichPath:    c.String("enrichPath"),
				domainPath:    c.String("domainPath"),
				outcomePath:   c.String("outcomePath"),
				notePath:      c.String("notePath"),
			}, nil
		},
	}
	if status == statemanager.StatusCompleted {
		s.Params = append(s.Params,
			Param{Name: "outcomePath", Type: Path, Default: "outcome", Doc: "Path of the completion's outcome in the input (not the data)", Example: "outcome"},
			Param{Name: "notePath", Type: Path, Default: "note", Doc: "Path of the completion's note in the input (not the data)", Example: "note"})
	}
	return s
}

// closeTask is ProceedTask (status COMPLETED) and TimeoutTask (TIMEOUT).
type closeTask struct {
	name          string
	status        string
	domain        string
	inputElement  string
	outputElement string
	inputPattern  *jmespath.JMESPath
	outputPattern *jmespath.JMESPath
	raw           map[string]string
	taskIDPath    string
	enrichPath    string
	domainPath    string
	// outcomePath and notePath: ProceedTask's completion (SPEC §12).
	outcomePath string
	notePath    string
}

// Execute closes the task named in the input with the transformed input as
// its data. Everything that can refuse the request (unknown or closed task,
// a forbidden caller, a failing outputPattern) is checked before the close,
// so a refused request leaves the task waiting. The close key is the
// requestId, so a redelivered request replays the recorded decision and
// returns the same effects.
func (a *closeTask) Execute(ctx context.Context, x *Exec, env *envelope.Envelope) (Outcome, error) {
	in, id, data, ok := taskInput(env, x, a.inputElement, a.taskIDPath, a.inputPattern, a.raw["inputPattern"])
	if !ok {
		return Outcome{Env: env}, nil
	}
	if a.domainPath != "" {
		if d := envelope.GetIn(in, a.domainPath); d.Exists() && d.String() != "" {
			if !validDomain(d.String()) {
				env.Fail(CodeBadInput, "domain %q at %q: want 1 to 64 letters, digits, '.', '_' or '-'", d.String(), a.domainPath)
				return Outcome{Env: env}, nil
			}
			// The rest of the close runs on a copy bound to that domain.
			other := *a
			other.domain = d.String()
			a = &other
		}
	}
	store, err := storeOf(x, a.domain)
	if err != nil {
		return Outcome{}, fmt.Errorf("%s %q: %w", a.name, id, err)
	}
	key := env.RequestMeta.RequestID
	// Only a trusted caller may skip the read: everyone else is checked
	// against the stored task before anything changes.
	outcome, note, ok := a.completion(env, in)
	if !ok {
		return Outcome{Env: env}, nil
	}
	// A completion with an outcome or note is checked against the task's
	// lifecycle (declared outcomes, approvals), which needs the read.
	// The store refuses a plain close of a task that needs approvals
	// (ErrNeedsApproval), so the trusted fast path cannot skip them; such a
	// task takes the read path below, which completes it through the
	// lifecycle.
	if trusted(env.RequestMeta) && a.outputPattern == nil && outcome == "" && note == "" {
		o, err := a.close(ctx, x, env, nil, nil, id, data, a.enrichPath, key)
		if !errors.Is(err, statemanager.ErrNeedsApproval) && !errors.Is(err, statemanager.ErrNotFound) {
			return o, err
		}
	}
	t, err := store.Get(ctx, id)
	switch {
	case errors.Is(err, statemanager.ErrNotFound):
		// A ProceedTask on Kafka may come before its task (early.go).
		if a.status == statemanager.StatusCompleted {
			rerun := func(x *Exec) (Outcome, error) { return a.Execute(ctx, x, env) }
			if o, done, err := parkUnknown(ctx, x, env, store, a.domain, id, namedID(env, in, a.taskIDPath), rerun); done {
				return o, err
			}
		}
		env.Fail(CodeTaskNotFound, "no task %q in %q", id, a.domain)
		return Outcome{Env: env}, nil
	case err != nil:
		return Outcome{}, fmt.Errorf("%s: get task %q in %q: %w: %w", a.name, id, a.domain, ErrRetryable, err)
	}
	if !trusted(env.RequestMeta) && t.Tenant != env.RequestMeta.Tenant {
		// Exactly the answer for an unknown id, so another tenant cannot
		// tell which ids exist.
		env.Fail(CodeTaskNotFound, "no task %q in %q", id, a.domain)
		return Outcome{Env: env}, nil
	}
	// Authorization before the closed check: whether and by whom a task was
	// closed is for its candidates to learn.
	if !mayClose(env.RequestMeta, x.AdminRoles, t) {
		env.Fail(CodeForbidden, "%s may not close task %q in %q", caller(env.RequestMeta), id, a.domain)
		return Outcome{Env: env}, nil
	}
	open := statemanager.Open(t.Status)
	replay := !open && key != "" && t.CloseKey == key
	if !open && !replay {
		failClosed(env, t)
		return Outcome{Env: env}, nil
	}
	enrichPath := a.enrichPath
	if replay {
		// The response must be the one the first request got.
		data, enrichPath = t.CloseData, t.EnrichPath
		return a.close(ctx, x, env, t, nil, t.ID, data, enrichPath, key)
	}
	if a.status != statemanager.StatusCompleted {
		return a.close(ctx, x, env, t, nil, t.ID, data, enrichPath, key)
	}
	ch, refusal := Complete(t, CallerOf(env.RequestMeta, x.AdminRoles),
		Completion{Outcome: outcome, Note: note, Data: data, EnrichPath: enrichPath}, key, nowMillis(x))
	if refusal == nil {
		refusal = Bounded(t, CallerOf(env.RequestMeta, x.AdminRoles), ch)
	}
	if refusal != nil {
		env.Fail(refusal.Code, "%s", refusal.Message)
		return Outcome{Env: env}, nil
	}
	if _, lifecycle := store.(statemanager.Lifecycle); !lifecycle && ch.Close != nil {
		// A store without the lifecycle closes as it always did, with
		// the outcome and note in its decision.
		ch = nil
	}
	return a.close(ctx, x, env, t, ch, t.ID, data, enrichPath, key)
}

// completion reads ProceedTask's outcome and note from the input.
func (a *closeTask) completion(env *envelope.Envelope, in []byte) (outcome, note string, ok bool) {
	for _, f := range []struct {
		path string
		to   *string
	}{{a.outcomePath, &outcome}, {a.notePath, &note}} {
		if f.path == "" {
			continue
		}
		v := lookup(env, in, f.path)
		switch v.Type {
		case gjson.Null:
		case gjson.String:
			*f.to = v.Str
		default:
			env.Fail(CodeBadInput, "%q must be a string, got %.40s", f.path, v.Raw)
			return "", "", false
		}
	}
	return outcome, note, true
}

// close closes task id with data and answers with the enriched stored
// payload. known is the task as read before: with it, the output is shaped
// before the close, so a failing outputPattern refuses the request and leaves
// the task waiting. Without it (trusted callers of a step with no
// outputPattern, see Execute) nothing but the close itself can refuse the
// request: the close script answers unknown, closed and replayed tasks, and
// the output is shaped from the recorded decision, so a replay answers like
// the first request. Skipping the read saves a Redis round trip and a copy of
// the stored envelope per proceed.
//
// ch, when set, is the lifecycle change a completion computed (see
// Complete): it is applied instead of a plain close, and when it does not
// close the task (IN_APPROVAL) the answer is the same output with no close
// effects.
func (a *closeTask) close(ctx context.Context, x *Exec, env *envelope.Envelope, known *statemanager.Task, ch *statemanager.Change, id string, data []byte, enrichPath, key string) (Outcome, error) {
	var out []byte
	if known != nil {
		// Checked before the close, which cannot be undone (unenrichable).
		if r := enrichRefusal(known, enrichPath, data); r != nil {
			r.Fail(env, "")
			return Outcome{Env: env}, nil
		}
		var ok bool
		if out, ok = a.output(env, known, enrichPath, data); !ok {
			return Outcome{Env: env}, nil
		}
	}
	var closed *statemanager.Task
	var recs []envelope.Record
	var err error
	if ch != nil {
		closed, _, recs, err = ApplyTask(ctx, x, a.domain, *ch)
		switch {
		case errors.Is(err, ErrUnsupported):
			env.Fail(CodeUnsupported, "task %q in %q needs approvals, and its state manager has no task lifecycle", id, a.domain)
			return Outcome{Env: env}, nil
		case errors.Is(err, statemanager.ErrStale):
			env.Fail(CodeTaskChanged, "task %q in %q changed while it was completed; it is %s%s now", id, a.domain, closed.Status, claimedNote(closed))
			return Outcome{Env: env}, nil
		case err == nil && ch.Close == nil:
			// In approval: the saga waits on, the answer is the output.
			return a.respond(env, Outcome{Env: env, Records: recs}, out), nil
		}
	} else {
		closed, recs, err = CloseTask(ctx, x, a.domain, statemanager.Close{
			ID:         id,
			Status:     a.status,
			At:         nowMillis(x),
			By:         env.RequestMeta.User,
			Data:       json.RawMessage(data),
			Key:        key,
			EnrichPath: enrichPath,
		})
	}
	switch {
	case errors.Is(err, statemanager.ErrNotFound):
		if known == nil && x.Source != nil {
			// The fast path's close found no task: Execute reads it and
			// may keep the operation for it (early.go).
			return Outcome{}, err
		}
		// Unknown, or expired between Get and Close.
		env.Fail(CodeTaskNotFound, "no task %q in %q", id, a.domain)
		return Outcome{Env: env}, nil
	case errors.Is(err, statemanager.ErrNeedsApproval):
		if known == nil {
			// The fast path's guess was wrong: Execute reads the task
			// and completes it through the lifecycle.
			return Outcome{}, err
		}
		env.Fail(CodeUnsupported, "task %q in %q needs approvals, and its state manager has no task lifecycle", id, a.domain)
		return Outcome{Env: env}, nil
	case errors.Is(err, statemanager.ErrClosed):
		// Lost a race with another close: that one is the decision.
		if closed == nil {
			closed = known
		}
		if closed == nil {
			closed = &statemanager.Task{ID: id, Domain: a.domain}
		}
		failClosed(env, closed)
		return Outcome{Env: env}, nil
	case err != nil:
		return Outcome{}, fmt.Errorf("%s: %w", a.name, err)
	}
	// From here the close is done and its effects must go out whatever the
	// response says.
	effects := Outcome{Env: env, Records: recs, Acks: []Ack{{Domain: a.domain, ID: closed.ID}}}
	if known == nil {
		var ok bool
		if out, ok = a.output(env, closed, closed.EnrichPath, closed.CloseData); !ok {
			return effects, nil
		}
	}
	return a.respond(env, effects, out), nil
}

// respond succeeds with out at outputElement.
func (a *closeTask) respond(env *envelope.Envelope, effects Outcome, out []byte) Outcome {
	if a.outputElement != "" {
		if err := env.Set(a.outputElement, out); err != nil {
			env.Fail(CodeBadInput, "output element %q: %v", a.outputElement, err)
			return effects
		}
	}
	env.Succeed()
	return effects
}

// output is what the response carries at outputElement: the stored event's
// payload enriched with data, shaped by outputPattern.
func (a *closeTask) output(env *envelope.Envelope, t *statemanager.Task, enrichPath string, data []byte) ([]byte, bool) {
	if a.outputElement == "" {
		return nil, true
	}
	payload, err := enrich(storedPayload(t), enrichPath, data)
	if err != nil {
		env.Fail(CodeBadInput, "enrichPath %q: %v", enrichPath, err)
		return nil, false
	}
	return shape(env, a.outputPattern, "outputPattern", a.raw["outputPattern"], payload)
}

// failClosed answers a close of a task that another request closed already,
// naming how it was closed so the caller can tell a proceed from a timeout.
func failClosed(env *envelope.Envelope, t *statemanager.Task) {
	how := strings.ToLower(t.Status)
	if t.ClosedBy != "" {
		how += " by " + strconv.Quote(t.ClosedBy)
	}
	if t.ClosedAt != 0 {
		how += " at " + time.UnixMilli(t.ClosedAt).UTC().Format(time.RFC3339Nano)
	}
	env.Fail(CodeTaskClosed, "task %q in %q is closed already (%s)", t.ID, t.Domain, how)
}
