package bench

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tidwall/gjson"
	"github.com/twmb/franz-go/pkg/kgo"
)

// proceedScenario: N direct ProceedTask records on the request topic, each
// closing one waiting task. A proceed is done end to end when its COMPLETED
// notification is out, its continuation has run the saga's next step
// (whose Publish lands on bench-done) and the offsets of both records are
// committed. The tasks are started first, untimed.
func (d *deployment) proceedScenario(ctx context.Context) ([]Result, error) {
	n := d.n("proceed")
	if err := d.startRunner(ctx); err != nil {
		return nil, err
	}
	ph, err := d.startTasks(ctx, n, "p")
	if err != nil {
		return nil, err
	}
	prefix := d.runID + "-p-"

	var (
		mu      sync.Mutex
		notes   = map[string]int{}
		done    = map[string]int{}
		closeMS []float64
		doneMS  []float64
	)
	c, err := d.consume(ctx, func(r *kgo.Record, _ time.Time) {
		id := string(r.Key)
		switch r.Topic {
		case d.cfg.NotificationTopic:
			if !strings.HasPrefix(id, prefix) {
				return
			}
			v := gjson.GetManyBytes(r.Value, "status", "closedAt", "data.sentAt")
			if v[0].String() != "COMPLETED" {
				return
			}
			mu.Lock()
			if notes[id]++; notes[id] == 1 {
				closeMS = append(closeMS, float64(v[1].Int()-v[2].Int()))
			}
			mu.Unlock()
		case DoneTopic:
			v := gjson.GetManyBytes(r.Value, "id", "sentAt")
			id := v[0].String()
			if !strings.HasPrefix(id, prefix) {
				return
			}
			mu.Lock()
			if done[id]++; done[id] == 1 {
				doneMS = append(doneMS, float64(r.Timestamp.UnixMilli()-v[1].Int()))
			}
			mu.Unlock()
		}
	}, d.cfg.NotificationTopic, DoneTopic)
	if err != nil {
		return nil, err
	}
	defer c.stop()

	ctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
	defer cancel()
	d.markCPU()
	first, _, err := d.produce(ctx, n, func(i int, now int64) *kgo.Record {
		return &kgo.Record{Topic: d.cfg.RequestTopic, Key: []byte("pr-" + ph.ids[i]), Value: proceedRecord(ph.ids[i], now)}
	})
	if err != nil {
		return nil, err
	}
	if err := waitFor(ctx, "every notification and continuation effect", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(notes) >= n && len(done) >= n
	}); err != nil {
		return nil, err
	}
	// The continuations went to the request topic too; everything on it
	// now must be committed.
	ends, err := d.endOffsets(ctx, d.cfg.RequestTopic)
	if err != nil {
		return nil, err
	}
	end, err := d.waitCommitted(ctx, d.cfg.RequestTopic, ends)
	if err != nil {
		return nil, err
	}
	elapsed := end.Sub(first)
	r := Result{Scenario: "proceed", N: n, Seconds: round2(elapsed.Seconds()), Rate: rate(n, elapsed)}
	d.runnerFigures(&r)
	mu.Lock()
	r.P50, r.P99, r.Max = quantiles(closeMS)
	dp50, dp99, _ := quantiles(doneMS)
	// A notification or continuation effect seen twice would be a
	// delivery the runner repeated: reported, as timeout reports its
	// duplicate firings.
	dups := 0
	for _, k := range notes {
		dups += k - 1
	}
	for _, k := range done {
		dups += k - 1
	}
	mu.Unlock()
	r.Duplicates = ptr(dups)
	r.DoneP50, r.DoneP99 = ptr(dp50), ptr(dp99)
	if err := d.stopRunner(); err != nil {
		return nil, err
	}
	return []Result{r}, nil
}

// proceedRecord is a direct ProceedTask record, the way an external system
// proceeds a task over Kafka. The proceed data carries sentAt, so the
// notification and the continuation's Publish both bring it back.
func proceedRecord(id string, sentAt int64) []byte {
	v := make([]byte, 0, 300)
	v = append(v, `{"requestMeta":{"requestId":"pr-`...)
	v = append(v, id...)
	v = append(v, `"},"eventMeta":{"action":"ProceedTask","domain":"`+Domain+`","inputElement":"parameters",`+
		`"parameters":{"taskIdPath":"id","enrichPath":"decision"}},"payload":{"parameters":{"id":"`...)
	v = append(v, id...)
	v = append(v, `","sentAt":`...)
	v = strconv.AppendInt(v, sentAt, 10)
	v = append(v, `}}}`...)
	return v
}
