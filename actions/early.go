package actions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/sagarunner/sagarunner/saga/envelope"
	"github.com/sagarunner/sagarunner/statemanager"
)

// Early answers (SPEC §12): a task operation that arrives on Kafka as a
// direct action for a task id that has not started yet (an external system
// answering faster than the saga asks) is parked with the task's store
// instead of failing TASK_NOT_FOUND, and applied by the StartTask that
// starts the task, in arrival order, with its own identity and under the
// rules it would have met had it arrived after. Past the store's EarlyTTL
// it is dead-lettered EARLY_EXPIRED (the engine's ExpireEarly, driven by
// the timers).
//
// Only what can be applied later with nobody waiting is parked: a direct
// action (no saga: a saga step's FAIL routes the instance now) consumed
// from Kafka (Exec.Source), whose input names its task id, and whose record
// does not opt out with NoEarlyHeader (the gateway's do: over HTTP an
// unknown task is 404 at once).

// Early-answer result codes.
const (
	// CodeEarlyRefused: the operation could not be parked (too many wait
	// for its task or its domain, or it is too large to keep). It is
	// dead-lettered with the reason, like malformed input.
	CodeEarlyRefused = "EARLY_REFUSED"
	// CodeEarlyExpired: the operation waited tasks.earlyTTL and its task
	// never started; it is dead-lettered (and answered, with replyTo).
	CodeEarlyExpired = "EARLY_EXPIRED"
)

// NoEarlyHeader is the record header that opts a record out of parking:
// the gateway sets it on its task operations, whose caller waits for an
// answer now. Any value counts. A producer that sets it only gives up
// parking for its own records.
const NoEarlyHeader = "sagarunner-no-early"

// maxEarlyBytes bounds one parked operation (the record's key and value):
// parked operations are kept in Redis for up to tasks.earlyTTL, EarlyMax of
// them per domain, and an answer is small.
const maxEarlyBytes = 32 << 10

// maxEarlyRequestID bounds the request id of a parked operation, which is a
// field of the parked set and of the expiry index.
const maxEarlyRequestID = 512

// Source is the consumed record a direct action came from; the engine sets
// Exec.Source for direct actions only.
type Source struct {
	Topic     string
	Partition int32
	Offset    int64
	Key       []byte
	Value     []byte
	// NoEarly: the record carries NoEarlyHeader.
	NoEarly bool
}

// ParkedOp is a parked operation as the store keeps it: the original
// record (its coordinates, key and value, for the dead letter of an expired
// one) and what re-reading its envelope needs.
type ParkedOp struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
	Key       []byte `json:"key,omitempty"`
	Value     []byte `json:"value"`
	// RequestID is the request id the engine gave the record (its own, or
	// derived from the key or position), and Hops its hop count, so the
	// envelope read back is the one the action saw.
	RequestID string `json:"requestId"`
	Hops      int    `json:"hops,omitempty"`
}

// DecodeParked reads a parked operation's value.
func DecodeParked(p statemanager.Parked) (*ParkedOp, error) {
	var op ParkedOp
	if err := json.Unmarshal(p.Value, &op); err != nil {
		return nil, fmt.Errorf("early answer %q of task %q: %w", p.Key, p.TaskID, err)
	}
	return &op, nil
}

// Envelope reads the operation's envelope back as the action first saw it.
func (op *ParkedOp) Envelope() (*envelope.Envelope, error) {
	env, err := envelope.Decode(op.Value, func() string { return op.RequestID })
	if err != nil {
		return nil, err
	}
	env.RequestMeta.Hops = max(env.RequestMeta.Hops, op.Hops)
	return env, nil
}

// parkOutcome is what parkEarly did.
type parkOutcome int

const (
	notParked   parkOutcome = iota // not parkable: answer as before
	parkedNow                      // parked (or parked already): Outcome answers
	taskExists                     // the task started meanwhile: run again
	refusedPark                    // a limit: Outcome answers EARLY_REFUSED
)

