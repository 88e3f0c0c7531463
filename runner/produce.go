package runner

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/tidwall/gjson"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sagarunner/sagarunner/saga"
	"github.com/sagarunner/sagarunner/saga/envelope"
	"github.com/sagarunner/sagarunner/timers"
)

// delivery is one output record on its way to Kafka with the input that
// caused it, so a record that can never be produced is replaced by a dead
// letter naming its cause.
type delivery struct {
	rec envelope.Record
	// src is the consumed record the output came from; for a deadline's
	// output, task names the task instead (src is then nil). It is turned
	// into the engine's form only for a dead letter.
	src  *kgo.Record
	task *taskRef
	// attempts is how many produces of rec failed.
	attempts int
	// code is set once rec is a dead letter the runner put in place of an
	// output; it is counted and logged when it is durable.
	code, reason string
}

// taskRef names the task a deadline's output belongs to.
type taskRef struct {
	domain string
	shard  int
	id     string
}

// recordSize is what a record weighs against MaxRecordBytes. Kafka adds a
// few dozen bytes of framing, which the margin under the broker's 1 MiB
// default absorbs.
func recordSize(rec envelope.Record) int {
	n := len(rec.Key) + len(rec.Value)
	for _, h := range rec.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return n
}

// deliver makes one attempt at producing ds and returns what is left to
// produce. An output larger than MaxRecordBytes is not sent; an output whose
// produce fails permanently, or fails MaxAttempts times for reasons known to
// be neither transient nor permanent, is not sent again: each is replaced by
// a dead letter naming where it was meant to go and what caused it. A dead
// letter itself is never replaced (it is cut to fit already); it is retried
// until the broker takes it. The error is nil when only fresh dead letters
// are left, which the caller produces at once; otherwise it is the first
// failure, and the caller backs off.
func (r *Runner) deliver(ctx context.Context, ds []delivery) ([]delivery, error) {
	for i := range ds {
		d := &ds[i]
		if d.rec.Topic == r.deadLetterTopic {
			continue
		}
		if n := recordSize(d.rec); n > r.cfg.MaxRecordBytes {
			r.replace(d, saga.DeadTooLarge, fmt.Sprintf("output of %d bytes to topic %q exceeds the limit of %d bytes", n, d.rec.Topic, r.cfg.MaxRecordBytes))
		}
	}
	recs := make([]envelope.Record, len(ds))
	for i := range ds {
		recs[i] = ds[i].rec
	}
	errs := r.produceAll(ctx, recs)
	var rest []delivery
	var first error
	for i, err := range errs {
		d := ds[i]
		if err == nil {
			if d.code != "" {
				r.metrics.DeadLetter(d.code)
			}
			if d.rec.Topic == r.deadLetterTopic {
				r.logDeadLetter(d)
			}
			continue
		}
		class := Classify(err)
		r.metrics.ProduceFailed(class.String())
		d.attempts++
		if d.rec.Topic != r.deadLetterTopic && (class == Permanent || class == Unknown && d.attempts >= r.cfg.MaxAttempts) {
			reason := fmt.Sprintf("produce to topic %q failed: %v", d.rec.Topic, err)
			if class == Unknown {
				reason = fmt.Sprintf("produce to topic %q failed %d times, the last with: %v", d.rec.Topic, d.attempts, err)
			}
			r.replace(&d, DeadUndeliverable, reason)
			rest = append(rest, d)
			continue
		}
		rest = append(rest, d)
		if first == nil {
			first = fmt.Errorf("runner: produce to %q: %w", d.rec.Topic, err)
		}
	}
	return rest, first
}

// replace puts the dead letter of d's output in its place.
func (r *Runner) replace(d *delivery, code, reason string) {
	var src saga.Record
	if d.task != nil {
		// A deadline's output has no consumed record: the task is its
		// coordinates, and the output itself is the value kept.
		src = saga.Record{Key: d.rec.Key, Value: d.rec.Value}
	} else if d.src != nil {
		src = sagaRecord(d.src)
	}
	dl := saga.NewDeadLetter(src, nil, code, reason)
	dl.Target = d.rec.Topic
	if d.task != nil {
		dl.Domain, dl.TaskID, dl.Partition, dl.Offset = d.task.domain, d.task.id, int32(d.task.shard), -1
	}
	d.rec = dl.Record(r.deadLetterTopic, r.cfg.MaxRecordBytes)
	d.code, d.reason, d.attempts = code, reason, 0
}

