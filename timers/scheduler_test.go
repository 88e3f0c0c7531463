package timers_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tidwall/gjson"

	"github.com/sagarunner/sagarunner/actions"
	"github.com/sagarunner/sagarunner/clock"
	"github.com/sagarunner/sagarunner/internal/redistest"
	"github.com/sagarunner/sagarunner/internal/testutil"
	"github.com/sagarunner/sagarunner/saga"
	"github.com/sagarunner/sagarunner/saga/envelope"
	"github.com/sagarunner/sagarunner/statemanager"
	"github.com/sagarunner/sagarunner/timers"
)

const (
	requestTopic = "requests"
	notifyTopic  = "notifications"
	shards       = 4
)

var start = time.UnixMilli(1_763_800_000_000)

// quiet drops the loops' retry warnings, which the tests provoke on purpose.
var quiet = slog.New(slog.DiscardHandler)

const approvalSaga = `
saga: approval
version: 1
trigger: {topic: approvals}
steps:
  - id: approve
    action: StartTask
    domain: workflow
    inputElement: parameters
    parameters: {taskIdPath: id, timeout: 60000}
    next: {SUCCESS: done, TIMEOUT: escalate}
  - id: escalate
    action: Publish
    parameters: {topic: escalations}
  - id: done
    action: Finish
`

// stores resolves every domain to a RedisStore on one real server, with
// its NextDue reads counted.
type stores struct {
	client redis.UniversalClient
	mu     sync.Mutex
	m      map[string]*countingStore
	nexts  atomic.Int64
	// deaf makes the stores' watchers hear nothing: every wake-up lost.
	deaf bool
}

// countingStore is the RedisStore with its NextDue calls counted; every
// other method, and so every optional interface, is the store's own.
type countingStore struct {
	*statemanager.RedisStore
	n    *atomic.Int64
	deaf bool
}

func (c *countingStore) WatchDeadlines(fn func(shard int, deadline int64)) (stop func()) {
	if c.deaf {
		return func() {}
	}
	return c.RedisStore.WatchDeadlines(fn)
}

func (c *countingStore) NextDue(ctx context.Context, shard int) (statemanager.NextDue, error) {
	c.n.Add(1)
	return c.RedisStore.NextDue(ctx, shard)
}

func (s *stores) Store(domain string) (statemanager.Store, error) {
	return s.redis(domain)
}

func (s *stores) redis(domain string) (*countingStore, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.m[domain]; ok {
		return st, nil
	}
	st, err := statemanager.NewRedisStore(s.client, domain, statemanager.RedisConfig{Shards: shards})
	if err != nil {
		return nil, err
	}
	c := &countingStore{RedisStore: st, n: &s.nexts, deaf: s.deaf}
	s.m[domain] = c
	return c, nil
}

// fireCall is one FireDue call as the engine saw it.
type fireCall struct {
	domain string
	shard  int
	now    time.Time
	fired  int
}

// recordingEngine is the real engine with its FireDue calls recorded, so a
// test can tell "not fired yet" from "not polled yet" on a virtual clock.
type recordingEngine struct {
	*saga.Engine
	clock  clock.Clock
	mu     sync.Mutex
	calls  []fireCall
	sweeps atomic.Int64
}

func (e *recordingEngine) ExpireEarly(ctx context.Context, domain string, shard, limit int) (saga.Output, int, error) {
	e.sweeps.Add(1)
	return e.Engine.ExpireEarly(ctx, domain, shard, limit)
}

func (e *recordingEngine) FireDue(ctx context.Context, domain string, shard, limit int) (saga.Output, int, error) {
	now := e.clock.Now()
	out, n, err := e.Engine.FireDue(ctx, domain, shard, limit)
	e.mu.Lock()
	e.calls = append(e.calls, fireCall{domain, shard, now, n})
	e.mu.Unlock()
	return out, n, err
}