// parkEarly parks env's operation on task id of store when it may be
// parked (see above); named says the input named the id (a default id
// never parks). A parked operation's Outcome says Parked: the engine then
// answers nothing now, and it answers when applied or expired.
func parkEarly(ctx context.Context, x *Exec, env *envelope.Envelope, store statemanager.Store, domain, id string, named bool) (Outcome, parkOutcome, error) {
	src := x.Source
	if src == nil || src.NoEarly || !named || env.SagaMeta.Saga != "" {
		return Outcome{}, notParked, nil
	}
	ea, ok := store.(statemanager.EarlyAnswers)
	if !ok {
		return Outcome{}, notParked, nil
	}
	key := env.RequestMeta.RequestID
	switch {
	case key == "":
		return Outcome{}, notParked, nil
	case len(key) > maxEarlyRequestID:
		env.Fail(CodeEarlyRefused, "no task %q in %q yet, and a request id of %d bytes is too long to keep the operation for it (at most %d)", id, domain, len(key), maxEarlyRequestID)
		return Outcome{Env: env}, refusedPark, nil
	case len(src.Key)+len(src.Value) > maxEarlyBytes:
		env.Fail(CodeEarlyRefused, "no task %q in %q yet, and an operation of %d bytes is too large to keep for it (at most %d)", id, domain, len(src.Key)+len(src.Value), maxEarlyBytes)
		return Outcome{Env: env}, refusedPark, nil
	}
	v, err := json.Marshal(ParkedOp{Topic: src.Topic, Partition: src.Partition, Offset: src.Offset, Key: src.Key, Value: src.Value,
		RequestID: key, Hops: env.RequestMeta.Hops})
	if err != nil {
		return Outcome{}, notParked, fmt.Errorf("park for task %q: %w", id, err)
	}
	_, err = ea.Park(ctx, statemanager.Parked{TaskID: id, Key: key, Value: v}, nowMillis(x))
	switch {
	case errors.Is(err, statemanager.ErrTaskExists):
		return Outcome{}, taskExists, nil
	case errors.Is(err, statemanager.ErrEarlyFull):
		env.Fail(CodeEarlyRefused, "no task %q in %q yet, and the operation cannot be kept for it: %s", id, domain, strings.TrimPrefix(err.Error(), "statemanager: "))
		return Outcome{Env: env}, refusedPark, nil
	case err != nil:
		return Outcome{}, notParked, fmt.Errorf("park for task %q in %q: %w: %w", id, domain, ErrRetryable, err)
	}
	return Outcome{Env: env, Parked: true}, parkedNow, nil
}

// withoutSource is x for running an operation again or applying a parked
// one: it never parks (again).
func withoutSource(x *Exec) *Exec {
	c := *x
	c.Source = nil
	return &c
}

// applyEarly applies the operations parked for task t of domain, in arrival
// order, and adds their effects, their replies and the ack that unparks them
// once those are durable to out. An operation is built from its own
// eventMeta and runs as if it had arrived now: a refused one answers its
// FAIL. Errors are retryable store trouble: the caller's record is retried,
// and what was applied replays on its request id.
func applyEarly(ctx context.Context, x *Exec, ea statemanager.EarlyAnswers, domain string, t *statemanager.Task, out *Outcome) error {
	parked, err := ea.Early(ctx, t.ID)
	if err != nil {
		return fmt.Errorf("early answers of task %q in %q: %w: %w", t.ID, domain, ErrRetryable, err)
	}
	if len(parked) == 0 {
		return nil
	}
	x = withoutSource(x)
	refs := make([]statemanager.EarlyRef, 0, len(parked))
	for _, p := range parked {
		refs = append(refs, statemanager.EarlyRef{TaskID: p.TaskID, Key: p.Key})
		op, err := DecodeParked(p)
		if err != nil {
			continue // unreadable (edited by hand): nothing to apply
		}
		env, err := op.Envelope()
		if err != nil {
			continue // it decoded when it arrived; a hand edit again
		}
		a, err := buildDirect(&env.EventMeta)
		if err != nil {
			// It built when it arrived: only a registry changed between
			// versions fails here. Answer it, never hold the start.
			env.Fail(CodeBadInput, "early answer: %v", err)
		} else {
			o, err := a.Execute(ctx, x, env)
			if err != nil {
				return fmt.Errorf("early answer %q of task %q: %w", p.Key, t.ID, err)
			}
			if o.Env != nil {
				env = o.Env
			}
			out.Records = append(out.Records, o.Records...)
			out.Acks = append(out.Acks, o.Acks...)
		}
		if r, ok := replyRecord(env); ok {
			out.Records = append(out.Records, r)
		}
	}
	out.Acks = append(out.Acks, Ack{Domain: domain, ID: t.ID, Early: refs})
	return nil
}

