package runner

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sagarunner/sagarunner/saga"
)

// worker handles the records of one partition, strictly in order. The poll
// loop appends to its queue; the worker takes up to BatchSize records at a
// time, handles them, makes their outputs durable together and marks the last
// one for commit.
type worker struct {
	r  *Runner
	tp topicPartition

	mu     sync.Mutex
	queue  []queued
	paused bool

	// keys feeds the long-lived goroutines that handle the keys of a batch
	// concurrently; they live as long as the worker, so their stacks grow
	// once instead of with every batch.
	keys chan func()

	wake chan struct{} // capacity 1: "the queue may have grown"
	stop chan struct{} // closed to ask the worker to finish its batch and exit
	done chan struct{} // closed when run returns
}

// queued is a polled record and when it was polled, for the step latency.
type queued struct {
	rec    *kgo.Record
	polled time.Time
}

func newWorker(r *Runner, tp topicPartition) *worker {
	return &worker{
		r: r, tp: tp,
		wake: make(chan struct{}, 1),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
}

// enqueue appends polled records. Past MaxInFlight queued records the
// partition's fetching pauses; kgo drops paused partitions' buffered data
// without moving their position, so nothing is skipped on resume.
func (w *worker) enqueue(recs []*kgo.Record, polled time.Time) {
	w.mu.Lock()
	for _, r := range recs {
		w.queue = append(w.queue, queued{rec: r, polled: polled})
	}
	if !w.paused && len(w.queue) >= w.r.cfg.MaxInFlight {
		w.paused = true
		w.r.cl.PauseFetchPartitions(map[string][]int32{w.tp.topic: {w.tp.partition}})
	}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// take removes up to BatchSize records from the queue, resuming fetching
// once the queue has drained to half of MaxInFlight.
func (w *worker) take() []queued {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := min(len(w.queue), w.r.cfg.BatchSize)
	batch := w.queue[:n:n]
	w.queue = w.queue[n:]
	if len(w.queue) == 0 {
		w.queue = nil
	}
	if w.paused && len(w.queue) <= w.r.cfg.MaxInFlight/2 {
		w.paused = false
		w.r.cl.ResumeFetchPartitions(map[string][]int32{w.tp.topic: {w.tp.partition}})
	}
	return batch
}

func (w *worker) isPaused() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.paused
}

func (w *worker) stopped() bool {
	select {
	case <-w.stop:
		return true
	default:
		return false
	}
}

func (w *worker) run() {
	defer close(w.done)
	if k := w.r.cfg.KeyConcurrency; k > 1 {
		w.keys = make(chan func())
		defer close(w.keys)
		for range k {
			go func() {
				for fn := range w.keys {
					fn()
				}
			}()
		}
	}
	for {
		if w.stopped() {
			return
		}
		batch := w.take()
		if len(batch) == 0 {
			select {
			case <-w.wake:
				continue
			case <-w.stop:
				return
			}
		}
		if !w.process(batch) {
			return
		}
	}
}

// process handles batch in order and makes its effects durable. On an
// infrastructure error it first makes the records handled so far durable and
// commits past them, then retries the failing record with backoff, so the
// partition resumes by itself once Redis or Kafka are back. It returns false
// when the worker was stopped (or the runner hard-stopped) before the batch
// was done; the unmarked rest is replayed by whoever owns the partition next.
func (w *worker) process(batch []queued) bool {
	ctx := w.r.workCtx
	b := newBackoff(w.r.cfg.Backoff)
	for i := 0; i < len(batch); {
		outs, herr := w.handleBatch(ctx, batch[i:])
		n := len(outs)
		var out saga.Output
		for _, o := range outs {
			out.Append(o)
		}
		if n > 0 {
			if !w.makeDurable(ctx, out) {
				return false
			}
			w.r.mark(batch[i+n-1].rec)
			now := time.Now()
			for _, q := range batch[i : i+n] {
				w.r.metrics.Consumed(w.tp.topic)
				w.r.metrics.Step(now.Sub(q.polled))
			}
			i += n
		}
		if herr == nil {
			continue
		}
		if ctx.Err() != nil {
			return false
		}
		rec := batch[i].rec
		level := "runner: infrastructure unavailable; pausing partition and retrying the record"
		if !errors.Is(herr, saga.ErrRetry) {
			level = "runner: engine returned an unclassified error; retrying the record"
		}
		d := b.next()
		w.r.log.Warn(level, "topic", rec.Topic, "partition", rec.Partition, "offset", rec.Offset, "err", herr, "in", d)
		if !w.sleep(ctx, d) {
			return false
		}
	}
	return true
}

// handleBatch handles records in order per key and returns the outputs of
// the longest prefix handled without error, with the error that ended it.
//
// Kafka orders records per key, and every event of a saga instance carries
// its requestId as key, so records with different keys may be handled at
// once: up to KeyConcurrency keys run concurrently, each key's records one
// after another. That overlaps the Redis round trips of one partition
// instead of waiting them out one by one. Records after the first failure
// may have been handled too; their effects are idempotent, and they are
// handled again with the retry, so only the prefix counts.
func (w *worker) handleBatch(ctx context.Context, batch []queued) ([]saga.Output, error) {
	outs := make([]saga.Output, len(batch))
	errs := make([]error, len(batch))
	if w.keys == nil || len(batch) == 1 {
		for i, q := range batch {
			if outs[i], errs[i] = w.handle(ctx, q.rec); errs[i] != nil {
				return outs[:i], errs[i]
			}
		}
		return outs, nil
	}

	// Group by key in offset order; keyless records stand alone.
	var groups [][]int
	byKey := map[string]int{}
	for i, q := range batch {
		if len(q.rec.Key) == 0 {
			groups = append(groups, []int{i})
			continue
		}
		g, ok := byKey[string(q.rec.Key)]
		if !ok {
			g = len(groups)
			byKey[string(q.rec.Key)] = g
			groups = append(groups, nil)
		}
		groups[g] = append(groups[g], i)
	}
	var wg sync.WaitGroup
	for _, g := range groups {
		wg.Add(1)
		w.keys <- func() {
			defer wg.Done()
			for _, i := range g {
				if outs[i], errs[i] = w.handle(ctx, batch[i].rec); errs[i] != nil {
					break // the rest of this key waits for the retry
				}
			}
		}
	}
	wg.Wait()

	// A record that did not run follows a failed record of its key, so the
	// scan in offset order stops at that failure first.
	for i := range batch {
		if errs[i] != nil {
			return outs[:i], errs[i]
		}
	}
	return outs, nil
}

// handle runs the engine on one record. A panic is a bug in a step, not in
// the record's infrastructure: the record is dead-lettered so the partition
// moves on, and the process keeps running.
func (w *worker) handle(ctx context.Context, rec *kgo.Record) (out saga.Output, err error) {
	defer func() {
		if p := recover(); p != nil {
			w.r.log.Error("runner: engine panicked; dead-lettering the record",
				"topic", rec.Topic, "partition", rec.Partition, "offset", rec.Offset,
				"panic", p, "stack", string(debug.Stack()))
			out, err = w.r.deadLetterOutput(rec, fmt.Sprintf("panic: %v", p)), nil
		}
	}()
	return w.r.eng.Handle(ctx, saga.Record{
		Topic:     rec.Topic,
		Partition: rec.Partition,
		Offset:    rec.Offset,
		Key:       rec.Key,
		Value:     rec.Value,
	})
}

// makeDurable produces out.Records, re-producing only the failed ones until
// all are acknowledged, then acks the closes in the engine. It gives up only
// when the worker is stopped; the offsets stay unmarked then.
func (w *worker) makeDurable(ctx context.Context, out saga.Output) bool {
	b := newBackoff(w.r.cfg.Backoff)
	recs := out.Records
	for len(recs) > 0 {
		failed, err := w.r.produceAll(ctx, recs)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return false
		}
		d := b.next()
		w.r.log.Warn("runner: produce failed; retrying", "topic", w.tp.topic, "partition", w.tp.partition,
			"failed", len(failed), "of", len(recs), "err", err, "in", d)
		recs = failed
		if !w.sleep(ctx, d) {
			return false
		}
	}
	b.reset()
	for len(out.Acks) > 0 {
		err := w.r.eng.Ack(ctx, out.Acks)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return false
		}
		d := b.next()
		w.r.log.Warn("runner: ack failed; retrying", "topic", w.tp.topic, "partition", w.tp.partition, "err", err, "in", d)
		if !w.sleep(ctx, d) {
			return false
		}
	}
	w.r.countOutput(out)
	return true
}

// sleep waits d unless the worker is stopped or the runner hard-stopped.
func (w *worker) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-w.stop:
		return false
	case <-ctx.Done():
		return false
	}
}