func (e *recordingEngine) callsSnapshot() []fireCall {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.calls)
}

// sink is the Emitter under test: it keeps what a runner would produce and
// acks the closes as a runner does once they are durable.
type sink struct {
	eng  *saga.Engine
	mu   sync.Mutex
	recs []envelope.Record
}

func (s *sink) emit(ctx context.Context, _ timers.Key, _ int, out saga.Output) (saga.Output, error) {
	s.mu.Lock()
	s.recs = append(s.recs, out.Records...)
	s.mu.Unlock()
	if err := s.eng.Ack(ctx, out.Acks); err != nil {
		out.Records = nil
		return out, err
	}
	return saga.Output{}, nil
}

func (s *sink) on(topic string) []envelope.Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []envelope.Record
	for _, r := range s.recs {
		if r.Topic == topic {
			out = append(out, r)
		}
	}
	return out
}

// countingClock is the fake clock with its After calls counted. A loop calls
// After exactly when it starts waiting, so once the count reaches a value the
// test knows every loop has finished its poll and is parked; advancing the
// clock before that would race with the loop registering its wait.
type countingClock struct {
	*clock.Fake
	mu     sync.Mutex
	afters int
}

func (c *countingClock) After(d time.Duration) <-chan time.Time {
	ch := c.Fake.After(d)
	c.mu.Lock()
	c.afters++
	c.mu.Unlock()
	return ch
}

// waitParked waits until After has been called n times in all.
func (c *countingClock) waitParked(t *testing.T, n int) {
	t.Helper()
	testutil.Eventually(t, 5*time.Second, 2*time.Millisecond, func() error {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.afters < n {
			return fmt.Errorf("%d waits, want %d", c.afters, n)
		}
		return nil
	})
}

type latenessLog struct {
	mu      sync.Mutex
	ds      []time.Duration
	domains []string
}

func (l *latenessLog) Lateness(domain string, d time.Duration) {
	l.mu.Lock()
	l.ds = append(l.ds, d)
	l.domains = append(l.domains, domain)
	l.mu.Unlock()
}

func (l *latenessLog) all() []time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.ds)
}

func (l *latenessLog) allDomains() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.domains)
}

type fixture struct {
	t      *testing.T
	ctx    context.Context
	clock  *clock.Fake
	clk    *countingClock
	eng    *recordingEngine
	stores *stores
	sink   *sink
	late   *latenessLog
	sched  *timers.Scheduler
}

func newFixture(t *testing.T, cfg timers.Config) *fixture {
	t.Helper()
	_, client := redistest.Start(t)
	return newFixtureOn(t, cfg, client, approvalSaga, nil)
}

// newFixtureOn is newFixture with the saga, the Redis client and the clock
// given; a nil clk is a virtual clock at start.
func newFixtureOn(t *testing.T, cfg timers.Config, client redis.UniversalClient, sagaYAML string, clk clock.Clock) *fixture {
	t.Helper()
	set, err := saga.LoadBytes(actions.Default, "saga.yaml", []byte(sagaYAML))
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	f := &fixture{t: t, ctx: context.Background(),
		stores: &stores{client: client, m: map[string]*countingStore{}}, late: &latenessLog{}}
	if clk == nil {
		f.clock = clock.NewFake(start)
		f.clk = &countingClock{Fake: f.clock}
		clk = f.clk
	}
	eng, err := saga.NewEngine(set, saga.Config{
		Topics: actions.Topics{Continuations: requestTopic, Notifications: notifyTopic},
		Stores: f.stores,
		Clock:  clk,
	})
	if err != nil {
		t.Fatalf("engine: %v", err)
	}
	f.eng = &recordingEngine{Engine: eng, clock: clk}
	f.sink = &sink{eng: eng}
	f.sched, err = timers.New(cfg, f.eng, f.stores, f.sink.emit,
		timers.WithClock(clk), timers.WithObserver(f.late), timers.WithLogger(quiet))
	if err != nil {
		t.Fatalf("timers.New: %v", err)
	}
	t.Cleanup(f.sched.RevokeAll)
	return f
}

