package saga

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/tidwall/gjson"

	"github.com/sagarunner/sagarunner/actions"
	"github.com/sagarunner/sagarunner/clock"
	"github.com/sagarunner/sagarunner/instances"
	"github.com/sagarunner/sagarunner/saga/envelope"
	"github.com/sagarunner/sagarunner/statemanager"
)

// Engine runs saga instances. It never touches Kafka or HTTP: it returns the
// records to produce. It is safe for concurrent use.
type Engine struct {
	set     *Set
	cfg     Config
	domains []string
	direct  *actionCache
	signer  *signer
	// reserved names the runner's own topics, which no reply or Publish
	// may target, with what each is for.
	reserved map[string]string
}

// NewEngine returns an engine over the loaded sagas. It refuses, all at
// once with file:line, sagas whose Publish steps target the runner's own
// topics.
func NewEngine(set *Set, cfg Config) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if set == nil {
		set = &Set{}
	}
	if len(cfg.SigningKey) == 0 {
		cfg.SigningKey = newSigningKey()
	} else {
		cfg.SigningKey = append([]byte(nil), cfg.SigningKey...)
	}
	e := &Engine{set: set, cfg: cfg, signer: newSigner(cfg.SigningKey), reserved: map[string]string{
		cfg.Topics.Continuations: "request",
		cfg.Topics.Notifications: "notification",
		cfg.DeadLetter:           "dead-letter",
	}}
	if t := cfg.Topics.TaskEvents; t != "" {
		e.reserved[t] = "task-event"
	}
	seen := map[string]bool{}
	var errs []error
	for _, g := range set.Sagas {
		for _, st := range g.Steps {
			if st.Action != nil && st.Domain != "" && !seen[st.Domain] {
				seen[st.Domain] = true
				e.domains = append(e.domains, st.Domain)
			}
			if reason := e.refuseWriter(st.Action); reason != "" {
				errs = append(errs, fmt.Errorf("%s:%d: saga %q step %q: %s", g.File, st.Line, g.Name, st.ID, reason))
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	sort.Strings(e.domains)
	e.direct = newActionCache(cfg.Registry, directCacheSize, e.refuseWriter)
	return e, nil
}

// refuseWriter says why an action may not run here (it produces to one of
// the runner's own topics), or "".
func (e *Engine) refuseWriter(a actions.Action) string {
	w, ok := a.(actions.TopicWriter)
	if !ok {
		return ""
	}
	for _, t := range w.WritesTo() {
		if what, ok := e.reserved[t]; ok {
			return fmt.Sprintf("it produces to %q, the runner's %s topic", t, what)
		}
	}
	return ""
}

// Sagas returns the loaded sagas.
func (e *Engine) Sagas() *Set { return e.set }

// Config returns the engine's validated config.
func (e *Engine) Config() Config { return e.cfg }

// Domains lists the state-manager domains the loaded sagas use, sorted.
func (e *Engine) Domains() []string { return append([]string(nil), e.domains...) }

// maxStepsPerRecord bounds the steps one record may run. Validation rejects
// loops without a waiting step, so only a bug or a hand-built Set reaches it;
// the record is dead-lettered instead of pinning a partition forever.
const maxStepsPerRecord = 1000

// Handle: see the contract in api.go. There is no recover here on purpose:
// the runner wraps every handler in one recovery middleware, which
// dead-letters the record with DeadPanic.
func (e *Engine) Handle(ctx context.Context, rec Record) (Output, error) {
	// Output.Started counts tasks newly stored, not replayed starts, which
	// only StartTask itself can tell apart.
	var started Tally
	ctx = actions.WithStartedHook(ctx, func(t *statemanager.Task) { started.Add(t.Domain, 1) })
	if e.cfg.Instances != nil {
		ctx = actions.WithInstances(ctx, e.cfg.Instances)
	}
	out, env, err := e.handle(ctx, rec)
	if err != nil {
		return Output{}, err
	}
	out.Started, out.StartedIn = started.Total(), started
	for i, r := range out.Records {
		if size := e.recordSize(r); size > e.cfg.MaxRecordBytes {
			d := NewDeadLetter(rec, env, DeadTooLarge, fmt.Sprintf("output to %q is %d bytes, more than the %d allowed", r.Topic, size, e.cfg.MaxRecordBytes))
			d.Target = r.Topic
			out.Records[i] = d.Record(e.cfg.DeadLetter, e.cfg.MaxRecordBytes)
		}
	}
	if e.cfg.TrackInstances {
		// A continuation's input writes the close that made it first.
		if closed, ok := e.carriedEvent(rec); ok {
			out.Instances = append([]instances.Event{closed}, out.Instances...)
		}
		e.instanceTail(&out, env)
	}
	// The closes happened in actions, which report them only as
	// notification records.
	for _, r := range out.Records {
		if r.Topic == e.cfg.Topics.Notifications {
			if st := gjson.GetBytes(r.Value, "status").String(); st != "" {
				out.countClosed(st, 1)
			}
		}
	}
	e.seal(&out)
	return out, nil
}

// recordSize is what a record weighs against MaxRecordBytes, counting the
// signature a continuation is about to get.
func (e *Engine) recordSize(r envelope.Record) int {
	n := len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += len(h.Key) + len(h.Value)
	}
	if r.Topic == e.cfg.Topics.Continuations {
		n += len(SignatureHeader) + 2*sha256.Size
	}
	return n
}

// seal is the one place outputs leave the engine (Handle, FireDue,
// Recover): every continuation is signed here, whichever action or task
// made it, and the dead letters are counted by code. Reading the code back
// from the record keeps one source for it, at a cost paid only by dead
// letters.
func (e *Engine) seal(out *Output) {
	out.DeadLetters, out.DeadLetterCodes = 0, Tally{}
	for i := range out.Records {
		switch out.Records[i].Topic {
		case e.cfg.Topics.Continuations:
			e.signer.sign(&out.Records[i])
		case e.cfg.DeadLetter:
			out.DeadLetters++
			out.DeadLetterCodes.Add(gjson.GetBytes(out.Records[i].Value, "code").String(), 1)
		}
	}
}

// requestID names a record that carries none. The record key is the
// requestId by contract; without one the record's position names it, so a
// replay of the record gets the same id and its effects stay idempotent.
func (e *Engine) requestID(rec Record) string {
	if len(rec.Key) > 0 {
		return string(rec.Key)
	}
	if e.cfg.NewID != nil {
		return e.cfg.NewID()
	}
	return fmt.Sprintf("%s-%d-%d", rec.Topic, rec.Partition, rec.Offset)
}

// handle routes one record. It also returns the envelope as decoded (nil
// when it did not decode), for the dead letters Handle may still make.
func (e *Engine) handle(ctx context.Context, rec Record) (Output, *envelope.Envelope, error) {
	env, derr := envelope.Decode(rec.Value, func() string { return e.requestID(rec) })
	if derr != nil {
		return e.deadOutput(rec, nil, DeadUndecodable, derr.Error()), nil, nil
	}
	// Loop and reply rules come before anything runs: a record that would
	// feed itself must not leave a single effect behind.
	rm := &env.RequestMeta
	rm.Hops = max(rm.Hops, headerHops(rec))
	if rm.Hops >= e.cfg.MaxHops {
		return e.deadOutput(rec, env, DeadMaxHops, fmt.Sprintf("requestMeta.hops is %d: the record went through %d replies or publishes, the limit is %d", rm.Hops, rm.Hops, e.cfg.MaxHops)), env, nil
	}
	if reason := e.badReplyTo(rec, rm.ReplyTo); reason != "" {
		return e.deadOutput(rec, env, DeadBadReplyTo, reason), env, nil
	}
	x := &actions.Exec{Stores: e.cfg.Stores, Clock: e.cfg.Clock, Topics: e.cfg.Topics, Partition: rec.Partition, AdminRoles: e.cfg.AdminRoles}

	// A record on a saga's own trigger topic always starts it, whatever
	// sagaMeta it carries: a Publish step may forward a whole envelope of
	// another instance to that topic.
	if rec.Topic != e.cfg.Topics.Continuations {
		if sagas := e.set.ByTopic(rec.Topic); len(sagas) > 0 {
			out, err := e.startAll(ctx, x, rec, env, sagas)
			return out, env, err
		}
	}
	var out Output
	var err error
	sm := env.SagaMeta
	switch {
	case sm.Saga != "" && sm.StepID != "":
		// Only the runners make records that resume an instance; anything
		// else could push an instance past a step nobody decided.
		if !e.signer.verify(rec) {
			return e.deadOutput(rec, env, DeadForged, fmt.Sprintf("resumes saga %s at step %s without a valid %s header: only the runners produce continuations",
				quoteCut(sm.Saga), quoteCut(sm.StepID), SignatureHeader)), env, nil
		}
		// An instance continues on exactly the version it started on; a
		// version no longer loaded is dead-lettered, never run on another.
		g, ok := e.set.ByVersion(sm.Saga, sm.Version)
		if !ok {
			if vs := e.set.Versions(sm.Saga); len(vs) > 0 {
				return e.deadOutput(rec, env, DeadUnknownVersion, fmt.Sprintf("saga %q version %d is not loaded (loaded: %s): the instance started on it cannot continue on another",
					sm.Saga, sm.Version, joinInts(vs))), env, nil
			}
			return e.deadOutput(rec, env, DeadUnknownSaga, fmt.Sprintf("unknown saga %s", quoteCut(sm.Saga))), env, nil
		}
		st, ok := g.Step(sm.StepID)
		if !ok {
			return e.deadOutput(rec, env, DeadUnknownStep, fmt.Sprintf("saga %q has no step %s", sm.Saga, quoteCut(sm.StepID))), env, nil
		}
		out, err = e.walk(ctx, x, rec, g, st, env, true)
	case sm.Saga != "":
		g, ok := e.set.ByName(sm.Saga)
		if !ok {
			return e.deadOutput(rec, env, DeadUnknownSaga, fmt.Sprintf("unknown saga %s", quoteCut(sm.Saga))), env, nil
		}
		out, err = e.start(ctx, x, rec, g, env)
	case env.EventMeta.Action != "":
		out, err = e.runDirect(ctx, x, rec, env)
	default:
		out = e.deadOutput(rec, env, DeadNoKind, "record names no saga or action and its topic triggers no saga")
	}
	return out, env, err
}

// badReplyTo says why a reply may not go to topic, or "" when it may (or
// there is none). A reply into the runner's own topics would be taken for
// its own records, and one into the record's own topic would run it again.
func (e *Engine) badReplyTo(rec Record, topic string) string {
	if topic == "" {
		return ""
	}
	if err := actions.ValidTopic(topic); err != nil {
		return "requestMeta.replyTo: " + quoteCutErr(err)
	}
	if what, ok := e.reserved[topic]; ok {
		return fmt.Sprintf("requestMeta.replyTo %q is the runner's %s topic", topic, what)
	}
	if topic == rec.Topic {
		return fmt.Sprintf("requestMeta.replyTo %q is the topic the record came from", topic)
	}
	return ""
}

// quoteCutErr bounds an error quoting a hostile value.
func quoteCutErr(err error) string {
	s := err.Error()
	if len(s) > 300 {
		s = s[:runeCut([]byte(s), 300)] + "…"
	}
	return s
}

// actionError classifies an action's error per the Errors contract: only
// what the action marks retryable is ErrRetry.
func actionError(where string, err error) error {
	if errors.Is(err, actions.ErrRetryable) {
		return fmt.Errorf("%w: %s: %w", ErrRetry, where, err)
	}
	return fmt.Errorf("saga: %s: %w", where, err)
}

// startAll starts one instance of every saga on a trigger topic.
func (e *Engine) startAll(ctx context.Context, x *actions.Exec, rec Record, env *envelope.Envelope, sagas []*Saga) (Output, error) {
	if len(sagas) == 1 {
		return e.start(ctx, x, rec, sagas[0], env)
	}
	var out Output
	for _, g := range sagas {
		o, err := e.start(ctx, x, rec, g, env.Clone())
		if err != nil {
			return Output{}, err
		}
		out.Append(o)
	}
	return out, nil
}

// start stamps the instance's sagaMeta and runs it from the first step. The
// runner partition is recorded so default task ids and resumed instances
// stay on the partition that owns the request.
func (e *Engine) start(ctx context.Context, x *actions.Exec, rec Record, g *Saga, env *envelope.Envelope) (Output, error) {
	env.SagaMeta = envelope.SagaMeta{Saga: g.Name, Version: g.Version, StepID: g.Steps[0].ID, RunnerPartition: rec.Partition}
	env.Result = envelope.Result{}
	if !e.cfg.TrackInstances {
		return e.walk(ctx, x, rec, g, g.Steps[0], env, false)
	}
	first := e.startedEvent(g, env)
	out, err := e.walk(ctx, x, rec, g, g.Steps[0], env, false)
	// Room for the task events the finished output adds (instanceTail):
	// the slice grows once, not at each event.
	ins := make([]instances.Event, 1, len(out.Instances)+3)
	ins[0] = first
	out.Instances = append(ins, out.Instances...)
	return out, err
}

// walk runs an instance from st until it waits, finishes, fails or has no
// route. resumed says st already ran (a continuation): the walk first routes
// on the result the record carries.
func (e *Engine) walk(ctx context.Context, x *actions.Exec, rec Record, g *Saga, st *Step, env *envelope.Envelope, resumed bool) (Output, error) {
	var out Output
	// waitingOn is the task a StartTask step suspended on; cancelling says
	// the instance was cancelled and runs its onCancel step.
	var waitingOn *statemanager.Task
	var cancelling *cancelOf
	if e.cfg.TrackInstances {
		ctx = actions.WithSuspendedHook(ctx, func(t *statemanager.Task) { waitingOn = t })
	}
	for steps := 0; ; steps++ {
		value := env.Result.Status
		if !resumed {
			if steps == maxStepsPerRecord {
				return e.deadOutput(rec, env, DeadStepBudget, fmt.Sprintf("saga %q ran %d steps on one record without waiting", g.Name, steps)), nil
			}
			env.SagaMeta.StepID = st.ID
			env.SagaMeta.Seq++
			if st.Condition != nil {
				v, err := st.Condition.Evaluate(env)
				if err != nil {
					env.Fail(actions.CodePattern, "step %q: %v", st.ID, err)
					return e.end(out, rec, env, true, cancelling), nil
				}
				value = v
			} else {
				env.EventMeta = st.meta
				env.EventMeta.Parameters = append(json.RawMessage(nil), st.meta.Parameters...)
				began := e.cfg.Clock.Now()
				o, err := st.Action.Execute(ctx, x, env)
				if err != nil {
					return Output{}, actionError(fmt.Sprintf("saga %q step %q", g.Name, st.ID), err)
				}
				out.Records = append(out.Records, o.Records...)
				out.Acks = append(out.Acks, o.Acks...)
				if o.Env != nil {
					env = o.Env
				}
				status := stepStatus(o.Suspend, env.Result.Status)
				out.Steps.Add(StepRun{Saga: g.Name, Step: st.ID, Status: status,
					Duration: e.cfg.Clock.Now().Sub(began)})
				if e.cfg.TrackInstances {
					out.Instances = append(out.Instances, e.stepEvent(env, st, status, waitingOn))
					waitingOn = nil
				}
				if o.Suspend {
					return e.stop(out, rec, env, false), nil
				}
				if o.Finish {
					return e.end(out, rec, env, env.Result.Status == envelope.StatusFail, cancelling), nil
				}
				value = env.Result.Status
			}
		}
		// A resumed task step routes on the outcome it was completed with
		// when it has a route for it (SPEC §12), else on the status.
		outcome := ""
		if resumed && env.Result.Status == envelope.StatusSuccess {
			outcome = env.Result.Outcome
		}
		// A cancelled instance resumes at the task it waited on and runs
		// its onCancel step, whatever the task step's routes say.
		cancelled := resumed && env.Result.Status == envelope.StatusCancelled && env.Result.Code == actions.CodeInstanceCancelled
		resumed = false
		next, ok := st.route(value, outcome)
		if cancelled {
			cancelling = &cancelOf{reason: env.Result.Message}
			next, ok = g.OnCancel, g.OnCancel != ""
			if !ok {
				return e.end(out, rec, env, false, cancelling), nil
			}
		}
		if !ok {
			failed := env.Result.Status == envelope.StatusFail && g.AutoFail
			return e.end(out, rec, env, failed, cancelling), nil
		}
		// Validation guarantees the target exists; a hand-built Set may not.
		if st, ok = g.Step(next); !ok {
			return e.deadOutput(rec, env, DeadUnknownStep, fmt.Sprintf("saga %q has no step %q", g.Name, next)), nil
		}
	}
}

// end stops an instance that ended, with its end event when instances are
// tracked: cancelled when it was cancelled, else failed or finished.
func (e *Engine) end(out Output, rec Record, env *envelope.Envelope, failed bool, cancelled *cancelOf) Output {
	if e.cfg.TrackInstances {
		out.Instances = append(out.Instances, e.endEvent(env, failed, cancelled))
	}
	return e.stop(out, rec, env, failed)
}

// stepStatus names how a step ended from a fixed set, so that an action
// copying a status out of its input cannot mint metric labels.
func stepStatus(suspended bool, status string) string {
	if suspended {
		return StepWaiting
	}
	switch status {
	case envelope.StatusSuccess, envelope.StatusFail, envelope.StatusTimeout, envelope.StatusCancelled:
		return status
	}
	return StepOther
}

// route returns the step to go to for a status or condition value, or for
// outcome first when it is set and has a route of its own.
func (st *Step) route(value, outcome string) (string, bool) {
	if st.Always != "" {
		return st.Always, true
	}
	if next, ok := st.Next[outcome]; ok && outcome != "" {
		return next, true
	}
	if next, ok := st.Next[value]; ok {
		return next, true
	}
	next, ok := st.Next["*"]
	return next, ok
}

// stop ends the processing of a record: the response goes to replyTo, and a
// failed instance whose data was malformed is also dead-lettered so an
// operator sees it. Business failures (an unknown or closed task, a refused
// caller) are answers, not poison: they only produce the response, and a
// Note (see noteKind) so that they are not silent.
//
// The response is one hop further than the record: a reply that reaches a
// topic answering back counts towards MaxHops.
func (e *Engine) stop(out Output, rec Record, env *envelope.Envelope, failed bool) Output {
	if to := env.RequestMeta.ReplyTo; to != "" {
		hops := env.RequestMeta.Hops
		env.RequestMeta.Hops = hops + 1
		v := env.Encode()
		env.RequestMeta.Hops = hops
		out.Records = append(out.Records, envelope.Record{Topic: to, Key: []byte(env.RequestMeta.RequestID), Value: v,
			Headers: []envelope.Header{{Key: actions.HopsHeader, Value: strconv.AppendInt(nil, int64(hops+1), 10)}}})
	}
	if failed && malformed(env.Result.Code) {
		// The dead letter is logged already.
		out.Records = append(out.Records, e.deadLetter(rec, env, env.Result.Code, env.Result.Message))
		return out
	}
	if kind := noteKind(env, failed); kind != "" {
		out.Notes = append(out.Notes, Note{Kind: kind, Saga: env.SagaMeta.Saga, Step: env.SagaMeta.StepID,
			Action: env.EventMeta.Action, RequestID: env.RequestMeta.RequestID, Domain: env.EventMeta.Domain,
			Code: env.Result.Code, Message: env.Result.Message})
	}
	return out
}

// noteKind says which Note an instance stopping with env deserves, or "".
// A task id in use and a close of an unknown or closed task are noted
// whoever asked, because they mean two producers disagree about a task; any
// other failure only when it ended the instance (failed) with no replyTo,
// since a caller that gets the answer has been told already.
func noteKind(env *envelope.Envelope, failed bool) string {
	if env.Result.Status != envelope.StatusFail {
		return ""
	}
	switch env.Result.Code {
	case actions.CodeTaskIDInUse:
		return NoteTaskIDInUse
	case actions.CodeTaskNotFound:
		return NoteUnknownTask
	case actions.CodeTaskClosed:
		return NoteClosedTask
	}
	if failed && env.RequestMeta.ReplyTo == "" {
		return NoteFailed
	}
	return ""
}

func malformed(code string) bool {
	return code == actions.CodeBadInput || code == actions.CodePattern || code == actions.CodeReservedTopic ||
		code == actions.CodeEarlyRefused || code == actions.CodeEarlyExpired
}

// runDirect runs one action named by the record's eventMeta, the way external
// systems publish a ProceedTask or a scheduler a TimeoutBetween tick.
func (e *Engine) runDirect(ctx context.Context, x *actions.Exec, rec Record, env *envelope.Envelope) (Output, error) {
	a, code, reason := e.direct.get(&env.EventMeta)
	if a == nil {
		return e.deadOutput(rec, env, code, reason), nil
	}
	x.Source = actions.SourceOf(rec.Topic, rec.Partition, rec.Offset, rec.Key, rec.Value, rec.Headers)
	o, err := a.Execute(ctx, x, env)
	if err != nil {
		return Output{}, actionError(fmt.Sprintf("action %q", env.EventMeta.Action), err)
	}
	if o.Env != nil {
		env = o.Env
	}
	out := Output{Records: o.Records, Acks: o.Acks}
	if o.Parked {
		// Kept for a task not started yet (an early answer): it is
		// answered when applied or expired, not now.
		return out, nil
	}
	return e.stop(out, rec, env, env.Result.Status == envelope.StatusFail), nil
}

// FireDue: see the contract in api.go.
func (e *Engine) FireDue(ctx context.Context, domain string, shard, limit int) (Output, int, error) {
	store, err := e.cfg.Stores.Store(domain)
	if err != nil {
		return Output{}, 0, fmt.Errorf("%w: domain %q: %w", ErrRetry, domain, err)
	}
	now := clock.NowMillis(e.cfg.Clock)
	due, err := store.Due(ctx, shard, now, limit)
	if err != nil {
		return Output{}, 0, fmt.Errorf("%w: due tasks of %q shard %d: %w", ErrRetry, domain, shard, err)
	}
	return e.fireMany(ctx, store, domain, shard, due, now)
}

// fireMany times out a shard's due tasks in one batch call: they share one
// decision, so a store that can close many at once pays its per-call cost
// once instead of per task.
func (e *Engine) fireMany(ctx context.Context, store statemanager.Store, domain string, shard int, due []statemanager.Due, now int64) (Output, int, error) {
	ids := make([]string, len(due))
	for i, d := range due {
		ids[i] = d.ID
	}
	res, err := statemanager.CloseMany(ctx, store, ids, statemanager.Close{Status: statemanager.StatusTimeout, At: now, Key: actions.TimeoutKey, OnlyIfDue: true})
	if err != nil {
		return Output{}, 0, fmt.Errorf("%w: time out %d tasks of %q shard %d: %w", ErrRetry, len(ids), domain, shard, err)
	}
	var out Output
	fired := 0
	for i, r := range res {
		// ErrStale: the deadline moved since Due read it; the task waits
		// for its new one.
		if errors.Is(r.Err, statemanager.ErrClosed) || errors.Is(r.Err, statemanager.ErrNotFound) || errors.Is(r.Err, statemanager.ErrStale) {
			continue // a proceed or another replica won the race
		}
		if r.Err != nil {
			return Output{}, 0, fmt.Errorf("%w: time out %q in %q: %w", ErrRetry, ids[i], domain, r.Err)
		}
		e.closedEffects(&out, domain, r.Task)
		fired++
	}
	if e.cfg.TrackInstances {
		e.taskEvents(&out)
	}
	e.seal(&out)
	return out, fired, nil
}

// Recover: see the contract in api.go.
func (e *Engine) Recover(ctx context.Context, domain string, shard int, closedBefore int64, limit int) (Output, error) {
	store, err := e.cfg.Stores.Store(domain)
	if err != nil {
		return Output{}, fmt.Errorf("%w: domain %q: %w", ErrRetry, domain, err)
	}
	pending, err := store.Pending(ctx, shard, closedBefore, limit)
	if err != nil {
		return Output{}, fmt.Errorf("%w: pending closes of %q shard %d: %w", ErrRetry, domain, shard, err)
	}
	var out Output
	for _, t := range pending {
		e.closedEffects(&out, domain, t)
	}
	if e.cfg.TrackInstances {
		e.taskEvents(&out)
	}
	e.seal(&out)
	return out, nil
}

// closedEffects adds a closed task's effects and ack to out. A task whose
// effects cannot be built (a corrupt stored envelope) or cannot be produced
// (too large) is dead-lettered with its stored envelope and acked like the
// others: retrying could never cure it, and its shard's other deadlines
// must fire. Its notification still goes out when it can be built, so
// consumers learn the task closed.
func (e *Engine) closedEffects(out *Output, domain string, t *statemanager.Task) {
	out.Acks = append(out.Acks, actions.Ack{Domain: domain, ID: t.ID})
	recs, err := actions.TaskEffects(t, e.cfg.Topics)
	if err != nil {
		out.Records = append(out.Records, e.taskDeadLetter(domain, t, DeadCorruptTask, err.Error(), ""))
		n, err := actions.NewNotification(t).Record(e.cfg.Topics.Notifications)
		if err != nil {
			return
		}
		recs = []envelope.Record{n}
	}
	for _, r := range recs {
		if size := e.recordSize(r); size > e.cfg.MaxRecordBytes {
			r = e.taskDeadLetter(domain, t, DeadTooLarge,
				fmt.Sprintf("output to %q is %d bytes, more than the %d allowed", r.Topic, size, e.cfg.MaxRecordBytes), r.Topic)
		} else if r.Topic == e.cfg.Topics.Notifications {
			out.countClosed(t.Status, 1)
		}
		out.Records = append(out.Records, r)
	}
}

// taskDeadLetter dead-letters a closed task: there is no consumed record,
// so the task's domain and id are its coordinates, its stored envelope the
// value.
func (e *Engine) taskDeadLetter(domain string, t *statemanager.Task, code, reason, target string) envelope.Record {
	d := &DeadLetter{Error: fmt.Sprintf("task %s in %q: %s", quoteCut(t.ID), domain, reason), Code: code,
		Saga: t.Saga, StepID: t.StepID, RequestID: t.RequestID, Domain: domain, TaskID: t.ID, Target: target,
		key: []byte(t.ID), original: t.Envelope}
	return d.Record(e.cfg.DeadLetter, e.cfg.MaxRecordBytes)
}

// Ack: see the contract in api.go.
func (e *Engine) Ack(ctx context.Context, acks []actions.Ack) error {
	acks, err := actions.AckEarly(ctx, e.cfg.Stores, acks)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrRetry, err)
	}
	if len(acks) == 1 {
		return e.ackDomain(ctx, acks[0].Domain, []string{acks[0].ID})
	}
	// A batch's closes usually share a domain or two; stores that can ack
	// many ids at once get them in one call per domain.
	var order []string
	byDomain := map[string][]string{}
	for _, a := range acks {
		if _, ok := byDomain[a.Domain]; !ok {
			order = append(order, a.Domain)
		}
		byDomain[a.Domain] = append(byDomain[a.Domain], a.ID)
	}
	for _, d := range order {
		if err := e.ackDomain(ctx, d, byDomain[d]); err != nil {
			return err
		}
	}
	return nil
}

