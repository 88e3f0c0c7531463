package saga

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/sagarunner/sagarunner/actions"
	"github.com/sagarunner/sagarunner/clock"
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
}

// NewEngine returns an engine over the loaded sagas.
func NewEngine(set *Set, cfg Config) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if set == nil {
		set = &Set{}
	}
	seen := map[string]bool{}
	var domains []string
	for _, g := range set.Sagas {
		for _, st := range g.Steps {
			if st.Action != nil && st.Domain != "" && !seen[st.Domain] {
				seen[st.Domain] = true
				domains = append(domains, st.Domain)
			}
		}
	}
	sort.Strings(domains)
	return &Engine{set: set, cfg: cfg, domains: domains, direct: newActionCache(cfg.Registry, directCacheSize)}, nil
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

// Dead-letter codes, in DeadLetter.Code, besides the result codes of a failed
// instance (actions.CodeBadInput, actions.CodePattern).
const (
	DeadUndecodable   = "UNDECODABLE"        // the value is not a JSON object
	DeadUnknownSaga   = "UNKNOWN_SAGA"       // sagaMeta.saga names no loaded saga
	DeadUnknownStep   = "UNKNOWN_STEP"       // sagaMeta.stepId names no step of the saga
	DeadUnknownAction = "UNKNOWN_ACTION"     // eventMeta.action names no registered action
	DeadBadConfig     = "BAD_ACTION_CONFIG"  // a direct action's eventMeta does not check
	DeadNoKind        = "NOT_ROUTABLE"       // neither a start, a continuation nor an action
	DeadStepBudget    = "STEP_BUDGET"        // too many steps for one record
	DeadPanic         = "PANIC"              // an action or condition panicked
	deadReasonMissing = "no reason recorded" // never empty, so a reader always sees why
)

// DeadLetter is the JSON value of a dead-letter record: why the record could
// not be processed and where it came from, with the original value (as a JSON
// string when it was not JSON) so an operator can fix and replay it.
type DeadLetter struct {
	Error     string          `json:"error"`
	Code      string          `json:"code"`
	Topic     string          `json:"topic"`
	Partition int32           `json:"partition"`
	Offset    int64           `json:"offset"`
	Saga      string          `json:"saga,omitempty"`
	StepID    string          `json:"stepId,omitempty"`
	RequestID string          `json:"requestId,omitempty"`
	Value     json.RawMessage `json:"value"`
}

func (e *Engine) deadLetter(rec Record, env *envelope.Envelope, code, reason string) envelope.Record {
	if reason == "" {
		reason = deadReasonMissing
	}
	d := DeadLetter{Error: reason, Code: code, Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset}
	if env != nil {
		d.Saga, d.StepID, d.RequestID = env.SagaMeta.Saga, env.SagaMeta.StepID, env.RequestMeta.RequestID
	}
	if json.Valid(rec.Value) {
		d.Value = rec.Value
	} else {
		d.Value, _ = json.Marshal(string(rec.Value))
	}
	b, err := json.Marshal(d)
	if err != nil {
		// Only Value could fail, and it is checked or marshalled above.
		panic(fmt.Sprintf("saga: dead letter: %v", err))
	}
	return envelope.Record{Topic: e.cfg.DeadLetter, Key: rec.Key, Value: b}
}

func (e *Engine) deadOutput(rec Record, env *envelope.Envelope, code, reason string) Output {
	return Output{Records: []envelope.Record{e.deadLetter(rec, env, code, reason)}}
}