// startTask starts an approval instance whose task id is id.
func (f *fixture) startTask(id string) {
	f.t.Helper()
	f.startOn("approvals", id)
}

// startOn starts an instance of the saga triggered by topic whose task id
// is id.
func (f *fixture) startOn(topic, id string) {
	f.t.Helper()
	out, err := f.eng.Handle(f.ctx, saga.Record{Topic: topic, Key: []byte(id),
		Value: []byte(fmt.Sprintf(`{"id": %q}`, id))})
	if err != nil {
		f.t.Fatalf("handle: %v", err)
	}
	if out.Started != 1 {
		f.t.Fatalf("started %d tasks, want 1", out.Started)
	}
}

func (f *fixture) task(id string) *statemanager.Task {
	f.t.Helper()
	st, _ := f.stores.Store("workflow")
	tk, err := st.Get(f.ctx, id)
	if err != nil {
		f.t.Fatalf("get %s: %v", id, err)
	}
	return tk
}

func TestFireDueOnVirtualClock(t *testing.T) {
	f := newFixture(t, timers.Config{})
	f.startTask("product-1")
	f.sched.Assign(f.ctx, 0, 1)
	// Every loop found nothing due and sleeps until its shard's next
	// deadline, at most MaxIdle.
	f.clk.waitParked(t, shards)

	// One millisecond before the deadline: every loop looked again (at
	// its cap), nothing fired.
	f.clock.Advance(60*time.Second - time.Millisecond)
	f.clk.waitParked(t, 2*shards)
	for _, c := range f.eng.callsSnapshot() {
		if c.fired > 0 {
			t.Fatalf("fired %d tasks at %v, before the deadline", c.fired, c.now.Sub(start))
		}
	}
	if got := f.task("product-1").Status; got != statemanager.StatusWaiting {
		t.Fatalf("status %s before the deadline, want WAITING", got)
	}

	// The loop of its shard planned to wake at the deadline itself: fired
	// once, with the notification and the continuation that routes the
	// saga to its TIMEOUT branch, not late at all on the virtual clock.
	f.clock.Advance(time.Millisecond)
	testutil.Eventually(t, 5*time.Second, 5*time.Millisecond, func() error {
		if n := len(f.sink.on(notifyTopic)); n != 1 {
			return fmt.Errorf("%d notifications", n)
		}
		return nil
	})
	note := f.sink.on(notifyTopic)[0]
	if got := gjson.GetBytes(note.Value, "status").String(); got != statemanager.StatusTimeout {
		t.Errorf("notification status %q, want TIMEOUT", got)
	}
	if got := string(note.Key); got != "product-1" {
		t.Errorf("notification key %q, want the task id", got)
	}
	conts := f.sink.on(requestTopic)
	if len(conts) != 1 || gjson.GetBytes(conts[0].Value, "result.status").String() != envelope.StatusTimeout {
		t.Fatalf("continuations %v, want one with result TIMEOUT", conts)
	}
	if got := f.task("product-1").Status; got != statemanager.StatusTimeout {
		t.Errorf("status %s after the deadline, want TIMEOUT", got)
	}
	testutil.Eventually(t, time.Second, 5*time.Millisecond, func() error {
		if l := f.late.all(); len(l) != 1 || l[0] != 0 {
			return fmt.Errorf("lateness %v, want one observation of 0s", l)
		}
		return nil
	})
	if ds := f.late.allDomains(); len(ds) != 1 || ds[0] != "workflow" {
		t.Errorf("lateness observed for domains %q, want the task's domain workflow", ds)
	}

	// A shard that fired polls again after PollInterval; later looks do
	// not fire it again.
	f.clk.waitParked(t, 2*shards+1)
	f.clock.Advance(time.Second)
	f.clk.waitParked(t, 3*shards+1)
	if n := len(f.sink.on(notifyTopic)); n != 1 {
		t.Errorf("%d notifications after another poll, want 1", n)
	}
}

