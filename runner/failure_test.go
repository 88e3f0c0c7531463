package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"
	"github.com/tidwall/gjson"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sagarunner/sagarunner/internal/redistest"
	"github.com/sagarunner/sagarunner/internal/testutil"
	"github.com/sagarunner/sagarunner/metrics"
	"github.com/sagarunner/sagarunner/saga"
	"github.com/sagarunner/sagarunner/saga/envelope"
	"github.com/sagarunner/sagarunner/statemanager"
	"github.com/sagarunner/sagarunner/timers"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want Class
	}{
		{"redis down", fmt.Errorf("%w: %w", saga.ErrRetry, &net.OpError{Op: "dial", Err: errors.New("connection refused")}), Transient},
		{"redis pool timeout", fmt.Errorf("start: %w", redis.ErrPoolTimeout), Transient},
		{"redis loading", fmt.Errorf("x: %w", redisReply("LOADING Redis is loading the dataset in memory")), Transient},
		{"redis restarted without its scripts", fmt.Errorf("x: %w", redisReply("NOSCRIPT No matching script. Please use EVAL.")), Transient},
		{"redis failover", redisReply("READONLY You can't write against a read only replica."), Transient},
		{"redis cluster moved", redisReply("MOVED 3999 127.0.0.1:6381"), Transient},
		{"connection closed", fmt.Errorf("read: %w", io.EOF), Transient},
		{"store call timed out", fmt.Errorf("close: %w", context.DeadlineExceeded), Transient},
		{"previous close not acked", fmt.Errorf("%w: %q", statemanager.ErrClosePending, "t-1"), Transient},
		{"broker leader moved", fmt.Errorf("produce: %w", kerr.NotLeaderForPartition), Transient},
		{"produce timed out", kgo.ErrRecordTimeout, Transient},
		{"marked permanent", fmt.Errorf("%w: %w: domain %q refused", saga.ErrRetry, saga.ErrPermanent, "a{b}"), Permanent},
		{"panic", &PanicError{Value: "boom"}, Permanent},
		{"record too large", kerr.MessageTooLarge, Permanent},
		{"batch too large", kerr.RecordListTooLarge, Permanent},
		{"invalid topic", kerr.InvalidTopicException, Permanent},
		{"topic missing after the client's retries", kerr.UnknownTopicOrPartition, Permanent},
		{"timed out on a missing topic", fmt.Errorf("%w, last err: %w", kgo.ErrRecordTimeout, kerr.UnknownTopicOrPartition), Permanent},
		{"not authorized", kerr.TopicAuthorizationFailed, Permanent},
		{"invalid record", kerr.InvalidRecord, Permanent},
		{"engine retry marker alone", fmt.Errorf("%w: step: %w", saga.ErrRetry, errors.New("lua script error")), Unknown},
		{"anything else", errors.New("something odd"), Unknown},
		{"redis refuses the command", redisReply("ERR wrong number of arguments"), Unknown},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Classify(tc.err); got != tc.want {
				t.Errorf("Classify(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

// redisReply is an error reply as go-redis returns it.
type redisReply string

func (e redisReply) Error() string { return string(e) }
func (redisReply) RedisError()     {}

// scripted is the real engine with poison behaviour chosen by the record's
// value: "boom" panics, "permanent" fails permanently, "unknown-N" fails
// with an unclassified error on its first N tries, "bloat" adds an output
// larger than any broker takes, "hang" blocks until released.
type scripted struct {
	engine
	mu      sync.Mutex
	tries   map[string]int
	release chan struct{}
}

func newScripted(eng engine) *scripted {
	return &scripted{engine: eng, tries: map[string]int{}, release: make(chan struct{})}
}

func (s *scripted) Handle(ctx context.Context, rec saga.Record) (saga.Output, error) {
	v := string(rec.Value)
	pos := fmt.Sprintf("%s/%d/%d", rec.Topic, rec.Partition, rec.Offset)
	s.mu.Lock()
	s.tries[pos]++
	n := s.tries[pos]
	s.mu.Unlock()
	switch {
	case strings.Contains(v, "boom"):
		panic("step exploded")
	case strings.Contains(v, "permanent"):
		return saga.Output{}, fmt.Errorf("%w: %w: domain %q refused by the store", saga.ErrRetry, saga.ErrPermanent, "a{b}")
	case strings.Contains(v, "outage-"):
		// outage-N: N tries fail as if Redis were down, then the same
		// number of tries as "unknown-" fail with an unknown error.
		var down, fails int
		fmt.Sscanf(v[strings.Index(v, "outage-"):], "outage-%d-unknown-%d", &down, &fails)
		if n <= down {
			return saga.Output{}, fmt.Errorf("%w: try %d: %w", saga.ErrRetry, n, syscall.ECONNREFUSED)
		}
		if n <= down+fails {
			return saga.Output{}, fmt.Errorf("%w: try %d: lua script went wrong", saga.ErrRetry, n)
		}
	case strings.Contains(v, "unknown-"):
		var fails int
		fmt.Sscanf(v[strings.Index(v, "unknown-"):], "unknown-%d", &fails)
		if n <= fails {
			return saga.Output{}, fmt.Errorf("%w: try %d: lua script went wrong", saga.ErrRetry, n)
		}
	case strings.Contains(v, "hang"):
		select {
		case <-s.release:
		case <-ctx.Done():
			return saga.Output{}, ctx.Err()
		}
	}
	out, err := s.engine.Handle(ctx, rec)
	if err == nil && strings.Contains(v, "bloat") {
		out.Records = append(out.Records, envelope.Record{Topic: "approved", Key: rec.Key,
			Value: []byte(`{"big": "` + strings.Repeat("x", 2<<20) + `"}`)})
	}
	return out, err
}

func (s *scripted) triesAt(rec *kgo.Record) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tries[fmt.Sprintf("%s/%d/%d", rec.Topic, rec.Partition, rec.Offset)]
}

// deadLettersKeyed returns the dead letters keyed key.
func (e *env) deadLettersKeyed(key string) []*kgo.Record {
	var out []*kgo.Record
	for _, r := range e.records(deadTopic) {
		if string(r.Key) == key {
			out = append(out, r)
		}
	}
	return out
}

// TestPoisonIsDeadLetteredAndThePartitionMovesOn: for each poison class a
// record is dead-lettered with its coordinates and reason, and the record
// behind it on the same partition (same key) is handled within seconds.
func TestPoisonIsDeadLetteredAndThePartitionMovesOn(t *testing.T) {
	tests := []struct {
		name       string
		topic      string
		value      func(key string) string
		wantCode   string
		wantReason string
		wantTarget string
		wantTries  int // of the poison record; 0: not checked
	}{
		{name: "reply to a topic that does not exist", topic: requestTopic,
			value: func(key string) string {
				return fmt.Sprintf(`{"requestMeta": {"requestId": %q, "replyTo": "no-such-topic"},
					"eventMeta": {"action": "StartTask", "domain": "workflow", "inputElement": "parameters",
					              "parameters": {"taskIdPath": "id"}},
					"payload": {"parameters": {"id": "%s-task"}}}`, key, key)
			},
			wantCode: DeadUndeliverable, wantReason: "UNKNOWN_TOPIC_OR_PARTITION", wantTarget: "no-such-topic"},
		{name: "output larger than MaxRecordBytes", topic: "approvals",
			value:    func(key string) string { return fmt.Sprintf(`{"id": "%s-task", "note": "bloat"}`, key) },
			wantCode: saga.DeadTooLarge, wantReason: "exceeds the limit", wantTarget: "approved"},
		{name: "unknown error past MaxAttempts", topic: "approvals",
			value:    func(key string) string { return `{"id": "x", "note": "unknown-100"}` },
			wantCode: DeadAttempts, wantReason: "lua script went wrong", wantTries: 3},
		{name: "permanent error", topic: "approvals",
			value:    func(key string) string { return `{"id": "x", "note": "permanent"}` },
			wantCode: DeadPermanent, wantReason: "refused by the store", wantTries: 1},
		{name: "panic", topic: "approvals",
			value:    func(key string) string { return `{"id": "boom"}` },
			wantCode: saga.DeadPanic, wantReason: "step exploded", wantTries: 1},
	}
	e := newEnv(t, sharedRedis(t), true)
	cfg := e.config()
	cfg.MaxAttempts = 3
	eng := newScripted(e.eng)
	e.start(cfg, eng)
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key := fmt.Sprintf("poison-class-%d", i)
			bad := e.produce(tc.topic, key, tc.value(key))
			goodValue := fmt.Sprintf(`{"id": "behind-%d"}`, i)
			if tc.topic == requestTopic {
				goodValue = fmt.Sprintf(`{"sagaMeta": {"saga": "approval"}, "payload": {"parameters": {"id": "behind-%d"}}}`, i)
			}
			good := e.produce(tc.topic, key, goodValue)
			if bad.Partition != good.Partition {
				t.Fatalf("records on partitions %d and %d", bad.Partition, good.Partition)
			}
			began := time.Now()
			e.waitStatus(fmt.Sprintf("behind-%d", i), statemanager.StatusWaiting)
			if took := time.Since(began); took > 8*time.Second {
				t.Errorf("the record behind the poison waited %v", took)
			}
			e.waitCommitted(cfg.Group, good)

			var dead []*kgo.Record
			testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
				if dead = e.deadLettersKeyed(key); len(dead) != 1 {
					return fmt.Errorf("%d dead letters keyed %s, want 1", len(dead), key)
				}
				return nil
			})
			v := dead[0].Value
			if got := gjson.GetBytes(v, "code").String(); got != tc.wantCode {
				t.Errorf("code %q, want %q: %s", got, tc.wantCode, cut(string(v), 500))
			}
			if got := gjson.GetBytes(v, "error").String(); !strings.Contains(got, tc.wantReason) {
				t.Errorf("reason %q does not mention %q", got, tc.wantReason)
			}
			if got := gjson.GetBytes(v, "target").String(); got != tc.wantTarget {
				t.Errorf("target %q, want %q", got, tc.wantTarget)
			}
			if gjson.GetBytes(v, "topic").String() != bad.Topic || gjson.GetBytes(v, "partition").Int() != int64(bad.Partition) ||
				gjson.GetBytes(v, "offset").Int() != bad.Offset {
				t.Errorf("dead letter coordinates %s/%d/%d, want %s/%d/%d", gjson.GetBytes(v, "topic"),
					gjson.GetBytes(v, "partition").Int(), gjson.GetBytes(v, "offset").Int(), bad.Topic, bad.Partition, bad.Offset)
			}
			if n := len(dead[0].Key) + len(v); n > saga.DefaultMaxRecordBytes {
				t.Errorf("dead letter of %d bytes", n)
			}
			if tc.wantTries > 0 {
				if got := eng.triesAt(bad); got != tc.wantTries {
					t.Errorf("poison tried %d times, want %d", got, tc.wantTries)
				}
			}
		})
	}
}

