package actions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/jmespath/go-jmespath"

	"github.com/sagarunner/sagarunner/saga/envelope"
	"github.com/sagarunner/sagarunner/statemanager"
)

func init() {
	Default.Register(&Spec{
		Name:  "StartTask",
		Waits: true,
		Doc: "Records the current event as a task assigned to a user or group and suspends the saga " +
			"until a ProceedTask, a TimeoutTask or the task's deadline closes it. The task records the tenant " +
			"of the request. Replaying the start of a task is a no-op; starting a task whose id is waiting " +
			"for another instance fails with " + CodeTaskIDInUse + ". A task id is 1 to 512 bytes of UTF-8 " +
			"without control characters (else BAD_INPUT).",
		Domain:        Required,
		InputElement:  Optional,
		OutputElement: Optional,
		Params: []Param{
			{Name: "inputPattern", Type: Pattern, Doc: "JMESPath pattern to apply on data input", Example: "{data: process.data}"},
			{Name: "taskIdPath", Type: Path, Default: "taskId", Doc: "Path of the task id in the input; when it resolves to nothing the id is <requestId>:<stepId>:<runnerPartition>", Example: "process.id"},
			{Name: "taskName", Type: String, Doc: "Descriptive name for the task", Example: "Job Post Approval"},
			{Name: "taskSpec", Type: String, Doc: "Task specification (i.e. reference name for the process flow)", Example: "job_post_approval"},
			{Name: "taskAction", Type: String, Doc: "Referential name of the action", Example: "Approve"},
			{Name: "taskRoles", Type: String, Doc: "Comma separated list of user roles allowed to process the task (besides the admin roles)", Example: "admin,manager"},
			{Name: "taskUser", Type: String, Doc: "ID of the user allowed to process the task", Example: "user123"},
			{Name: "timeout", Type: Int, Doc: "Milliseconds to time the started task out after", Example: "60000"},
			{Name: "timeoutOn", Type: Int, Doc: "Epoch time in ms to time the started task out on", Example: "1666765654000"},
			{Name: "possibleOutcomes", Type: String, Doc: "Comma separated outcomes the task may be completed with; when given, a completion must name one, and the step's next may route on each (not a status name)", Example: "approve,reject"},
			{Name: "requiredApprovals", Type: Int, Default: 0, Doc: "Distinct approvals a completion needs before the task closes (four eyes); 0 closes it on completion", Example: "2"},
			{Name: "approverRoles", Type: String, Doc: "Comma separated roles that may approve or reject a completion; default: taskRoles", Example: "manager"},
			{Name: "priority", Type: Int, Default: 0, Doc: "Priority of the task, for sorting inboxes", Example: "5"},
		},
		New: newStartTask,
	})
}

// startedHookKey carries WithStartedHook's function in a context.
type startedHookKey struct{}

// WithStartedHook returns a context under which StartTask calls fn, before
// returning, with every task it newly stored. A replayed start (the task was
// already there) does not call it. It exists so the engine can count
// Output.Started without counting replays: Outcome has no field for it.
func WithStartedHook(ctx context.Context, fn func(*statemanager.Task)) context.Context {
	return context.WithValue(ctx, startedHookKey{}, fn)
}

type startTask struct {
	domain        string
	inputElement  string
	outputElement string
	inputPattern  *jmespath.JMESPath
	raw           map[string]string
	taskIDPath    string
	name          string
	spec          string
	action        string
	roles         []string
	user          string
	timeout       int64
	timeoutOn     int64
	outcomes      []string
	approvals     int
	approvers     []string
	priority      int
}

// maxApprovals bounds requiredApprovals: every approval is kept with the
// task, and four eyes rarely means a hundred.
const maxApprovals = 100

// approverRoles are stored only for a task that gathers approvals, so a
// plain task's start writes nothing more than it did.
func (a *startTask) approverRoles() []string {
	if a.approvals == 0 {
		return nil
	}
	return a.approvers
}

// Outcomes returns the declared possibleOutcomes, which the step's next may
// route on.
func (a *startTask) Outcomes() []string { return a.outcomes }