// TestIdleLoopsReadLittle: a loop with nothing due reads its shard once per
// MaxIdle, where it polled every PollInterval, and sweeps early answers
// only when one is parked.
func TestIdleLoopsReadLittle(t *testing.T) {
	f := newFixture(t, timers.Config{})
	f.startTask("far") // due in a minute
	f.sched.Assign(f.ctx, 0, 1)
	f.clk.waitParked(t, shards)
	const idle = 20 // virtual seconds
	for i := 1; i <= idle; i++ {
		f.clock.Advance(timers.DefaultMaxIdle)
		f.clk.waitParked(t, (i+1)*shards)
	}
	fires, nexts, sweeps := len(f.eng.callsSnapshot()), f.stores.nexts.Load(), f.eng.sweeps.Load()
	t.Logf("%d shards idle for %ds: %d FireDue, %d NextDue, %d early sweeps; polling every %v made %d FireDue",
		shards, idle, fires, nexts, sweeps, timers.DefaultPollInterval, shards*idle*int(time.Second/timers.DefaultPollInterval))
	if fires != shards {
		t.Errorf("%d FireDue calls, want %d: one per loop when it started", fires, shards)
	}
	if want := int64(shards * (idle + 1)); nexts != want {
		t.Errorf("%d NextDue calls, want %d: one per loop and MaxIdle", nexts, want)
	}
	if sweeps != shards {
		t.Errorf("%d early sweeps, want %d: one per loop when it started, none while nothing is parked", sweeps, shards)
	}
	if got := f.task("far").Status; got != statemanager.StatusWaiting {
		t.Errorf("status %s, want WAITING", got)
	}
}

// TestShardThatFiredKeepsPolling: a shard that fired is polled every
// PollInterval until ten polls in a row find nothing (deadlines a few
// intervals apart cost what polling did), then sleeps again.
func TestShardThatFiredKeepsPolling(t *testing.T) {
	f := newFixture(t, timers.Config{})
	f.startTask("product-5")
	shard := statemanager.ShardOf("product-5", shards)
	f.sched.Assign(f.ctx, 0, 1)
	f.clk.waitParked(t, shards)
	f.clock.Advance(time.Minute)
	f.clk.waitParked(t, 2*shards)
	const linger = 10
	for i := 1; i <= linger; i++ {
		f.clock.Advance(timers.DefaultPollInterval)
		f.clk.waitParked(t, 2*shards+i)
	}
	var fires, fired int
	for _, c := range f.eng.callsSnapshot() {
		if c.shard == shard {
			fires++
			fired += c.fired
		}
	}
	if fired != 1 || fires != 1+1+linger {
		t.Errorf("shard %d: %d FireDue calls firing %d, want %d firing 1: the first, the one that fired, %d that found nothing",
			shard, fires, fired, 2+linger, linger)
	}
	// Every loop read its shard when it started; at the cap the others
	// read theirs again, while the one that fired knew its deadline had
	// come and fired without reading, and read once it went quiet.
	if n, want := f.stores.nexts.Load(), int64(2*shards); n != want {
		t.Errorf("%d NextDue calls, want %d", n, want)
	}
}

// quickSaga starts tasks due two seconds after they start: sooner than the
// loops' idle cap in the tests below.
const quickSaga = `
saga: quick
version: 1
trigger: {topic: quick}
steps:
  - id: approve
    action: StartTask
    domain: workflow
    inputElement: parameters
    parameters: {taskIdPath: id, timeout: 2000}
    next: {SUCCESS: done, TIMEOUT: escalate}
  - id: escalate
    action: Publish
    parameters: {topic: escalations}
  - id: done
    action: Finish
`