// TestUnknownErrorsBelowMaxAttemptsAreRetried: an error that passes after
// fewer tries than MaxAttempts costs retries, not the record.
func TestUnknownErrorsBelowMaxAttemptsAreRetried(t *testing.T) {
	e := newEnv(t, sharedRedis(t), true)
	cfg := e.config()
	cfg.MaxAttempts = 4
	eng := newScripted(e.eng)
	m := metrics.New(prometheus.NewRegistry())
	e.start(cfg, eng, WithMetrics(m))
	rec := e.produce("approvals", "passes", `{"id": "passes-at-last", "note": "unknown-3"}`)
	e.waitStatus("passes-at-last", statemanager.StatusWaiting)
	e.waitCommitted(cfg.Group, rec)
	if got := eng.triesAt(rec); got != 4 {
		t.Errorf("tried %d times, want 4", got)
	}
	if n := len(e.deadLettersKeyed("passes")); n != 0 {
		t.Errorf("%d dead letters for a record that passed", n)
	}
	if got := gauge(t, m.Retries.WithLabelValues("unknown")); got != 3 {
		t.Errorf("retries{class=unknown} = %v, want 3", got)
	}
}

// TestTransientTriesDoNotSpendAttempts: an outage longer than MaxAttempts
// tries, followed by unknown errors short of MaxAttempts, still ends with the
// record handled: only unknown errors count against it.
func TestTransientTriesDoNotSpendAttempts(t *testing.T) {
	e := newEnv(t, sharedRedis(t), true)
	cfg := e.config()
	cfg.MaxAttempts = 3
	cfg.Backoff.Max = 20 * time.Millisecond
	eng := newScripted(e.eng)
	e.start(cfg, eng)
	rec := e.produce("approvals", "after-outage", `{"id": "after-outage", "note": "outage-5-unknown-2"}`)
	e.waitStatus("after-outage", statemanager.StatusWaiting)
	e.waitCommitted(cfg.Group, rec)
	if got := eng.triesAt(rec); got != 8 {
		t.Errorf("tried %d times, want 8 (5 transient, 2 unknown, 1 success)", got)
	}
	if n := len(e.deadLettersKeyed("after-outage")); n != 0 {
		t.Errorf("%d dead letters for a record whose unknown errors stayed under MaxAttempts", n)
	}
}