// logDeadLetter logs a dead letter once it is durable, whoever made it. The
// engine's carry their code and reason only in the record, read here under
// the rate limit, so a flood of them costs no parsing.
func (r *Runner) logDeadLetter(d delivery) {
	var tp topicPartition
	offset := int64(-1)
	switch {
	case d.task != nil:
		tp = topicPartition{"deadlines:" + d.task.domain, int32(d.task.shard)}
	case d.src != nil:
		tp, offset = topicPartition{d.src.Topic, d.src.Partition}, d.src.Offset
	}
	r.events.logf(slog.LevelWarn, tp, "runner: dead letter produced", func() []any {
		code, reason := d.code, d.reason
		if code == "" {
			v := gjson.GetManyBytes(d.rec.Value, "code", "error")
			code, reason = v[0].String(), v[1].String()
		}
		attrs := []any{"offset", offset, "code", code, "reason", cut(reason, 500)}
		if d.task != nil {
			attrs = append(attrs, "task", d.task.id)
		}
		if t := gjson.GetBytes(d.rec.Value, "target").String(); t != "" {
			attrs = append(attrs, "target", t)
		}
		return attrs
	})
}

// produceAll produces recs asynchronously and waits for every
// acknowledgement once, which lets the client batch them. Records keep their
// keys, so the default (murmur2 sticky-key) partitioner sends every event of
// one request to one partition, in the order given. errs[i] is the outcome
// of recs[i].
func (r *Runner) produceAll(ctx context.Context, recs []envelope.Record) []error {
	errs := make([]error, len(recs))
	if len(recs) == 0 {
		return errs
	}
	// One array of records and one of headers for all of them: the
	// client holds a record only until its promise, and wg.Wait outlasts
	// every promise.
	krs := make([]kgo.Record, len(recs))
	n := 0
	for i := range recs {
		n += len(recs[i].Headers)
	}
	var hdrs []kgo.RecordHeader
	if n > 0 {
		hdrs = make([]kgo.RecordHeader, 0, n)
	}
	var wg sync.WaitGroup
	wg.Add(len(recs))
	for i := range recs {
		kr := &krs[i]
		kr.Topic, kr.Key, kr.Value = recs[i].Topic, recs[i].Key, recs[i].Value
		if hs := recs[i].Headers; len(hs) > 0 {
			start := len(hdrs)
			for _, h := range hs {
				hdrs = append(hdrs, kgo.RecordHeader{Key: h.Key, Value: h.Value})
			}
			kr.Headers = hdrs[start:len(hdrs):len(hdrs)]
		}
		r.cl.Produce(ctx, kr, func(_ *kgo.Record, err error) {
			errs[i] = err
			wg.Done()
		})
	}
	wg.Wait()
	return errs
}

// emit is the timers' Emitter: one attempt at making a deadline loop's
// output durable. It produces only what is left of out (the scheduler hands
// back what an earlier attempt returned), so a notification that was
// produced is never produced again because a sibling failed; outputs that
// cannot be produced become dead letters as in a worker.
func (r *Runner) emit(ctx context.Context, k timers.Key, attempt int, out saga.Output) (saga.Output, error) {
	if attempt <= 1 {
		// Later attempts carry what is left of these in out.Records.
		if audit := r.auditRecords(&out); len(audit) > 0 {
			out.Records = append(out.Records[:len(out.Records):len(out.Records)], audit...)
		}
	}
	ds := make([]delivery, len(out.Records))
	// A task's records end with its notification, keyed by the task id
	// (actions.TaskEffects): walk back to name each record's task.
	id := ""
	for i := len(out.Records) - 1; i >= 0; i-- {
		rec := out.Records[i]
		if rec.Topic == r.notifications {
			id = string(rec.Key)
		}
		ds[i] = delivery{rec: rec, task: &taskRef{domain: k.Domain, shard: k.Shard, id: id}, attempts: attempt - 1}
	}
	// A deadline's instance events are written before its records go
	// out, so the timeline has the timeout before the step it leads to.
	if err := r.applyInstances(ctx, []saga.Output{out}); err != nil {
		return out, err
	}
	for len(ds) > 0 {
		rest, err := r.deliver(ctx, ds)
		ds = rest
		if err != nil {
			left := out
			left.Records = make([]envelope.Record, len(ds))
			for i, d := range ds {
				left.Records[i] = d.rec
			}
			return left, err
		}
	}
	if len(out.Acks) > 0 {
		if err := r.eng.Ack(ctx, out.Acks); err != nil {
			out.Records = nil
			return out, fmt.Errorf("runner: ack timer closes: %w", err)
		}
	}
	r.countInstances(&out)
	return saga.Output{}, nil
}