// TestWakeUps: a loop sleeping past a new nearer deadline is woken by
// WakeTimers, which the start and deadline paths call once they succeeded,
// and fires it on time; without the wake-up it fires it at its cap.
func TestWakeUps(t *testing.T) {
	const maxIdle = 5 * time.Second
	tests := []struct {
		name     string
		sagaYAML string
		// act makes a task due at the returned deadline after the loops
		// went to sleep, and reports whether it woke them.
		act      func(f *fixture) (time.Time, bool)
		wantLate time.Duration
		deaf     bool // every wake-up is lost
	}{
		{name: "start with a near deadline", sagaYAML: quickSaga, act: func(f *fixture) (time.Time, bool) {
			f.startOn("quick", "q-1")
			return f.wake("q-1"), true
		}},
		{name: "deadline moved earlier", sagaYAML: approvalSaga, act: func(f *fixture) (time.Time, bool) {
			f.moveDeadline("m-1", start.Add(3*time.Second))
			return f.wake("m-1"), true
		}},
		{name: "deadline moved into the past", sagaYAML: approvalSaga, act: func(f *fixture) (time.Time, bool) {
			f.moveDeadline("m-1", start.Add(-time.Hour))
			f.wake("m-1")
			// No sooner than PollInterval after the loop's last FireDue.
			return start.Add(timers.DefaultPollInterval), true
		}, wantLate: time.Hour + timers.DefaultPollInterval},
		{name: "lost wake-up", sagaYAML: quickSaga, deaf: true, act: func(f *fixture) (time.Time, bool) {
			f.startOn("quick", "q-2")
			return f.wake("q-2"), false
		}, wantLate: maxIdle - 2*time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, client := redistest.Start(t)
			f := newFixtureOn(t, timers.Config{MaxIdle: maxIdle}, client, tc.sagaYAML, nil)
			f.stores.deaf = tc.deaf
			if tc.sagaYAML == approvalSaga {
				f.startTask("m-1") // due in a minute, past the cap
			}
			f.sched.Assign(f.ctx, 0, 1)
			f.clk.waitParked(t, shards)
			due, woke := tc.act(f)
			if woke {
				// The loop of the task's shard planned again, for the
				// deadline, without reading the shard.
				f.clk.waitParked(t, shards+1)
			}
			f.clock.Set(later(due, f.clock.Now()))
			if !woke {
				// No loop wakes at the deadline: nothing polls.
				if n := len(f.eng.callsSnapshot()); n != shards {
					t.Fatalf("%d FireDue calls at the deadline, want %d", n, shards)
				}
				f.clock.Set(start.Add(maxIdle))
			}
			testutil.Eventually(t, 5*time.Second, 5*time.Millisecond, func() error {
				if n := len(f.sink.on(notifyTopic)); n != 1 {
					return fmt.Errorf("%d notifications", n)
				}
				return nil
			})
			testutil.Eventually(t, time.Second, 5*time.Millisecond, func() error {
				if l := f.late.all(); len(l) != 1 || l[0] != tc.wantLate {
					return fmt.Errorf("lateness %v, want one observation of %v", l, tc.wantLate)
				}
				return nil
			})
			// A wake-up is acted on without reading the shard; at the
			// cap, every loop reads it.
			wantNexts := int64(shards)
			if !woke {
				wantNexts *= 2
			}
			if n := f.stores.nexts.Load(); n != wantNexts {
				t.Errorf("%d NextDue calls, want %d", n, wantNexts)
			}
		})
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// wake does what the start and deadline paths do once they succeeded, and
// returns the task's deadline.
func (f *fixture) wake(id string) time.Time {
	f.t.Helper()
	st, err := f.stores.redis("workflow")
	if err != nil {
		f.t.Fatal(err)
	}
	d := f.task(id).Deadline
	st.WakeTimers(f.ctx, id, d)
	return time.UnixMilli(d)
}

// moveDeadline moves the deadline of task id to at, as SetDeadline does.
func (f *fixture) moveDeadline(id string, at time.Time) {
	f.t.Helper()
	st, err := f.stores.redis("workflow")
	if err != nil {
		f.t.Fatal(err)
	}
	ch, r := actions.MoveDeadline(f.task(id), actions.Caller{},
		actions.Deadline{TimeoutOn: at.UnixMilli(), HasTimeoutOn: true}, "move-"+id, clock.NowMillis(f.clock))
	if r != nil {
		f.t.Fatalf("move deadline: %v", r)
	}
	if _, _, err := st.Apply(f.ctx, *ch); err != nil {
		f.t.Fatalf("apply: %v", err)
	}
}

func TestAssignOwnsShardsOfThePartition(t *testing.T) {
	tests := []struct {
		name       string
		domains    []string
		partition  int32
		partitions int32
		want       []string
	}{
		{"one partition owns every shard", nil, 0, 1,
			[]string{"workflow/0", "workflow/1", "workflow/2", "workflow/3"}},
		{"shard modulo partitions", nil, 1, 2, []string{"workflow/1", "workflow/3"}},
		{"more partitions than shards", nil, 3, 16, []string{"workflow/3"}},
		{"partition past the last shard owns none", nil, 5, 16, []string{}},
		{"configured domains are fired too", []string{"billing"}, 2, 4,
			[]string{"billing/2", "workflow/2"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, timers.Config{Domains: tc.domains})
			f.sched.Assign(f.ctx, tc.partition, tc.partitions)
			got := []string{}
			for _, k := range f.sched.Running() {
				got = append(got, k.String())
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("running %v, want %v", got, tc.want)
			}
			f.sched.Revoke(tc.partition)
			if r := f.sched.Running(); len(r) != 0 {
				t.Errorf("running %v after revoke", r)
			}
		})
	}
}

