package bench

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sagarunner/sagarunner/statemanager"
)

// Run runs the configured scenario (or all of them, in the order of
// Scenarios) and writes one JSON line per measurement to cfg.Out. With
// cfg.Compare it runs them in the single layout, then in the cluster
// layout, and writes one comparison line per scenario after them.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	// The child runner's output is copied into Log from another goroutine.
	cfg.Log = &lockedWriter{w: cfg.Log}
	layouts := []string{cfg.Layout}
	if cfg.Compare {
		layouts = []string{LayoutSingle, LayoutCluster}
	}
	byLayout := map[string][]Result{}
	for _, layout := range layouts {
		lc := cfg
		lc.Layout = layout
		results, err := runLayout(ctx, &lc)
		if err != nil {
			if cfg.Compare {
				return fmt.Errorf("%w (layout %s)", err, layout)
			}
			return err
		}
		byLayout[layout] = results
	}
	if !cfg.Compare {
		return nil
	}
	for _, c := range compareResults(byLayout[LayoutSingle], byLayout[LayoutCluster]) {
		if err := writeLine(cfg.Out, c); err != nil {
			return err
		}
	}
	return nil
}

// runLayout runs the configured scenarios on a deployment of cfg.Layout
// it sets up and tears down, and returns what it wrote.
func runLayout(ctx context.Context, cfg *Config) ([]Result, error) {
	if cfg.Compare {
		fmt.Fprintf(cfg.Log, "bench: layout %s\n", cfg.Layout)
	}
	d, err := setup(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer d.close()
	names := []string{cfg.Scenario}
	if cfg.Scenario == "all" {
		names = Scenarios
		if cfg.Layout == LayoutCluster {
			names = ClusterScenarios
		}
	}
	var all []Result
	for _, name := range names {
		results, err := d.run(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("bench: scenario %s: %w", name, err)
		}
		all = append(all, results...)
	}
	return all, nil
}

func writeLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
}

// deployment is the cluster the bench drives: the broker, Redis and the
// runner under test, and the bench's own clients of them.
type deployment struct {
	cfg        *Config
	brokers    []string
	brokerKind string
	redisKind  string
	runID      string

	rdb   redis.UniversalClient
	store *statemanager.RedisStore
	kcl   *kgo.Client // producer and admin connection
	adm   *kadm.Client

	// children are the runners under test (none with an external one):
	// one in the single layout, cfg.Runners in the cluster layout, all in
	// one consumer group.
	children []*child
	started  int // child runners started so far, for profile names
	httpURL  string
	group    string
	cpuAt    []float64 // each child's CPU seconds when the measured phase began
	markAt   time.Time // when it began
	// The CPU seconds of each redis-server (when the bench started them)
	// and of the bench process, broker included, when the phase began: on
	// a small machine they compete with the runners for the same cores.
	redisPids  []int
	redisCPUAt []float64
	selfCPUAt  float64

	// partitionsEach counts the request topic's partitions each member of
	// the group owned when the runners were last assigned.
	partitionsEach []int
	// shardsEach counts the shards (hash tags) each Redis Cluster node
	// serves: the load spreads over the nodes as the shards do.
	shardsEach []int

	waitingFar int     // far-deadline tasks stored so far (timeout, rss)
	loadRate   float64 // tasks/s of the last preload, to time the next

	closers []func()
}

