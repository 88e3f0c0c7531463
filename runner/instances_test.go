package runner

import (
	"testing"

	"github.com/sagarunner/sagarunner/instances"
	"github.com/sagarunner/sagarunner/saga"
)

// An audit record is keyed by its instance id, whatever the id holds; the
// key shares the value's bytes only where they are the id's.
func TestAuditRecordKeys(t *testing.T) {
	r := &Runner{auditTopic: "audit"}
	ids := []string{"req-1", `q"uote`, "back\\slash", "nl\n", "é", "", "<tag>&"}
	var outs []saga.Output
	for _, id := range ids {
		outs = append(outs, saga.Output{Instances: []instances.Event{{Instance: id, Key: "start", Type: instances.EventStarted, At: 1}}})
	}
	w := r.encodeInstances(outs)
	for i, id := range ids {
		recs := w.auditOf(i)
		if len(recs) != 1 || string(recs[0].Key) != id || recs[0].Topic != "audit" {
			t.Fatalf("%q: %+v", id, recs)
		}
		v := string(recs[0].Value)
		_ = append(recs[0].Key, 'X')
		if string(recs[0].Value) != v {
			t.Fatalf("%q: the key grows into the value", id)
		}
	}
}

func BenchmarkEncodeInstances(b *testing.B) {
	r := &Runner{auditTopic: "audit"}
	outs := make([]saga.Output, 100)
	for i := range outs {
		id := "req-" + string(rune('a'+i%26)) + "-0001"
		outs[i].Instances = []instances.Event{
			{Instance: id, Key: "start", Type: instances.EventStarted, At: 1_700_000_000_000, Actor: "alice", Saga: "approval", Version: 1, Tenant: "acme"},
			{Instance: id, Key: "s1", Type: instances.EventStep, At: 1_700_000_000_000, Step: "approve", Action: "StartTask", Status: instances.StatusWaiting, Domain: "workflow", TaskID: "t-" + id},
		}
	}
	b.ReportAllocs()
	for range b.N {
		r.encodeInstances(outs)
	}
}
