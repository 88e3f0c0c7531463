package gateway

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sagarunner/sagarunner/auth"
	"github.com/sagarunner/sagarunner/saga/envelope"
)

// The benchmarks below time the gateway's share of a synchronous
// POST /ProceedTask: the handler itself, without net/http's connection
// handling, and the runner replaced by a responder that answers every
// request with the same reply.
//
//	go test ./gateway -run '^$' -bench . -benchmem -benchtime=20000x

// benchBody is a typical close request, compact as programs send it: a
// task id, a domain and a little data.
const benchBody = `{"taskId":"order-000123","domain":"workflow","data":{"approved":true,"note":"looks right","amount":129.5}}`

// benchReply is the envelope the runner answers a ProceedTask with, for
// requestId id.
func benchReply(id string) []byte {
	e := envelope.Envelope{
		RequestMeta: envelope.RequestMeta{RequestID: id, ReplyTo: replyTopic, CreatedAt: 1764633600000},
		SagaMeta:    envelope.SagaMeta{Saga: "proceed_task", Version: 1, StepID: "proceed", RunnerPartition: 3, Seq: 1},
		Payload: []byte(`{"parameters":{"taskId":"order-000123","domain":"workflow","data":{"approved":true,"note":"looks right","amount":129.5}},` +
			`"task":{"id":"order-000123","status":"COMPLETED","closedAt":1764633600123}}`),
		Result: envelope.Result{Status: envelope.StatusSuccess},
	}
	return e.Encode()
}

// startEchoResponder answers every record on the request topic at once on
// the reply topic, keyed by the request's key (its requestId).
func startEchoResponder(b *testing.B, brokers []string) {
	b.Helper()
	cl := newClient(b, brokers, kgo.ConsumeTopics(requestTopic), kgo.ProducerLinger(0))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	b.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		for {
			fs := cl.PollFetches(ctx)
			if ctx.Err() != nil {
				return
			}
			fs.EachRecord(func(rec *kgo.Record) {
				id := string(rec.Key)
				cl.Produce(ctx, &kgo.Record{Topic: replyTopic, Key: rec.Key, Value: benchReply(id)}, nil)
			})
		}
	}()
}

// discard is the cheapest ResponseWriter that keeps the status.
type discard struct {
	h    http.Header
	code int
}

func (d *discard) Header() http.Header { return d.h }
func (d *discard) WriteHeader(code int) {
	if d.code == 0 {
		d.code = code
	}
}

func (d *discard) Write(p []byte) (int, error) {
	if d.code == 0 {
		d.code = http.StatusOK
	}
	return len(p), nil
}

// BenchmarkProceedTaskRoundTrip drives the real handler with 64 requests
// in flight through a real (in-process) broker. Its allocations include the
// broker's and the responder's, which the gateway does not change.
func BenchmarkProceedTaskRoundTrip(b *testing.B) {
	brokers := newCluster(b, requestTopic, replyTopic)
	startEchoResponder(b, brokers)
	s := serve(b, brokers, Config{}, Deps{Logger: slog.New(slog.DiscardHandler)})
	h := s.gw.Handler()
	b.SetParallelism(32) // 64 in flight on 2 cores
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r, _ := http.NewRequest(http.MethodPost, "/ProceedTask", strings.NewReader(benchBody))
			r.ContentLength = int64(len(benchBody))
			w := &discard{h: http.Header{}}
			h.ServeHTTP(w, r)
			if w.code != http.StatusOK {
				b.Errorf("status %d", w.code)
				return
			}
		}
	})
}

// BenchmarkProceedTaskGateway times what the gateway itself does for one
// synchronous request, without a broker: reading and checking the body,
// building the request record, then matching and decoding the reply and
// writing the answer.
func BenchmarkProceedTaskGateway(b *testing.B) {
	brokers := newCluster(b, requestTopic, replyTopic)
	gw, err := New(Config{RequestTopic: requestTopic, ReplyTopic: replyTopic}, Deps{Sagas: loadSagas(b), Client: newClient(b, brokers)})
	if err != nil {
		b.Fatal(err)
	}
	s, _ := gw.sagas.ByPath("/ProceedTask")
	const id = "0123456789abcdef01234567"
	reply := &kgo.Record{Topic: replyTopic, Key: []byte(id), Value: benchReply(id)}
	body := strings.NewReader(benchBody)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		body.Seek(0, io.SeekStart)
		r, _ := http.NewRequest(http.MethodPost, "/ProceedTask", body)
		r.ContentLength = int64(len(benchBody))
		w := &discard{h: http.Header{}}
		raw, ok := gw.readObject(w, r)
		if !ok {
			b.Fatal("body refused")
		}
		if err := precheck(s, raw); err != nil {
			b.Fatal(err)
		}
		if _, err := gw.sagaRecord(s, raw, auth.Identity{}, id); err != nil {
			b.Fatal(err)
		}
		replies := gw.await(id)
		gw.deliver(reply)
		gw.answer(w, id, <-replies, "")
		gw.unwait(id)
		if w.code != http.StatusOK {
			b.Fatalf("status %d", w.code)
		}
	}
}

// TestReadBodyIgnoresALyingLength shows the declared size is only a hint:
// a body longer or shorter than declared is read whole, no more and no
// less.
func TestReadBodyIgnoresALyingLength(t *testing.T) {
	body := strings.Repeat("x", 100)
	for _, declared := range []int64{-1, 0, 1, 99, 100, 101, 1000} {
		got, err := readBody(strings.NewReader(body), declared)
		if err != nil || string(got) != body {
			t.Errorf("declared %d: read %d bytes, err %v", declared, len(got), err)
		}
	}
}