func setup(ctx context.Context, cfg *Config) (_ *deployment, err error) {
	d := &deployment{cfg: cfg, brokers: cfg.Brokers, brokerKind: "external", redisKind: "external",
		runID: strconv.FormatInt(time.Now().UnixNano()/1e6, 36)}
	defer func() {
		if err != nil {
			d.close()
		}
	}()
	if len(d.brokers) == 0 {
		c, err := startBroker(cfg.Partitions)
		if err != nil {
			return nil, err
		}
		d.closers = append(d.closers, c.Close)
		d.brokers, d.brokerKind = c.ListenAddrs(), "kfake"
	}
	redisAddr := cfg.Redis
	switch {
	case cfg.Layout == LayoutCluster:
		if _, err := exec.LookPath("redis-server"); err != nil {
			return nil, fmt.Errorf("bench: the cluster layout starts a Redis Cluster of redis-server processes, "+
				"and redis-server is not on PATH: %w", err)
		}
		d.logf("starting a Redis Cluster of %d redis-server processes", cfg.RedisNodes)
		c, err := startRedisCluster(ctx, cfg.RedisNodes)
		if err != nil {
			return nil, err
		}
		d.closers = append(d.closers, c.stop)
		redisAddr, d.redisKind, d.redisPids = strings.Join(c.addrs(), ","), "redis-server", c.pids()
	case redisAddr == "":
		addr, kind, pid, stop, err := startRedis(cfg.Log)
		if err != nil {
			return nil, err
		}
		d.closers = append(d.closers, stop)
		redisAddr, d.redisKind = addr, kind
		if pid != 0 {
			d.redisPids = []int{pid}
		}
	}
	cfg.Redis = redisAddr
	// Several comma-separated addresses are a Redis Cluster, as for the
	// runner. Enough connections for every preloading goroutine to have
	// its own.
	d.rdb = redis.NewUniversalClient(&redis.UniversalOptions{Addrs: strings.Split(redisAddr, ","),
		PoolSize: cfg.Preloaders + 8, IsClusterMode: cfg.Layout == LayoutCluster})
	d.closers = append(d.closers, func() { d.rdb.Close() })
	d.store, err = statemanager.NewRedisStore(d.rdb, Domain, statemanager.RedisConfig{Shards: cfg.Partitions})
	if err != nil {
		return nil, err
	}
	if cfg.Layout == LayoutCluster {
		if d.shardsEach, err = shardsPerNode(ctx, d.rdb, cfg.Partitions, cfg.RedisNodes); err != nil {
			return nil, err
		}
		d.logf("Redis Cluster nodes %s serve %v of the %d shards", redisAddr, d.shardsEach, cfg.Partitions)
	}
	d.kcl, err = kgo.NewClient(kgo.SeedBrokers(d.brokers...),
		kgo.ProducerLinger(5*time.Millisecond),
		kgo.MaxBufferedRecords(100_000),
		kgo.RecordDeliveryTimeout(time.Minute))
	if err != nil {
		return nil, fmt.Errorf("bench: kafka client: %w", err)
	}
	d.closers = append(d.closers, d.kcl.Close)
	d.adm = kadm.NewClient(d.kcl)
	if err := d.createTopics(ctx); err != nil {
		return nil, err
	}
	return d, nil
}

func (d *deployment) close() {
	_ = d.stopRunner()
	for i := len(d.closers) - 1; i >= 0; i-- {
		d.closers[i]()
	}
	d.closers = nil
}

func (d *deployment) logf(format string, args ...any) {
	fmt.Fprintf(d.cfg.Log, "bench: "+format+"\n", args...)
}

// createTopics creates the topics the bench produces to or consumes from,
// so consumers can be positioned before anything is produced.
func (d *deployment) createTopics(ctx context.Context) error {
	topics := []string{StartTopic, DoneTopic, LifecycleTopic, ReplyTopic, d.cfg.RequestTopic, d.cfg.NotificationTopic}
	res, err := d.adm.CreateTopics(ctx, int32(d.cfg.Partitions), -1, nil, topics...)
	if err != nil {
		return fmt.Errorf("bench: create topics: %w", err)
	}
	for _, r := range res {
		if r.Err != nil && !errors.Is(r.Err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("bench: create topic %s: %w", r.Topic, r.Err)
		}
	}
	// The metadata of new topics reaches every client shortly after.
	for {
		ends, err := d.adm.ListEndOffsets(ctx, topics...)
		if err == nil && ends.Error() == nil && countPartitions(ends, topics) >= len(topics)*d.cfg.Partitions {
			return nil
		}
		if !sleepCtx(ctx, 50*time.Millisecond) {
			return fmt.Errorf("bench: topics never became visible: %w", ctx.Err())
		}
	}
}

func countPartitions(l kadm.ListedOffsets, topics []string) int {
	n := 0
	for _, t := range topics {
		n += len(l[t])
	}
	return n
}

