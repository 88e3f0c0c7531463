package actions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jmespath/go-jmespath"
	"github.com/tidwall/gjson"

	"github.com/sagarunner/sagarunner/clock"
	"github.com/sagarunner/sagarunner/saga/envelope"
	"github.com/sagarunner/sagarunner/statemanager"
)

// TimeoutKey is the close key of every deadline-driven timeout: automatic
// ones and TimeoutBetween. Because they share it, a deadline fired twice (two
// replicas, or a TimeoutBetween tick racing the timer) is one decision
// replayed, not a second close.
const TimeoutKey = "timeout"

// DefaultDomain is the state manager TimeoutBetween sweeps when its step
// names none, the same default the generic /ProceedTask saga uses.
const DefaultDomain = "workflow"

// maxTaskIDLen bounds a task id in bytes: it is a Redis key and the key of
// every notification, and an unbounded one is a memory and record-size
// hazard.
const maxTaskIDLen = 512

// betweenPage bounds how many due tasks TimeoutBetween asks the store for at
// once, so a large range is swept in pages instead of one huge reply.
const betweenPage = 100

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
		},
		New: newStartTask,
	})
	Default.Register(closeSpec("ProceedTask", statemanager.StatusCompleted,
		"Proceeds a waiting task: the stored event is enriched with the input and its saga continues "+
			"from the StartTask step with status SUCCESS; a COMPLETED notification is published. "+closeAuthDoc,
		"proceeding"))
	Default.Register(closeSpec("TimeoutTask", statemanager.StatusTimeout,
		"Times a waiting task out by hand: the stored event is enriched with the input and its saga "+
			"continues from the StartTask step with status TIMEOUT; a TIMEOUT notification is published. "+closeAuthDoc,
		"timed out"))
	Default.Register(&Spec{
		Name:   "TimeoutBetween",
		Sweeps: true,
		Doc: "Times out every waiting task whose deadline lies in [from, to], each exactly as an automatic " +
			"timeout would, then moves the state manager's watermark to the end of the range. The domain " +
			"defaults to " + DefaultDomain + ".",
		Domain:        Optional,
		InputElement:  Optional,
		OutputElement: Optional,
		Params: []Param{
			{Name: "fromTimePath", Type: Path, Doc: "Path of the start of the range (epoch ms or RFC 3339); default: the last watermark", Example: "start"},
			{Name: "toTimePath", Type: Path, Doc: "Path of the end of the range (epoch ms or RFC 3339), which becomes the new watermark; default: now", Example: "end"},
		},
		New: newTimeoutBetween,
	})
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
}

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

// taskInput reads what every task action starts from: the input at
// inputElement, the task id in it and the data shaped by inputPattern. On a
// missing element or a failing pattern env already holds the FAIL result.
func taskInput(env *envelope.Envelope, x *Exec, inputElement, taskIDPath string, pattern *jmespath.JMESPath, rawPattern string) (in []byte, id string, data []byte, ok bool) {
	if in, ok = input(env, inputElement); !ok {
		return nil, "", nil, false
	}
	if id, ok = taskID(env, x, in, taskIDPath); !ok {
		return nil, "", nil, false
	}
	if reason := badTaskID(id); reason != "" {
		env.Fail(CodeBadInput, "task id %s", reason)
		return nil, "", nil, false
	}
	if data, ok = shape(env, pattern, "inputPattern", rawPattern, in); !ok {
		return nil, "", nil, false
	}
	return in, id, data, true
}

// splitRoles turns "admin, manager," into [admin manager].
func splitRoles(s string) []string {
	var out []string
	for _, r := range strings.Split(s, ",") {
		if r = strings.TrimSpace(r); r != "" {
			out = append(out, r)
		}
	}
	return out
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
		StartKey:  startKey(env),
		StartedAt: now,
		Deadline:  deadline,
		Data:      json.RawMessage(data),
	}
	env.Succeed()
	if !a.writeTaskInfo(env, t) {
		return Outcome{Env: env}, nil
	}
	t.Envelope = env.Encode()
	stored, created, err := store.Start(ctx, t)
	if err != nil {
		return Outcome{}, fmt.Errorf("StartTask %q in %q: %w: %w", id, a.domain, ErrRetryable, err)
	}
	if created {
		if fn, _ := ctx.Value(startedHookKey{}).(func(*statemanager.Task)); fn != nil {
			fn(stored)
		}
		return Outcome{Env: env, Suspend: true}, nil
	}
	if stored.Waiting() && stored.RequestID != t.RequestID {
		// The id waits for another instance. Its details are not this
		// caller's to see, so the message names the id only.
		env.Fail(CodeTaskIDInUse, "task id %q in %q is waiting for another instance", id, a.domain)
		return Outcome{Env: env}, nil
	}
	// A replay of this start: answer as the first time.
	if !a.writeTaskInfo(env, stored) {
		return Outcome{Env: env}, nil
	}
	return Outcome{Env: env, Suspend: true}, nil
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