func (e *Engine) ackDomain(ctx context.Context, domain string, ids []string) error {
	store, err := e.cfg.Stores.Store(domain)
	if err != nil {
		return fmt.Errorf("%w: domain %q: %w", ErrRetry, domain, err)
	}
	if err := statemanager.AckMany(ctx, store, ids); err != nil {
		return fmt.Errorf("%w: ack %d tasks in %q: %w", ErrRetry, len(ids), domain, err)
	}
	return nil
}

// directCacheSize bounds the built direct actions kept. Direct records
// arrive at tens of thousands per second with a handful of distinct configs,
// so building each config once matters; the bound keeps hostile or
// generated configs from growing memory.
const directCacheSize = 4096

// actionCache holds direct actions built from eventMeta, keyed by their whole
// configuration, including the ones that failed to build so a stream of bad
// records costs one check each.
type actionCache struct {
	reg *actions.Registry
	max int
	// refuse says why a built action may not run here, or "".
	refuse func(actions.Action) string
	mu     sync.RWMutex
	m      map[string]cachedAction
}

type cachedAction struct {
	action       actions.Action
	code, reason string
}

func newActionCache(reg *actions.Registry, max int, refuse func(actions.Action) string) *actionCache {
	return &actionCache{reg: reg, max: max, refuse: refuse, m: make(map[string]cachedAction)}
}