func (d *deployment) run(ctx context.Context, name string) ([]Result, error) {
	var results []Result
	var err error
	switch name {
	case "start":
		results, err = d.startScenario(ctx)
	case "proceed":
		results, err = d.proceedScenario(ctx)
	case "lifecycle":
		results, err = d.lifecycleScenario(ctx)
	case "timeout":
		results, err = d.timeoutScenario(ctx)
	case "http":
		results, err = d.httpScenario(ctx)
	case "rss":
		results, err = d.rssScenario(ctx)
	}
	if err != nil {
		return nil, err
	}
	for i := range results {
		r := &results[i]
		r.Partitions = d.cfg.Partitions
		r.Layout = d.cfg.Layout
		if d.cfg.Layout == LayoutCluster {
			r.RedisNodes, r.Runners = d.cfg.RedisNodes, d.cfg.Runners
			r.RunnerPartitionsEach = d.partitionsEach
			r.RedisShardsEach = d.shardsEach
		}
		r.Redis = d.redisKind
		r.Broker = d.brokerKind
		r.Load1 = loadAverage()
		if err := writeLine(d.cfg.Out, r); err != nil {
			return nil, err
		}
	}
	return results, nil
}

// startRunner starts fresh child runners in a consumer group of the run
// (or checks the external one) and waits until they own every partition of
// the topics the bench drives.
func (d *deployment) startRunner(ctx context.Context) error {
	if d.cfg.Runner == RunnerExternal {
		d.group, d.httpURL = d.cfg.Group, strings.TrimRight(d.cfg.HTTP, "/")
		return d.waitAssigned(ctx)
	}
	if len(d.children) > 0 {
		return nil
	}
	if d.group == "" {
		d.group = d.cfg.Group
		if d.group == "" {
			d.group = "sagarunner-bench-" + d.runID
		}
		if err := d.skipOldRecords(ctx); err != nil {
			return err
		}
	}
	n := 1
	if d.cfg.Layout == LayoutCluster {
		n = d.cfg.Runners
	}
	for i := 0; i < n; i++ {
		c, err := startChild(childSpec{
			argv: d.cfg.RunnerCommand, env: d.cfg.RunnerEnv, brokers: d.brokers, redis: d.cfg.Redis,
			group: d.group, partitions: d.cfg.Partitions, cpuProfile: d.profilePath(i, n), log: d.cfg.Log,
		})
		if err != nil {
			return err
		}
		d.started++
		d.children = append(d.children, c)
	}
	d.httpURL = d.children[0].http
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for _, c := range d.children {
		if err := waitHTTPReady(ctx, c.http, c); err != nil {
			return err
		}
	}
	return d.waitAssigned(ctx)
}

// profilePath is where child i of n writes its CPU profile: the file asked
// for, with the layout and the runner's number added when one run has
// several runners or layouts, so no profile overwrites another.
func (d *deployment) profilePath(i, n int) string {
	p := d.cfg.CPUProfile
	if p == "" {
		return ""
	}
	if d.cfg.Compare || d.cfg.Layout == LayoutCluster {
		p += "." + d.cfg.Layout
	}
	if n > 1 {
		p += "." + strconv.Itoa(i+1)
	}
	return p
}

// skipOldRecords commits the group at the current ends of the topics the
// runner consumes, so a runner joining a broker that holds records of
// earlier runs starts with this run's. Every child runner of one run
// joins the same group and so carries on where the previous one stopped.
func (d *deployment) skipOldRecords(ctx context.Context) error {
	var offs kadm.Offsets
	for _, t := range []string{StartTopic, LifecycleTopic, d.cfg.RequestTopic} {
		ends, err := d.endOffsets(ctx, t)
		if err != nil {
			return err
		}
		for p, o := range ends {
			offs.Add(kadm.Offset{Topic: t, Partition: p, At: o, LeaderEpoch: -1})
		}
	}
	res, err := d.adm.CommitOffsets(ctx, d.group, offs)
	if err == nil {
		err = res.Error()
	}
	if err != nil {
		return fmt.Errorf("bench: position group %s at the end of its topics: %w", d.group, err)
	}
	return nil
}