// trusted reports a caller with no identity: a Kafka producer, or a gateway
// running without auth. Task assignment does not apply to it.
func trusted(rm envelope.RequestMeta) bool { return rm.User == "" && len(rm.Roles) == 0 }

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

// mayClose applies a task's taskUser/taskRoles and the admin roles to an
// authenticated caller of the task's tenant (the caller checks the tenant).
// A caller with neither user nor roles is trusted: it is a Kafka producer or
// a gateway running without auth, both outside the reach of task assignment.
func mayClose(rm envelope.RequestMeta, adminRoles []string, t *statemanager.Task) bool {
	if trusted(rm) {
		return true
	}
	if t.User == "" && len(t.Roles) == 0 {
		return true
	}
	if t.User != "" && rm.User == t.User {
		return true
	}
	for _, r := range rm.Roles {
		if r != "" && (slices.Contains(t.Roles, r) || slices.Contains(adminRoles, r)) {
			return true
		}
	}
	return false
}

func caller(rm envelope.RequestMeta) string {
	if rm.User != "" {
		return "user " + strconv.Quote(rm.User)
	}
	return "roles " + strconv.Quote(strings.Join(rm.Roles, ","))
}

// taskID resolves the task id at path in the action's input. When it
// resolves to nothing the id is <requestId>:<stepId>:<runnerPartition>, which
// is unique per step of an instance and the same on every replay.
func taskID(env *envelope.Envelope, x *Exec, in []byte, path string) (string, bool) {
	if path != "" {
		v := lookup(env, in, path)
		id, ok, err := scalarString(v)
		if err != nil {
			env.Fail(CodeBadInput, "task id at %q: %v", path, err)
			return "", false
		}
		if ok {
			return id, true
		}
	}
	return fmt.Sprintf("%s:%s:%d", env.RequestMeta.RequestID, env.SagaMeta.StepID, x.Partition), true
}

// storedPayload returns the payload of a task's suspended envelope.
func storedPayload(t *statemanager.Task) []byte {
	p := gjson.GetBytes(t.Envelope, "payload")
	if !p.Exists() || p.Type == gjson.Null {
		return []byte(`{}`)
	}
	return []byte(p.Raw)
}

// enrich writes data at path in payload; no path or no data writes nothing.
func enrich(payload []byte, path string, data []byte) ([]byte, error) {
	if path == "" || len(data) == 0 {
		return payload, nil
	}
	return envelope.SetIn(payload, path, data)
}

func storeOf(x *Exec, domain string) (statemanager.Store, error) {
	if x.Stores == nil {
		return nil, errors.New("no state managers configured")
	}
	s, err := x.Stores.Store(domain)
	if err != nil {
		return nil, fmt.Errorf("state manager %q: %w", domain, err)
	}
	return s, nil
}

func nowMillis(x *Exec) int64 {
	if x.Clock == nil {
		return clock.NowMillis(clock.Real{})
	}
	return clock.NowMillis(x.Clock)
}

// CloseTask closes a task of a domain and returns the closed task and the
// effects to produce. The engine uses it for automatic deadlines (Status
// TIMEOUT, Key TimeoutKey, By ""); the close actions use it too, so every
// close yields the same effects. c.At defaults to now on x.Clock.
// statemanager.ErrNotFound and ErrClosed come back wrapped (with the closed
// task for ErrClosed); other store errors are wrapped with ErrRetryable.
func CloseTask(ctx context.Context, x *Exec, domain string, c statemanager.Close) (*statemanager.Task, []envelope.Record, error) {
	store, err := storeOf(x, domain)
	if err != nil {
		return nil, nil, fmt.Errorf("close task %q: %w", c.ID, err)
	}
	if c.At == 0 {
		c.At = nowMillis(x)
	}
	t, _, err := store.Close(ctx, c)
	switch {
	case errors.Is(err, statemanager.ErrNotFound), errors.Is(err, statemanager.ErrClosed):
		return t, nil, fmt.Errorf("close task %q in %q: %w", c.ID, domain, err)
	case err != nil:
		return nil, nil, fmt.Errorf("close task %q in %q: %w: %w", c.ID, domain, ErrRetryable, err)
	}
	recs, err := TaskEffects(t, x.Topics)
	if err != nil {
		return t, nil, fmt.Errorf("close task %q in %q: %w", c.ID, domain, err)
	}
	return t, recs, nil
}

