package actions

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/sagarunner/sagarunner/saga/envelope"
	"github.com/sagarunner/sagarunner/statemanager"
)

// Notification is the task-closed notification of SPEC §6, published keyed by
// the task id whenever a task closes. The field order is the order of the
// specification, and no field is omitted when empty, so consumers see one
// fixed shape, except tenant, which is there only for a task of a tenant
// other than the default one, so single-tenant consumers see what they
// always saw. It is built from the closed task alone: a notification
// re-emitted after a crash is byte-identical to the first, which is what lets
// consumers deduplicate it.
type Notification struct {
	TaskID     string          `json:"taskId"`
	Domain     string          `json:"domain"`
	Status     string          `json:"status"`
	Saga       string          `json:"saga"`
	StepID     string          `json:"stepId"`
	RequestID  string          `json:"requestId"`
	TaskName   string          `json:"taskName"`
	TaskSpec   string          `json:"taskSpec"`
	TaskAction string          `json:"taskAction"`
	TaskRoles  []string        `json:"taskRoles"`
	TaskUser   string          `json:"taskUser"`
	StartedAt  int64           `json:"startedAt"`
	Deadline   int64           `json:"deadline"`
	ClosedAt   int64           `json:"closedAt"`
	ClosedBy   string          `json:"closedBy"`
	Data       json.RawMessage `json:"data"`
	Tenant     string          `json:"tenant,omitempty"`
	// The lifecycle's (SPEC §12), after the fields above and each only
	// when set, so the notification of a plain task is what it always was.
	Outcome   string                  `json:"outcome,omitempty"`
	Note      string                  `json:"note,omitempty"`
	ClaimedBy string                  `json:"claimedBy,omitempty"`
	Approvals []statemanager.Approval `json:"approvals,omitempty"`
}

// NewNotification describes a closed task. Roles are never null (an empty
// array instead) and data is null when the close carried none.
func NewNotification(t *statemanager.Task) Notification {
	roles := append([]string{}, t.Roles...)
	data := json.RawMessage("null")
	if len(t.CloseData) > 0 {
		data = append(json.RawMessage(nil), t.CloseData...)
	}
	return Notification{
		TaskID:     t.ID,
		Domain:     t.Domain,
		Status:     t.Status,
		Saga:       t.Saga,
		StepID:     t.StepID,
		RequestID:  t.RequestID,
		TaskName:   t.Name,
		TaskSpec:   t.Spec,
		TaskAction: t.Action,
		TaskRoles:  roles,
		TaskUser:   t.User,
		StartedAt:  t.StartedAt,
		Deadline:   t.Deadline,
		ClosedAt:   t.ClosedAt,
		ClosedBy:   t.ClosedBy,
		Data:       data,
		Tenant:     t.Tenant,
		Outcome:    t.Outcome,
		Note:       t.Note,
		ClaimedBy:  t.ClaimedBy,
		Approvals:  append([]statemanager.Approval(nil), t.Approvals...),
	}
}

// Record returns the notification as a record for topic, keyed by task id.
func (n Notification) Record(topic string) (envelope.Record, error) {
	v, err := n.encode()
	if err != nil {
		// Only CloseData holding invalid JSON gets here: the store handed
		// back something it was never given by an action.
		return envelope.Record{}, fmt.Errorf("encode notification of task %q: %w", n.TaskID, err)
	}
	return envelope.Record{Topic: topic, Key: []byte(n.TaskID), Value: v}, nil
}

// encode writes exactly the bytes json.Marshal(n) writes (HTML-escaped
// strings, compacted data), so notifications stay byte-identical across
// releases and re-emits, without json.Marshal's reflection on every close.
func (n Notification) encode() ([]byte, error) {
	b := make([]byte, 0, 320+len(n.TaskID)+len(n.Domain)+len(n.Saga)+len(n.StepID)+len(n.RequestID)+
		len(n.TaskName)+len(n.TaskSpec)+len(n.TaskAction)+len(n.TaskUser)+len(n.ClosedBy)+len(n.Data)+len(n.Tenant)+8*len(n.TaskRoles))
	str := func(key, s string) {
		b = envelope.AppendString(append(b, key...), s, true)
	}
	num := func(key string, v int64) {
		b = strconv.AppendInt(append(b, key...), v, 10)
	}
	str(`{"taskId":`, n.TaskID)
	str(`,"domain":`, n.Domain)
	str(`,"status":`, n.Status)
	str(`,"saga":`, n.Saga)
	str(`,"stepId":`, n.StepID)
	str(`,"requestId":`, n.RequestID)
	str(`,"taskName":`, n.TaskName)
	str(`,"taskSpec":`, n.TaskSpec)
	str(`,"taskAction":`, n.TaskAction)
	b = append(b, `,"taskRoles":`...)
	if n.TaskRoles == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, r := range n.TaskRoles {
			if i > 0 {
				b = append(b, ',')
			}
			b = envelope.AppendString(b, r, true)
		}
		b = append(b, ']')
	}
	str(`,"taskUser":`, n.TaskUser)
	num(`,"startedAt":`, n.StartedAt)
	num(`,"deadline":`, n.Deadline)
	num(`,"closedAt":`, n.ClosedAt)
	str(`,"closedBy":`, n.ClosedBy)
	b = append(b, `,"data":`...)
	var err error
	if b, err = appendRawHTML(b, n.Data); err != nil {
		return nil, err
	}
	if n.Tenant != "" {
		str(`,"tenant":`, n.Tenant)
	}
	if n.Outcome != "" {
		str(`,"outcome":`, n.Outcome)
	}
	if n.Note != "" {
		str(`,"note":`, n.Note)
	}
	if n.ClaimedBy != "" {
		str(`,"claimedBy":`, n.ClaimedBy)
	}
	if len(n.Approvals) > 0 {
		b = append(b, `,"approvals":[`...)
		for i, a := range n.Approvals {
			if i > 0 {
				b = append(b, ',')
			}
			str(`{"user":`, a.User)
			num(`,"at":`, a.At)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	return append(b, '}'), nil
}

// appendRawHTML appends raw JSON the way json.Marshal embeds a RawMessage:
// nil as null, whitespace compacted, <, >, &, U+2028 and U+2029 escaped.
// Data without any of those bytes is appended as it is once it checks.
func appendRawHTML(b []byte, raw json.RawMessage) ([]byte, error) {
	if raw == nil {
		return append(b, "null"...), nil
	}
	if !needsCompact(raw) {
		if !envelope.Valid(raw) {
			return nil, errors.New("data is not valid JSON")
		}
		return append(b, raw...), nil
	}
	v, err := json.Marshal(raw)
	if err != nil {
		return nil, err
	}
	return append(b, v...), nil
}

// needsCompact reports whether json.Marshal would change raw valid JSON:
// any whitespace may be outside strings, and 0xE2 may start U+2028/U+2029.
func needsCompact(raw []byte) bool {
	for _, c := range raw {
		switch c {
		case ' ', '\t', '\r', '\n', '<', '>', '&', 0xE2:
			return true
		}
	}
	return false
}
