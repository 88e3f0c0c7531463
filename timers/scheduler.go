package timers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/tidwall/gjson"

	"github.com/sagarunner/sagarunner/clock"
	"github.com/sagarunner/sagarunner/saga"
	"github.com/sagarunner/sagarunner/statemanager"
)

// Engine is the part of the saga engine the timers drive; *saga.Engine
// implements it. Errors wrap saga.ErrRetry and are retried with backoff.
type Engine interface {
	// FireDue times out up to limit due tasks of one shard and returns what
	// to produce and how many it fired.
	FireDue(ctx context.Context, domain string, shard, limit int) (saga.Output, int, error)
	// Recover rebuilds the effects of tasks closed at or before
	// closedBefore whose effects were never acked.
	Recover(ctx context.Context, domain string, shard int, closedBefore int64, limit int) (saga.Output, error)
	// Domains lists the domains the loaded sagas use.
	Domains() []string
}

var _ Engine = (*saga.Engine)(nil)

// EarlyExpirer is an optional extension of Engine: an engine that keeps
// early answers (operations waiting for a task to start) expires them from
// the same loops, every Config.EarlyInterval per shard. *saga.Engine
// implements it.
type EarlyExpirer interface {
	// ExpireEarly dead-letters up to limit early answers of one shard
	// whose time ran out and returns what to produce and how many.
	ExpireEarly(ctx context.Context, domain string, shard, limit int) (saga.Output, int, error)
}

var _ EarlyExpirer = (*saga.Engine)(nil)

// Emitter makes the output of loop k durable: it produces out.Records,
// waits for every acknowledgement, then acks out.Acks in the engine. A
// non-nil error means some of that did not happen, and rest is what is still
// to do: the records not produced yet and the acks. The loop calls it again
// with rest and the next attempt number (the first is 1), so records already
// produced are not produced again on each retry of a sibling; every record
// of rest has failed attempt-1 times. An output that can never be produced
// is the emitter's to replace (with a dead letter), not to retry for ever.
type Emitter func(ctx context.Context, k Key, attempt int, out saga.Output) (rest saga.Output, err error)

// Observer receives timer measurements; the runner's metrics implement it.
type Observer interface {
	// Lateness is observed once per fired task of domain (one the
	// scheduler fires, so the set is bounded): how long after its deadline
	// its timeout became durable.
	Lateness(domain string, d time.Duration)
}

// Option configures a Scheduler.
type Option func(*Scheduler)

// WithClock sets the clock loops wait on and measure lateness with. It must
// be the engine's clock. Default clock.Real.
func WithClock(c clock.Clock) Option { return func(s *Scheduler) { s.clock = c } }

// WithLogger sets the logger. Default slog.Default().
func WithLogger(l *slog.Logger) Option { return func(s *Scheduler) { s.log = l } }

// WithObserver sets where lateness goes. Default: nowhere.
func WithObserver(o Observer) Option { return func(s *Scheduler) { s.obs = o } }

// Key names one loop: a domain's deadline shard.
type Key struct {
	Domain string
	Shard  int
}

// Scheduler runs the deadline loops of the partitions its runner owns. Its
// methods are safe for concurrent use.
type Scheduler struct {
	cfg    Config
	eng    Engine
	stores statemanager.Resolver
	emit   Emitter
	clock  clock.Clock
	log    *slog.Logger
	obs    Observer

	mu     sync.Mutex
	loops  map[Key]*loop
	owners map[int32][]Key // partition -> the loops it started
}

type loop struct {
	key  Key
	stop chan struct{}
	done chan struct{}
}

// New returns a Scheduler. It starts nothing until Assign.
func New(cfg Config, eng Engine, stores statemanager.Resolver, emit Emitter, opts ...Option) (*Scheduler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if eng == nil || stores == nil || emit == nil {
		return nil, errors.New("timers: New needs an engine, a store resolver and an emitter")
	}
	s := &Scheduler{
		cfg: cfg, eng: eng, stores: stores, emit: emit,
		clock:  clock.Real{},
		log:    slog.Default(),
		loops:  make(map[Key]*loop),
		owners: make(map[int32][]Key),
	}
	for _, o := range opts {
		o(s)
	}
	return s, nil
}

// Domains returns the domains fired: the engine's plus the configured ones,
// sorted and without duplicates.
func (s *Scheduler) Domains() []string {
	ds := append(slices.Clone(s.eng.Domains()), s.cfg.Domains...)
	slices.Sort(ds)
	return slices.Compact(ds)
}