// TaskEffects returns the records a closed task produces: the continuation of
// its saga (only when it was started inside one), then its task-closed
// notification. They depend on the closed task alone, so effects re-emitted
// after a crash are byte-identical to the first ones.
//
// The continuation is the suspended envelope, its payload enriched with the
// close data at the recorded enrich path, its result the close status
// (COMPLETED continues as SUCCESS) and its stepId still the StartTask step,
// so the engine routes on from there. It is keyed by requestId, to stay on
// the instance's partition.
func TaskEffects(t *statemanager.Task, topics Topics) ([]envelope.Record, error) {
	var status string
	switch t.Status {
	case statemanager.StatusCompleted:
		status = envelope.StatusSuccess
	case statemanager.StatusTimeout:
		status = envelope.StatusTimeout
	case statemanager.StatusCancelled:
		status = envelope.StatusCancelled
	default:
		return nil, fmt.Errorf("task %q is %s, not closed", t.ID, t.Status)
	}
	var recs []envelope.Record
	if t.Saga != "" {
		var e envelope.Envelope
		if err := envelope.Unmarshal(t.Envelope, &e); err != nil {
			return nil, fmt.Errorf("task %q: stored envelope: %w", t.ID, err)
		}
		if len(e.Payload) == 0 || string(e.Payload) == "null" {
			e.Payload = json.RawMessage(`{}`)
		}
		p, err := enrich(e.Payload, t.EnrichPath, t.CloseData)
		if err != nil {
			return nil, fmt.Errorf("task %q: enrich: %w", t.ID, err)
		}
		e.Payload = p
		e.Result = envelope.Result{Status: status}
		key := e.RequestMeta.RequestID
		if key == "" {
			key = t.RequestID
		}
		recs = append(recs, envelope.Record{Topic: topics.Continuations, Key: []byte(key), Value: e.Encode()})
	}
	n, err := NewNotification(t).Record(topics.Notifications)
	if err != nil {
		return nil, err
	}
	return append(recs, n), nil
}

type timeoutBetween struct {
	domain        string
	inputElement  string
	outputElement string
	fromTimePath  string
	toTimePath    string
}

func newTimeoutBetween(c Config) (Action, error) {
	a := &timeoutBetween{
		domain:        c.Domain,
		inputElement:  c.InputElement,
		outputElement: c.OutputElement,
		fromTimePath:  c.String("fromTimePath"),
		toTimePath:    c.String("toTimePath"),
	}
	if a.domain == "" {
		a.domain = DefaultDomain
	}
	if !validDomain(a.domain) {
		return nil, fmt.Errorf("TimeoutBetween: %s", domainReason(a.domain))
	}
	return a, nil
}

// Execute sweeps [from, to] page by page. Each task is closed with
// TimeoutKey, so a task the automatic timer fired meanwhile is the same
// decision, and a task a proceed won is skipped. The watermark moves only
// after the sweep, so a crash mid-way sweeps the range again on redelivery.
func (a *timeoutBetween) Execute(ctx context.Context, x *Exec, env *envelope.Envelope) (Outcome, error) {
	in, ok := input(env, a.inputElement)
	if !ok {
		return Outcome{Env: env}, nil
	}
	store, err := storeOf(x, a.domain)
	if err != nil {
		return Outcome{}, fmt.Errorf("TimeoutBetween: %w", err)
	}
	now := nowMillis(x)
	to, found, ok := timeAt(env, in, a.toTimePath, "toTimePath")
	if !ok {
		return Outcome{Env: env}, nil
	}
	if !found {
		to = now
	}
	from, found, ok := timeAt(env, in, a.fromTimePath, "fromTimePath")
	if !ok {
		return Outcome{Env: env}, nil
	}
	if !found {
		if from, err = store.Watermark(ctx); err != nil {
			return Outcome{}, fmt.Errorf("TimeoutBetween: watermark of %q: %w: %w", a.domain, ErrRetryable, err)
		}
	}

	var out Outcome
	count := 0
	seen := map[string]bool{}
	for from <= to {
		due, err := store.Between(ctx, from, to, betweenPage)
		if err != nil {
			return Outcome{}, fmt.Errorf("TimeoutBetween: due tasks of %q: %w: %w", a.domain, ErrRetryable, err)
		}
		fresh := 0
		for _, d := range due {
			if seen[d.ID] {
				continue
			}
			seen[d.ID] = true
			fresh++
			t, recs, err := CloseTask(ctx, x, a.domain, statemanager.Close{
				ID: d.ID, Status: statemanager.StatusTimeout, At: now, Key: TimeoutKey,
			})
			switch {
			case errors.Is(err, statemanager.ErrNotFound), errors.Is(err, statemanager.ErrClosed):
				continue // closed by someone else since Between: their decision stands
			case err != nil:
				return Outcome{}, fmt.Errorf("TimeoutBetween: %w", err)
			}
			out.Records = append(out.Records, recs...)
			out.Acks = append(out.Acks, Ack{Domain: a.domain, ID: t.ID})
			count++
		}
		// A page with nothing new means the store keeps returning tasks
		// that cannot be closed; stop rather than spin.
		if len(due) < betweenPage || fresh == 0 {
			break
		}
	}
	if err := store.SetWatermark(ctx, to); err != nil {
		return Outcome{}, fmt.Errorf("TimeoutBetween: watermark of %q: %w: %w", a.domain, ErrRetryable, err)
	}
	env.Succeed()
	if a.outputElement != "" {
		res, _ := json.Marshal(struct {
			Count int   `json:"count"`
			From  int64 `json:"from"`
			To    int64 `json:"to"`
		}{count, from, to})
		if err := env.Set(a.outputElement, res); err != nil {
			env.Fail(CodeBadInput, "output element %q: %v", a.outputElement, err)
		}
	}
	out.Env = env
	return out, nil
}