// Handle: see the contract in api.go.
func (e *Engine) Handle(ctx context.Context, rec Record) (out Output, err error) {
	defer func() {
		// A panicking action must not take the partition down with it: the
		// record is dead-lettered and nothing partial is produced.
		if p := recover(); p != nil {
			out, err = e.deadOutput(rec, nil, DeadPanic, fmt.Sprintf("panic: %v", p)), nil
		}
	}()
	// Output.Started counts tasks newly stored, not replayed starts, which
	// only StartTask itself can tell apart.
	started := 0
	ctx = actions.WithStartedHook(ctx, func(*statemanager.Task) { started++ })
	out, err = e.handle(ctx, rec)
	if err == nil {
		out.Started = started
	}
	return out, err
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

func (e *Engine) handle(ctx context.Context, rec Record) (Output, error) {
	env, derr := envelope.Decode(rec.Value, func() string { return e.requestID(rec) })
	if derr != nil {
		return e.deadOutput(rec, nil, DeadUndecodable, derr.Error()), nil
	}
	x := &actions.Exec{Stores: e.cfg.Stores, Clock: e.cfg.Clock, Topics: e.cfg.Topics, Partition: rec.Partition}

	// A record on a saga's own trigger topic always starts it, whatever
	// sagaMeta it carries: a Publish step may forward a whole envelope of
	// another instance to that topic.
	if rec.Topic != e.cfg.Topics.Continuations {
		if sagas := e.set.ByTopic(rec.Topic); len(sagas) > 0 {
			return e.startAll(ctx, x, rec, env, sagas)
		}
	}
	sm := env.SagaMeta
	switch {
	case sm.Saga != "" && sm.StepID != "":
		g, ok := e.set.ByName(sm.Saga)
		if !ok {
			return e.deadOutput(rec, env, DeadUnknownSaga, fmt.Sprintf("unknown saga %q", sm.Saga)), nil
		}
		st, ok := g.Step(sm.StepID)
		if !ok {
			return e.deadOutput(rec, env, DeadUnknownStep, fmt.Sprintf("saga %q has no step %q", sm.Saga, sm.StepID)), nil
		}
		return e.walk(ctx, x, rec, g, st, env, true)
	case sm.Saga != "":
		g, ok := e.set.ByName(sm.Saga)
		if !ok {
			return e.deadOutput(rec, env, DeadUnknownSaga, fmt.Sprintf("unknown saga %q", sm.Saga)), nil
		}
		return e.start(ctx, x, rec, g, env)
	case env.EventMeta.Action != "":
		return e.runDirect(ctx, x, rec, env)
	}
	if sagas := e.set.ByTopic(rec.Topic); len(sagas) > 0 {
		return e.startAll(ctx, x, rec, env, sagas)
	}
	return e.deadOutput(rec, env, DeadNoKind, "record names no saga or action and its topic triggers no saga"), nil
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
	return e.walk(ctx, x, rec, g, g.Steps[0], env, false)
}

// walk runs an instance from st until it waits, finishes, fails or has no
// route. resumed says st already ran (a continuation): the walk first routes
// on the result the record carries.
func (e *Engine) walk(ctx context.Context, x *actions.Exec, rec Record, g *Saga, st *Step, env *envelope.Envelope, resumed bool) (Output, error) {
	var out Output
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
					return e.stop(out, rec, env, true), nil
				}
				value = v
			} else {
				env.EventMeta = st.meta
				env.EventMeta.Parameters = append(json.RawMessage(nil), st.meta.Parameters...)
				o, err := st.Action.Execute(ctx, x, env)
				if err != nil {
					return Output{}, fmt.Errorf("%w: saga %q step %q: %w", ErrRetry, g.Name, st.ID, err)
				}
				out.Records = append(out.Records, o.Records...)
				out.Acks = append(out.Acks, o.Acks...)
				if o.Env != nil {
					env = o.Env
				}
				if o.Suspend {
					return e.stop(out, rec, env, false), nil
				}
				if o.Finish {
					return e.stop(out, rec, env, env.Result.Status == envelope.StatusFail), nil
				}
				value = env.Result.Status
			}
		}
		resumed = false
		next, ok := st.route(value)
		if !ok {
			failed := env.Result.Status == envelope.StatusFail && g.AutoFail
			return e.stop(out, rec, env, failed), nil
		}
		// Validation guarantees the target exists; a hand-built Set may not.
		if st, ok = g.Step(next); !ok {
			return e.deadOutput(rec, env, DeadUnknownStep, fmt.Sprintf("saga %q has no step %q", g.Name, next)), nil
		}
	}
}

