package saga

import (
	"reflect"
	"strconv"
	"testing"

	"github.com/sagarunner/sagarunner/actions"
	"github.com/sagarunner/sagarunner/instances"
	"github.com/sagarunner/sagarunner/saga/envelope"
	"github.com/sagarunner/sagarunner/statemanager"
)

func taskEventTestRecord(note string) envelope.Record {
	t := &statemanager.Task{ID: "task-1", Domain: "workflow", Saga: "approval", RequestID: "req-1", Tenant: "acme", Status: "COMPLETED"}
	return actions.TaskEventRecord("task-events", t, statemanager.Event{Type: "completed", At: 1_700_000_000_123,
		Actor: "bob", Outcome: "approved", Note: note, RequestID: "rq"})
}

// A task event's instance event carries what its record says, escapes and
// all, and a record of the topic that names no instance makes none.
func TestTaskEventsReadTheRecords(t *testing.T) {
	e := &Engine{cfg: Config{Topics: actions.Topics{TaskEvents: "task-events"}}}
	rec := taskEventTestRecord("a \"quoted\"\nnote é")
	out := Output{Records: []envelope.Record{rec, {Topic: "task-events", Value: []byte(`{"taskId":"x","domain":"d","status":"WAITING"}`)},
		{Topic: "other", Value: rec.Value}}}
	e.taskEvents(&out)
	want := []instances.Event{{Instance: "req-1", Key: "t" + strconv.FormatUint(fnv64a(rec.Value), 36), Type: instances.EventTask, At: 1_700_000_000_123,
		Actor: "bob", Status: "COMPLETED", Domain: "workflow", TaskID: "task-1", Task: "completed", Outcome: "approved",
		Note: "a \"quoted\"\nnote é"}}
	if !reflect.DeepEqual(out.Instances, want) {
		t.Fatalf("events:\n%+v\nwant\n%+v", out.Instances, want)
	}
}

func BenchmarkTaskEvents(b *testing.B) {
	e := &Engine{cfg: Config{Topics: actions.Topics{TaskEvents: "task-events"}}}
	recs := []envelope.Record{taskEventTestRecord("")}
	b.ReportAllocs()
	for range b.N {
		out := Output{Records: recs}
		e.taskEvents(&out)
	}
}