// waitAssigned polls the group until its members own every partition of
// the start and request topics (and bench-lifecycle, when the run measures
// it): before that, records would wait for a rebalance and the rate would
// measure the join.
func (d *deployment) waitAssigned(ctx context.Context) error {
	lifecycle := d.cfg.Scenario == "lifecycle" || d.cfg.Scenario == "all"
	for {
		gs, err := d.adm.DescribeGroups(ctx, d.group)
		if err == nil {
			g := gs[d.group]
			as := g.AssignedPartitions()
			all := g.State == "Stable"
			// Every child runner must have joined, or the next rebalance
			// would fall inside the measured phase.
			if len(d.children) > 0 && len(g.Members) != len(d.children) {
				all = false
			}
			for p := int32(0); p < int32(d.cfg.Partitions) && all; p++ {
				all = as.Lookup(StartTopic, p) && as.Lookup(d.cfg.RequestTopic, p) && (!lifecycle || as.Lookup(LifecycleTopic, p))
			}
			if all {
				d.partitionsEach = nil
				for _, m := range g.Members {
					n := 0
					if c, ok := m.Assigned.AsConsumer(); ok {
						for _, t := range c.Topics {
							if t.Topic == d.cfg.RequestTopic {
								n += len(t.Partitions)
							}
						}
					}
					d.partitionsEach = append(d.partitionsEach, n)
				}
				return nil
			}
		}
		if !sleepCtx(ctx, 50*time.Millisecond) {
			return fmt.Errorf("bench: group %s never owned every partition of %s and %s (with --runner=external, "+
				"load the bench sagas: sagarunner bench --write-sagas DIR): %w", d.group, StartTopic, d.cfg.RequestTopic, ctx.Err())
		}
	}
}

// markCPU starts the measured phase's CPU accounting.
func (d *deployment) markCPU() {
	d.markAt = time.Now()
	if st, err := readProc(os.Getpid()); err == nil {
		d.selfCPUAt = st.cpu
	}
	d.redisCPUAt = make([]float64, len(d.redisPids))
	for i, pid := range d.redisPids {
		if st, err := readProc(pid); err == nil {
			d.redisCPUAt[i] = st.cpu
		}
	}
	if len(d.redisPids) > 0 {
		// Only a Redis the bench started is reset: its command statistics
		// then cover the measured phase alone.
		_ = forEachNode(context.Background(), d.rdb, func(ctx context.Context, c *redis.Client) error {
			return c.ConfigResetStat(ctx).Err()
		})
	}
	d.cpuAt = make([]float64, len(d.children))
	for i, c := range d.children {
		if st, err := readProc(c.cmd.Process.Pid); err == nil {
			d.cpuAt[i] = st.cpu
		}
	}
}

// runnerFigures fills in the child runners' memory and the CPU they, Redis
// and the bench used since markCPU. With several runners or Redis
// processes the figures are sums, and the _each fields hold each
// process's own.
func (d *deployment) runnerFigures(r *Result) {
	elapsed := time.Since(d.markAt)
	if st, err := readProc(os.Getpid()); err == nil {
		r.BenchCPUS = ptr(round2(st.cpu - d.selfCPUAt))
	}
	if len(d.redisPids) > 0 {
		var sum float64
		each := make([]float64, len(d.redisPids))
		for i, pid := range d.redisPids {
			if st, err := readProc(pid); err == nil && i < len(d.redisCPUAt) {
				each[i] = round2(st.cpu - d.redisCPUAt[i])
				sum += st.cpu - d.redisCPUAt[i]
			}
		}
		r.RedisCPUS = ptr(round2(sum))
		if len(each) > 1 {
			r.RedisCPUSEach = each
		}
		d.logRedisCommands()
	}
	if len(d.children) == 0 {
		return
	}
	var peak, rss, cpu float64
	var peaks, rsss, cpus []float64
	for i, c := range d.children {
		st, err := readProc(c.cmd.Process.Pid)
		if err != nil {
			d.logf("%v", err)
			return
		}
		used := st.cpu
		if i < len(d.cpuAt) {
			used -= d.cpuAt[i]
		}
		peak, rss, cpu = peak+st.peakRSS, rss+st.rss, cpu+used
		peaks, rsss, cpus = append(peaks, round1(st.peakRSS)), append(rsss, round1(st.rss)), append(cpus, round2(used))
	}
	r.RunnerPeakRSSMB = ptr(round1(peak))
	r.RunnerRSSMB = ptr(round1(rss))
	r.RunnerCPUS = ptr(round2(cpu))
	if elapsed > 0 {
		r.RunnerCPUPct = ptr(round1(100 * cpu / elapsed.Seconds()))
	}
	if len(d.children) > 1 {
		r.RunnerPeakRSSMBEach, r.RunnerRSSMBEach, r.RunnerCPUSEach = peaks, rsss, cpus
	}
}