func newStartTask(c Config) (Action, error) {
	a := &startTask{
		domain:        c.Domain,
		inputElement:  c.InputElement,
		outputElement: c.OutputElement,
		inputPattern:  c.Pattern("inputPattern"),
		raw:           c.Raw,
		taskIDPath:    c.String("taskIdPath"),
		name:          c.String("taskName"),
		spec:          c.String("taskSpec"),
		action:        c.String("taskAction"),
		roles:         splitRoles(c.String("taskRoles")),
		user:          strings.TrimSpace(c.String("taskUser")),
		timeout:       c.Int("timeout"),
		timeoutOn:     c.Int("timeoutOn"),
		outcomes:      splitRoles(c.String("possibleOutcomes")),
		approvers:     splitRoles(c.String("approverRoles")),
	}
	n, p := c.Int("requiredApprovals"), c.Int("priority")
	if n < 0 || n > maxApprovals {
		return nil, fmt.Errorf("StartTask: requiredApprovals must be 0 to %d, got %d", maxApprovals, n)
	}
	if p != int64(int32(p)) {
		return nil, fmt.Errorf("StartTask: priority %d is out of range", p)
	}
	a.approvals, a.priority = int(n), int(p)
	for i, o := range a.outcomes {
		if reason := badOutcome(o); reason != "" {
			return nil, fmt.Errorf("StartTask: possibleOutcomes entry %q %s", o, reason)
		}
		if slices.Contains(a.outcomes[:i], o) {
			return nil, fmt.Errorf("StartTask: possibleOutcomes names %q twice", o)
		}
	}
	for _, r := range a.approvers {
		if reason := badName(r); reason != "" {
			return nil, fmt.Errorf("StartTask: approverRoles entry %q %s", r, reason)
		}
	}
	if len(a.approvers) == 0 {
		a.approvers = a.roles
	}
	if !validDomain(a.domain) {
		return nil, fmt.Errorf("StartTask: %s", domainReason(a.domain))
	}
	if reason := badName(a.user); reason != "" {
		return nil, fmt.Errorf("StartTask: taskUser %q %s", a.user, reason)
	}
	for _, r := range a.roles {
		if reason := badName(r); reason != "" {
			return nil, fmt.Errorf("StartTask: taskRoles entry %q %s", r, reason)
		}
	}
	switch {
	case a.timeout < 0:
		return nil, fmt.Errorf("StartTask: timeout must not be negative, got %d", a.timeout)
	case a.timeoutOn < 0:
		return nil, fmt.Errorf("StartTask: timeoutOn must not be negative, got %d", a.timeoutOn)
	case a.timeout > 0 && a.timeoutOn > 0:
		// Two deadlines would leave the reader guessing which one wins.
		return nil, errors.New("StartTask: give timeout or timeoutOn, not both")
	}
	return a, nil
}

// Execute stores the current envelope as a waiting task and suspends the
// instance. The stored envelope already carries result SUCCESS and the task
// info at outputElement, so the continuation only needs its status changed
// and its payload enriched when the task closes.
func (a *startTask) Execute(ctx context.Context, x *Exec, env *envelope.Envelope) (Outcome, error) {
	_, id, data, ok := taskInput(env, x, a.inputElement, a.taskIDPath, a.inputPattern, a.raw["inputPattern"])
	if !ok {
		return Outcome{Env: env}, nil
	}
	store, err := storeOf(x, a.domain)
	if err != nil {
		return Outcome{}, fmt.Errorf("StartTask %q: %w", id, err)
	}
	now := nowMillis(x)
	deadline := a.timeoutOn
	if a.timeout > 0 {
		deadline = now + a.timeout
	}
	t := &statemanager.Task{
		ID:        id,
		Domain:    a.domain,
		Name:      a.name,
		Spec:      a.spec,
		Action:    a.action,
		Roles:     a.roles,
		User:      a.user,
		Saga:      env.SagaMeta.Saga,
		StepID:    env.SagaMeta.StepID,
		RequestID: env.RequestMeta.RequestID,
		Tenant:    env.RequestMeta.Tenant,
		StartedBy: env.RequestMeta.User,
		StartKey:  startKey(env),
		StartedAt: now,
		Deadline:  deadline,
		Data:      json.RawMessage(data),

		PossibleOutcomes:  a.outcomes,
		RequiredApprovals: a.approvals,
		ApproverRoles:     a.approverRoles(),
		Priority:          a.priority,
	}
	env.Succeed()
	if !a.writeTaskInfo(env, t) {
		return Outcome{Env: env}, nil
	}
	t.Envelope = env.Encode()
	stored, created, early, err := startWithEarly(ctx, store, t)
	if err != nil {
		return Outcome{}, fmt.Errorf("StartTask %q in %q: %w: %w", id, a.domain, ErrRetryable, err)
	}
	if created {
		if fn, _ := ctx.Value(startedHookKey{}).(func(*statemanager.Task)); fn != nil {
			fn(stored)
		}
		suspended(ctx, stored)
		return a.suspend(ctx, x, env, store, stored, early)
	}
	if stored.Waiting() && stored.RequestID != t.RequestID {
		// The id waits for another instance. Its details are not this
		// caller's to see, so the message names the id only.
		env.Fail(CodeTaskIDInUse, "task id %q in %q is waiting for another instance", id, a.domain)
		return Outcome{Env: env}, nil
	}
	// A replay of this start: answer as the first time, and apply what is
	// still parked (a crash came between applying it and removing it).
	if !a.writeTaskInfo(env, stored) {
		return Outcome{Env: env}, nil
	}
	suspended(ctx, stored)
	return a.suspend(ctx, x, env, store, stored, early)
}

