package saga

import (
	"crypto/sha256"
	"strconv"

	"github.com/tidwall/gjson"

	"github.com/sagarunner/sagarunner/actions"
	"github.com/sagarunner/sagarunner/clock"
	"github.com/sagarunner/sagarunner/instances"
	"github.com/sagarunner/sagarunner/saga/envelope"
	"github.com/sagarunner/sagarunner/statemanager"
)

// The engine describes what an instance went through as instance events in
// its output (Output.Instances); it never writes them itself, so tracking
// costs no round trip of its own. Each event's key is what a replay of the
// same input repeats: the step visit (sagaMeta.seq) for a step, the bytes
// of the task event for a task's, and one key per kind for the start and
// the end, of which an instance has one each.

// startedEvent is the first event of an instance that env starts on g.
func (e *Engine) startedEvent(g *Saga, env *envelope.Envelope) instances.Event {
	return instances.Event{Instance: env.RequestMeta.RequestID, Key: "start", Type: instances.EventStarted,
		At: clock.NowMillis(e.cfg.Clock), Actor: env.RequestMeta.User, Saga: g.Name, Version: g.Version,
		Tenant: env.RequestMeta.Tenant, BusinessKey: g.BusinessKey(env)}
}

// stepEvent is a step that ran, status as stepStatus named it; task is the
// task it suspended on, if any.
func (e *Engine) stepEvent(env *envelope.Envelope, st *Step, status string, task *statemanager.Task) instances.Event {
	ev := instances.Event{Instance: env.RequestMeta.RequestID, Key: "s" + strconv.Itoa(env.SagaMeta.Seq), Type: instances.EventStep,
		At: clock.NowMillis(e.cfg.Clock), Step: st.ID, Action: st.meta.Action, Status: status}
	if env.Result.Status == envelope.StatusFail {
		ev.Code, ev.Message = env.Result.Code, env.Result.Message
	}
	if task != nil && status == StepWaiting {
		ev.Domain, ev.TaskID = task.Domain, task.ID
	}
	return ev
}

// cancelOf is the cancel an instance is ending by (nil: none).
type cancelOf struct{ reason string }

// endEvent is the end of the instance env belongs to: cancelled (with the
// cancel's reason, whatever its onCancel step left), failed or finished
// with the last result.
func (e *Engine) endEvent(env *envelope.Envelope, failed bool, cancelled *cancelOf) instances.Event {
	if cancelled != nil {
		return instances.Event{Instance: env.RequestMeta.RequestID, Key: "end", Type: instances.EventCancelled,
			At: clock.NowMillis(e.cfg.Clock), Saga: env.SagaMeta.Saga, Step: env.SagaMeta.StepID,
			Status: envelope.StatusCancelled, Code: actions.CodeInstanceCancelled, Message: cancelled.reason}
	}
	typ := instances.EventFinished
	if failed {
		typ = instances.EventFailed
	}
	return instances.Event{Instance: env.RequestMeta.RequestID, Key: "end", Type: typ, At: clock.NowMillis(e.cfg.Clock), Saga: env.SagaMeta.Saga,
		Step: env.SagaMeta.StepID, Status: env.Result.Status, Code: env.Result.Code, Message: env.Result.Message}
}

// deadCodesBeforeTrust are dead-letter codes given before a record is
// known to come from the runners or to belong to an instance: its sagaMeta
// may be anyone's, so they never touch an instance.
var deadCodesBeforeTrust = map[string]bool{
	DeadUndecodable: true, DeadForged: true, DeadMaxHops: true, DeadBadReplyTo: true, DeadNoKind: true,
	DeadUnknownAction: true, DeadBadConfig: true,
}

// instanceTail adds to out the events only the finished output shows: a
// dead letter of a record of an instance (which ends it FAILED), and the
// task events among its records.
func (e *Engine) instanceTail(out *Output, env *envelope.Envelope) {
	if env != nil && env.SagaMeta.Saga != "" && env.SagaMeta.StepID != "" {
		for _, r := range out.Records {
			if r.Topic != e.cfg.DeadLetter {
				continue
			}
			v := gjson.GetManyBytes(r.Value, "code", "error")
			if deadCodesBeforeTrust[v[0].String()] {
				break
			}
			out.Instances = append(out.Instances, instances.Event{Instance: env.RequestMeta.RequestID,
				Key: "dead" + strconv.Itoa(env.SagaMeta.Seq), Type: instances.EventDeadLettered, At: clock.NowMillis(e.cfg.Clock),
				Step: env.SagaMeta.StepID, Code: v[0].String(), Message: v[1].String()})
			break
		}
	}
	e.taskEvents(out)
}

