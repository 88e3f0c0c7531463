package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.opentelemetry.io/otel/trace"

	"github.com/sagarunner/sagarunner/actions"
	"github.com/sagarunner/sagarunner/clock"
	"github.com/sagarunner/sagarunner/saga"
	"github.com/sagarunner/sagarunner/statemanager"
	"github.com/sagarunner/sagarunner/timers"
)

// engine is what the runner needs of *saga.Engine. It is an interface only so
// tests can wrap the real engine (to make it panic, or count calls).
type engine interface {
	Handle(ctx context.Context, rec saga.Record) (saga.Output, error)
	Ack(ctx context.Context, acks []actions.Ack) error
	timers.Engine
}

// Option configures a Runner.
type Option func(*Runner)

// WithLogger sets the logger. Default slog.Default().
func WithLogger(l *slog.Logger) Option { return func(r *Runner) { r.log = l } }

// WithMetrics sets where measurements go. Default NopMetrics.
func WithMetrics(m Metrics) Option { return func(r *Runner) { r.metrics = m } }

// WithClock sets the clock the deadline loops run on. It must be the
// engine's clock. Default clock.Real.
func WithClock(c clock.Clock) Option { return func(r *Runner) { r.clock = c } }

// WithKafkaOptions appends client options (SASL, TLS, client id, ...) to
// every Kafka client the runner creates. Options that change consumption
// semantics (group, topics, commits, balancers) are overridden by the
// runner's own.
func WithKafkaOptions(opts ...kgo.Opt) Option {
	return func(r *Runner) { r.kopts = append(r.kopts, opts...) }
}

// ErrAlreadyRun is returned by Run on a Runner that has already run.
var ErrAlreadyRun = errors.New("runner: Run called twice")

// Runner consumes the saga topics and drives the engine. Create it with New,
// start it with Run.
type Runner struct {
	cfg     Config
	eng     engine
	stores  statemanager.Resolver
	log     *slog.Logger
	metrics Metrics
	clock   clock.Clock
	kopts   []kgo.Opt
	// tracer makes the handling spans; nil when tracing is off.
	tracer trace.Tracer

	consumed        []string
	notifications   string
	deadLetterTopic string
	replyTopics     []string

	// handle is the engine's Handle wrapped in the failure policy; every
	// consumed record goes through it.
	handle Handler
	events *eventLog

	// instances receives the outputs' instance events; nil when tracking
	// is off. auditTopic receives them as audit records ("" for none).
	instances  InstanceStore
	auditTopic string

	timers *timers.Scheduler
	// domains are the known domains, sorted: the only ones that label
	// metrics, and the ones whose waiting tasks are sampled.
	domains []string

	ready   atomic.Bool
	closing atomic.Bool
	// reqPartitions caches the request topic's partition count, which maps
	// deadline shards to partitions.
	reqPartitions atomic.Int32

	// Set once by Run before the client starts.
	cl      *kgo.Client
	workCtx context.Context

	// budget bounds the bytes the workers hold (MaxInFlightBytes).
	budget byteBudget
	// polls counts the polls, so records of one poll past the budget are
	// told from those fetched again after a rewind.
	polls uint64

	mu      sync.Mutex
	workers map[topicPartition]*worker
	owned   map[string][]int32

	// commitMu serialises commits with revocation, so an offset of a
	// partition is never committed after its revocation has completed.
	commitMu  sync.Mutex
	marksMu   sync.Mutex
	marked    map[topicPartition]kgo.EpochOffset
	committed map[topicPartition]kgo.EpochOffset

	runMu   sync.Mutex
	started bool
	cancel  context.CancelFunc
	done    chan struct{}
}

type topicPartition struct {
	topic     string
	partition int32
}

// New returns a Runner for eng. It checks the config against the engine: the
// request topic must be the engine's continuation topic, and no consumed
// topic may be one the engine produces notifications or dead letters to.
func New(cfg Config, eng *saga.Engine, stores statemanager.Resolver, opts ...Option) (*Runner, error) {
	if eng == nil {
		return nil, errors.New("runner: New needs an engine")
	}
	return newRunner(cfg, eng, eng.Config(), eng.Sagas().Topics(), stores, opts...)
}

