package actions

import (
	"encoding/json"
	"testing"

	"github.com/sagarunner/sagarunner/statemanager"
)

// FuzzTaskEventRecord holds the hand-written encoding of a task event equal
// to json.Marshal's, whatever the strings hold.
func FuzzTaskEventRecord(f *testing.F) {
	f.Add("t-1", "workflow", "saga", "r-9", "", "COMPLETED", "completed", int64(1700000000000), "alice", "", "", "approve", "looks <fine> & \"done\"", "r-1")
	f.Add("t\u2028", "d", "", "r", "acme", "WAITING", "assigned", int64(-1), "", "bob", "role:clerk", "", "\x00\xff", "")
	f.Fuzz(func(t *testing.T, id, domain, sagaName, requestID, tenant, status, typ string, at int64, actor, from, to, outcome, note, req string) {
		task := &statemanager.Task{ID: id, Domain: domain, Saga: sagaName, RequestID: requestID, Tenant: tenant, Status: status}
		instance := ""
		if sagaName != "" {
			instance = requestID
		}
		e := statemanager.Event{Type: typ, At: at, Actor: actor, From: from, To: to, Outcome: outcome, Note: note, RequestID: req}
		want, err := json.Marshal(TaskEvent{TaskID: id, Domain: domain, Instance: instance, Tenant: tenant, Status: status, Type: typ, At: at,
			Actor: actor, From: from, To: to, Outcome: outcome, Note: note, RequestID: req})
		if err != nil {
			t.Fatal(err)
		}
		rec := TaskEventRecord("events", task, e)
		if got := rec.Value; string(got) != string(want) {
			t.Fatalf("encoding differs from json.Marshal:\n got %s\nwant %s", got, want)
		}
		if string(rec.Key) != id {
			t.Fatalf("key %q, want %q", rec.Key, id)
		}
		_ = append(rec.Key, 'X')
		if string(rec.Value) != string(want) {
			t.Fatalf("the key grows into the value: %s", rec.Value)
		}
	})
}

func BenchmarkTaskEventRecord(b *testing.B) {
	task := &statemanager.Task{ID: "0192f0c4-5b7e-7d3a-9c1e-3f2a1b4c5d6e", Domain: "workflow", Saga: "approval",
		RequestID: "0192f0c4-5b7e-7d3a-9c1e-3f2a1b4c5d6f", Tenant: "acme", Status: "WAITING"}
	e := statemanager.Event{Type: "started", At: 1_700_000_000_000, Actor: "alice", RequestID: "0192f0c4-5b7e-7d3a-9c1e-3f2a1b4c5d6f"}
	b.ReportAllocs()
	for range b.N {
		TaskEventRecord("task-events", task, e)
	}
}
