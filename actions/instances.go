package actions

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/tidwall/gjson"

	"github.com/sagarunner/sagarunner/instances"
	"github.com/sagarunner/sagarunner/saga/envelope"
	"github.com/sagarunner/sagarunner/statemanager"
)

// CodeInstanceCancelled is the result code of the continuation that resumes
// a cancelled instance at the task it waited on: the engine then runs the
// saga's onCancel step, if it declares one, and ends the instance
// CANCELLED instead of routing on the step's statuses.
const CodeInstanceCancelled = "INSTANCE_CANCELLED"

// suspendedHookKey carries WithSuspendedHook's function in a context.
type suspendedHookKey struct{}

// WithSuspendedHook returns a context under which StartTask calls fn with
// the task the instance now waits on, whether it stored it now or found it
// stored by an earlier try of the same step (a replay). The engine names
// the open task in the instance's timeline with it: on a replay after a
// crash the task exists already, and the timeline must still learn of it.
func WithSuspendedHook(ctx context.Context, fn func(*statemanager.Task)) context.Context {
	return context.WithValue(ctx, suspendedHookKey{}, fn)
}

func suspended(ctx context.Context, t *statemanager.Task) {
	if fn, _ := ctx.Value(suspendedHookKey{}).(func(*statemanager.Task)); fn != nil {
		fn(t)
	}
}

// Instances is what CancelInstance reads of the instance records
// (*instances.Store): Get returns instances.ErrNotFound for an unknown one.
type Instances interface {
	Get(ctx context.Context, id string) (*instances.Instance, error)
}

// instancesKey carries WithInstances's reader in a context.
type instancesKey struct{}

// WithInstances returns a context under which CancelInstance reads the
// instance records from r; the engine sets it when instances are tracked.
func WithInstances(ctx context.Context, r Instances) context.Context {
	return context.WithValue(ctx, instancesKey{}, r)
}

// Result codes of CancelInstance's refusals.
const (
	CodeInstanceNotFound = "INSTANCE_NOT_FOUND" // no such instance, or not the caller's tenant
	CodeInstanceEnded    = "INSTANCE_ENDED"     // it ended already (409)
	CodeInstanceBusy     = "INSTANCE_BUSY"      // it never came to rest on a task to cancel (409)
	CodeNoInstances      = "INSTANCES_OFF"      // instance tracking is off
)

// maxCancelTries bounds how often a cancel of a running instance goes
// round the instance's partition waiting for it to rest on a task.
const maxCancelTries = 20

func init() {
	Default.Register(&Spec{
		Name: "CancelInstance",
		Doc: "Cancels a saga instance (input: instanceId, reason): its open tasks close CANCELLED, the saga's onCancel step runs " +
			"if it declares one, and the instance ends CANCELLED. Only an admin of the instance's tenant or its starter may; an " +
			"ended instance answers FAIL INSTANCE_ENDED. Send it keyed by the instance id, so it queues behind the instance's own records.",
		InputElement:  Optional,
		OutputElement: Optional,
		New: func(c Config) (Action, error) {
			return &cancelInstance{inputElement: c.InputElement, outputElement: c.OutputElement}, nil
		},
	})
}

type cancelInstance struct {
	inputElement, outputElement string
}