func newRunner(cfg Config, eng engine, ecfg saga.Config, triggers []string, stores statemanager.Resolver, opts ...Option) (*Runner, error) {
	if stores == nil {
		return nil, errors.New("runner: New needs a state-manager resolver")
	}
	if cfg.MaxRecordBytes == 0 {
		cfg.MaxRecordBytes = ecfg.MaxRecordBytes
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.MaxRecordBytes != ecfg.MaxRecordBytes && ecfg.MaxRecordBytes > 0 {
		return nil, fmt.Errorf("runner: MaxRecordBytes %d differs from the engine's %d; dead letters would be cut to a size the runner refuses",
			cfg.MaxRecordBytes, ecfg.MaxRecordBytes)
	}
	if cfg.RequestTopic != ecfg.Topics.Continuations {
		return nil, fmt.Errorf("runner: RequestTopic %q differs from the engine's continuation topic %q; continuations would never be consumed",
			cfg.RequestTopic, ecfg.Topics.Continuations)
	}
	consumed := append([]string{cfg.RequestTopic}, triggers...)
	consumed = append(consumed, cfg.Topics...)
	slices.Sort(consumed)
	consumed = slices.Compact(consumed)
	for _, t := range consumed {
		if t == ecfg.Topics.Notifications || t == ecfg.DeadLetter {
			return nil, fmt.Errorf("runner: topic %q is consumed and also receives notifications or dead letters", t)
		}
	}
	r := &Runner{
		cfg:             cfg,
		eng:             eng,
		stores:          stores,
		log:             slog.Default(),
		metrics:         NopMetrics{},
		clock:           clock.Real{},
		consumed:        consumed,
		notifications:   ecfg.Topics.Notifications,
		deadLetterTopic: ecfg.DeadLetter,
		replyTopics:     cfg.OutputTopics,
		budget:          newByteBudget(cfg.MaxInFlightBytes),
		workers:         make(map[topicPartition]*worker),
		owned:           make(map[string][]int32),
		marked:          make(map[topicPartition]kgo.EpochOffset),
		committed:       make(map[topicPartition]kgo.EpochOffset),
	}
	for _, o := range opts {
		o(r)
	}
	r.events = newEventLog(r.log)
	r.handle = chain(eng.Handle, r.traced, r.failurePolicy, Recoverer())
	sched, err := timers.New(cfg.Timers, eng, stores, r.emitCounted,
		timers.WithClock(r.clock), timers.WithLogger(r.log), timers.WithObserver(r.metrics))
	if err != nil {
		return nil, err
	}
	r.timers = sched
	r.domains = sched.Domains()
	return r, nil
}

// Topics returns the topics the runner consumes, sorted.
func (r *Runner) Topics() []string { return slices.Clone(r.consumed) }

// Ready reports whether the runner is connected and consuming, for /readyz.
func (r *Runner) Ready() bool { return r.ready.Load() }

// Run consumes until ctx is cancelled, then shuts down gracefully: it stops
// polling, lets in-flight batches and timer loops finish (at most
// ShutdownTimeout), commits, and leaves the group. It returns nil after a
// graceful shutdown and an error only when the runner could not start.
func (r *Runner) Run(ctx context.Context) error {
	r.runMu.Lock()
	if r.started {
		r.runMu.Unlock()
		return ErrAlreadyRun
	}
	r.started = true
	ctx, cancel := context.WithCancel(ctx)
	r.cancel = cancel
	r.done = make(chan struct{})
	r.runMu.Unlock()
	defer close(r.done)
	defer cancel()

	// Work outlives ctx so a shutdown can finish what is in flight;
	// hardStop abandons it when ShutdownTimeout passes.
	workCtx, hardStop := context.WithCancel(context.WithoutCancel(ctx))
	defer hardStop()
	r.workCtx = workCtx

	if r.cfg.CreateTopics {
		if err := r.ensureTopics(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}

	// The client's fetch buffer is bounded with the workers' budget: one
	// fetch response holds at most a quarter of it (a partition's first
	// batch aside), so a poll cannot bring in more than the budget held
	// back. The caller's options may tune it further.
	fetchBytes := int32(min(max(r.cfg.MaxInFlightBytes/4, 64<<10), 50<<20))
	opts := []kgo.Opt{kgo.SeedBrokers(r.cfg.Brokers...),
		kgo.FetchMaxBytes(fetchBytes), kgo.FetchMaxPartitionBytes(min(fetchBytes, 1<<20))}
	opts = append(opts, r.kopts...)
	opts = append(opts,
		kgo.ConsumerGroup(r.cfg.Group),
		kgo.ConsumeTopics(r.consumed...),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.DisableAutoCommit(),
		// Polls and rebalance callbacks exclude each other, so records
		// are never handed to a worker of a partition already revoked.
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsAssigned(r.onAssigned),
		kgo.OnPartitionsRevoked(r.onRevoked),
		kgo.OnPartitionsLost(r.onLost),
		kgo.RecordDeliveryTimeout(r.cfg.ProduceTimeout),
		kgo.ProducerLinger(r.cfg.Linger),
		// A paused partition is fetched again only once the fetch in
		// flight returns, and a broker holds a fetch up to this long when
		// the other partitions have nothing new: keep it short so a
		// resumed partition does not idle behind it.
		kgo.FetchMaxWait(r.cfg.FetchMaxWait),
	)
	if r.cfg.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(r.cfg.InstanceID))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("runner: kafka client: %w", err)
	}
	r.cl = cl

	var bg sync.WaitGroup
	bg.Add(3)
	go func() { defer bg.Done(); r.becomeReady(ctx) }()
	go func() { defer bg.Done(); r.commitLoop(ctx) }()
	go func() { defer bg.Done(); r.sampleWaiting(ctx) }()

	r.pollLoop(ctx)

	// Graceful shutdown.
	r.ready.Store(false)
	r.closing.Store(true)
	bg.Wait()
	guard := time.AfterFunc(r.cfg.ShutdownTimeout, func() {
		r.log.Warn("runner: shutdown timeout; abandoning in-flight work, it will be replayed")
		hardStop()
	})
	defer guard.Stop()
	r.timers.RevokeAll()
	r.stopWorkers(nil)
	commitCtx, cancelCommit := context.WithTimeout(context.Background(), 10*time.Second)
	if err := r.commit(commitCtx, nil); err != nil {
		r.log.Error("runner: final commit failed; the last records will be replayed", "err", err)
	}
	cancelCommit()
	cl.AllowRebalance()
	cl.Close() // leaves the group; the final revoke finds nothing left to do
	r.log.Info("runner: stopped")
	return nil
}

