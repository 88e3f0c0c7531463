package bench

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tidwall/gjson"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The steps of one lifecycle flow, in order, and the prefix of the request
// id each is sent with (the runner keys its answer by that id).
const (
	opStart = iota
	opClaim
	opComplete
	opApprove
	opCount
)

var (
	opNames    = [opCount]string{"start", "claim", "complete", "approve"}
	opPrefixes = [opCount]string{"ls-", "lc-", "lm-", "la-"}
	// opActions are the direct actions of the steps after the start.
	opActions = [opCount]string{"", "ClaimTask", "CompleteTask", "ApproveTask"}
)

// The callers of the flow: a clerk claims and completes, a lawyer approves,
// as bench_lifecycle's taskRoles and approverRoles want.
const (
	benchClerk  = `"user":"bench-clerk","roles":["clerk"]`
	benchLawyer = `"user":"bench-legal","roles":["legal"]`
)

// lifecycleScenario: N flows of a four-eyes task over Kafka, each start →
// claim → complete (outcome approve; one approval required) → approve. The
// starts are produced like the start scenario's (paced by --rate); each
// later step is produced by the bench the moment the runner answers the
// one before, as an inbox would: the start is answered once the task is
// stored, each operation with the task's state after it. A flow is done
// when the approval's COMPLETED notification is out and its continuation
// has run the saga's next step (a Publish to bench-done), and the rate runs
// from the first start produced until the committed offsets cover every
// record of the flows. Each step's latency runs from its record being
// handed to the producer to its answer being polled.
func (d *deployment) lifecycleScenario(ctx context.Context) ([]Result, error) {
	n := d.n("lifecycle")
	if err := d.startRunner(ctx); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
	defer cancel()
	f := newFlows(n, d.runID+"-l-", d.cfg.RequestTopic)
	c, err := d.consume(ctx, func(r *kgo.Record, polled time.Time) {
		if next := f.observe(d.cfg.NotificationTopic, r, polled); next != nil {
			d.kcl.Produce(ctx, next, f.produced)
		}
	}, ReplyTopic, DoneTopic, d.cfg.NotificationTopic)
	if err != nil {
		return nil, err
	}
	defer c.stop()

	d.markCPU()
	first, _, err := d.produce(ctx, n, func(i int, now int64) *kgo.Record {
		id := f.id(i)
		f.sentAt(i, opStart)
		return &kgo.Record{Topic: LifecycleTopic, Key: []byte(id), Value: lifecycleStartRecord(id, now)}
	})
	if err != nil {
		return nil, err
	}
	if err := waitFor(ctx, "every flow's approval, notification and continuation effect", f.finished); err != nil {
		return nil, f.explain(err)
	}
	if err := f.err(); err != nil {
		return nil, err
	}
	// The operations and the continuations went to the request topic, the
	// starts to bench-lifecycle; everything on both must be committed.
	var end time.Time
	for _, topic := range []string{LifecycleTopic, d.cfg.RequestTopic} {
		ends, err := d.endOffsets(ctx, topic)
		if err != nil {
			return nil, err
		}
		at, err := d.waitCommitted(ctx, topic, ends)
		if err != nil {
			return nil, err
		}
		end = at
	}
	elapsed := end.Sub(first)
	r := Result{Scenario: "lifecycle", N: n, Seconds: round2(elapsed.Seconds()), Rate: rate(n, elapsed)}
	d.runnerFigures(&r)
	f.figures(&r)
	if err := d.stopRunner(); err != nil {
		return nil, err
	}
	return []Result{r}, nil
}

// flows is the state of every flow of one lifecycle run. The bench
// producer writes start times, the consumer goroutine everything else.
type flows struct {
	prefix   string
	requests string // the topic of the operations

	mu       sync.Mutex
	sent     [opCount][]int64 // unix ns each step was handed to the producer
	answered [opCount][]bool
	lat      [opCount][]float64
	done     []bool
	noted    []bool
	nDone    int
	nNoted   int
	flowMS   []float64 // start sent → continuation effect seen
	doneMS   []float64 // approve sent → continuation effect seen
	failure  error
}