// maxCachedConfig bounds the size of a config the cache keeps: the few
// configs that recur are small, and a large one cached 4096 times over would
// hold gigabytes.
const maxCachedConfig = 4096

// get returns the action for m, or nil with a dead-letter code and reason.
func (c *actionCache) get(m *envelope.EventMeta) (actions.Action, string, string) {
	// Checked before the cache so a hostile domain costs nothing kept.
	if m.Domain != "" {
		if err := ValidDomain(m.Domain); err != nil {
			return nil, DeadBadConfig, fmt.Sprintf("action %s: eventMeta.domain: %v", quoteCut(m.Action), err)
		}
	}
	if len(m.Action)+len(m.Domain)+len(m.InputElement)+len(m.OutputElement)+len(m.Parameters) > maxCachedConfig {
		ca := c.build(m)
		return ca.action, ca.code, ca.reason
	}
	var buf [256]byte
	key := append(buf[:0], m.Action...)
	key = append(append(key, 0), m.Domain...)
	key = append(append(key, 0), m.InputElement...)
	key = append(append(key, 0), m.OutputElement...)
	key = append(append(key, 0), m.Parameters...)
	c.mu.RLock()
	ca, ok := c.m[string(key)]
	c.mu.RUnlock()
	if ok {
		return ca.action, ca.code, ca.reason
	}
	ca = c.build(m)
	c.mu.Lock()
	if len(c.m) >= c.max {
		for k := range c.m { // map order is random: evict an arbitrary entry
			delete(c.m, k)
			break
		}
	}
	c.m[string(key)] = ca
	c.mu.Unlock()
	return ca.action, ca.code, ca.reason
}