// route returns the step to go to for a status or condition value.
func (st *Step) route(value string) (string, bool) {
	if st.Always != "" {
		return st.Always, true
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
// caller) are answers, not poison: they only produce the response.
func (e *Engine) stop(out Output, rec Record, env *envelope.Envelope, failed bool) Output {
	if to := env.RequestMeta.ReplyTo; to != "" {
		out.Records = append(out.Records, envelope.Record{Topic: to, Key: []byte(env.RequestMeta.RequestID), Value: env.Encode()})
	}
	if failed && malformed(env.Result.Code) {
		out.Records = append(out.Records, e.deadLetter(rec, env, env.Result.Code, env.Result.Message))
	}
	return out
}

func malformed(code string) bool { return code == actions.CodeBadInput || code == actions.CodePattern }

// runDirect runs one action named by the record's eventMeta, the way external
// systems publish a ProceedTask or a scheduler a TimeoutBetween tick.
func (e *Engine) runDirect(ctx context.Context, x *actions.Exec, rec Record, env *envelope.Envelope) (Output, error) {
	a, code, reason := e.direct.get(&env.EventMeta)
	if a == nil {
		return e.deadOutput(rec, env, code, reason), nil
	}
	o, err := a.Execute(ctx, x, env)
	if err != nil {
		return Output{}, fmt.Errorf("%w: action %q: %w", ErrRetry, env.EventMeta.Action, err)
	}
	if o.Env != nil {
		env = o.Env
	}
	out := Output{Records: o.Records, Acks: o.Acks}
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
	res, err := statemanager.CloseMany(ctx, store, ids, statemanager.Close{Status: statemanager.StatusTimeout, At: now, Key: actions.TimeoutKey})
	if err != nil {
		return Output{}, 0, fmt.Errorf("%w: time out %d tasks of %q shard %d: %w", ErrRetry, len(ids), domain, shard, err)
	}
	var out Output
	fired := 0
	for i, r := range res {
		if errors.Is(r.Err, statemanager.ErrClosed) || errors.Is(r.Err, statemanager.ErrNotFound) {
			continue // a proceed or another replica won the race
		}
		if r.Err != nil {
			return Output{}, 0, fmt.Errorf("%w: time out %q in %q: %w", ErrRetry, ids[i], domain, r.Err)
		}
		recs, err := actions.TaskEffects(r.Task, e.cfg.Topics)
		if err != nil {
			return Output{}, 0, fmt.Errorf("%w: effects of %q in %q: %w", ErrRetry, ids[i], domain, err)
		}
		out.Records = append(out.Records, recs...)
		out.Acks = append(out.Acks, actions.Ack{Domain: domain, ID: ids[i]})
		fired++
	}
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
		recs, err := actions.TaskEffects(t, e.cfg.Topics)
		if err != nil {
			return Output{}, fmt.Errorf("%w: effects of %q in %q: %w", ErrRetry, t.ID, domain, err)
		}
		out.Records = append(out.Records, recs...)
		out.Acks = append(out.Acks, actions.Ack{Domain: domain, ID: t.ID})
	}
	return out, nil
}

// Ack: see the contract in api.go.
func (e *Engine) Ack(ctx context.Context, acks []actions.Ack) error {
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
	mu  sync.RWMutex
	m   map[string]cachedAction
}

type cachedAction struct {
	action       actions.Action
	code, reason string
}

func newActionCache(reg *actions.Registry, max int) *actionCache {
	return &actionCache{reg: reg, max: max, m: make(map[string]cachedAction)}
}

// get returns the action for m, or nil with a dead-letter code and reason.
func (c *actionCache) get(m *envelope.EventMeta) (actions.Action, string, string) {
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
		return cachedAction{code: DeadUnknownAction, reason: fmt.Sprintf("unknown action %q (known: %s)", m.Action, strings.Join(c.reg.Names(), ", "))}
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
	return cachedAction{action: a}
}

// NewID returns a random request id.
func NewID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func sortStrings(s []string) { sort.Strings(s) }