// startWithEarly starts t, learning in the same call whether early
// answers wait for it when the store keeps them.
func startWithEarly(ctx context.Context, store statemanager.Store, t *statemanager.Task) (*statemanager.Task, bool, bool, error) {
	if ea, ok := store.(statemanager.EarlyAnswers); ok {
		return ea.StartEarly(ctx, t)
	}
	stored, created, err := store.Start(ctx, t)
	return stored, created, false, err
}

// suspend parks the instance on its task, applying first the early
// answers that wait for the task (early.go): their effects, a close's
// continuation among them, go out with the start's.
func (a *startTask) suspend(ctx context.Context, x *Exec, env *envelope.Envelope, store statemanager.Store, t *statemanager.Task, early bool) (Outcome, error) {
	out := Outcome{Env: env, Suspend: true}
	if x.Topics.TaskEvents != "" && t.Waiting() {
		// The started event, as History shows it: published by the start
		// and again by a replay of it while the task is open (a crash may
		// have come before the first was produced), so it is at worst
		// repeated.
		w := *t
		w.Status = statemanager.StatusWaiting
		out.Records = append(out.Records, TaskEventRecord(x.Topics.TaskEvents, &w,
			statemanager.Event{Type: statemanager.EventStarted, At: t.StartedAt, Actor: t.StartedBy}))
	}
	if !early {
		return out, nil
	}
	if err := applyEarly(ctx, x, store.(statemanager.EarlyAnswers), a.domain, t, &out); err != nil {
		return Outcome{}, fmt.Errorf("StartTask %q in %q: %w", t.ID, a.domain, err)
	}
	return out, nil
}

// writeTaskInfo tells the caller which task the step created, at
// outputElement, so a response names the id to proceed.
func (a *startTask) writeTaskInfo(env *envelope.Envelope, t *statemanager.Task) bool {
	if a.outputElement == "" {
		return true
	}
	info := make([]byte, 0, 48+len(t.ID)+len(t.Domain))
	info = envelope.AppendString(append(info, `{"taskId":`...), t.ID, false)
	info = envelope.AppendString(append(info, `,"domain":`...), t.Domain, false)
	info = append(strconv.AppendInt(append(info, `,"deadline":`...), t.Deadline, 10), '}')
	if err := env.Set(a.outputElement, info); err != nil {
		env.Fail(CodeBadInput, "output element %q: %v", a.outputElement, err)
		return false
	}
	return true
}

// startKey names the step visit starting a task: a replay of the same record
// repeats it, a saga looping back into the step does not (SagaMeta.Seq).
func startKey(env *envelope.Envelope) string {
	if env.SagaMeta.Saga == "" {
		return ""
	}
	return env.RequestMeta.RequestID + "/" + env.SagaMeta.StepID + "/" + strconv.Itoa(env.SagaMeta.Seq)
}

// badOutcome says why o cannot be a declared outcome, or "". An outcome is
// a route key of the step and travels in result.outcome, so it must not be
// mistaken for a status or the else route.
func badOutcome(o string) string {
	switch o {
	case envelope.StatusSuccess, envelope.StatusFail, envelope.StatusTimeout, envelope.StatusCancelled, "*":
		return "is a status or the else route"
	}
	if len(o) > 64 {
		return "is longer than 64 bytes"
	}
	return badName(o)
}