func (c *actionCache) build(m *envelope.EventMeta) cachedAction {
	spec, ok := c.reg.Lookup(m.Action)
	if !ok {
		return cachedAction{code: DeadUnknownAction, reason: fmt.Sprintf("unknown action %s (known: %s)", quoteCut(m.Action), strings.Join(c.reg.Names(), ", "))}
	}
	var params map[string]any
	if p := m.Parameters; len(p) > 0 && string(p) != "null" {
		dec := json.NewDecoder(strings.NewReader(string(p)))
		dec.UseNumber()
		if err := dec.Decode(&params); err != nil {
			return cachedAction{code: DeadBadConfig, reason: fmt.Sprintf("action %q: eventMeta.parameters must be an object: %v", m.Action, err)}
		}
	}
	a, perrs := spec.Build(actions.Input{Domain: m.Domain, InputElement: m.InputElement, OutputElement: m.OutputElement, Params: params})
	if len(perrs) > 0 {
		reasons := make([]string, len(perrs))
		for i, pe := range perrs {
			reasons[i] = pe.Error()
		}
		return cachedAction{code: DeadBadConfig, reason: fmt.Sprintf("action %q: %s", m.Action, strings.Join(reasons, "; "))}
	}
	if reason := c.refuse(a); reason != "" {
		return cachedAction{code: actions.CodeReservedTopic, reason: fmt.Sprintf("action %q: %s", m.Action, reason)}
	}
	return cachedAction{action: a}
}

// NewID returns a random request id.
func NewID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func sortStrings(s []string) { sort.Strings(s) }
