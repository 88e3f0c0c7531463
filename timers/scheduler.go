package timers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
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

// lingerPolls is how many polls in a row must find nothing before a shard
// that fired goes back to sleeping until its next deadline. Deadlines a few
// poll intervals apart keep it polling, at the cost polling always had,
// where reading the next deadline after each gap would add a round trip
// to every one.
const lingerPolls = 10

// Waker is an optional extension of statemanager.Store that lets a loop
// with nothing due sleep until its shard's next deadline (at most
// Config.MaxIdle) instead of polling every PollInterval;
// *statemanager.RedisStore implements it. Check for it with a type
// assertion on the resolved store.
type Waker interface {
	// NextDue reads the earliest deadline and early-answer expiry of a
	// shard in one round trip.
	NextDue(ctx context.Context, shard int) (statemanager.NextDue, error)
	// WatchDeadlines calls fn for every wake-up of the store, from any
	// process, until stop is called: a task of shard started, or had its
	// deadline moved, to deadline (epoch ms). Wake-ups may be lost, never
	// invented by the store; fn must not block.
	WatchDeadlines(fn func(shard int, deadline int64)) (stop func())
}

var _ Waker = (*statemanager.RedisStore)(nil)

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

	mu      sync.Mutex
	loops   map[Key]*loop
	owners  map[int32][]Key   // partition -> the loops it started
	watches map[string]func() // domain -> stop its wake-ups, while it has loops
}

type loop struct {
	key  Key
	stop chan struct{}
	done chan struct{}
	// waker is the shard's store when it lets the loop sleep; nil: poll.
	waker Waker
	wake  wakeSlot
}

// wakeSlot holds the earliest deadline posted to a loop since it last looked.
type wakeSlot struct {
	mu sync.Mutex
	at int64 // epoch ms; 0: none
	// until is what the loop sleeps until (epoch ms), math.MaxInt64 when it
	// is not asleep: a deadline after it needs no signal, so a stream of
	// starts does not wake a sleeping loop for each.
	until int64
	ch    chan struct{} // capacity 1: "at changed"
}

func newWakeSlot() wakeSlot { return wakeSlot{ch: make(chan struct{}, 1), until: math.MaxInt64} }

// post never blocks: it runs in the caller of WakeTimers (a start).
func (w *wakeSlot) post(deadline int64) {
	w.mu.Lock()
	if w.at == 0 || deadline < w.at {
		w.at = deadline
	}
	signal := deadline < w.until
	w.mu.Unlock()
	if signal {
		select {
		case w.ch <- struct{}{}:
		default:
		}
	}
}

func (w *wakeSlot) take() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	d := w.at
	w.at = 0
	return d
}

// sleeping records what the loop sleeps until; math.MaxInt64: awake.
func (w *wakeSlot) sleeping(until int64) {
	w.mu.Lock()
	w.until = until
	w.mu.Unlock()
}

