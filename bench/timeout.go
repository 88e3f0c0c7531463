package bench

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidwall/gjson"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sagarunner/sagarunner/statemanager"
)

// farDeadline keeps preloaded filler tasks waiting for the whole run.
const farDeadline = 24 * time.Hour

// timeoutScenario: cfg.Waiting waiting tasks, cfg.Due of them due within
// cfg.Window. Only the firing is measured.
func (d *deployment) timeoutScenario(ctx context.Context) ([]Result, error) {
	r, err := d.fire(ctx, d.cfg.Waiting, d.cfg.Due, "t")
	if err != nil {
		return nil, err
	}
	if err := d.stopRunner(); err != nil {
		return nil, err
	}
	return []Result{r}, nil
}

// rssScenario measures a fresh runner at each of cfg.Levels waiting tasks,
// each firing the same number of deadlines, so any growth of its memory
// with the waiting tasks shows. The tasks of one level stay for the next.
func (d *deployment) rssScenario(ctx context.Context) ([]Result, error) {
	due := max(1, d.cfg.Levels[0]/10)
	var out []Result
	for i, level := range d.cfg.Levels {
		if err := d.stopRunner(); err != nil {
			return nil, err
		}
		r, err := d.fire(ctx, level, due, "r"+strconv.Itoa(i))
		if err != nil {
			return nil, err
		}
		r.Scenario = "rss"
		out = append(out, r)
		if err := d.stopRunner(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// fire stores filler tasks up to waiting-due with far deadlines (untimed,
// before the runner starts, so its memory is that of a runner joining a
// loaded Redis), starts the runner, then stores due tasks whose deadlines
// start once they are all stored and spread over cfg.Window, and measures
// how late each fires.
func (d *deployment) fire(ctx context.Context, waiting, due int, tag string) (Result, error) {
	r := Result{Scenario: "timeout", N: due, Waiting: waiting, WindowS: d.cfg.Window.Seconds()}
	if fill := waiting - due - d.waitingFar; fill > 0 {
		base := time.Now().Add(farDeadline).UnixMilli()
		prefix := d.runID + "-far-" + strconv.Itoa(d.waitingFar) + "-"
		d.logf("storing %d waiting tasks with far deadlines", fill)
		took, err := d.preload(ctx, fill, func(i int) (string, int64) { return prefix + strconv.Itoa(i), base })
		if err != nil {
			return r, err
		}
		d.waitingFar += fill
		r.PreloadS = round2(took.Seconds())
		r.PreloadRate = rate(fill, took)
		d.logf("stored %d tasks in %.1fs (%.0f/s)", fill, took.Seconds(), r.PreloadRate)
	}
	// Filler of an earlier scenario of the same run stays waiting: report
	// what is really there.
	r.Waiting = max(waiting, d.waitingFar+due)
	if err := d.startRunner(ctx); err != nil {
		return r, err
	}

	prefix := d.runID + "-" + tag + "-"
	var (
		mu       sync.Mutex
		seen     = make(map[string]int, due)
		late     = make([]float64, 0, due)
		seenLate = make([]float64, 0, due)
		other    int
	)
	c, err := d.consume(ctx, func(rec *kgo.Record, polled time.Time) {
		id := string(rec.Key)
		if !strings.HasPrefix(id, d.runID+"-") {
			return
		}
		v := gjson.GetManyBytes(rec.Value, "status", "deadline")
		if v[0].String() != statemanager.StatusTimeout {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if !strings.HasPrefix(id, prefix) {
			other++
			return
		}
		seen[id]++
		if seen[id] == 1 {
			late = append(late, float64(rec.Timestamp.UnixMilli()-v[1].Int()))
			seenLate = append(seenLate, float64(polled.UnixMilli()-v[1].Int()))
		}
	}, d.cfg.NotificationTopic)
	if err != nil {
		return r, err
	}
	defer c.stop()

	// The due tasks must all be stored before the first falls due, or
	// storing them would compete with firing them.
	lead := 300*time.Millisecond + time.Duration(float64(due)/d.expectedLoadRate()*1.3*float64(time.Second))
	first := time.Now().Add(lead)
	step := d.cfg.Window / time.Duration(max(due, 1))
	d.logf("storing %d tasks due from %s over %v", due, first.Format("15:04:05.000"), d.cfg.Window)
	d.markCPU()
	if _, err := d.preload(ctx, due, func(i int) (string, int64) {
		return prefix + strconv.Itoa(i), first.Add(time.Duration(i) * step).UnixMilli()
	}); err != nil {
		return r, err
	}
	r.DueLoadedBeforeMS = ptr(time.Until(first).Milliseconds())
	if *r.DueLoadedBeforeMS < 0 {
		d.logf("warning: the due tasks were still being stored %d ms after the first deadline", -*r.DueLoadedBeforeMS)
	}

	wctx, cancel := context.WithTimeout(ctx, d.cfg.Window+lead+d.cfg.Timeout)
	defer cancel()
	if err := waitFor(wctx, "every due task to fire", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) >= due
	}); err != nil {
		mu.Lock()
		err = fmt.Errorf("%w (%d of %d fired)", err, len(seen), due)
		mu.Unlock()
		return r, err
	}
	// Let the continuations of the fired tasks be consumed and committed,
	// so a duplicate from a retried emit would have shown by now.
	ends, err := d.endOffsets(wctx, d.cfg.RequestTopic)
	if err != nil {
		return r, err
	}
	if _, err := d.waitCommitted(wctx, d.cfg.RequestTopic, ends); err != nil {
		return r, err
	}
	d.runnerFigures(&r)

	mu.Lock()
	defer mu.Unlock()
	dups := 0
	for _, k := range seen {
		dups += k - 1
	}
	r.Fired, r.Duplicates, r.Unexpected = ptr(len(seen)), ptr(dups), ptr(other)
	p50, p99, mx := quantiles(late)
	r.LatenessP50, r.LatenessP99, r.LatenessMax = ptr(p50), ptr(p99), ptr(mx)
	_, sp99, _ := quantiles(seenLate)
	r.SeenLatenessP99 = ptr(sp99)
	r.P50, r.P99, r.Max = p50, p99, mx
	r.Rate = rate(due, d.cfg.Window)
	r.Seconds = d.cfg.Window.Seconds()
	return r, nil
}

// expectedLoadRate is the preload rate to plan deadlines with: the last
// measured one, or a cautious guess before any.
func (d *deployment) expectedLoadRate() float64 {
	if d.loadRate > 0 {
		return d.loadRate
	}
	return 5000
}

// preload stores n waiting tasks straight through the state manager, as the
// StartTask step of bench_start would have stored them, from
// cfg.Preloaders goroutines.
func (d *deployment) preload(ctx context.Context, n int, task func(i int) (id string, deadline int64)) (time.Duration, error) {
	start := time.Now()
	var next atomic.Int64
	var failed atomic.Pointer[error]
	var wg sync.WaitGroup
	for w := 0; w < d.cfg.Preloaders; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for failed.Load() == nil {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				id, deadline := task(i)
				if _, _, err := d.store.Start(ctx, storedTask(id, deadline)); err != nil {
					err = fmt.Errorf("bench: store task %s: %w", id, err)
					failed.CompareAndSwap(nil, &err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if p := failed.Load(); p != nil {
		return 0, *p
	}
	took := time.Since(start)
	if n >= 1000 {
		d.loadRate = float64(n) / took.Seconds()
	}
	return took, nil
}

// storedTask is the task bench_start's StartTask step stores for a record
// {"id": id}: its envelope resumes the saga at step wait.
func storedTask(id string, deadline int64) *statemanager.Task {
	env := `{"requestMeta":{"requestId":"` + id + `"},"sagaMeta":{"saga":"bench_start","version":1,"stepId":"wait",` +
		`"runnerPartition":0,"seq":1},"eventMeta":{"action":"StartTask","domain":"` + Domain + `","inputElement":"parameters",` +
		`"parameters":{"taskIdPath":"id","taskName":"Bench task"}},"payload":{"parameters":{"id":"` + id + `"}},` +
		`"result":{"status":"SUCCESS"}}`
	return &statemanager.Task{
		ID:        id,
		Name:      "Bench task",
		Saga:      "bench_start",
		StepID:    "wait",
		RequestID: id,
		Deadline:  deadline,
		Data:      []byte(`{"id":"` + id + `"}`),
		Envelope:  []byte(env),
	}
}
