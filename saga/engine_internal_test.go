package saga

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/sagarunner/sagarunner/actions"
	"github.com/sagarunner/sagarunner/statemanager"
)

// TestStepBudget builds a saga that validation would reject (a condition
// routing to itself forever) to check the last line of defence: the record
// is dead-lettered instead of pinning its partition.
func TestStepBudget(t *testing.T) {
	spin := &Step{ID: "spin", Condition: &Condition{Type: CondEventStatus}, Always: "spin"}
	g := &Saga{Name: "spin", Version: 1, Trigger: Trigger{Topic: "spin"}, AutoFail: true,
		Steps: []*Step{spin}, steps: map[string]*Step{"spin": spin}}
	set := &Set{Sagas: []*Saga{g}, byName: map[string]*Saga{"spin": g},
		byTopic: map[string][]*Saga{"spin": {g}}, byPath: map[string]*Saga{}}
	eng, err := NewEngine(set, Config{Topics: actions.Topics{Continuations: "requests"},
		Stores: statemanager.NewResolver(nil, statemanager.RedisConfig{}, nil)})
	if err != nil {
		t.Fatal(err)
	}
	out, err := eng.Handle(context.Background(), Record{Topic: "spin", Key: []byte("k"), Value: []byte(`{"a": 1}`)})
	if err != nil {
		t.Fatalf("Handle: %v", err)
	}
	if len(out.Records) != 1 || out.Records[0].Topic != DefaultDeadLetterTopic {
		t.Fatalf("records = %+v, want one dead letter", out.Records)
	}
	var d DeadLetter
	if err := json.Unmarshal(out.Records[0].Value, &d); err != nil {
		t.Fatal(err)
	}
	if d.Code != DeadStepBudget || d.Saga != "spin" || d.StepID != "spin" {
		t.Errorf("dead letter = %+v", d)
	}
}

func TestRequestIDOfBareRecords(t *testing.T) {
	e := &Engine{}
	for _, tc := range []struct {
		name string
		rec  Record
		want string
	}{
		{"the key names the request", Record{Topic: "job-posts", Partition: 3, Offset: 9, Key: []byte("r-1")}, "r-1"},
		{"no key: the position, stable across replays", Record{Topic: "job-posts", Partition: 3, Offset: 9}, "job-posts-3-9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := e.requestID(tc.rec); got != tc.want {
				t.Errorf("requestID = %q, want %q", got, tc.want)
			}
		})
	}
}
