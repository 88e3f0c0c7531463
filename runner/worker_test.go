package runner

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sagarunner/sagarunner/internal/testutil"
	"github.com/sagarunner/sagarunner/saga"
	"github.com/sagarunner/sagarunner/saga/envelope"
)

// counting is the real engine for everything but Handle, which counts the
// records it sees and answers each with one small record to "approved".
type counting struct {
	engine
	mu   sync.Mutex
	seen map[string]int
}

func (c *counting) Handle(_ context.Context, rec saga.Record) (saga.Output, error) {
	c.mu.Lock()
	c.seen[fmt.Sprintf("%d/%d", rec.Partition, rec.Offset)]++
	c.mu.Unlock()
	return saga.Output{Records: []envelope.Record{{Topic: "approved", Key: rec.Key,
		Value: []byte(fmt.Sprintf(`{"offset": %d}`, rec.Offset))}}}, nil
}

func TestByteBudgetBoundsWhatABacklogHolds(t *testing.T) {
	e := newEnv(t, sharedRedis(t), true)
	const (
		budget = 100 << 10
		value  = 30 << 10
		count  = 120
	)
	// A backlog of large records waits before the runner starts, one of
	// them larger than the whole budget.
	var recs []*kgo.Record
	largest := int64(0)
	for i := range count {
		size := value
		if i == count/2 {
			size = 3 * budget / 2
		}
		rec := &kgo.Record{Topic: "approvals", Key: []byte(fmt.Sprintf("k-%d", i)),
			Value: []byte(strings.Repeat("x", size))}
		recs = append(recs, rec)
		largest = max(largest, polledSize(rec))
	}
	if err := e.cl.ProduceSync(e.ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	cfg := e.config()
	cfg.MaxInFlightBytes = budget
	cfg.BatchSize = 2
	cfg.MaxInFlight = 4
	eng := &counting{engine: e.eng, seen: map[string]int{}}
	r := e.start(cfg, eng)

	testutil.Eventually(t, 20*time.Second, 20*time.Millisecond, func() error {
		if n := len(e.records("approved")); n < count {
			return fmt.Errorf("%d of %d outputs produced", n, count)
		}
		return nil
	})
	for _, rec := range recs {
		e.waitCommitted(cfg.Group, rec)
	}

	eng.mu.Lock()
	for _, rec := range recs {
		if n := eng.seen[fmt.Sprintf("%d/%d", rec.Partition, rec.Offset)]; n != 1 {
			t.Errorf("record %d/%d handled %d times, want once", rec.Partition, rec.Offset, n)
		}
	}
	if len(eng.seen) != count {
		t.Errorf("%d records handled, want %d", len(eng.seen), count)
	}
	eng.mu.Unlock()
	if n := len(e.records("approved")); n != count {
		t.Errorf("%d outputs, want %d", n, count)
	}

	// What a worker holds past the budget: the record taken while just
	// under it, and the outputs of the batches in hand (one per partition).
	out := saga.Output{Records: []envelope.Record{{Topic: "approved", Key: []byte("k-100"),
		Value: []byte(`{"offset": 100}`)}}}
	slack := largest + partitions*int64(cfg.BatchSize)*outputSize(&out)
	testutil.Eventually(t, 5*time.Second, 10*time.Millisecond, func() error {
		if held, _ := r.budget.usage(); held != 0 {
			return fmt.Errorf("%d bytes still held with everything committed", held)
		}
		return nil
	})
	_, peak := r.budget.usage()
	if peak > budget+slack {
		t.Errorf("peak %d bytes held, want at most the budget %d plus %d", peak, budget, slack)
	}
	if peak < budget/2 {
		t.Errorf("peak %d bytes held; the backlog should have filled the budget %d", peak, budget)
	}
	r.budget.mu.Lock()
	rewinds := r.budget.rewinds
	r.budget.mu.Unlock()
	if rewinds == 0 {
		t.Error("no partition was ever held back by the budget")
	}
	t.Logf("peak %d of budget %d, %d rewinds", peak, budget, rewinds)
}

// slowCounting is counting with a step that takes a while, so a backlog
// lasts long enough for the group to rebalance under it.
type slowCounting struct{ *counting }

func (s slowCounting) Handle(ctx context.Context, rec saga.Record) (saga.Output, error) {
	time.Sleep(2 * time.Millisecond)
	return s.counting.Handle(ctx, rec)
}

func TestByteBudgetUnderARebalanceLosesNothingAndLeaksNothing(t *testing.T) {
	e := newEnv(t, sharedRedis(t), true)
	const (
		budget = 64 << 10
		count  = 300
	)
	var recs []*kgo.Record
	for i := range count {
		recs = append(recs, &kgo.Record{Topic: "approvals", Key: []byte(fmt.Sprintf("k-%d", i)),
			Value: []byte(strings.Repeat("y", 10<<10))})
	}
	if err := e.cl.ProduceSync(e.ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cfg := e.config()
	cfg.MaxInFlightBytes = budget
	cfg.BatchSize = 4
	cfg.MaxInFlight = 8
	eng := &counting{engine: e.eng, seen: map[string]int{}}
	a := e.start(cfg, slowCounting{eng})
	testutil.Eventually(t, 10*time.Second, 5*time.Millisecond, func() error {
		a.budget.mu.Lock()
		defer a.budget.mu.Unlock()
		if a.budget.rewinds == 0 {
			return errors.New("no partition held back yet")
		}
		return nil
	})
	// A second member takes partitions away from a while a is starved.
	b := e.start(cfg, slowCounting{eng})

	for _, rec := range recs {
		e.waitCommitted(cfg.Group, rec)
	}
	eng.mu.Lock()
	dup := 0
	for _, rec := range recs {
		switch n := eng.seen[fmt.Sprintf("%d/%d", rec.Partition, rec.Offset)]; {
		case n == 0:
			t.Errorf("record %d/%d never handled", rec.Partition, rec.Offset)
		case n > 1:
			dup++
		}
	}
	eng.mu.Unlock()
	for name, r := range map[string]*Runner{"a": a, "b": b} {
		testutil.Eventually(t, 5*time.Second, 10*time.Millisecond, func() error {
			if held, _ := r.budget.usage(); held != 0 {
				return fmt.Errorf("runner %s still holds %d bytes with everything committed", name, held)
			}
			return nil
		})
		if _, peak := r.budget.usage(); peak > budget+polledSize(recs[0])+partitions*int64(cfg.BatchSize)*1024 {
			t.Errorf("runner %s held %d bytes at its peak, budget %d", name, peak, budget)
		}
	}
	t.Logf("%d records handled twice (replayed after the rebalance)", dup)
}

// BenchmarkHandleBatch measures what the worker adds around the handler
// for one batch of distinct keys, as request ids are.
func BenchmarkHandleBatch(b *testing.B) {
	r := &Runner{cfg: Config{KeyConcurrency: DefaultKeyConcurrency}}
	r.handle = func(context.Context, saga.Record) (saga.Output, error) { return saga.Output{}, nil }
	w := newWorker(r, topicPartition{"t", 0})
	w.keys = make(chan func())
	defer close(w.keys)
	for range r.cfg.KeyConcurrency {
		go func() {
			for fn := range w.keys {
				fn()
			}
		}()
	}
	batch := make([]queued, DefaultBatchSize)
	for i := range batch {
		batch[i].rec = &kgo.Record{Topic: "t", Offset: int64(i), Key: []byte(fmt.Sprintf("request-%d", i%(DefaultBatchSize/2))),
			Value: []byte(`{}`), Headers: []kgo.RecordHeader{{Key: "traceparent", Value: []byte("00-x")}}}
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := w.handleBatch(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkProduceAll measures the runner's side of producing a batch's
// outputs to an in-process broker.
func BenchmarkProduceAll(b *testing.B) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "out"))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ProducerLinger(0))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	r := &Runner{cl: cl}
	recs := make([]envelope.Record, DefaultBatchSize)
	for i := range recs {
		recs[i] = envelope.Record{Topic: "out", Key: []byte(fmt.Sprintf("request-%d", i)), Value: []byte(`{"status": "COMPLETED"}`),
			Headers: []envelope.Header{{Key: "traceparent", Value: []byte("00-x")}}}
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		for _, err := range r.produceAll(ctx, recs) {
			if err != nil {
				b.Fatal(err)
			}
		}
	}
}