// timeAt reads a time at path in the input: epoch ms as a number or numeric
// string, or an RFC 3339 string. found=false when no path is configured or it
// resolves to nothing; ok=false (FAIL set) when the value is not a time.
func timeAt(env *envelope.Envelope, in []byte, path, param string) (ms int64, found, ok bool) {
	if path == "" {
		return 0, false, true
	}
	v := lookup(env, in, path)
	switch v.Type {
	case gjson.Null:
		return 0, false, true
	case gjson.Number:
		if n, err := strconv.ParseInt(v.Raw, 10, 64); err == nil {
			return n, true, true
		}
		if f := v.Float(); f == float64(int64(f)) {
			return int64(f), true, true
		}
	case gjson.String:
		if n, err := strconv.ParseInt(v.Str, 10, 64); err == nil {
			return n, true, true
		}
		if t, err := time.Parse(time.RFC3339Nano, v.Str); err == nil {
			return t.UnixMilli(), true, true
		}
	}
	env.Fail(CodeBadInput, "%s %q: want epoch milliseconds or an RFC 3339 time, got %s", param, path, v.Raw)
	return 0, false, false
}

// startKey names the step visit starting a task: a replay of the same record
// repeats it, a saga looping back into the step does not (SagaMeta.Seq).
func startKey(env *envelope.Envelope) string {
	if env.SagaMeta.Saga == "" {
		return ""
	}
	return env.RequestMeta.RequestID + "/" + env.SagaMeta.StepID + "/" + strconv.Itoa(env.SagaMeta.Seq)
}

// validDomain keeps a domain named in a request to what is safe as a Redis
// key prefix: a caller's domain must never reach a key layout it could break.
// The rule is the store resolver's own, so nothing passed here is refused
// there.
func validDomain(d string) bool { return statemanager.ValidDomain(d) }

// domainReason says why a domain is refused, quoting at most a prefix of it.
func domainReason(d string) string {
	if len(d) > 80 {
		d = d[:80] + "..."
	}
	return fmt.Sprintf("domain %q: want 1 to 64 letters, digits, '.', '_' or '-'", d)
}

// badTaskID says why id cannot be a task id, or "". A task id is a Redis key
// and the key and taskId of its notification: it must be text that reads
// the same everywhere (valid UTF-8: invalid bytes would be replaced on the
// way into JSON, so the notification would name another id), printable, and
// bounded.
func badTaskID(id string) string {
	switch {
	case id == "":
		return "is empty"
	case len(id) > maxTaskIDLen:
		return fmt.Sprintf("of %d bytes is longer than %d", len(id), maxTaskIDLen)
	case !utf8.ValidString(id):
		return fmt.Sprintf("%.40q is not valid UTF-8", id)
	case strings.ContainsFunc(id, unicode.IsControl):
		return fmt.Sprintf("%.40q holds a control character", id)
	}
	return ""
}

// badName says why a taskUser or taskRoles entry cannot be stored, or "":
// the store joins roles with \x1f and keys indexes by them.
func badName(n string) string {
	if strings.ContainsFunc(n, unicode.IsControl) || !utf8.ValidString(n) {
		return "holds a control character or invalid UTF-8"
	}
	return ""
}