// taskEvents turns the task events among out's records into events of the
// instances the tasks belong to. Reading them off the records keeps one
// source for what happened to a task, whichever path closed or changed it.
//
// A close's event rides on the continuation the close made instead
// (carryClose): the continuation's input writes it with the steps it runs,
// in one write of the instance where there were two, and a deadline firing
// writes no instance at all. Until then the instance shows the task open.
func (e *Engine) taskEvents(out *Output) {
	topic := e.cfg.Topics.TaskEvents
	if topic == "" {
		return
	}
	for i := range out.Records {
		r := &out.Records[i]
		if r.Topic != topic {
			continue
		}
		ev, ok := taskEventOf(r.Value)
		if !ok {
			continue
		}
		if !statemanager.Open(ev.Status) && e.carryClose(out, i, ev.Instance) {
			continue
		}
		out.Instances = append(out.Instances, ev)
	}
}

// carryClose makes the continuation of the close whose task event is
// out.Records[i] carry that event (signer.carry), and reports whether it
// could: the continuation is the one the same close made (TaskEffects puts
// it before its task event, with no task event between), keyed by the
// instance, carrying nothing yet, and with room for the event under
// MaxRecordBytes.
func (e *Engine) carryClose(out *Output, i int, instance string) bool {
	event := out.Records[i].Value
	for j := i - 1; j >= 0; j-- {
		r := &out.Records[j]
		switch r.Topic {
		case e.cfg.Topics.TaskEvents:
			return false
		case e.cfg.Topics.Continuations:
			if string(r.Key) != instance {
				continue
			}
			for _, h := range r.Headers {
				if h.Key == TaskEventHeader {
					return false
				}
			}
			if e.recordSize(*r)+len(TaskEventHeader)+2*sha256.Size+len(event) > e.cfg.MaxRecordBytes {
				return false
			}
			e.signer.carry(r, event)
			return true
		}
	}
	return false
}

// carriedEvent is the close's task event continuation rec carries (see
// taskEvents), when its MAC holds.
func (e *Engine) carriedEvent(rec Record) (instances.Event, bool) {
	if rec.Topic != e.cfg.Topics.Continuations {
		return instances.Event{}, false
	}
	event, ok := e.signer.carried(rec)
	if !ok {
		return instances.Event{}, false
	}
	return taskEventOf(event)
}

// taskEventOf is the instance event of a task-event record's value, read in
// one pass over it (a lookup per field would scan it once each); false when
// it names no instance. One copy of the value is made: the fields are
// substrings of it, unless escaped.
func taskEventOf(value []byte) (instances.Event, bool) {
	ev := instances.Event{Type: instances.EventTask}
	var seen uint16
	gjson.Parse(string(value)).ForEach(func(k, v gjson.Result) bool {
		var f *string
		var bit uint16
		switch k.Str {
		case "instance":
			f, bit = &ev.Instance, 1
		case "taskId":
			f, bit = &ev.TaskID, 2
		case "domain":
			f, bit = &ev.Domain, 4
		case "status":
			f, bit = &ev.Status, 8
		case "type":
			f, bit = &ev.Task, 16
		case "actor":
			f, bit = &ev.Actor, 32
		case "outcome":
			f, bit = &ev.Outcome, 64
		case "note":
			f, bit = &ev.Note, 128
		case "at":
			if seen&256 == 0 {
				ev.At, seen = v.Int(), seen|256
			}
			return true
		default:
			return true
		}
		// The first of a repeated field counts, as a lookup would find.
		if seen&bit == 0 {
			*f, seen = v.String(), seen|bit
		}
		return true
	})
	if ev.Instance == "" {
		return ev, false
	}
	var kb [16]byte
	ev.Key = string(strconv.AppendUint(append(kb[:0], 't'), fnv64a(value), 36))
	return ev, true
}

// fnv64a is FNV-1a of b, as hash/fnv computes it, without allocating.
func fnv64a(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}

// DeadInstance returns the instance event of rec when the runner
// dead-letters it with code (a panic, attempts spent): a continuation the
// runners signed ends its instance FAILED. Anything else, a start or a
// direct action or a record whose signature does not hold, yields none:
// only what the runners produced may end an instance.
func (e *Engine) DeadInstance(rec Record, code, reason string) []instances.Event {
	if !e.cfg.TrackInstances || rec.Topic != e.cfg.Topics.Continuations {
		return nil
	}
	env, err := envelope.Decode(rec.Value, nil)
	if err != nil || env.SagaMeta.Saga == "" || env.SagaMeta.StepID == "" || !e.signer.verify(rec) {
		return nil
	}
	dead := instances.Event{Instance: env.RequestMeta.RequestID, Key: "dead" + strconv.Itoa(env.SagaMeta.Seq),
		Type: instances.EventDeadLettered, At: clock.NowMillis(e.cfg.Clock), Saga: env.SagaMeta.Saga,
		Step: env.SagaMeta.StepID, Code: code, Message: reason}
	// The close that made the continuation is written with its end.
	if closed, ok := e.carriedEvent(rec); ok {
		return []instances.Event{closed, dead}
	}
	return []instances.Event{dead}
}