// Execute cancels the instance named at instanceId. An instance running
// between two records (no open task yet, or its task just closed by
// someone else) cannot be stopped mid-flight: the request is sent again
// on the request topic, keyed by the instance, so it is handled after the
// record in flight, and answered then.
func (a *cancelInstance) Execute(ctx context.Context, x *Exec, env *envelope.Envelope) (Outcome, error) {
	in := env.Get(a.inputElement)
	id, reason, tries, bad := cancelInput(in)
	if bad != "" {
		env.Fail(CodeBadInput, "CancelInstance: %s", bad)
		return Outcome{Env: env}, nil
	}
	store, _ := ctx.Value(instancesKey{}).(Instances)
	if store == nil {
		env.Fail(CodeNoInstances, "CancelInstance: instance tracking is off")
		return Outcome{Env: env}, nil
	}
	inst, err := store.Get(ctx, id)
	if errors.Is(err, instances.ErrNotFound) || err == nil && inst.Tenant != env.RequestMeta.Tenant {
		env.Fail(CodeInstanceNotFound, "no instance %q", id)
		return Outcome{Env: env}, nil
	}
	if err != nil {
		return Outcome{}, fmt.Errorf("CancelInstance %q: %w: %w", id, ErrRetryable, err)
	}
	rm := env.RequestMeta
	if (rm.User != "" || len(rm.Roles) > 0) && rm.User != inst.Starter && !hasRole(rm.Roles, x.AdminRoles) {
		env.Fail(CodeForbidden, "only an admin or the starter of instance %q may cancel it", id)
		return Outcome{Env: env}, nil
	}
	if instances.Ended(inst.Status) {
		env.Fail(CodeInstanceEnded, "instance %q is %s already", id, inst.Status)
		return Outcome{Env: env}, nil
	}
	var out Outcome
	requeue := len(inst.OpenTasks) == 0
	for _, ref := range inst.OpenTasks {
		t, recs, err := CloseTask(ctx, x, ref.Domain, statemanager.Close{ID: ref.ID, Status: statemanager.StatusCancelled,
			By: rm.User, Note: reason, Key: "cancel-instance:" + rm.RequestID})
		switch {
		case errors.Is(err, statemanager.ErrClosed), errors.Is(err, statemanager.ErrNotFound), errors.Is(err, statemanager.ErrStale):
			requeue = true // it moved on meanwhile
			continue
		case err != nil:
			return Outcome{}, err
		}
		if t.RequestID != id {
			continue
		}
		for _, r := range recs {
			if r.Topic == x.Topics.Continuations {
				r.Value = cancelledContinuation(r.Value, reason)
			}
			out.Records = append(out.Records, r)
		}
		out.Acks = append(out.Acks, Ack{Domain: ref.Domain, ID: ref.ID})
	}
	if requeue && len(out.Records) == 0 {
		if tries+1 >= maxCancelTries {
			env.Fail(CodeInstanceBusy, "instance %q did not come to rest on a task to cancel", id)
			return Outcome{Env: env}, nil
		}
		again := env.Clone()
		p := fmt.Appendf(nil, `{"instanceId":%s,"reason":%s,"tries":%d}`, quote(id), quote(reason), tries+1)
		if err := again.Set(a.inputElement, p); err != nil {
			env.Fail(CodeBadInput, "CancelInstance: %v", err)
			return Outcome{Env: env}, nil
		}
		out.Records = append(out.Records, envelope.Record{Topic: x.Topics.Continuations, Key: []byte(id), Value: again.Encode()})
		// The request answers when it is handled again.
		env.RequestMeta.ReplyTo = ""
		out.Env = env
		return out, nil
	}
	env.Succeed()
	if a.outputElement != "" {
		if err := env.Set(a.outputElement, fmt.Appendf(nil, `{"instanceId":%s,"status":"CANCELLED"}`, quote(id))); err != nil {
			env.Fail(CodeBadInput, "CancelInstance: output element: %v", err)
		}
	}
	out.Env = env
	return out, nil
}

// cancelledContinuation marks a cancelled task's continuation as the
// instance's cancel, so the engine runs onCancel instead of the routes.
func cancelledContinuation(v []byte, reason string) []byte {
	var e envelope.Envelope
	if err := envelope.Unmarshal(v, &e); err != nil {
		return v
	}
	e.Result.Code, e.Result.Message = CodeInstanceCancelled, reason
	return e.Encode()
}

func quote(s string) []byte { return envelope.AppendString(nil, s, false) }

func hasRole(roles, admin []string) bool {
	for _, r := range roles {
		if slices.Contains(admin, r) {
			return true
		}
	}
	return false
}

// cancelInput reads a CancelInstance input strictly: a Kafka producer sends
// it as it likes, and the reason becomes the cancelled tasks' note and the
// continuation's message, tries the count that ends the re-queueing.
func cancelInput(in gjson.Result) (id, reason string, tries int, bad string) {
	v, r, n := in.Get("instanceId"), in.Get("reason"), in.Get("tries")
	switch {
	case v.Type != gjson.String || v.Str == "":
		return "", "", 0, "instanceId is required, a string"
	case len(v.Str) > maxTaskIDLen:
		return "", "", 0, fmt.Sprintf("instanceId of %d bytes (at most %d)", len(v.Str), maxTaskIDLen)
	case r.Exists() && r.Type != gjson.String && r.Type != gjson.Null:
		return "", "", 0, "reason must be a string"
	case len(r.Str) > maxNoteLen:
		return "", "", 0, fmt.Sprintf("reason of %d bytes (at most %d)", len(r.Str), maxNoteLen)
	case n.Exists() && (n.Type != gjson.Number || n.Num != float64(int(n.Num)) || n.Num < 0 || n.Num >= maxCancelTries):
		return "", "", 0, fmt.Sprintf("tries must be an integer in [0, %d)", maxCancelTries)
	}
	return v.Str, r.Str, int(n.Num), ""
}
