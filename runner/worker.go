package runner

import (
	"context"
	"hash/maphash"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sagarunner/sagarunner/actions"
	"github.com/sagarunner/sagarunner/saga"
	"github.com/sagarunner/sagarunner/saga/envelope"
)

// worker handles the records of one partition, strictly in order. The poll
// loop appends to its queue; the worker takes up to BatchSize records at a
// time, handles them, makes their outputs durable together and marks the last
// one for commit.
type worker struct {
	r  *Runner
	tp topicPartition

	mu    sync.Mutex
	queue []queued
	// paused: fetching stops for the worker's own sake (a full queue, a
	// transient failure); starved: for the byte budget's. The partition
	// fetches only when neither holds; fetchPaused is what the client
	// was last told.
	paused, starved, fetchPaused bool
	// held is the bytes the worker holds against the runner's budget;
	// exited is set once run has returned and given them back.
	held   int64
	exited bool
	// rewound is the poll in which the partition was rewound for the
	// budget: the rest of that poll's records of it are dropped, they
	// are fetched again.
	rewound uint64
	// What operators see (progress.go): records polled and not yet
	// committed, in offset order; the partition's high watermark; the
	// offset after the last polled record; the committed offset (-1 until
	// this runner commits one); the error being retried.
	pending   []uncommitted
	hwm       int64
	next      int64
	committed int64
	retrying  string

	// keys feeds the long-lived goroutines that handle the keys of a batch
	// concurrently; they live as long as the worker, so their stacks grow
	// once instead of with every batch.
	keys chan func()
	// groups is handleBatch's scratch, reused batch after batch.
	groups keyGroups

	wake chan struct{} // capacity 1: "the queue may have grown"
	stop chan struct{} // closed to ask the worker to finish its batch and exit
	done chan struct{} // closed when run returns
}

// keyGroups groups a batch's records by key: heads[k] is the first record of
// group k, next[i] the record after i in its group (-1 for none).
type keyGroups struct {
	seed               maphash.Seed
	of                 map[uint64]int32
	heads, tails, next []int32
	// hdrs holds the batch's headers, hstart where each record's start.
	hdrs   []envelope.Header
	hstart []int32
}

// queued is a polled record and when it was polled, for the step latency.
type queued struct {
	rec    *kgo.Record
	polled time.Time
}

func newWorker(r *Runner, tp topicPartition) *worker {
	return &worker{
		r: r, tp: tp,
		committed: -1,
		wake:      make(chan struct{}, 1),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
	}
}