func TestRevokeStopsFiring(t *testing.T) {
	f := newFixture(t, timers.Config{})
	f.sched.Assign(f.ctx, 0, 1)
	f.startTask("product-2")
	f.clk.waitParked(t, shards)

	f.sched.Revoke(0)
	if r := f.sched.Running(); len(r) != 0 {
		t.Fatalf("running %v after revoke", r)
	}
	// Revoke returned only once every loop had exited, so nothing can
	// poll any more, however far the clock moves.
	calls := len(f.eng.callsSnapshot())
	f.clock.Advance(2 * time.Minute)
	if got := len(f.eng.callsSnapshot()); got != calls {
		t.Errorf("%d FireDue calls after revoke, want %d", got, calls)
	}
	if got := f.task("product-2").Status; got != statemanager.StatusWaiting {
		t.Errorf("status %s, want WAITING: a revoked partition must not fire", got)
	}

	// The next owner fires it.
	f.sched.Assign(f.ctx, 0, 1)
	testutil.Eventually(t, 5*time.Second, 5*time.Millisecond, func() error {
		if n := len(f.sink.on(notifyTopic)); n != 1 {
			return fmt.Errorf("%d notifications", n)
		}
		return nil
	})
}

func TestAssignRecoversClosesLostInACrash(t *testing.T) {
	f := newFixture(t, timers.Config{})
	f.startTask("product-3")
	f.clock.Advance(time.Hour)
	// A previous owner timed the task out and died before producing.
	shard := statemanager.ShardOf("product-3", shards)
	if _, n, err := f.eng.Engine.FireDue(f.ctx, "workflow", shard, 10); err != nil || n != 1 {
		t.Fatalf("FireDue = %d, %v; want 1 fired", n, err)
	}

	f.sched.Assign(f.ctx, 0, 1)
	testutil.Eventually(t, 5*time.Second, 5*time.Millisecond, func() error {
		if n := len(f.sink.on(notifyTopic)); n != 1 {
			return fmt.Errorf("%d notifications re-emitted", n)
		}
		return nil
	})
	st, _ := f.stores.Store("workflow")
	testutil.Eventually(t, 5*time.Second, 5*time.Millisecond, func() error {
		p, err := st.Pending(f.ctx, shard, clock.NowMillis(f.clock), 10)
		if err != nil || len(p) != 0 {
			return fmt.Errorf("pending %d, %v; want the close acked", len(p), err)
		}
		return nil
	})
}