// drain forgets what was posted. The signal goes first: a post between the
// two steps leaves a signal whose take finds nothing, never a deadline
// without a signal.
func (w *wakeSlot) drain() {
	select {
	case <-w.ch:
	default:
	}
	w.take()
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
		clock:   clock.Real{},
		log:     slog.Default(),
		loops:   make(map[Key]*loop),
		owners:  make(map[int32][]Key),
		watches: make(map[string]func()),
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
		w, _ := st.(Waker)
		for sh := int(p); sh < st.Shards(); sh += int(partitions) {
			k := Key{Domain: d, Shard: sh}
			if _, running := s.loops[k]; running {
				// Another partition started it under an older
				// partition count; leave it to that owner.
				continue
			}
			if w != nil && s.watches[d] == nil {
				// Before the loop's first read of the shard, so a
				// wake-up after that read is not missed.
				s.watches[d] = w.WatchDeadlines(func(shard int, deadline int64) {
					s.wakeLoop(Key{Domain: d, Shard: shard}, deadline)
				})
			}
			l := &loop{key: k, stop: make(chan struct{}), done: make(chan struct{}), waker: w, wake: newWakeSlot()}
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
	s.unwatchIdle()
	s.mu.Unlock()
	for _, l := range stopping {
		<-l.done
	}
}

// unwatchIdle stops the wake-ups of the domains left without a loop. s.mu
// is held.
func (s *Scheduler) unwatchIdle() {
	busy := make(map[string]bool, len(s.watches))
	for k := range s.loops {
		busy[k.Domain] = true
	}
	for d, stop := range s.watches {
		if !busy[d] {
			stop()
			delete(s.watches, d)
		}
	}
}

// wakeLoop posts a wake-up to the loop of k, if this scheduler runs it.
func (s *Scheduler) wakeLoop(k Key, deadline int64) {
	s.mu.Lock()
	l := s.loops[k]
	s.mu.Unlock()
	if l != nil {
		l.wake.post(deadline)
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
	var (
		nextSweep = s.clock.Now() // when to expire early answers next
		lastSweep time.Time
		lastFire  time.Time // when the last FireDue began
		fire      = true    // FireDue next, rather than NextDue
		quiet     = lingerPolls
	)
	for {
		if expirer != nil && !s.clock.Now().Before(nextSweep) {
			// Rarely, not every tick: a shard with nothing parked costs
			// one read of an empty index per EarlyInterval (none at all
			// with a Waker, which reads when the next answer expires).
			lastSweep = s.clock.Now()
			if !s.expireEarly(ctx, l, expirer, log) {
				return
			}
			nextSweep = s.clock.Now().Add(s.cfg.EarlyInterval)
		}
		if fire {
			lastFire = s.clock.Now()
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
			if fired > 0 {
				quiet = 0
			} else {
				quiet++
			}
			if l.waker == nil || quiet < lingerPolls {
				// A shard that fired is likely to fire again soon:
				// poll it as before, which under load batches the
				// deadlines of PollInterval into one FireDue.
				if !s.wait(ctx, l, s.cfg.PollInterval) {
					return
				}
				continue
			}
		}

		// Nothing due: sleep until the shard's next deadline. Wake-ups
		// posted before this read are in what it returns; those after it
		// are kept for the sleep.
		l.wake.drain()
		next, err := l.waker.NextDue(ctx, l.key.Shard)
		if err != nil {
			log.Warn("timers: reading the next deadline failed; retrying", "err", err, "in", b.peek())
			if !s.wait(ctx, l, b.next()) {
				return
			}
			fire = true
			continue
		}
		now := s.clock.Now()
		// A FireDue that found nothing is followed by the next no sooner
		// than PollInterval, so that an entry FireDue cannot remove, or a
		// flood of wake-ups, costs what polling cost, not a busy loop.
		floor := lastFire.Add(s.cfg.PollInterval)
		at := now.Add(s.cfg.MaxIdle)
		var dueAt time.Time
		if next.Deadline > 0 {
			dueAt = later(time.UnixMilli(next.Deadline), floor)
			at = earlier(at, dueAt)
		}
		if expirer != nil {
			// None parked: the next read (at the latest at the cap)
			// comes first and moves this on; it only matters while the
			// shard keeps firing and reads nothing.
			nextSweep = now.Add(s.cfg.MaxIdle + s.cfg.EarlyInterval)
			if next.EarlyExpiry > 0 {
				nextSweep = later(time.UnixMilli(next.EarlyExpiry), lastSweep.Add(s.cfg.EarlyInterval))
			}
			at = earlier(at, nextSweep)
		}
		woken, ok := s.sleep(ctx, l, at, floor)
		if !ok {
			return
		}
		if !woken.IsZero() && (dueAt.IsZero() || woken.Before(dueAt)) {
			dueAt = woken
		}
		// At the cap, or for a sweep, read the shard again rather than
		// fire: both cost one round trip, and the read plans the next
		// sleep.
		fire = !dueAt.IsZero() && !s.clock.Now().Before(dueAt)
	}
}

// sleep waits until at on the scheduler clock, or until a wake-up posted to
// l brings at forward (to the woken deadline, not before floor). It returns
// the earliest deadline a wake-up brought (zero when none did) and false
// when the loop was stopped.
func (s *Scheduler) sleep(ctx context.Context, l *loop, at, floor time.Time) (time.Time, bool) {
	var woken time.Time
	defer l.wake.sleeping(math.MaxInt64)
	for {
		d := at.Sub(s.clock.Now())
		if d <= 0 {
			return woken, true
		}
		// A wake-up posted before this was signalled whatever its time.
		l.wake.sleeping(at.UnixMilli())
		timer := s.clock.After(d)
	wait:
		for {
			select {
			case <-timer:
				return woken, true
			case <-l.wake.ch:
				ms := l.wake.take()
				if ms <= 0 {
					continue
				}
				t := later(time.UnixMilli(ms), floor)
				if woken.IsZero() || t.Before(woken) {
					woken = t
				}
				if t.Before(at) {
					at = t
					break wait // arm a timer for the new time
				}
			case <-l.stop:
				return woken, false
			case <-ctx.Done():
				return woken, false
			}
		}
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
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