// enqueue appends the polled records of poll gen that fit the runner's byte
// budget. Past MaxInFlight queued records the partition's fetching pauses;
// kgo drops paused partitions' buffered data without moving their position,
// so nothing is skipped on resume. Records past the budget are dropped and
// the partition paused until the budget frees (see byteBudget); enqueue
// returns the position of the first of them, where the caller rewinds the
// partition to, with ok set.
func (w *worker) enqueue(recs []*kgo.Record, polled time.Time, hwm int64, gen uint64) (rewind kgo.EpochOffset, ok bool) {
	b := &w.r.budget
	b.mu.Lock()
	w.mu.Lock()
	if w.exited || w.rewound == gen {
		w.mu.Unlock()
		b.mu.Unlock()
		return rewind, false
	}
	n := 0
	for n < len(recs) && b.held < b.limit {
		size := polledSize(recs[n])
		b.take(size)
		w.held += size
		n++
	}
	for _, r := range recs[:n] {
		w.queue = append(w.queue, queued{rec: r, polled: polled})
		w.pending = append(w.pending, uncommitted{offset: r.Offset, polled: polled})
	}
	w.hwm = hwm
	if n > 0 {
		w.next = recs[n-1].Offset + 1
	}
	if !w.paused && len(w.queue) >= w.r.cfg.MaxInFlight {
		w.paused = true
	}
	if n < len(recs) {
		w.rewound = gen
		w.starved = true
		b.starved[w] = struct{}{}
		b.rewinds++
	}
	w.syncFetch()
	w.mu.Unlock()
	b.mu.Unlock()
	if n < len(recs) {
		rewind, ok = kgo.EpochOffset{Epoch: recs[n].LeaderEpoch, Offset: recs[n].Offset}, true
	}
	if n > 0 {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
	return rewind, ok
}

// syncFetch tells the client to pause or resume the partition when paused
// or starved changed it. w.mu is held.
func (w *worker) syncFetch() {
	want := w.paused || w.starved
	if want == w.fetchPaused {
		return
	}
	w.fetchPaused = want
	tp := map[string][]int32{w.tp.topic: {w.tp.partition}}
	if want {
		w.r.cl.PauseFetchPartitions(tp)
	} else {
		w.r.cl.ResumeFetchPartitions(tp)
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
		w.syncFetch()
	}
	return batch
}

// isPaused reports whether the client was told to pause the partition.
func (w *worker) isPaused() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.fetchPaused
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
	defer w.exit()
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

// process handles batch in order and makes its effects durable. When a
// record fails, it first makes the records handled so far durable and
// commits past them, then retries the failing record with backoff; the
// failure policy (middleware.go) decides when a record is dead-lettered
// instead, so only transient failures retry for as long as they last, and
// they pause the partition's fetching meanwhile. It returns false when the
// worker was stopped (or the runner hard-stopped) before the batch was done;
// the unmarked rest is replayed by whoever owns the partition next.
func (w *worker) process(batch []queued) bool {
	ctx := w.r.workCtx
	b := newBackoff(w.r.cfg.Backoff)
	failed, attempts := int64(-1), 0
	defer w.setRetrying(nil)
	for i := 0; i < len(batch); {
		hctx := ctx
		if failed >= 0 {
			hctx = withAttempt(ctx, failed, attempts+1)
		}
		outs, herr := w.handleBatch(hctx, batch[i:])
		if n := len(outs); n > 0 {
			// The outputs weigh on the budget until they are durable;
			// they are not refused, only the next polls wait for them.
			var size int64
			for k := range outs {
				size += outputSize(&outs[k])
			}
			w.hold(size)
			if !w.makeDurable(ctx, batch[i:i+n], outs) {
				return false
			}
			for _, q := range batch[i : i+n] {
				size += polledSize(q.rec)
			}
			w.hold(-size)
			w.r.mark(batch[i+n-1].rec)
			now := time.Now()
			for _, q := range batch[i : i+n] {
				w.r.metrics.Consumed(w.tp.topic)
				w.r.metrics.Step(now.Sub(q.polled))
			}
			i += n
		}
		if herr == nil {
			w.setRetrying(nil)
			continue
		}
		if ctx.Err() != nil {
			return false
		}
		rec := batch[i].rec
		if rec.Offset != failed {
			failed, attempts = rec.Offset, 0
			b.reset()
		}
		class := Classify(herr)
		if class != Transient {
			// Only errors not known to be transient spend the record's
			// MaxAttempts: an outage of any length must not use them up
			// and leave the first odd reply after it to dead-letter it.
			attempts++
		}
		w.setRetrying(herr)
		if class == Transient {
			// Nothing behind the record can go before it; stop fetching
			// what would only pile up. take resumes it.
			w.pause()
		}
		d := b.next()
		w.r.events.log(slog.LevelWarn, w.tp, "runner: step failed; retrying the record",
			"offset", rec.Offset, "code", class.String(), "reason", herr.Error(), "attempt", attempts, "in", d)
		if !w.sleep(ctx, d) {
			return false
		}
	}
	return true
}

// pause stops fetching the partition until take finds the queue drained.
func (w *worker) pause() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.paused = true
	w.syncFetch()
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
	w.batchHeaders(batch)
	if w.keys == nil || len(batch) == 1 {
		for i := range batch {
			if outs[i], errs[i] = w.handle(ctx, batch, i); errs[i] != nil {
				return outs[:i], errs[i]
			}
		}
		return outs, nil
	}

	// Group by key in offset order, each group a chain through next;
	// keyless records stand alone. Keys are told apart by their hash: two
	// keys sharing one only share a group, handled in order as one key's.
	g := &w.groups
	if g.of == nil {
		g.of = map[uint64]int32{}
		g.seed = maphash.MakeSeed()
	}
	clear(g.of)
	g.heads, g.tails = g.heads[:0], g.tails[:0]
	g.next = slices.Grow(g.next[:0], len(batch))[:len(batch)]
	for i, q := range batch {
		g.next[i] = -1
		if len(q.rec.Key) > 0 {
			h := maphash.Bytes(g.seed, q.rec.Key)
			if k, ok := g.of[h]; ok {
				g.next[g.tails[k]], g.tails[k] = int32(i), int32(i)
				continue
			}
			g.of[h] = int32(len(g.heads))
		}
		g.heads, g.tails = append(g.heads, int32(i)), append(g.tails, int32(i))
	}
	// Each key goroutine takes the next group until none is left.
	heads, next := g.heads, g.next
	var taken atomic.Int32
	var wg sync.WaitGroup
	work := func() {
		defer wg.Done()
		for {
			k := int(taken.Add(1)) - 1
			if k >= len(heads) {
				return
			}
			for i := heads[k]; i >= 0; i = next[i] {
				if outs[i], errs[i] = w.handle(ctx, batch, int(i)); errs[i] != nil {
					break // the rest of this key waits for the retry
				}
			}
		}
	}
	n := min(len(heads), w.r.cfg.KeyConcurrency)
	wg.Add(n)
	for range n {
		w.keys <- work
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

// handle runs batch[i] through the runner's handler chain: the failure
// policy and the recoverer around the engine. Its headers are those
// batchHeaders converted.
func (w *worker) handle(ctx context.Context, batch []queued, i int) (saga.Output, error) {
	rec := batch[i].rec
	sr := saga.Record{Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset, Key: rec.Key, Value: rec.Value}
	if g := &w.groups; g.hstart[i] < g.hstart[i+1] {
		sr.Headers = g.hdrs[g.hstart[i]:g.hstart[i+1]:g.hstart[i+1]]
	}
	return w.r.handle(ctx, sr)
}

// batchHeaders converts the headers of batch's records into one new array,
// one allocation per batch instead of one per record: record i's are
// hdrs[hstart[i]:hstart[i+1]]. The array is new for every batch because the
// engine may keep a record's headers.
func (w *worker) batchHeaders(batch []queued) {
	g := &w.groups
	g.hstart = slices.Grow(g.hstart[:0], len(batch)+1)[:len(batch)+1]
	n := int32(0)
	for i, q := range batch {
		g.hstart[i] = n
		n += int32(len(q.rec.Headers))
	}
	g.hstart[len(batch)] = n
	g.hdrs = nil
	if n == 0 {
		return
	}
	g.hdrs = make([]envelope.Header, 0, n)
	for _, q := range batch {
		for _, h := range q.rec.Headers {
			g.hdrs = append(g.hdrs, envelope.Header{Key: h.Key, Value: h.Value})
		}
	}
}

// sagaRecord is rec as the engine takes it.
func sagaRecord(rec *kgo.Record) saga.Record {
	sr := saga.Record{Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset, Key: rec.Key, Value: rec.Value}
	if len(rec.Headers) > 0 {
		sr.Headers = make([]envelope.Header, len(rec.Headers))
		for i, h := range rec.Headers {
			sr.Headers[i] = envelope.Header{Key: h.Key, Value: h.Value}
		}
	}
	return sr
}

// makeDurable produces the outputs of srcs (outs[i] is the output of
// srcs[i]), re-producing only the failed records until all are
// acknowledged, then acks the closes in the engine. An output that can
// never be produced is replaced by a dead letter naming its input (see
// deliver), so it never holds the partition. It gives up only when the
// worker is stopped; the offsets stay unmarked then.
func (w *worker) makeDurable(ctx context.Context, srcs []queued, outs []saga.Output) bool {
	var acks []actions.Ack
	var ds []delivery
	iw := w.r.encodeInstances(outs)
	for i := range outs {
		o := &outs[i]
		audit := iw.auditOf(i)
		if len(o.Records)+len(audit) > 0 {
			src := srcs[i].rec
			for _, rec := range o.Records {
				ds = append(ds, delivery{rec: rec, src: src})
			}
			for _, rec := range audit {
				ds = append(ds, delivery{rec: rec, src: src})
			}
		}
		acks = append(acks, o.Acks...)
	}
	// The instance events are written while the records are produced:
	// both must be durable before the offset is marked, neither waits
	// for the other.
	applied := make(chan error, 1)
	go func() { applied <- w.r.apply(ctx, iw) }()
	b := newBackoff(w.r.cfg.Backoff)
	for len(ds) > 0 {
		rest, err := w.r.deliver(ctx, ds)
		ds = rest
		if err == nil {
			continue // only fresh dead letters are left: produce them now
		}
		if ctx.Err() != nil {
			return false
		}
		w.setRetrying(err)
		d := b.next()
		w.r.events.log(slog.LevelWarn, w.tp, "runner: produce failed; retrying the failed records",
			"offset", srcs[len(srcs)-1].rec.Offset, "code", Classify(err).String(), "reason", err.Error(), "failed", len(ds), "in", d)
		if !w.sleep(ctx, d) {
			return false
		}
	}
	b.reset()
	for err := <-applied; err != nil; err = w.r.apply(ctx, iw) {
		if ctx.Err() != nil {
			return false
		}
		w.setRetrying(err)
		d := b.next()
		w.r.events.log(slog.LevelWarn, w.tp, "runner: instance events failed; retrying",
			"offset", srcs[len(srcs)-1].rec.Offset, "code", Classify(err).String(), "reason", err.Error(), "in", d)
		if !w.sleep(ctx, d) {
			return false
		}
	}
	b.reset()
	for len(acks) > 0 {
		err := w.r.eng.Ack(ctx, acks)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return false
		}
		w.setRetrying(err)
		d := b.next()
		w.r.events.log(slog.LevelWarn, w.tp, "runner: ack failed; retrying",
			"offset", srcs[len(srcs)-1].rec.Offset, "code", Classify(err).String(), "reason", err.Error(), "in", d)
		if !w.sleep(ctx, d) {
			return false
		}
	}
	for i := range outs {
		w.r.countOutcomes(w.tp, srcs[i].rec.Offset, &outs[i])
		w.r.countInstances(&outs[i])
	}
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

// recordOverhead approximates what a polled record costs besides its key,
// value and headers: the client's record and the worker's bookkeeping.
const recordOverhead = 256

// polledSize is what a polled record weighs against MaxInFlightBytes.
func polledSize(rec *kgo.Record) int64 {
	n := len(rec.Key) + len(rec.Value) + recordOverhead
	for _, h := range rec.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return int64(n)
}

// outputSize is what the records of out weigh against MaxInFlightBytes
// while the batch holds them.
func outputSize(out *saga.Output) int64 {
	var n int64
	for _, rec := range out.Records {
		n += int64(recordSize(rec) + recordOverhead)
	}
	return n
}

// byteBudget bounds the bytes all workers hold (MaxInFlightBytes). Records
// are taken from a poll while less than the limit is held; the partition of
// the first record left out starves: it is paused and rewound, and every
// starved partition fetches again once the bytes held drop to half the
// limit. Lock order: byteBudget.mu, then worker.mu.
type byteBudget struct {
	mu      sync.Mutex
	limit   int64
	held    int64
	peak    int64
	starved map[*worker]struct{}
	// rewinds counts the partitions starved so far.
	rewinds int64
}

func newByteBudget(limit int) byteBudget {
	return byteBudget{limit: int64(limit), starved: map[*worker]struct{}{}}
}

// take counts n more bytes held. b.mu is held.
func (b *byteBudget) take(n int64) {
	b.held += n
	b.peak = max(b.peak, b.held)
}

// give counts n bytes given back and feeds the starved partitions once half
// the limit is free. b.mu is held.
func (b *byteBudget) give(n int64) {
	b.held -= n
	if b.held > b.limit/2 || len(b.starved) == 0 {
		return
	}
	for w := range b.starved {
		w.mu.Lock()
		w.starved = false
		w.syncFetch()
		w.mu.Unlock()
	}
	clear(b.starved)
}

// usage returns the bytes held now and the most ever held.
func (b *byteBudget) usage() (held, peak int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.held, b.peak
}

// hold counts n bytes (given back when negative) against the budget for w.
func (w *worker) hold(n int64) {
	if n == 0 {
		return
	}
	b := &w.r.budget
	b.mu.Lock()
	defer b.mu.Unlock()
	w.mu.Lock()
	w.held += n
	w.mu.Unlock()
	if n > 0 {
		b.take(n)
	} else {
		b.give(-n)
	}
}

// exit gives back everything the worker holds once run returns: its queue
// and its unfinished batch are replayed by the partition's next owner.
func (w *worker) exit() {
	b := &w.r.budget
	b.mu.Lock()
	defer b.mu.Unlock()
	w.mu.Lock()
	n := w.held
	w.held, w.exited, w.queue = 0, true, nil
	w.starved = false // the client is told by stopWorkers (isPaused)
	delete(b.starved, w)
	w.mu.Unlock()
	b.give(n)
}