// TestRedisOutageRetriesWithoutDeadLetters: a transient error is retried for
// as long as it lasts, far past MaxAttempts, and Readiness names the
// partition meanwhile.
func TestRedisOutageRetriesWithoutDeadLetters(t *testing.T) {
	srv := redistest.StartOwn(t)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr, DialTimeout: 200 * time.Millisecond,
		ReadTimeout: 200 * time.Millisecond, MaxRetries: 1})
	t.Cleanup(func() { client.Close() })
	e := newEnv(t, client, true)
	cfg := e.config()
	cfg.MaxAttempts = 2
	eng := newScripted(e.eng)
	r := e.start(cfg, eng)

	srv.Stop()
	rec := e.produce("approvals", "outage", `{"id": "through-outage"}`)
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
		if n := eng.triesAt(rec); n < 4 {
			return fmt.Errorf("%d tries, want at least 4 (twice MaxAttempts)", n)
		}
		return nil
	})
	err := r.Readiness()
	if !errors.Is(err, ErrStuck) || !strings.Contains(err.Error(), fmt.Sprintf("approvals/%d retrying", rec.Partition)) {
		t.Errorf("Readiness during the outage = %v, want approvals/%d retrying", err, rec.Partition)
	}
	restartRedis(t, srv.Addr)
	e.waitStatus("through-outage", statemanager.StatusWaiting)
	e.waitCommitted(cfg.Group, rec)
	if n := len(e.deadLettersKeyed("outage")); n != 0 {
		t.Errorf("%d dead letters for a record that met only a Redis outage", n)
	}
	testutil.Eventually(t, 5*time.Second, 10*time.Millisecond, r.Readiness)
}

