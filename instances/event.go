package instances

import (
	"strconv"

	"github.com/sagarunner/sagarunner/saga/envelope"
)

// Instance statuses (SPEC §13). RUNNING and WAITING are open; the other
// three are ends, and an end is final.
const (
	StatusRunning   = "RUNNING"
	StatusWaiting   = "WAITING" // a task of the instance is open
	StatusCompleted = "COMPLETED"
	StatusFailed    = "FAILED"
	StatusCancelled = "CANCELLED"
)

// Statuses lists every status, open ones first.
var Statuses = []string{StatusRunning, StatusWaiting, StatusCompleted, StatusFailed, StatusCancelled}

// Ended reports whether status is an end.
func Ended(status string) bool {
	return status == StatusCompleted || status == StatusFailed || status == StatusCancelled
}

// Event types of a timeline.
const (
	// EventStarted: the instance began; it carries saga, version, tenant,
	// starter (Actor) and business key.
	EventStarted = "started"
	// EventStep: a step ran; Status is how it ended (a result status, or
	// WAITING when it suspended the instance, then with the task it
	// opened in Domain and TaskID).
	EventStep = "step"
	// EventTask: a task of the instance changed; Task is the task event
	// (claimed, completed, timedOut, ...) and Status the task's status after it.
	EventTask = "task"
	// EventFailed: the instance ended FAILED (a Fail step, an unrouted FAIL).
	EventFailed = "failed"
	// EventDeadLettered: a record of the instance was dead-lettered, which
	// ends it FAILED with the dead letter's code.
	EventDeadLettered = "deadLettered"
	// EventCancelled: the instance ended CANCELLED.
	EventCancelled = "cancelled"
	// EventFinished: the instance ended COMPLETED.
	EventFinished = "finished"
)

// Event is one entry of an instance's timeline, and of its audit record.
//
// Key identifies the event within its instance: a replayed input yields
// the same keys (a step's key is its visit, sagaMeta.seq; a task event's
// the event's own bytes). The first event's Key of a run (see Batch) is
// what makes Apply idempotent, so a replayed input's events are recognised
// and dropped. Seq is the position in the timeline, given by the store; it
// is 0 in events not read back from it.
type Event struct {
	Instance    string `json:"-"`
	Key         string `json:"key"`
	Seq         int64  `json:"seq,omitempty"`
	Type        string `json:"type"`
	At          int64  `json:"at"`
	Actor       string `json:"actor,omitempty"`
	Saga        string `json:"saga,omitempty"`
	Version     int    `json:"version,omitempty"`
	Tenant      string `json:"tenant,omitempty"`
	BusinessKey string `json:"businessKey,omitempty"`
	Step        string `json:"step,omitempty"`
	Action      string `json:"action,omitempty"`
	Status      string `json:"status,omitempty"`
	Code        string `json:"code,omitempty"`
	Message     string `json:"message,omitempty"`
	Domain      string `json:"domain,omitempty"`
	TaskID      string `json:"taskId,omitempty"`
	Task        string `json:"task,omitempty"`
	Outcome     string `json:"outcome,omitempty"`
	Note        string `json:"note,omitempty"`
}

// maxText bounds the free text an event keeps (messages, notes, business
// keys): they come from producers and callers, and a timeline holds up to
// a thousand events per instance.
const maxText = 500

// AppendJSON appends e as a JSON object, field order fixed, empty fields
// left out, without reflection: the runner encodes every event of every
// batch, and encoding/json would cost more than the step itself.
func (e *Event) AppendJSON(b []byte) []byte {
	b = append(b, `{"key":`...)
	b = envelope.AppendString(b, e.Key, false)
	if e.Seq != 0 {
		b = strconv.AppendInt(append(b, `,"seq":`...), e.Seq, 10)
	}
	b = envelope.AppendString(append(b, `,"type":`...), e.Type, false)
	b = strconv.AppendInt(append(b, `,"at":`...), e.At, 10)
	b = appendField(b, "actor", e.Actor)
	b = appendField(b, "saga", e.Saga)
	if e.Version != 0 {
		b = strconv.AppendInt(append(b, `,"version":`...), int64(e.Version), 10)
	}
	b = appendField(b, "tenant", e.Tenant)
	b = appendField(b, "businessKey", cut(e.BusinessKey))
	b = appendField(b, "step", e.Step)
	b = appendField(b, "action", e.Action)
	b = appendField(b, "status", e.Status)
	b = appendField(b, "code", e.Code)
	b = appendField(b, "message", cut(e.Message))
	b = appendField(b, "domain", e.Domain)
	b = appendField(b, "taskId", e.TaskID)
	b = appendField(b, "task", e.Task)
	b = appendField(b, "outcome", e.Outcome)
	b = appendField(b, "note", cut(e.Note))
	return append(b, '}')
}

func appendField(b []byte, name, v string) []byte {
	if v == "" {
		return b
	}
	b = append(append(append(b, ",\""...), name...), "\":"...)
	return envelope.AppendString(b, v, false)
}

// cut bounds free text to maxText bytes on a rune boundary.
func cut(s string) string {
	if len(s) <= maxText {
		return s
	}
	i := maxText
	for i > 0 && s[i]&0xC0 == 0x80 {
		i--
	}
	return s[:i] + "…"
}
