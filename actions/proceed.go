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

	"github.com/sagarunner/sagarunner/saga/envelope"
	"github.com/sagarunner/sagarunner/statemanager"
)

func init() {
	Default.Register(closeSpec("ProceedTask", statemanager.StatusCompleted,
		"Proceeds a waiting task: the stored event is enriched with the input and its saga continues "+
			"from the StartTask step with status SUCCESS; a COMPLETED notification is published. "+closeAuthDoc,
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
	return &Spec{
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
			}, nil
		},
	}
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
	if trusted(env.RequestMeta) && a.outputPattern == nil {
		return a.close(ctx, x, env, nil, id, data, a.enrichPath, key)
	}
	t, err := store.Get(ctx, id)
	switch {
	case errors.Is(err, statemanager.ErrNotFound):
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
	replay := !t.Waiting() && key != "" && t.CloseKey == key
	if !t.Waiting() && !replay {
		failClosed(env, t)
		return Outcome{Env: env}, nil
	}
	enrichPath := a.enrichPath
	if replay {
		// The response must be the one the first request got.
		data, enrichPath = t.CloseData, t.EnrichPath
	}
	return a.close(ctx, x, env, t, t.ID, data, enrichPath, key)
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
func (a *closeTask) close(ctx context.Context, x *Exec, env *envelope.Envelope, known *statemanager.Task, id string, data []byte, enrichPath, key string) (Outcome, error) {
	var out []byte
	if known != nil {
		var ok bool
		if out, ok = a.output(env, known, enrichPath, data); !ok {
			return Outcome{Env: env}, nil
		}
	}
	closed, recs, err := CloseTask(ctx, x, a.domain, statemanager.Close{
		ID:         id,
		Status:     a.status,
		At:         nowMillis(x),
		By:         env.RequestMeta.User,
		Data:       json.RawMessage(data),
		Key:        key,
		EnrichPath: enrichPath,
	})
	switch {
	case errors.Is(err, statemanager.ErrNotFound):
		// Unknown, or expired between Get and Close.
		env.Fail(CodeTaskNotFound, "no task %q in %q", id, a.domain)
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
	if a.outputElement != "" {
		if err := env.Set(a.outputElement, out); err != nil {
			env.Fail(CodeBadInput, "output element %q: %v", a.outputElement, err)
			return effects, nil
		}
	}
	env.Succeed()
	return effects, nil
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
