package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/tidwall/gjson"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sagarunner/sagarunner/saga"
	"github.com/sagarunner/sagarunner/saga/envelope"
)

// produceAll produces recs asynchronously and waits for every
// acknowledgement once, which lets the client batch them. Records keep their
// keys, so the default (murmur2 sticky-key) partitioner sends every event of
// one request to one partition, in the order given. It returns the records
// that failed, in order, and the first error.
func (r *Runner) produceAll(ctx context.Context, recs []envelope.Record) ([]envelope.Record, error) {
	if len(recs) == 0 {
		return nil, nil
	}
	errs := make([]error, len(recs))
	var wg sync.WaitGroup
	wg.Add(len(recs))
	for i := range recs {
		kr := &kgo.Record{Topic: recs[i].Topic, Key: recs[i].Key, Value: recs[i].Value}
		r.cl.Produce(ctx, kr, func(_ *kgo.Record, err error) {
			errs[i] = err
			wg.Done()
		})
	}
	wg.Wait()
	var failed []envelope.Record
	var first error
	for i, err := range errs {
		if err != nil {
			failed = append(failed, recs[i])
			if first == nil {
				first = fmt.Errorf("runner: produce to %q: %w", recs[i].Topic, err)
			}
		}
	}
	return failed, first
}

// emit is the timers' Emitter: one attempt at making a timer output durable.
func (r *Runner) emit(ctx context.Context, out saga.Output) error {
	if _, err := r.produceAll(ctx, out.Records); err != nil {
		return err
	}
	if len(out.Acks) > 0 {
		if err := r.eng.Ack(ctx, out.Acks); err != nil {
			return fmt.Errorf("runner: ack timer closes: %w", err)
		}
	}
	r.countOutput(out)
	return nil
}

// countOutput feeds the metrics from an output that became durable.
func (r *Runner) countOutput(out saga.Output) {
	if out.Started > 0 {
		r.metrics.Started("", out.Started)
	}
	for _, rec := range out.Records {
		switch rec.Topic {
		case r.deadLetter:
			r.metrics.DeadLetter()
		case r.notifications:
			if st := gjson.GetBytes(rec.Value, "status").String(); st != "" {
				r.metrics.Closed(st)
			}
		}
	}
}

// deadLetterOutput dead-letters rec in the engine's format (saga.DeadLetter),
// for when the engine could not do it itself because it panicked.
func (r *Runner) deadLetterOutput(rec *kgo.Record, reason string) saga.Output {
	dl := saga.DeadLetter{
		Error:     reason,
		Code:      saga.DeadPanic,
		Topic:     rec.Topic,
		Partition: rec.Partition,
		Offset:    rec.Offset,
	}
	if json.Valid(rec.Value) {
		dl.Value = rec.Value
	} else {
		dl.Value, _ = json.Marshal(string(rec.Value))
	}
	v, err := json.Marshal(dl)
	if err != nil {
		v = []byte(`{"error":"panic","code":"PANIC"}`)
	}
	return saga.Output{Records: []envelope.Record{{Topic: r.deadLetter, Key: rec.Key, Value: v}}}
}