// Close stops a running Run and waits for its graceful shutdown. It is safe
// to call more than once and before Run.
func (r *Runner) Close() {
	r.runMu.Lock()
	r.started = true // a Run after Close is refused
	cancel, done := r.cancel, r.done
	r.runMu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
}

// becomeReady pings the cluster until it answers.
func (r *Runner) becomeReady(ctx context.Context) {
	b := newBackoff(r.cfg.Backoff)
	for {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := r.cl.Ping(pctx)
		cancel()
		if err == nil {
			if !r.closing.Load() {
				r.ready.Store(true)
				r.log.Info("runner: consuming", "group", r.cfg.Group, "topics", r.consumed)
			}
			return
		}
		r.log.Warn("runner: kafka unreachable", "err", err)
		if !sleepCtx(ctx, b.next()) {
			return
		}
	}
}

func (r *Runner) pollLoop(ctx context.Context) {
	for {
		fetches := r.cl.PollRecords(ctx, r.cfg.MaxPollRecords)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			r.cl.AllowRebalance()
			return
		}
		fetches.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				r.log.Warn("runner: fetch error", "topic", topic, "partition", p, "err", err)
			}
		})
		polled := time.Now()
		r.polls++
		var rewind map[string]map[int32]kgo.EpochOffset
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			if len(p.Records) == 0 {
				return
			}
			if eo, ok := r.dispatch(p, polled, r.polls); ok {
				if rewind == nil {
					rewind = map[string]map[int32]kgo.EpochOffset{}
				}
				if rewind[p.Topic] == nil {
					rewind[p.Topic] = map[int32]kgo.EpochOffset{}
				}
				rewind[p.Topic][p.Partition] = eo
			}
		})
		if rewind != nil {
			// The records past the byte budget were dropped: fetch
			// them again once their partitions resume. SetOffsets
			// discards everything the client buffered, so nothing
			// fetched from the old positions is polled. Polls and
			// rebalances exclude each other (BlockRebalanceOnPoll), so
			// the partitions are still ours.
			r.cl.SetOffsets(rewind)
		}
		r.cl.AllowRebalance()
	}
}

