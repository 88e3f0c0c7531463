package runner

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// uncommitted is a polled record not yet committed: its offset and when it
// was polled. A worker keeps them in offset order until a commit passes them,
// so the age of the oldest tells how long the partition has not moved,
// whether its record waits in the queue, is retried, or waits for the commit.
type uncommitted struct {
	offset int64
	polled time.Time
}

// partitionState is what operators see of one partition.
type partitionState struct {
	lag      int64         // high watermark minus committed offset
	age      time.Duration // of the oldest uncommitted record; 0 when none
	retrying string        // the error being retried; "" when none
}

// state reads the worker's progress at now. Lag counts from the committed
// offset (from the first polled record before this runner committed any),
// so a record that is polled but stuck still counts as lag.
func (w *worker) state(now time.Time) partitionState {
	w.mu.Lock()
	defer w.mu.Unlock()
	var st partitionState
	base := w.committed
	if len(w.pending) > 0 {
		st.age = now.Sub(w.pending[0].polled)
		if base < 0 {
			base = w.pending[0].offset
		}
	}
	if base < 0 {
		base = w.next
	}
	st.lag = max(w.hwm-base, 0)
	st.retrying = w.retrying
	return st
}

// committedTo forgets the records before offset, which a commit passed.
func (w *worker) committedTo(offset int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.committed = offset
	i := 0
	for i < len(w.pending) && w.pending[i].offset < offset {
		i++
	}
	w.pending = w.pending[i:]
	if len(w.pending) == 0 {
		w.pending = nil
	}
}

// setRetrying marks the partition as retrying err, or not when err is nil,
// for Readiness.
func (w *worker) setRetrying(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err == nil {
		w.retrying = ""
		return
	}
	w.retrying = err.Error()
}

// observe sets the lag and uncommitted-age gauges of every partition.
func (r *Runner) observe() {
	now := time.Now()
	for _, w := range r.workerList() {
		st := w.state(now)
		if w.stopped() {
			continue // revoked meanwhile: its gauges are dropped, not set again
		}
		r.metrics.Lag(w.tp.topic, w.tp.partition, st.lag)
		r.metrics.Uncommitted(w.tp.topic, w.tp.partition, st.age)
	}
}

func (r *Runner) workerList() []*worker {
	r.mu.Lock()
	defer r.mu.Unlock()
	ws := make([]*worker, 0, len(r.workers))
	for _, w := range r.workers {
		ws = append(ws, w)
	}
	slices.SortFunc(ws, func(a, b *worker) int {
		if c := strings.Compare(a.tp.topic, b.tp.topic); c != 0 {
			return c
		}
		return int(a.tp.partition - b.tp.partition)
	})
	return ws
}

// ErrStuck is wrapped by Readiness when partitions do not move.
var ErrStuck = errors.New("runner: partitions stuck")

// Readiness reports whether the runner is consuming and every partition it
// owns moves: it returns an error wrapping ErrStuck that names each
// partition whose oldest uncommitted record is older than Config.StuckAfter
// or that is retrying a failed record or produce (Redis or a broker down),
// and a plain error before the runner consumes. For /readyz.
func (r *Runner) Readiness() error {
	if !r.Ready() {
		return errors.New("runner: not consuming")
	}
	now := time.Now()
	var stuck []string
	for _, w := range r.workerList() {
		st := w.state(now)
		switch {
		case st.retrying != "":
			stuck = append(stuck, fmt.Sprintf("%s/%d retrying (%s)", w.tp.topic, w.tp.partition, cut(st.retrying, 200)))
		case st.age > r.cfg.StuckAfter:
			stuck = append(stuck, fmt.Sprintf("%s/%d oldest uncommitted record polled %v ago", w.tp.topic, w.tp.partition, st.age.Round(time.Second)))
		}
	}
	if len(stuck) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrStuck, strings.Join(stuck, "; "))
}

// cut shortens s for a message; a reason may quote a huge hostile value.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}
