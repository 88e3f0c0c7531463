package actions

import (
	"strconv"

	"github.com/sagarunner/sagarunner/saga/envelope"
	"github.com/sagarunner/sagarunner/statemanager"
)

// TaskEvent is a record of the task-event topic: one history event with the
// task it happened to and the status it left the task in. Seq is left out:
// the events of a task share its key, so their order is the partition's.
type TaskEvent struct {
	TaskID string `json:"taskId"`
	Domain string `json:"domain"`
	// Instance is the requestId of the saga instance the task belongs
	// to; empty for a task started by a direct StartTask.
	Instance  string `json:"instance,omitempty"`
	Tenant    string `json:"tenant,omitempty"`
	Status    string `json:"status"`
	Type      string `json:"type"`
	At        int64  `json:"at"`
	Actor     string `json:"actor,omitempty"`
	From      string `json:"from,omitempty"`
	To        string `json:"to,omitempty"`
	Outcome   string `json:"outcome,omitempty"`
	Note      string `json:"note,omitempty"`
	RequestID string `json:"requestId,omitempty"`
}

// TaskEventRecord is e, an event of t (t as it is after e), as a record of
// topic keyed by the task id. Its bytes depend on t and e alone.
//
// Every close publishes one, so it is encoded by hand, byte for byte as
// json.Marshal encodes TaskEvent (a test holds the two equal).
func TaskEventRecord(topic string, t *statemanager.Task, e statemanager.Event) envelope.Record {
	// Room for the field names and the values unescaped: one allocation.
	b := make([]byte, 0, 160+len(t.ID)+len(t.Domain)+len(t.RequestID)+len(t.Tenant)+len(t.Status)+len(e.Type)+
		len(e.Actor)+len(e.From)+len(e.To)+len(e.Outcome)+len(e.Note)+len(e.RequestID))
	b = append(b, `{"taskId":`...)
	b = envelope.AppendString(b, t.ID, true)
	key := taskEventKey(b, t.ID)
	b = append(b, `,"domain":`...)
	b = envelope.AppendString(b, t.Domain, true)
	if t.Saga != "" {
		b = appendOptional(b, `,"instance":`, t.RequestID)
	}
	b = appendOptional(b, `,"tenant":`, t.Tenant)
	b = append(b, `,"status":`...)
	b = envelope.AppendString(b, t.Status, true)
	b = append(b, `,"type":`...)
	b = envelope.AppendString(b, e.Type, true)
	b = append(b, `,"at":`...)
	b = strconv.AppendInt(b, e.At, 10)
	b = appendOptional(b, `,"actor":`, e.Actor)
	b = appendOptional(b, `,"from":`, e.From)
	b = appendOptional(b, `,"to":`, e.To)
	b = appendOptional(b, `,"outcome":`, e.Outcome)
	b = appendOptional(b, `,"note":`, e.Note)
	b = appendOptional(b, `,"requestId":`, e.RequestID)
	b = append(b, '}')
	return envelope.Record{Topic: topic, Key: key, Value: b}
}

// taskEventKey is the record's key, the task id: the bytes of the id in b,
// the value's start, when they needed no escaping there (they stay put
// whether b grows or not), else a copy.
func taskEventKey(b []byte, id string) []byte {
	const head = len(`{"taskId":"`)
	if len(b) == head+len(id)+1 && string(b[head:head+len(id)]) == id {
		return b[head : head+len(id) : head+len(id)]
	}
	return []byte(id)
}

// appendOptional appends an omitempty string field: nothing when s is "".
func appendOptional(b []byte, field, s string) []byte {
	if s == "" {
		return b
	}
	b = append(b, field...)
	return envelope.AppendString(b, s, true)
}