// dispatch queues records of poll gen for their partition's worker, starting
// it on first use. It never blocks: a worker with too much queued, or a
// runner holding its whole byte budget, pauses the partition's fetching
// instead.
// When records past the budget were dropped, it returns where the partition
// must be rewound to, with ok set.
func (r *Runner) dispatch(p kgo.FetchTopicPartition, polled time.Time, gen uint64) (rewind kgo.EpochOffset, ok bool) {
	tp := topicPartition{p.Topic, p.Partition}
	r.mu.Lock()
	w := r.workers[tp]
	if w == nil {
		if r.closing.Load() {
			r.mu.Unlock()
			return
		}
		w = newWorker(r, tp)
		r.workers[tp] = w
		go w.run()
	}
	r.mu.Unlock()
	return w.enqueue(p.Records, polled, p.HighWatermark, gen)
}

// stopWorkers stops the workers of the given partitions (all when nil), lets
// each finish its in-flight batch, and waits for them.
func (r *Runner) stopWorkers(parts map[string][]int32) {
	r.mu.Lock()
	var ws []*worker
	for tp, w := range r.workers {
		if parts != nil && !slices.Contains(parts[tp.topic], tp.partition) {
			continue
		}
		ws = append(ws, w)
		delete(r.workers, tp)
	}
	r.mu.Unlock()
	for _, w := range ws {
		close(w.stop)
	}
	resume := map[string][]int32{}
	for _, w := range ws {
		<-w.done
		r.metrics.DropLag(w.tp.topic, w.tp.partition) // and the uncommitted age
		if w.isPaused() {
			resume[w.tp.topic] = append(resume[w.tp.topic], w.tp.partition)
		}
	}
	// Paused partitions stay paused across assignments; a partition that
	// comes back later must fetch again.
	if len(resume) > 0 {
		r.cl.ResumeFetchPartitions(resume)
	}
}

// Assigned returns the partitions this runner owns, per topic, sorted.
func (r *Runner) Assigned() map[string][]int32 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string][]int32, len(r.owned))
	for t, ps := range r.owned {
		out[t] = slices.Clone(ps)
	}
	return out
}

func (r *Runner) own(parts map[string][]int32, owned bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for t, ps := range parts {
		cur := r.owned[t]
		for _, p := range ps {
			i, found := slices.BinarySearch(cur, p)
			switch {
			case owned && !found:
				cur = slices.Insert(cur, i, p)
			case !owned && found:
				cur = slices.Delete(cur, i, i+1)
			}
		}
		if len(cur) == 0 {
			delete(r.owned, t)
		} else {
			r.owned[t] = cur
		}
	}
}

