package actions

import (
	"encoding/json"
	"fmt"

	"github.com/sagarunner/sagarunner/saga/envelope"
	"github.com/sagarunner/sagarunner/statemanager"
)

// Notification is the task-closed notification of SPEC §6, published keyed by
// the task id whenever a task closes. The field order is the order of the
// specification, and no field is omitted when empty, so consumers see one
// fixed shape. It is built from the closed task alone: a notification
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
	}
}

// Record returns the notification as a record for topic, keyed by task id.
func (n Notification) Record(topic string) (envelope.Record, error) {
	v, err := json.Marshal(n)
	if err != nil {
		// Only CloseData holding invalid JSON gets here: the store handed
		// back something it was never given by an action.
		return envelope.Record{}, fmt.Errorf("encode notification of task %q: %w", n.TaskID, err)
	}
	return envelope.Record{Topic: topic, Key: []byte(n.TaskID), Value: v}, nil
}