// stopRunner stops the child runners (an external one keeps running).
func (d *deployment) stopRunner() error {
	errs := make([]error, len(d.children))
	var wg sync.WaitGroup
	for i, c := range d.children {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.stop(); err != nil {
				errs[i] = fmt.Errorf("bench: runner %d exit: %w", i+1, err)
			}
		}()
	}
	wg.Wait()
	d.children, d.cpuAt = nil, nil
	return errors.Join(errs...)
}

// produce produces n records built by mk, as fast as the client takes them
// or paced at cfg.Rate per second, and waits for every acknowledgement. It
// returns when the first record was handed to the client and, per
// partition, the offset after the last record.
func (d *deployment) produce(ctx context.Context, n int, mk func(i int, now int64) *kgo.Record) (time.Time, map[int32]int64, error) {
	var (
		mu      sync.Mutex
		ends    = map[int32]int64{}
		firstMu sync.Once
		first   time.Time
		failed  atomic.Pointer[error]
		wg      sync.WaitGroup
	)
	pace := newPacer(d.cfg.Rate)
	wg.Add(n)
	for i := 0; i < n; i++ {
		if err := pace.wait(ctx); err != nil {
			wg.Add(i - n)
			wg.Wait()
			return first, nil, err
		}
		now := time.Now()
		firstMu.Do(func() { first = now })
		d.kcl.Produce(ctx, mk(i, now.UnixMilli()), func(r *kgo.Record, err error) {
			if err != nil {
				failed.CompareAndSwap(nil, &err)
			} else {
				mu.Lock()
				ends[r.Partition] = max(ends[r.Partition], r.Offset+1)
				mu.Unlock()
			}
			wg.Done()
		})
	}
	wg.Wait()
	if p := failed.Load(); p != nil {
		return first, nil, fmt.Errorf("bench: produce: %w", *p)
	}
	return first, ends, nil
}

// pacer spaces records to a rate; a zero rate never waits.
type pacer struct {
	rate  int
	start time.Time
	sent  int
}

func newPacer(rate int) *pacer { return &pacer{rate: rate} }

func (p *pacer) wait(ctx context.Context) error {
	if p.rate == 0 {
		return ctx.Err()
	}
	if p.sent == 0 {
		p.start = time.Now()
	}
	due := p.start.Add(time.Duration(float64(p.sent) / float64(p.rate) * float64(time.Second)))
	p.sent++
	// Sleeping for every record would cost the bench more CPU than the
	// records: let it run up to 5 ms ahead, then sleep in one go.
	if d := time.Until(due); d > 5*time.Millisecond {
		if !sleepCtx(ctx, d) {
			return ctx.Err()
		}
	}
	return nil
}

// waitCommitted polls the group's committed offsets of topic until each
// partition in want is covered, and returns when it saw that.
func (d *deployment) waitCommitted(ctx context.Context, topic string, want map[int32]int64) (time.Time, error) {
	for {
		got, err := d.adm.FetchOffsetsForTopics(ctx, d.group, topic)
		if err == nil {
			all := true
			for p, end := range want {
				o, ok := got.Lookup(topic, p)
				// A partition nothing was produced to needs no commit.
				if end > 0 && (!ok || o.Err != nil || o.At < end) {
					all = false
					break
				}
			}
			if all {
				return time.Now(), nil
			}
		}
		if !sleepCtx(ctx, 10*time.Millisecond) {
			return time.Time{}, fmt.Errorf("bench: committed offsets of %s never covered %v: %w", topic, want, ctx.Err())
		}
	}
}