func (r *Runner) onAssigned(ctx context.Context, cl *kgo.Client, assigned map[string][]int32) {
	r.log.Info("runner: partitions assigned", "partitions", assigned)
	r.own(assigned, true)
	if r.closing.Load() {
		return
	}
	ps := assigned[r.cfg.RequestTopic]
	if len(ps) == 0 {
		return
	}
	n := r.requestPartitions(ctx, cl)
	if n <= 0 {
		r.log.Error("runner: request topic partition count unknown; deadlines of these partitions will not fire",
			"topic", r.cfg.RequestTopic, "partitions", ps)
		return
	}
	for _, p := range ps {
		r.timers.Assign(r.workCtx, p, n)
	}
}

// onRevoked runs before revoked partitions move to another member: it stops
// their timer loops and workers, waiting for in-flight work, and commits.
func (r *Runner) onRevoked(ctx context.Context, _ *kgo.Client, revoked map[string][]int32) {
	if len(revoked) > 0 {
		r.log.Info("runner: partitions revoked", "partitions", revoked)
	}
	r.own(revoked, false)
	r.timers.Revoke(revoked[r.cfg.RequestTopic]...)
	r.stopWorkers(revoked)
	if err := r.commit(ctx, revoked); err != nil {
		r.log.Error("runner: commit on revoke failed; the new owner will replay some records", "err", err)
	}
}

// onLost is onRevoked without the commit: the group already gave the
// partitions away, so a commit would fail or, worse, rewind the new owner.
func (r *Runner) onLost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	r.log.Warn("runner: partitions lost", "partitions", lost)
	r.own(lost, false)
	r.timers.Revoke(lost[r.cfg.RequestTopic]...)
	r.stopWorkers(lost)
	r.commitMu.Lock()
	r.forget(lost)
	r.commitMu.Unlock()
}

// requestPartitions asks the cluster for the request topic's partition
// count, falling back to the last known one.
func (r *Runner) requestPartitions(ctx context.Context, cl *kgo.Client) int32 {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	tds, err := kadm.NewClient(cl).ListTopics(ctx, r.cfg.RequestTopic)
	if err == nil {
		if td, ok := tds[r.cfg.RequestTopic]; ok && td.Err == nil && len(td.Partitions) > 0 {
			r.reqPartitions.Store(int32(len(td.Partitions)))
		}
	} else {
		r.log.Warn("runner: cannot describe the request topic", "err", err)
	}
	return r.reqPartitions.Load()
}

// mark records that every record of tp up to rec is durable.
func (r *Runner) mark(rec *kgo.Record) {
	tp := topicPartition{rec.Topic, rec.Partition}
	r.marksMu.Lock()
	r.marked[tp] = kgo.EpochOffset{Epoch: rec.LeaderEpoch, Offset: rec.Offset + 1}
	r.marksMu.Unlock()
}

// commit commits every marked offset not yet committed. When revoked is not
// nil, those partitions are forgotten afterwards, under the same lock, so a
// periodic commit cannot commit them once the revocation has returned.
func (r *Runner) commit(ctx context.Context, revoked map[string][]int32) error {
	r.commitMu.Lock()
	defer r.commitMu.Unlock()
	defer r.forget(revoked)

	offsets := map[string]map[int32]kgo.EpochOffset{}
	var tps []topicPartition
	r.marksMu.Lock()
	for tp, eo := range r.marked {
		if c, ok := r.committed[tp]; ok && c == eo {
			continue
		}
		if offsets[tp.topic] == nil {
			offsets[tp.topic] = map[int32]kgo.EpochOffset{}
		}
		offsets[tp.topic][tp.partition] = eo
		tps = append(tps, tp)
	}
	r.marksMu.Unlock()
	if len(offsets) == 0 {
		return nil
	}
	var cerr error
	r.cl.CommitOffsetsSync(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			cerr = err
			return
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
					cerr = fmt.Errorf("%s/%d: %w", t.Topic, p.Partition, err)
					return
				}
			}
		}
	})
	if cerr != nil {
		return fmt.Errorf("runner: commit: %w", cerr)
	}
	r.marksMu.Lock()
	for _, tp := range tps {
		r.committed[tp] = offsets[tp.topic][tp.partition]
	}
	r.marksMu.Unlock()
	r.mu.Lock()
	for _, tp := range tps {
		if w := r.workers[tp]; w != nil {
			w.committedTo(offsets[tp.topic][tp.partition].Offset)
		}
	}
	r.mu.Unlock()
	return nil
}