func newFlows(n int, prefix, requests string) *flows {
	f := &flows{prefix: prefix, requests: requests, done: make([]bool, n), noted: make([]bool, n)}
	for op := range opCount {
		f.sent[op] = make([]int64, n)
		f.answered[op] = make([]bool, n)
	}
	return f
}

func (f *flows) id(i int) string { return f.prefix + strconv.Itoa(i) }

// index is the flow of task id, or -1 for a task of no flow of this run.
func (f *flows) index(id string) int {
	s, ok := strings.CutPrefix(id, f.prefix)
	if !ok {
		return -1
	}
	i, err := strconv.Atoi(s)
	if err != nil || i < 0 || i >= len(f.done) {
		return -1
	}
	return i
}

func (f *flows) sentAt(i, op int) {
	now := time.Now().UnixNano()
	f.mu.Lock()
	f.sent[op][i] = now
	f.mu.Unlock()
}

// observe takes one record of the reply, done or notification topic and
// returns the flow's next step to produce, if it has one.
func (f *flows) observe(notifications string, r *kgo.Record, polled time.Time) *kgo.Record {
	switch r.Topic {
	case ReplyTopic:
		return f.answer(r, polled)
	case DoneTopic:
		i := f.index(gjson.GetBytes(r.Value, "id").String())
		if i < 0 {
			return nil
		}
		f.mu.Lock()
		if !f.done[i] {
			f.done[i] = true
			f.nDone++
			at := polled.UnixNano()
			f.flowMS = append(f.flowMS, ms(at-f.sent[opStart][i]))
			f.doneMS = append(f.doneMS, ms(at-f.sent[opApprove][i]))
		}
		f.mu.Unlock()
	case notifications:
		i := f.index(string(r.Key))
		if i < 0 || gjson.GetBytes(r.Value, "status").String() != "COMPLETED" {
			return nil
		}
		f.mu.Lock()
		if !f.noted[i] {
			f.noted[i] = true
			f.nNoted++
		}
		f.mu.Unlock()
	}
	return nil
}

// answer records the runner's answer to a step and returns the next step.
// A refused step fails the run: a flow that stops short would only show as
// a timeout.
func (f *flows) answer(r *kgo.Record, polled time.Time) *kgo.Record {
	key := string(r.Key)
	op := -1
	for o, p := range opPrefixes {
		if strings.HasPrefix(key, p) {
			op = o
			break
		}
	}
	if op < 0 {
		return nil
	}
	id := key[len(opPrefixes[op]):]
	i := f.index(id)
	if i < 0 {
		return nil
	}
	v := gjson.GetManyBytes(r.Value, "result.status", "result.code", "result.message", "sagaMeta.stepId")
	// The start's request id answers twice: when the task is stored (at
	// the task step) and when the instance ends after the approval.
	if op == opStart && v[3].String() != "review" {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.answered[op][i] {
		return nil
	}
	f.answered[op][i] = true
	if v[0].String() != "SUCCESS" {
		if f.failure == nil {
			f.failure = fmt.Errorf("bench: the %s of task %s answered %s %s: %s", opNames[op], id, v[0].String(), v[1].String(), v[2].String())
		}
		return nil
	}
	f.lat[op] = append(f.lat[op], ms(polled.UnixNano()-f.sent[op][i]))
	next := op + 1
	if next == opCount {
		return nil
	}
	f.sent[next][i] = time.Now().UnixNano()
	reqID := opPrefixes[next] + id
	return &kgo.Record{Topic: f.requests, Key: []byte(reqID), Value: lifecycleOpRecord(next, reqID, id, f.sent[next][i]/1e6)}
}

// produced records the first failed produce of a step.
func (f *flows) produced(_ *kgo.Record, err error) {
	if err == nil {
		return
	}
	f.mu.Lock()
	if f.failure == nil {
		f.failure = fmt.Errorf("bench: produce a lifecycle step: %w", err)
	}
	f.mu.Unlock()
}

// finished says every flow is done, or the run failed.
func (f *flows) finished() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := len(f.done)
	return f.failure != nil || (f.nDone >= n && f.nNoted >= n)
}