// Assign starts the loops owned by request-topic partition p of partitions:
// for every domain, each shard sh with sh % partitions == p. Loops run with
// ctx, which should outlive revocation (Revoke stops them gracefully); its
// cancellation aborts them. Assigning a partition twice is a no-op.
func (s *Scheduler) Assign(ctx context.Context, p, partitions int32) {
	if partitions <= 0 || p < 0 || p >= partitions {
		s.log.Error("timers: bad partition assignment", "partition", p, "partitions", partitions)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.owners[p]; ok {
		return
	}
	var keys []Key
	for _, d := range s.Domains() {
		st, err := s.stores.Store(d)
		if err != nil {
			s.log.Error("timers: no state manager for domain; its deadlines will not fire", "domain", d, "err", err)
			continue
		}
		for sh := int(p); sh < st.Shards(); sh += int(partitions) {
			k := Key{Domain: d, Shard: sh}
			if _, running := s.loops[k]; running {
				// Another partition started it under an older
				// partition count; leave it to that owner.
				continue
			}
			l := &loop{key: k, stop: make(chan struct{}), done: make(chan struct{})}
			s.loops[k] = l
			keys = append(keys, k)
			go s.run(ctx, l)
		}
	}
	s.owners[p] = keys
	s.log.Debug("timers: partition assigned", "partition", p, "loops", len(keys))
}

// Revoke stops the loops of the given partitions and returns once they have
// stopped, so a revocation completes only when this runner no longer fires
// those shards. A loop finishes the FireDue and emit it is in before it
// stops; it does not retry after the stop.
func (s *Scheduler) Revoke(ps ...int32) {
	s.mu.Lock()
	var stopping []*loop
	for _, p := range ps {
		for _, k := range s.owners[p] {
			if l, ok := s.loops[k]; ok {
				close(l.stop)
				stopping = append(stopping, l)
				delete(s.loops, k)
			}
		}
		delete(s.owners, p)
	}
	s.mu.Unlock()
	for _, l := range stopping {
		<-l.done
	}
}

// RevokeAll stops every loop and waits for them.
func (s *Scheduler) RevokeAll() {
	s.mu.Lock()
	ps := make([]int32, 0, len(s.owners))
	for p := range s.owners {
		ps = append(ps, p)
	}
	s.mu.Unlock()
	s.Revoke(ps...)
}

// Running returns the keys of the running loops, sorted.
func (s *Scheduler) Running() []Key {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Key, 0, len(s.loops))
	for k := range s.loops {
		out = append(out, k)
	}
	slices.SortFunc(out, func(a, b Key) int {
		if a.Domain != b.Domain {
			if a.Domain < b.Domain {
				return -1
			}
			return 1
		}
		return a.Shard - b.Shard
	})
	return out
}

func (s *Scheduler) run(ctx context.Context, l *loop) {
	defer close(l.done)
	log := s.log.With("domain", l.key.Domain, "shard", l.key.Shard)
	if !s.recover(ctx, l, log) {
		return
	}
	b := s.newBackoff()
	expirer, _ := s.eng.(EarlyExpirer)
	nextEarly := s.clock.Now()
	for {
		if expirer != nil && !s.clock.Now().Before(nextEarly) {
			// Rarely, not every tick: a shard with nothing parked costs
			// one read of an empty index per EarlyInterval.
			if !s.expireEarly(ctx, l, expirer, log) {
				return
			}
			nextEarly = s.clock.Now().Add(s.cfg.EarlyInterval)
		}
		out, fired, err := s.eng.FireDue(ctx, l.key.Domain, l.key.Shard, s.cfg.BatchSize)
		if err != nil {
			log.Warn("timers: fire due deadlines failed; retrying", "err", err, "in", b.peek())
			if !s.wait(ctx, l, b.next()) {
				return
			}
			// Closes that succeeded before the failure are pending and no
			// longer due: re-emit their effects now rather than at the
			// next rebalance.
			if !s.recover(ctx, l, log) {
				return
			}
			continue
		}
		if fired > 0 || len(out.Records) > 0 {
			if !s.emitUntilDone(ctx, l, out, log) {
				return
			}
			s.observeLateness(l.key.Domain, out)
		}
		b.reset()
		if fired >= s.cfg.BatchSize {
			select {
			case <-l.stop:
				return
			default:
				continue
			}
		}
		if !s.wait(ctx, l, s.cfg.PollInterval) {
			return
		}
	}
}

