package instances

import (
	"fmt"
	"strconv"
	"testing"
)

// BenchmarkBatchArgs measures what the runner spends encoding a batch of
// 100 starts for the audit topic and the apply script, Redis left out.
func BenchmarkBatchArgs(b *testing.B) {
	inputs := make([][]Event, 100)
	for i := range inputs {
		id := fmt.Sprintf("req-%07d", i)
		at := int64(1_700_000_000_000 + i)
		inputs[i] = []Event{
			{Instance: id, Key: "start", Type: EventStarted, At: at, Actor: "alice", Saga: "approval", Version: 1, Tenant: "acme", BusinessKey: "bk-" + id},
			{Instance: id, Key: "s1", Type: EventStep, At: at, Step: "approve", Action: "StartTask", Status: StatusWaiting, Domain: "workflow", TaskID: "t-" + id},
			{Instance: id, Key: "t" + strconv.FormatInt(at, 36), Type: EventTask, At: at, Actor: "alice", Domain: "workflow", TaskID: "t-" + id, Task: "started", Status: StatusWaiting},
		}
	}
	b.ReportAllocs()
	for range b.N {
		var bt Batch
		bt.Grow(3 * len(inputs))
		for _, in := range inputs {
			bt.Add(in)
		}
		args := make([]any, 0, 3+len(bt.groups)*(5+(2*len(bt.runs)+9*len(bt.evs))/len(bt.groups)))
		for i := range bt.groups {
			args = bt.appendArgs(args, &bt.groups[i])
		}
	}
}