// TestReadinessReportsAStuckPartition: a record whose step does not return
// ages past StuckAfter; Readiness names its partition, the gauges show its
// age and lag, and all clears once it moves.
func TestReadinessReportsAStuckPartition(t *testing.T) {
	e := newEnv(t, sharedRedis(t), true)
	cfg := e.config()
	cfg.StuckAfter = 300 * time.Millisecond
	eng := newScripted(e.eng)
	m := metrics.New(prometheus.NewRegistry())
	r := e.start(cfg, eng, WithMetrics(m))
	if err := r.Readiness(); err != nil {
		t.Fatalf("Readiness before any record = %v", err)
	}

	rec := e.produce("approvals", "stuck", `{"id": "stuck-task", "note": "hang"}`)
	e.produce("approvals", "stuck", `{"id": "behind-stuck"}`)
	part := fmt.Sprint(rec.Partition)
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
		err := r.Readiness()
		if !errors.Is(err, ErrStuck) || !strings.Contains(err.Error(), "approvals/"+part+" oldest uncommitted") {
			return fmt.Errorf("Readiness = %v, want approvals/%s stuck", err, part)
		}
		return nil
	})
	// The gauges are set at each commit interval.
	testutil.Eventually(t, 5*time.Second, 10*time.Millisecond, func() error {
		if age := gauge(t, m.OldestUncommitted.WithLabelValues("approvals", part)); age < 0.3 {
			return fmt.Errorf("oldest uncommitted age %vs, want past StuckAfter", age)
		}
		if lag := gauge(t, m.ConsumerLag.WithLabelValues("approvals", part)); lag != 2 {
			return fmt.Errorf("lag %v, want 2: both records are polled but not committed", lag)
		}
		return nil
	})

	close(eng.release)
	e.waitStatus("behind-stuck", statemanager.StatusWaiting)
	testutil.Eventually(t, 5*time.Second, 10*time.Millisecond, r.Readiness)
	testutil.Eventually(t, 5*time.Second, 10*time.Millisecond, func() error {
		if lag := gauge(t, m.ConsumerLag.WithLabelValues("approvals", part)); lag != 0 {
			return fmt.Errorf("lag %v after the partition moved", lag)
		}
		return nil
	})
}

func gauge(t *testing.T, c prometheus.Metric) float64 {
	t.Helper()
	var out dto.Metric
	if err := c.Write(&out); err != nil {
		t.Fatal(err)
	}
	if out.Counter != nil {
		return out.Counter.GetValue()
	}
	return out.Gauge.GetValue()
}

// TestDeadlineOutputThatCannotBeProducedIsDeadLettered: a deadline's output
// to a topic that does not exist becomes a dead letter naming the task and
// the target; the rest of the firing is produced once and acked.
func TestDeadlineOutputThatCannotBeProducedIsDeadLettered(t *testing.T) {
	e := newEnv(t, sharedRedis(t), true)
	r := e.start(e.config(), e.eng)
	out := saga.Output{Records: []envelope.Record{
		{Topic: "no-such-topic", Key: []byte("req-1"), Value: []byte(`{"continuation": true}`)},
		{Topic: notifyTopic, Key: []byte("task-1"), Value: []byte(`{"taskId": "task-1", "status": "TIMEOUT"}`)},
	}}
	rest, err := r.emit(e.ctx, timers.Key{Domain: domain, Shard: 2}, 1, out)
	if err != nil || len(rest.Records) != 0 {
		t.Fatalf("emit = %d records left, %v; want all done", len(rest.Records), err)
	}
	dead := e.waitRecords(deadTopic, "taskId", "task-1", 1)
	v := dead[0].Value
	for path, want := range map[string]string{"code": DeadUndeliverable, "target": "no-such-topic", "domain": domain,
		"partition": "2", "offset": "-1", "value.continuation": "true"} {
		if got := gjson.GetBytes(v, path).String(); got != want {
			t.Errorf("dead letter %s = %q, want %q: %s", path, got, want, v)
		}
	}
	e.waitRecords(notifyTopic, "taskId", "task-1", 1)
}