// buildDirect builds a direct action from its eventMeta with the default
// registry, as the engine built it when the record arrived.
func buildDirect(m *envelope.EventMeta) (Action, error) {
	spec, ok := Default.Lookup(m.Action)
	if !ok {
		return nil, fmt.Errorf("unknown action %q", m.Action)
	}
	var params map[string]any
	if p := m.Parameters; len(p) > 0 && string(p) != "null" {
		dec := json.NewDecoder(strings.NewReader(string(p)))
		dec.UseNumber()
		if err := dec.Decode(&params); err != nil {
			return nil, fmt.Errorf("action %q: eventMeta.parameters: %v", m.Action, err)
		}
	}
	a, perrs := spec.Build(Input{Domain: m.Domain, InputElement: m.InputElement, OutputElement: m.OutputElement, Params: params})
	if len(perrs) > 0 {
		return nil, fmt.Errorf("action %q: %v", m.Action, perrs[0])
	}
	return a, nil
}

// replyRecord is the answer of an applied early operation to its replyTo,
// as the engine answers a direct action: the envelope, one hop further,
// keyed by request id. The replyTo was checked when the record arrived.
func replyRecord(env *envelope.Envelope) (envelope.Record, bool) {
	to := env.RequestMeta.ReplyTo
	if to == "" {
		return envelope.Record{}, false
	}
	hops := env.RequestMeta.Hops
	env.RequestMeta.Hops = hops + 1
	v := env.Encode()
	env.RequestMeta.Hops = hops
	return envelope.Record{Topic: to, Key: []byte(env.RequestMeta.RequestID), Value: v,
		Headers: []envelope.Header{{Key: HopsHeader, Value: strconv.AppendInt(nil, int64(hops+1), 10)}}}, true
}

// AckEarly unparks the early answers named in acks (Ack.Early) and returns
// the other acks, for the engine to ack as closes. Call it once the
// records of the output the acks came with are durable. Acks without early
// answers are returned as they are, without allocating.
func AckEarly(ctx context.Context, stores statemanager.Resolver, acks []Ack) ([]Ack, error) {
	n := 0
	for i := range acks {
		if acks[i].Early != nil {
			n++
		}
	}
	if n == 0 {
		return acks, nil
	}
	rest := make([]Ack, 0, len(acks)-n)
	var order []string
	byDomain := map[string][]statemanager.EarlyRef{}
	for _, a := range acks {
		if a.Early == nil {
			rest = append(rest, a)
			continue
		}
		if _, ok := byDomain[a.Domain]; !ok {
			order = append(order, a.Domain)
		}
		byDomain[a.Domain] = append(byDomain[a.Domain], a.Early...)
	}
	for _, d := range order {
		s, err := storeOf(&Exec{Stores: stores}, d)
		if err != nil {
			return nil, err
		}
		if ea, ok := s.(statemanager.EarlyAnswers); ok {
			if err := ea.Unpark(ctx, byDomain[d]); err != nil {
				return nil, fmt.Errorf("unpark %d early answers in %q: %w", len(byDomain[d]), d, err)
			}
		}
	}
	return rest, nil
}

// SourceOf describes a consumed record for Exec.Source.
func SourceOf(topic string, partition int32, offset int64, key, value []byte, headers []envelope.Header) *Source {
	s := &Source{Topic: topic, Partition: partition, Offset: offset, Key: key, Value: value}
	for _, h := range headers {
		if h.Key == NoEarlyHeader {
			s.NoEarly = true
		}
	}
	return s
}

// parkUnknown is what a task operation does when its task is not found:
// park it when it may be parked (parkEarly) and answer that, or, when the
// task started meanwhile, run the operation again with run (which never
// parks). done=false: not parkable, answer TASK_NOT_FOUND as before.
func parkUnknown(ctx context.Context, x *Exec, env *envelope.Envelope, store statemanager.Store, domain, id string, named bool,
	run func(x *Exec) (Outcome, error)) (o Outcome, done bool, err error) {
	o, how, err := parkEarly(ctx, x, env, store, domain, id, named)
	switch {
	case err != nil:
		return Outcome{}, true, err
	case how == taskExists:
		o, err = run(withoutSource(x))
		return o, true, err
	case how == notParked:
		return Outcome{}, false, nil
	}
	return o, true, nil
}

// namedID reports whether the input names a task id at path, rather than
// leaving the action to its default id, which no early answer waits on.
func namedID(env *envelope.Envelope, in []byte, path string) bool {
	if path == "" {
		return false
	}
	_, ok, err := scalarString(lookup(env, in, path))
	return ok && err == nil
}