// TestEmitRetriesOnlyWhatFailed: a fired timeout whose continuation cannot
// be produced for a while (Kafka down for that partition) is retried until
// durable, and its notification, produced at the first attempt, is not
// produced again with every retry.
func TestEmitRetriesOnlyWhatFailed(t *testing.T) {
	f := newFixture(t, timers.Config{})
	var mu sync.Mutex
	var attempts []int
	var handed [][]envelope.Record
	emit := func(ctx context.Context, k timers.Key, attempt int, out saga.Output) (saga.Output, error) {
		mu.Lock()
		attempts = append(attempts, attempt)
		handed = append(handed, slices.Clone(out.Records))
		mu.Unlock()
		if attempt > 3 {
			return f.sink.emit(ctx, k, attempt, out)
		}
		rest := out
		rest.Records = nil
		for _, r := range out.Records {
			if r.Topic == requestTopic {
				rest.Records = append(rest.Records, r) // its partition's leader is away
				continue
			}
			f.sink.mu.Lock()
			f.sink.recs = append(f.sink.recs, r)
			f.sink.mu.Unlock()
		}
		return rest, errors.New("kafka down for one partition")
	}
	sched, err := timers.New(timers.Config{BackoffMin: time.Millisecond, BackoffMax: 2 * time.Millisecond},
		f.eng, f.stores, emit, timers.WithClock(f.clk), timers.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sched.RevokeAll)
	f.startTask("product-4")
	sched.Assign(f.ctx, 0, 1)
	f.clock.Advance(time.Minute)
	// Backoff waits run on the virtual clock too: keep it moving.
	testutil.Eventually(t, 5*time.Second, 5*time.Millisecond, func() error {
		f.clock.Advance(time.Millisecond)
		if n := len(f.sink.on(requestTopic)); n != 1 {
			return fmt.Errorf("%d continuations", n)
		}
		return nil
	})
	if n := len(f.sink.on(notifyTopic)); n != 1 {
		t.Errorf("%d notifications, want 1: a retry must not produce what the first attempt did", n)
	}
	if got := f.task("product-4").Status; got != statemanager.StatusTimeout {
		t.Errorf("status %s, want TIMEOUT", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(attempts, []int{1, 2, 3, 4}) {
		t.Errorf("attempts %v, want 1..4", attempts)
	}
	for i, recs := range handed[1:] {
		if len(recs) != 1 || recs[0].Topic != requestTopic {
			t.Errorf("attempt %d was handed %d records, want only the continuation", i+2, len(recs))
		}
	}
}

// TestCorruptTaskDoesNotStopItsShard: a task whose stored envelope no
// longer decodes is dead-lettered when its deadline fires, and the other
// due tasks of its shard still time out.
func TestCorruptTaskDoesNotStopItsShard(t *testing.T) {
	f := newFixture(t, timers.Config{})
	// Two tasks of one shard, the first corrupt.
	var ids []string
	for i := 0; len(ids) < 2; i++ {
		id := fmt.Sprintf("corrupt-%d", i)
		if statemanager.ShardOf(id, shards) == 0 {
			ids = append(ids, id)
		}
	}
	for _, id := range ids {
		f.startTask(id)
	}
	f.corruptEnvelope(ids[0])
	f.sched.Assign(f.ctx, 0, 1)
	f.clk.waitParked(t, shards)
	f.clock.Advance(time.Minute)
	testutil.Eventually(t, 5*time.Second, 5*time.Millisecond, func() error {
		f.clock.Advance(time.Millisecond)
		if n := len(f.sink.on(saga.DefaultDeadLetterTopic)); n != 1 {
			return fmt.Errorf("%d dead letters", n)
		}
		if n := len(f.sink.on(requestTopic)); n != 1 {
			return fmt.Errorf("%d continuations, want the healthy task's", n)
		}
		return nil
	})
	dl := f.sink.on(saga.DefaultDeadLetterTopic)[0]
	if got := gjson.GetBytes(dl.Value, "taskId").String(); got != ids[0] {
		t.Errorf("dead letter names task %q, want %q: %s", got, ids[0], dl.Value)
	}
	if got := f.task(ids[1]).Status; got != statemanager.StatusTimeout {
		t.Errorf("healthy task is %s, want TIMEOUT", got)
	}
	// The shard keeps firing: a task due later still times out.
	f.startTask("later")
	f.clock.Advance(2 * time.Minute)
	testutil.Eventually(t, 5*time.Second, 5*time.Millisecond, func() error {
		f.clock.Advance(time.Millisecond)
		if got := f.task("later").Status; got != statemanager.StatusTimeout {
			return fmt.Errorf("later task is %s", got)
		}
		return nil
	})
}

// corruptEnvelope overwrites the stored envelope of task id with bytes that
// do not decode, as a bad migration or a hand edit would.
func (f *fixture) corruptEnvelope(id string) {
	f.t.Helper()
	keys, err := f.stores.client.Keys(f.ctx, "*").Result()
	if err != nil {
		f.t.Fatal(err)
	}
	for _, k := range keys {
		if typ, _ := f.stores.client.Type(f.ctx, k).Result(); typ != "hash" {
			continue
		}
		if got, _ := f.stores.client.HGet(f.ctx, k, "id").Result(); got == id {
			if err := f.stores.client.HSet(f.ctx, k, "e", "{not json").Err(); err != nil {
				f.t.Fatal(err)
			}
			return
		}
	}
	f.t.Fatalf("no stored hash for task %s", id)
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     timers.Config
		wantErr []string
		check   func(timers.Config) error
	}{
		{name: "zero value takes defaults", check: func(c timers.Config) error {
			if c.PollInterval != timers.DefaultPollInterval || c.BatchSize != timers.DefaultBatchSize ||
				c.BackoffMin != timers.DefaultBackoffMin || c.BackoffMax != timers.DefaultBackoffMax {
				return fmt.Errorf("defaults not filled: %+v", c)
			}
			return nil
		}},
		{name: "every problem at once",
			cfg:     timers.Config{PollInterval: -1, BatchSize: -2, Domains: []string{""}},
			wantErr: []string{"PollInterval", "BatchSize", "Domains[0]"}},
		{name: "idle cap defaults", check: func(c timers.Config) error {
			if c.MaxIdle != timers.DefaultMaxIdle {
				return fmt.Errorf("MaxIdle %v, want %v", c.MaxIdle, timers.DefaultMaxIdle)
			}
			return nil
		}},
		{name: "idle cap negative", cfg: timers.Config{MaxIdle: -time.Second}, wantErr: []string{"MaxIdle"}},
		{name: "idle cap past the wake-up horizon",
			cfg: timers.Config{MaxIdle: statemanager.WakeHorizon + time.Second}, wantErr: []string{"MaxIdle", "horizon"}},
		{name: "idle cap below the poll interval",
			cfg: timers.Config{MaxIdle: time.Millisecond}, wantErr: []string{"MaxIdle", "PollInterval"}},
		{name: "backoff range inverted",
			cfg:     timers.Config{BackoffMin: time.Second, BackoffMax: time.Millisecond},
			wantErr: []string{"BackoffMin"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				if err := tc.check(tc.cfg); err != nil {
					t.Error(err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate accepted a bad config")
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}