// endOffsets returns the current end offset of every partition of topic.
func (d *deployment) endOffsets(ctx context.Context, topic string) (map[int32]int64, error) {
	l, err := d.adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("bench: end offsets of %s: %w", topic, err)
	}
	if err := l.Error(); err != nil {
		return nil, fmt.Errorf("bench: end offsets of %s: %w", topic, err)
	}
	out := map[int32]int64{}
	l.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out, nil
}

// consumer reads topics from their current ends, handing each record to fn
// with the time it was polled, until stop.
type consumer struct {
	cl   *kgo.Client
	done chan struct{}
}

func (d *deployment) consume(ctx context.Context, fn func(r *kgo.Record, polled time.Time), topics ...string) (*consumer, error) {
	offsets := map[string]map[int32]kgo.Offset{}
	for _, t := range topics {
		ends, err := d.endOffsets(ctx, t)
		if err != nil {
			return nil, err
		}
		offsets[t] = map[int32]kgo.Offset{}
		for p, o := range ends {
			offsets[t][p] = kgo.NewOffset().At(o)
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(d.brokers...), kgo.ConsumePartitions(offsets),
		kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		return nil, fmt.Errorf("bench: consumer: %w", err)
	}
	c := &consumer{cl: cl, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for {
			fs := cl.PollFetches(ctx)
			if fs.IsClientClosed() || ctx.Err() != nil {
				return
			}
			now := time.Now()
			fs.EachRecord(func(r *kgo.Record) { fn(r, now) })
		}
	}()
	return c, nil
}

func (c *consumer) stop() {
	c.cl.Close()
	<-c.done
}

// waitFor polls cond until it holds.
func waitFor(ctx context.Context, what string, cond func() bool) error {
	for !cond() {
		if !sleepCtx(ctx, 5*time.Millisecond) {
			return fmt.Errorf("bench: waiting for %s: %w", what, ctx.Err())
		}
	}
	return nil
}

// lockedWriter serialises writes from the bench and the copier of the
// child runner's output.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// logRedisCommands logs where redis-server spent the measured phase: the
// commands with the most total time, from INFO commandstats.
func (d *deployment) logRedisCommands() {
	var mu sync.Mutex
	var infos []string
	err := forEachNode(context.Background(), d.rdb, func(ctx context.Context, c *redis.Client) error {
		info, err := c.Info(ctx, "commandstats").Result()
		mu.Lock()
		infos = append(infos, info)
		mu.Unlock()
		return err
	})
	if err != nil {
		return
	}
	type stat struct {
		name       string
		calls, sum float64
	}
	// A cluster's nodes are summed: the time Redis as a whole spent.
	byName := map[string]*stat{}
	var stats []*stat
	for _, line := range strings.Split(strings.Join(infos, "\n"), "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		name = strings.TrimPrefix(name, "cmdstat_")
		st := byName[name]
		if st == nil {
			st = &stat{name: name}
			byName[name] = st
			stats = append(stats, st)
		}
		for _, kv := range strings.Split(rest, ",") {
			k, v, _ := strings.Cut(kv, "=")
			f, _ := strconv.ParseFloat(v, 64)
			switch k {
			case "calls":
				st.calls += f
			case "usec":
				st.sum += f
			}
		}
	}
	slices.SortFunc(stats, func(a, b *stat) int { return cmp.Compare(b.sum, a.sum) })
	var parts []string
	for _, st := range stats[:min(len(stats), 6)] {
		parts = append(parts, fmt.Sprintf("%s %.0f calls %.1fus/call %.2fs", st.name, st.calls, st.sum/max(st.calls, 1), st.sum/1e6))
	}
	d.logf("redis-server time by command: %s", strings.Join(parts, "; "))
}