func (r *Runner) forget(parts map[string][]int32) {
	if parts == nil {
		return
	}
	r.marksMu.Lock()
	defer r.marksMu.Unlock()
	for t, ps := range parts {
		for _, p := range ps {
			delete(r.marked, topicPartition{t, p})
			delete(r.committed, topicPartition{t, p})
		}
	}
}

// commitLoop commits marked offsets every CommitInterval until ctx ends; the
// shutdown path makes the final commit.
func (r *Runner) commitLoop(ctx context.Context) {
	t := time.NewTicker(r.cfg.CommitInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := r.commit(ctx, nil); err != nil && ctx.Err() == nil {
				r.log.Warn("runner: periodic commit failed; retrying next interval", "err", err)
			}
			r.observe()
		}
	}
}

// ensureTopics creates the missing topics, retrying while the cluster is
// unreachable. "Already exists" is success: replicas start concurrently.
func (r *Runner) ensureTopics(ctx context.Context) error {
	topics := append(slices.Clone(r.consumed), r.notifications, r.deadLetterTopic)
	topics = append(topics, r.replyTopics...)
	slices.Sort(topics)
	topics = slices.Compact(topics)

	opts := append([]kgo.Opt{kgo.SeedBrokers(r.cfg.Brokers...)}, r.kopts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("runner: kafka admin client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	b := newBackoff(r.cfg.Backoff)
	for {
		err := createTopics(ctx, adm, r.cfg.Partitions, r.cfg.ReplicationFactor, topics)
		if err == nil {
			return nil
		}
		if !errors.Is(err, errRetryCreate) {
			return err
		}
		r.log.Warn("runner: cannot create topics yet", "err", err)
		if !sleepCtx(ctx, b.next()) {
			return ctx.Err()
		}
	}
}

var errRetryCreate = errors.New("retryable")

func createTopics(ctx context.Context, adm *kadm.Client, partitions int32, rf int16, topics []string) error {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resps, err := adm.CreateTopics(cctx, partitions, rf, nil, topics...)
	if err != nil {
		return fmt.Errorf("runner: create topics: %w: %w", errRetryCreate, err)
	}
	var retry, permanent []error
	for _, t := range resps.Sorted() {
		switch {
		case t.Err == nil || errors.Is(t.Err, kerr.TopicAlreadyExists):
		case kerr.IsRetriable(t.Err):
			retry = append(retry, fmt.Errorf("topic %q: %w", t.Topic, t.Err))
		default:
			permanent = append(permanent, fmt.Errorf("runner: create topic %q: %w", t.Topic, t.Err))
		}
	}
	if len(permanent) > 0 {
		return errors.Join(permanent...)
	}
	if len(retry) > 0 {
		return fmt.Errorf("runner: create topics: %w: %w", errRetryCreate, errors.Join(retry...))
	}
	return nil
}

// sleepCtx waits d; false when ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// backoff doubles from Min to Max, each wait drawn between half and all of
// the current step so partitions that failed together (Redis went away
// under all of them) do not retry in lockstep. Infrastructure backoff runs
// on wall time: it waits for Redis or Kafka, not for a deadline.
type backoff struct {
	cfg Backoff
	cur time.Duration
}

func newBackoff(cfg Backoff) *backoff { return &backoff{cfg: cfg, cur: cfg.Min} }

func (b *backoff) next() time.Duration {
	d := b.cur
	b.cur = min(b.cur*2, b.cfg.Max)
	if d > 1 {
		d = d/2 + rand.N(d/2+1)
	}
	return d
}

func (b *backoff) reset() { b.cur = b.cfg.Min }