// expireEarly dead-letters the shard's expired early answers, batch by
// batch. A failing store call is logged and left to the next sweep: expiry
// is not urgent, and the deadlines must keep firing. It reports false when
// the loop was stopped.
func (s *Scheduler) expireEarly(ctx context.Context, l *loop, ex EarlyExpirer, log *slog.Logger) bool {
	for {
		out, n, err := ex.ExpireEarly(ctx, l.key.Domain, l.key.Shard, s.cfg.BatchSize)
		if err != nil {
			log.Warn("timers: expire early answers failed; trying again at the next sweep", "err", err)
			return true
		}
		if n == 0 {
			return true
		}
		log.Info("timers: early answers expired; dead-lettered", "operations", n)
		if !s.emitUntilDone(ctx, l, out, log) {
			return false
		}
		if n < s.cfg.BatchSize {
			return true
		}
	}
}

// recover re-emits the effects of closes whose produce was lost, batch by
// batch, before the loop starts firing. It reports false when the loop was
// stopped.
func (s *Scheduler) recover(ctx context.Context, l *loop, log *slog.Logger) bool {
	b := s.newBackoff()
	closedBefore := clock.NowMillis(s.clock)
	for {
		out, err := s.eng.Recover(ctx, l.key.Domain, l.key.Shard, closedBefore, s.cfg.BatchSize)
		if err != nil {
			log.Warn("timers: recover failed; retrying", "err", err, "in", b.peek())
			if !s.wait(ctx, l, b.next()) {
				return false
			}
			continue
		}
		b.reset()
		if len(out.Records) == 0 && len(out.Acks) == 0 {
			return true
		}
		log.Info("timers: re-emitting effects of closes lost in a crash", "tasks", len(out.Acks))
		if !s.emitUntilDone(ctx, l, out, log) {
			return false
		}
		if len(out.Acks) < s.cfg.BatchSize {
			return true
		}
	}
}

// emitUntilDone makes out durable, retrying what is left with backoff until
// it succeeds or the loop is stopped. A stopped loop leaves the closes pending; the next
// owner's Recover re-emits them.
func (s *Scheduler) emitUntilDone(ctx context.Context, l *loop, out saga.Output, log *slog.Logger) bool {
	b := s.newBackoff()
	for attempt := 1; ; attempt++ {
		rest, err := s.emit(ctx, l.key, attempt, out)
		if err == nil {
			return true
		}
		out = rest
		log.Warn("timers: emit failed; retrying what is left", "err", err, "records", len(out.Records), "acks", len(out.Acks), "in", b.peek())
		if !s.wait(ctx, l, b.next()) {
			return false
		}
	}
}

// wait sleeps d on the scheduler clock; false means stop.
func (s *Scheduler) wait(ctx context.Context, l *loop, d time.Duration) bool {
	select {
	case <-s.clock.After(d):
		return true
	case <-l.stop:
		return false
	case <-ctx.Done():
		return false
	}
}

// observeLateness reads the deadline of every TIMEOUT notification in out.
// FireDue does not return deadlines, and the notification is the one record
// that carries them (SPEC §6); continuations are envelopes without a
// top-level deadline.
func (s *Scheduler) observeLateness(domain string, out saga.Output) {
	if s.obs == nil {
		return
	}
	now := clock.NowMillis(s.clock)
	for _, r := range out.Records {
		v := gjson.GetManyBytes(r.Value, "taskId", "status", "deadline")
		if !v[0].Exists() || v[1].String() != statemanager.StatusTimeout || v[2].Int() <= 0 {
			continue
		}
		late := max(now-v[2].Int(), 0)
		s.obs.Lateness(domain, time.Duration(late)*time.Millisecond)
	}
}

func (s *Scheduler) newBackoff() *backoff {
	return &backoff{min: s.cfg.BackoffMin, max: s.cfg.BackoffMax, cur: s.cfg.BackoffMin}
}

// backoff doubles from min to max.
type backoff struct{ min, max, cur time.Duration }

func (b *backoff) peek() time.Duration { return b.cur }

func (b *backoff) next() time.Duration {
	d := b.cur
	b.cur = min(b.cur*2, b.max)
	return d
}

func (b *backoff) reset() { b.cur = b.min }

func (k Key) String() string { return fmt.Sprintf("%s/%d", k.Domain, k.Shard) }
