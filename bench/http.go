package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// httpScenario: cfg.Clients concurrent clients each POST /bench/ProceedTask
// and wait for its synchronous answer (the request travels through Kafka
// to the runner and back), over N tasks started first, untimed.
func (d *deployment) httpScenario(ctx context.Context) ([]Result, error) {
	n := d.n("http")
	if err := d.startRunner(ctx); err != nil {
		return nil, err
	}
	if d.httpURL == "" {
		return nil, fmt.Errorf("bench: the http scenario needs the gateway's URL (--http) with --runner=external")
	}
	ph, err := d.startTasks(ctx, n, "h")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
	defer cancel()
	var c *child
	if len(d.children) > 0 {
		c = d.children[0]
	}
	if err := waitHTTPReady(ctx, d.httpURL, c); err != nil {
		return nil, err
	}
	cl := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: d.cfg.Clients}, Timeout: time.Minute}
	url := d.httpURL + HTTPPath
	lat := make([]float64, n)
	var next atomic.Int64
	var failures atomic.Int64
	var firstErr atomic.Pointer[string]
	var wg sync.WaitGroup
	d.markCPU()
	start := time.Now()
	for w := 0; w < d.cfg.Clients; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var body []byte
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				t0 := time.Now()
				body = append(body[:0], `{"taskId":"`...)
				body = append(body, ph.ids[i]...)
				body = append(body, `","data":{"sentAt":`...)
				body = strconv.AppendInt(body, t0.UnixMilli(), 10)
				body = append(body, `}}`...)
				status, err := post(ctx, cl, url, body)
				lat[i] = float64(time.Since(t0).Microseconds()) / 1000
				if err != nil || status != http.StatusOK {
					failures.Add(1)
					msg := fmt.Sprintf("POST %s: status %d: %v", HTTPPath, status, err)
					firstErr.CompareAndSwap(nil, &msg)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("bench: http requests: %w", err)
	}
	r := Result{Scenario: "http", N: n, Clients: d.cfg.Clients, Seconds: round2(elapsed.Seconds()), Rate: rate(n, elapsed)}
	d.runnerFigures(&r)
	r.P50, r.P99, r.Max = quantiles(lat)
	r.P50, r.P99, r.Max = round1(r.P50), round1(r.P99), round1(r.Max)
	r.Errors = ptr(int(failures.Load()))
	if m := firstErr.Load(); m != nil {
		d.logf("%d of %d requests failed; first: %s", failures.Load(), n, *m)
	}
	if err := d.stopRunner(); err != nil {
		return nil, err
	}
	return []Result{r}, nil
}

func post(ctx context.Context, cl *http.Client, url string, body []byte) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := cl.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, err
}
