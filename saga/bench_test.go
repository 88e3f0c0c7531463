//go:build unix

package saga_test

import (
	"context"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/sagarunner/sagarunner/actions"
	"github.com/sagarunner/sagarunner/internal/redistest"
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
		{"publish whole envelope", saga.Record{Topic: "requests", Value: []byte(`{"requestMeta": {"requestId": "r1", "user": "alice", "roles": ["manager"]}, "eventMeta": {"action": "Publish", "parameters": {"topic": "out"}}, "payload": {"parameters": {"id": "p1", "brief": "summer \"vibes\" <b>"}}}`)}},
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

// benchSaga is the SPEC §4 shape the throughput target is about: a task
// step whose SUCCESS continues to a condition and a Publish.
const benchSaga = `
saga: bench_approval
version: 1
trigger: {topic: job-posts}
steps:
  - id: approve
    action: StartTask
    domain: workflow
    inputElement: parameters
    outputElement: process
    parameters:
      inputPattern: "{data: @}"
      taskIdPath: productId
      taskName: Job Post Approval
      taskSpec: job_post_approval
      taskAction: Approve
      taskRoles: admin,manager
      timeout: 60000
    next: {SUCCESS: check, TIMEOUT: check}
  - id: check
    condition: {type: elementValue, element: decision.approved}
    next: {"true": publish, "*": publish}
  - id: publish
    action: Publish
    parameters: {topic: job-posts-approved, pattern: "{id: parameters.productId, by: decision.user}"}
`

// BenchmarkTaskSteps measures one record of each kind the SPEC §10 targets
// count, against a real redis-server: a saga start that stores a task, a
// direct ProceedTask record that closes it, and the continuation that
// resumes the instance. Besides ns/op (which includes Redis round trips),
// cpu-ns/op is the CPU time of this process per record, Redis server
// excluded: the runner's share of the 2-core budget.
func BenchmarkTaskSteps(b *testing.B) {
	_, client := redistest.Start(b)
	set, err := saga.LoadBytes(actions.Default, "bench.yaml", []byte(benchSaga))
	if err != nil {
		b.Fatal(err)
	}
	cfg := saga.Config{
		Topics: actions.Topics{Continuations: "requests", Notifications: "notifications"},
		Stores: statemanager.NewResolver(client, statemanager.RedisConfig{}, nil),
	}
	// SAGA_BENCH_TRACK=1 measures with instance tracking and task events on.
	if os.Getenv("SAGA_BENCH_TRACK") == "1" {
		cfg.TrackInstances, cfg.Topics.TaskEvents = true, actions.DefaultTaskEventTopic
	}
	eng, err := saga.NewEngine(set, cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	run := 0
	// prefix makes every sub-benchmark round use fresh task ids, so a
	// start is never a replay and a proceed never meets a closed task.
	prefix := func() string { run++; return "b" + strconv.Itoa(run) + "-" }

	startRecord := func(p string, i int) saga.Record {
		id := p + strconv.Itoa(i)
		return saga.Record{Topic: "job-posts", Key: []byte("r-" + id), Value: []byte(
			`{"requestMeta": {"requestId": "r-` + id + `", "user": "bob", "createdAt": 1763800000000},` +
				` "payload": {"parameters": {"productId": "` + id + `", "brief": "summer vibes", "priority": "high"}}}`)}
	}
	proceedRecord := func(p string, i int) saga.Record {
		id := p + strconv.Itoa(i)
		return saga.Record{Topic: "requests", Key: []byte("q-" + id), Value: []byte(
			`{"requestMeta": {"requestId": "q-` + id + `", "user": "alice", "roles": ["manager"], "replyTo": "responses"},` +
				` "eventMeta": {"action": "ProceedTask", "domain": "workflow", "inputElement": "parameters", "outputElement": "task",` +
				` "parameters": {"taskIdPath": "taskId", "inputPattern": "data", "enrichPath": "decision"}},` +
				` "payload": {"parameters": {"taskId": "` + id + `", "data": {"user": "alice", "approved": true}}}}`)}
	}
	handle := func(b *testing.B, rec saga.Record) saga.Output {
		out, err := eng.Handle(ctx, rec)
		if err != nil {
			b.Fatal(err)
		}
		if err := eng.Ack(ctx, out.Acks); err != nil {
			b.Fatal(err)
		}
		return out
	}
	startN := func(b *testing.B, p string, n int) {
		for i := range n {
			if out := handle(b, startRecord(p, i)); out.Started != 1 {
				b.Fatalf("start %d: started %d tasks, want 1", i, out.Started)
			}
		}
	}
	proceedN := func(b *testing.B, p string, n int) []saga.Record {
		conts := make([]saga.Record, 0, n)
		for i := range n {
			for _, r := range handle(b, proceedRecord(p, i)).Records {
				if r.Topic == "requests" {
					conts = append(conts, saga.Record{Topic: r.Topic, Key: r.Key, Value: r.Value})
				}
			}
		}
		if len(conts) != n {
			b.Fatalf("%d continuations from %d proceeds", len(conts), n)
		}
		return conts
	}

	b.Run("StartTask", func(b *testing.B) {
		p := prefix()
		recs := make([]saga.Record, b.N)
		for i := range recs {
			recs[i] = startRecord(p, i)
		}
		b.ReportAllocs()
		cpu := startCPU(b)
		for i := range b.N {
			if out := handle(b, recs[i]); out.Started != 1 {
				b.Fatalf("start %d: started %d tasks, want 1", i, out.Started)
			}
		}
		cpu.stop(b)
	})
	b.Run("ProceedTask", func(b *testing.B) {
		p := prefix()
		startN(b, p, b.N)
		recs := make([]saga.Record, b.N)
		for i := range recs {
			recs[i] = proceedRecord(p, i)
		}
		b.ReportAllocs()
		cpu := startCPU(b)
		for i := range b.N {
			if out := handle(b, recs[i]); len(out.Acks) != 1 {
				b.Fatalf("proceed %d: %d closes, want 1", i, len(out.Acks))
			}
		}
		cpu.stop(b)
	})
	b.Run("continuation", func(b *testing.B) {
		p := prefix()
		startN(b, p, b.N)
		conts := proceedN(b, p, b.N)
		b.ReportAllocs()
		cpu := startCPU(b)
		for i := range b.N {
			if out := handle(b, conts[i]); len(out.Records) != 1 {
				b.Fatalf("continuation %d: %d records, want the published one", i, len(out.Records))
			}
		}
		cpu.stop(b)
	})
}

// cpuTimer reports the process CPU time (user and system) per iteration.
// Wall time per op mostly measures Redis round trips on an idle machine;
// CPU time is what limits throughput when the cores are shared.
type cpuTimer struct{ start time.Duration }

func startCPU(b *testing.B) cpuTimer {
	b.ResetTimer()
	return cpuTimer{start: processCPU(b)}
}

func (c cpuTimer) stop(b *testing.B) {
	b.StopTimer()
	b.ReportMetric(float64(processCPU(b)-c.start)/float64(b.N), "cpu-ns/op")
}

func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
