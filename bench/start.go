package bench

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// startPhase is one batch of bench-start records and what it left behind.
type startPhase struct {
	ids    []string
	sentAt []int64
	first  time.Time
	end    time.Time // when the committed offsets covered every record
}

// startTasks produces n records on the start topic and waits until the
// runner has committed past all of them, which it does only once their
// tasks are stored in Redis.
func (d *deployment) startTasks(ctx context.Context, n int, tag string) (*startPhase, error) {
	ph := &startPhase{ids: make([]string, n), sentAt: make([]int64, n)}
	prefix := d.runID + "-" + tag + "-"
	for i := range ph.ids {
		ph.ids[i] = prefix + strconv.Itoa(i)
	}
	ctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
	defer cancel()
	first, ends, err := d.produce(ctx, n, func(i int, now int64) *kgo.Record {
		ph.sentAt[i] = now
		id := ph.ids[i]
		v := make([]byte, 0, len(id)+40)
		v = append(v, `{"id":"`...)
		v = append(v, id...)
		v = append(v, `","sentAt":`...)
		v = strconv.AppendInt(v, now, 10)
		v = append(v, '}')
		return &kgo.Record{Topic: StartTopic, Key: []byte(id), Value: v}
	})
	if err != nil {
		return nil, err
	}
	ph.first = first
	ph.end, err = d.waitCommitted(ctx, StartTopic, ends)
	if err != nil {
		return nil, err
	}
	return ph, nil
}

// startScenario: N StartTask steps end to end. The rate runs from the first
// record produced to the committed offsets covering the last; the latency
// of a record is its task's startedAt minus the sentAt it carried, read
// back for a sample of the tasks.
func (d *deployment) startScenario(ctx context.Context) ([]Result, error) {
	n := d.n("start")
	if err := d.startRunner(ctx); err != nil {
		return nil, err
	}
	d.markCPU()
	ph, err := d.startTasks(ctx, n, "s")
	if err != nil {
		return nil, err
	}
	elapsed := ph.end.Sub(ph.first)
	r := Result{Scenario: "start", N: n, Seconds: round2(elapsed.Seconds()), Rate: rate(n, elapsed)}
	d.runnerFigures(&r)
	lat, err := d.sampleStartLatency(ctx, ph)
	if err != nil {
		return nil, err
	}
	r.Sampled = len(lat)
	r.P50, r.P99, r.Max = quantiles(lat)
	if err := d.stopRunner(); err != nil {
		return nil, err
	}
	return []Result{r}, nil
}

// sampleStartLatency reads startedAt of up to cfg.Sample tasks spread
// evenly over the phase. It runs after the measured phase.
func (d *deployment) sampleStartLatency(ctx context.Context, ph *startPhase) ([]float64, error) {
	step := max(1, len(ph.ids)/d.cfg.Sample)
	var idx []int
	for i := 0; i < len(ph.ids); i += step {
		idx = append(idx, i)
	}
	lat := make([]float64, len(idx))
	var next atomic.Int64
	var firstErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				k := int(next.Add(1)) - 1
				if k >= len(idx) {
					return
				}
				i := idx[k]
				t, err := d.store.Get(ctx, ph.ids[i])
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("bench: read back task %s: %w", ph.ids[i], err)
					}
					mu.Unlock()
					return
				}
				lat[k] = float64(t.StartedAt - ph.sentAt[i])
			}
		}()
	}
	wg.Wait()
	return lat, firstErr
}

func (d *deployment) n(scenario string) int {
	if d.cfg.N > 0 {
		return d.cfg.N
	}
	return defaultN(scenario)
}

func rate(n int, elapsed time.Duration) float64 {
	if elapsed <= 0 {
		return 0
	}
	return round1(float64(n) / elapsed.Seconds())
}
