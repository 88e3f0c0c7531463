package saga_test

import (
	"context"
	"testing"

	"github.com/sagarunner/sagarunner/actions"
	"github.com/sagarunner/sagarunner/saga"
	"github.com/sagarunner/sagarunner/statemanager"
)

// BenchmarkHandle measures the engine's own cost per record, without Redis:
// decoding, routing, stamping eventMeta and encoding what it produces. The
// throughput target (SPEC §10) is measured end to end by `sagarunner bench`.
func BenchmarkHandle(b *testing.B) {
	set, err := saga.LoadBytes(actions.Default, "b.yaml", []byte(`
saga: bench
trigger: {topic: in}
steps:
  - id: kind
    condition: {type: elementValue, element: parameters.kind}
    next: {"*": shape}
  - {id: shape, action: Transform, inputElement: parameters, outputElement: shaped, parameters: {pattern: "{id: id}"}, next: publish}
  - {id: publish, action: Publish, parameters: {topic: out, pattern: shaped}}
`))
	if err != nil {
		b.Fatal(err)
	}
	eng, err := saga.NewEngine(set, saga.Config{Topics: actions.Topics{Continuations: "requests"},
		Stores: statemanager.NewResolver(nil, statemanager.RedisConfig{}, nil)})
	if err != nil {
		b.Fatal(err)
	}
	cases := []struct {
		name string
		rec  saga.Record
	}{
		{"saga of three steps", saga.Record{Topic: "in", Value: []byte(`{"requestMeta": {"requestId": "r1", "replyTo": "resp"}, "payload": {"parameters": {"id": "p1", "kind": "a"}}}`)}},
		{"direct action", saga.Record{Topic: "requests", Value: []byte(`{"requestMeta": {"requestId": "r1"}, "eventMeta": {"action": "Transform", "inputElement": "parameters", "outputElement": "x", "parameters": {"pattern": "id"}}, "payload": {"parameters": {"id": "p1"}}}`)}},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := eng.Handle(ctx, tc.rec); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