func (f *flows) err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failure
}

// explain adds to a timeout how far the flows got.
func (f *flows) explain(err error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var parts []string
	for op := range opCount {
		parts = append(parts, fmt.Sprintf("%d %s answered", len(f.lat[op]), opNames[op]))
	}
	return fmt.Errorf("%w (of %d flows: %s, %d notifications, %d continuations)", err, len(f.done),
		strings.Join(parts, ", "), f.nNoted, f.nDone)
}

// figures fills in the latencies: the flow's as the scenario's own, each
// step's, and the continuation's after the approval.
func (f *flows) figures(r *Result) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r.P50, r.P99, r.Max = quantiles(f.flowMS)
	r.P50, r.P99, r.Max = round1(r.P50), round1(r.P99), round1(r.Max)
	var p50, p99 [opCount]*float64
	for op := range opCount {
		a, b, _ := quantiles(f.lat[op])
		p50[op], p99[op] = ptr(round1(a)), ptr(round1(b))
	}
	r.StartP50, r.StartP99 = p50[opStart], p99[opStart]
	r.ClaimP50, r.ClaimP99 = p50[opClaim], p99[opClaim]
	r.CompleteP50, r.CompleteP99 = p50[opComplete], p99[opComplete]
	r.ApproveP50, r.ApproveP99 = p50[opApprove], p99[opApprove]
	dp50, dp99, _ := quantiles(f.doneMS)
	r.DoneP50, r.DoneP99 = ptr(round1(dp50)), ptr(round1(dp99))
}

func ms(ns int64) float64 { return float64(ns) / 1e6 }

// lifecycleStartRecord starts a bench_lifecycle instance for task id. It is
// an envelope, not a bare object, only to carry a replyTo: the runner
// answers on it once the task is stored, as it answers a saga started over
// HTTP.
func lifecycleStartRecord(id string, sentAt int64) []byte {
	v := make([]byte, 0, 200+2*len(id))
	v = append(v, `{"requestMeta":{"requestId":"`+opPrefixes[opStart]...)
	v = append(v, id...)
	v = append(v, `","replyTo":"`+ReplyTopic+`"},"payload":{"parameters":{"id":"`...)
	v = append(v, id...)
	v = append(v, `","sentAt":`...)
	v = strconv.AppendInt(v, sentAt, 10)
	return append(v, `}}}`...)
}

// lifecycleOpRecord is step op of the flow of task id as a direct action
// record, the one POST /tasks/bench/{id}/{op} makes: the task named in the
// input, the task's state asked for at outputElement.
func lifecycleOpRecord(op int, reqID, id string, sentAt int64) []byte {
	who := benchClerk
	if op == opApprove {
		who = benchLawyer
	}
	v := make([]byte, 0, 320+len(reqID)+len(id))
	v = append(v, `{"requestMeta":{"requestId":"`...)
	v = append(v, reqID...)
	v = append(v, `",`+who+`,"replyTo":"`+ReplyTopic+`"},"eventMeta":{"action":"`+opActions[op]+`","domain":"`+Domain+
		`","inputElement":"parameters","outputElement":"task"},"payload":{"parameters":{"taskId":"`...)
	v = append(v, id...)
	v = append(v, '"')
	if op == opComplete {
		v = append(v, `,"outcome":"approve","data":{"sentAt":`...)
		v = strconv.AppendInt(v, sentAt, 10)
		v = append(v, '}')
	}
	return append(v, `}}}`...)
}
