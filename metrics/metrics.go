package metrics

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace prefixes every metric name.
const Namespace = "sagarunner"

// Metrics is the set of collectors sagarunner exports. The fields are
// exported for tests and for callers that need a collector directly; the
// methods are the intended way to record, because they are no-ops on a nil
// receiver.
type Metrics struct {
	// RecordsConsumed counts records handed to the engine, by topic.
	RecordsConsumed *prometheus.CounterVec
	// StepLatency is the time from consuming a record to its offset being
	// committable (effects durable), in seconds.
	StepLatency prometheus.Histogram
	// TasksStarted counts tasks newly started, by domain. A replayed start
	// is not counted.
	TasksStarted *prometheus.CounterVec
	// TasksClosed counts task closes by status (COMPLETED, TIMEOUT,
	// CANCELLED).
	TasksClosed *prometheus.CounterVec
	// TasksWaiting is the number of waiting tasks, by domain, as the
	// runner last sampled it from the state manager. Every replica reports
	// the same store-wide count: aggregate it with max, not sum.
	TasksWaiting *prometheus.GaugeVec
	// TimerLateness is how long after its deadline a task was timed out, in
	// seconds, by domain. Buckets are fine below one second because the
	// target is a p99 under 100 ms.
	TimerLateness *prometheus.HistogramVec
	// StepDuration is how long one saga step's action took, in seconds,
	// by saga and step.
	StepDuration *prometheus.HistogramVec
	// Steps counts saga steps run, by saga, step and status (SUCCESS,
	// FAIL, TIMEOUT, CANCELLED, WAITING, OTHER).
	Steps *prometheus.CounterVec
	// Outcomes counts the notable outcomes the runner logs that are no
	// dead letter (a task id in use, a close of an unknown or closed task,
	// an unanswered FAIL), by kind.
	Outcomes *prometheus.CounterVec
	// DeadLettered counts records sent to the dead-letter topic, by code:
	// the engine's (saga.Dead*, a malformed instance's result code) and the
	// runner's (runner.Dead*).
	DeadLettered *prometheus.CounterVec
	// Retries counts failed steps tried again, by class (transient,
	// unknown).
	Retries *prometheus.CounterVec
	// ProduceFailures counts output records whose produce failed, by
	// class (transient, permanent, unknown).
	ProduceFailures *prometheus.CounterVec
	// ConsumerLag is the number of records not committed, the high
	// watermark minus the committed offset, by topic and partition.
	ConsumerLag *prometheus.GaugeVec
	// OldestUncommitted is the age in seconds of the oldest polled record
	// not yet committed, by topic and partition: a partition that does not
	// move shows here while its lag alone may look small.
	OldestUncommitted *prometheus.GaugeVec
	// HTTPRequests counts gateway requests by route pattern and status
	// code. The route is the registered pattern, never the raw URL, so
	// task ids do not explode the label set.
	HTTPRequests *prometheus.CounterVec
	// HTTPLatency is gateway request latency in seconds, by route.
	HTTPLatency *prometheus.HistogramVec

	gatherer prometheus.Gatherer

	instanceMetrics

	// The series of the labels the runner passes, bounded (bounded.go).
	started, waiting, closed, dead, retries, produce, outcomes *bounded[[1]string, prometheus.Counter]
	waitingGauges                                              *bounded[[1]string, prometheus.Gauge]
	lateness                                                   *bounded[[1]string, prometheus.Observer]
	stepDur                                                    *bounded[[2]string, prometheus.Observer]
	http                                                       *bounded[httpKey, httpSeries]
	steps                                                      *bounded[[3]string, prometheus.Counter]
}

// Option configures New.
type Option func(*options)

type options struct{ maxSeries int }

// WithMaxSeries bounds how many label sets each metric whose labels the
// runner passes (domain, saga and step, code, status, class, kind) keeps;
// past it, new label sets count under OtherLabel. n <= 0 keeps the default,
// DefaultMaxSeries. Two Metrics sharing one registry bound each on its own.
func WithMaxSeries(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.maxSeries = n
		}
	}
}

// LatenessBuckets are the TimerLateness buckets in seconds.
var LatenessBuckets = []float64{.001, .0025, .005, .01, .025, .05, .075, .1, .15, .2, .3, .5, .75, 1, 2.5, 5, 10, 30, 60}

// New creates the collectors and registers them with reg. A nil reg gets a
// fresh registry with the Go and process collectors, which Handler then
// serves. When reg is also a prometheus.Gatherer (a *prometheus.Registry),
// Handler serves it; otherwise Handler serves prometheus.DefaultGatherer.
// Registering into a registry that already holds these collectors (two
// components sharing one registry) reuses the registered ones.
func New(reg prometheus.Registerer, opts ...Option) *Metrics {
	o := options{maxSeries: DefaultMaxSeries}
	for _, opt := range opts {
		opt(&o)
	}
	if reg == nil {
		r := prometheus.NewRegistry()
		r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		reg = r
	}
	m := &Metrics{gatherer: prometheus.DefaultGatherer}
	if g, ok := reg.(prometheus.Gatherer); ok {
		m.gatherer = g
	}
	m.RecordsConsumed = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "records_consumed_total",
		Help: "Records consumed and handed to the saga engine, by topic.",
	}, []string{"topic"}))
	m.StepLatency = register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: Namespace, Name: "step_latency_seconds",
		Help:    "Time from consuming a record until its effects are durable.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}))
	m.TasksStarted = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "tasks_started_total",
		Help: "Tasks newly started, by domain.",
	}, []string{"domain"}))
	m.TasksClosed = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "tasks_closed_total",
		Help: "Tasks closed, by status.",
	}, []string{"status"}))
	m.TasksWaiting = register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "tasks_waiting",
		Help: "Waiting tasks, by domain, as last sampled from the state manager (the same on every replica).",
	}, []string{"domain"}))
	m.TimerLateness = register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace, Name: "timer_lateness_seconds",
		Help:    "How long after its deadline a task was timed out, by domain.",
		Buckets: LatenessBuckets,
	}, []string{"domain"}))
	m.StepDuration = register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace, Name: "step_duration_seconds",
		Help:    "How long one saga step's action took, by saga and step.",
		Buckets: StepBuckets,
	}, []string{"saga", "step"}))
	m.Steps = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "steps_total",
		Help: "Saga steps run, by saga, step and status.",
	}, []string{"saga", "step", "status"}))
	m.Outcomes = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "outcomes_total",
		Help: "Notable outcomes that are no dead letter (task id in use, unknown or closed task, unanswered FAIL), by kind.",
	}, []string{"kind"}))
	m.DeadLettered = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "dead_lettered_total",
		Help: "Records sent to the dead-letter topic, by code.",
	}, []string{"code"}))
	m.Retries = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "retries_total",
		Help: "Failed steps tried again, by error class.",
	}, []string{"class"}))
	m.ProduceFailures = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "produce_failures_total",
		Help: "Output records whose produce failed, by error class.",
	}, []string{"class"}))
	m.ConsumerLag = register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "consumer_lag_records",
		Help: "Records not committed (high watermark minus committed offset), by topic and partition.",
	}, []string{"topic", "partition"}))
	m.OldestUncommitted = register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "oldest_uncommitted_seconds",
		Help: "Age of the oldest polled record not yet committed, by topic and partition.",
	}, []string{"topic", "partition"}))
	m.HTTPRequests = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "http_requests_total",
		Help: "Gateway requests by route and status code.",
	}, []string{"route", "code"}))
	m.HTTPLatency = register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace, Name: "http_request_duration_seconds",
		Help:    "Gateway request latency by route.",
		Buckets: prometheus.DefBuckets,
	}, []string{"route"}))

	counters := func(v *prometheus.CounterVec) *bounded[[1]string, prometheus.Counter] {
		return newBounded(o.maxSeries, func(k [1]string) prometheus.Counter { return v.WithLabelValues(k[0]) }, one)
	}
	m.started, m.closed, m.dead = counters(m.TasksStarted), counters(m.TasksClosed), counters(m.DeadLettered)
	m.retries, m.produce, m.outcomes = counters(m.Retries), counters(m.ProduceFailures), counters(m.Outcomes)
	m.waitingGauges = newBounded(o.maxSeries, func(k [1]string) prometheus.Gauge { return m.TasksWaiting.WithLabelValues(k[0]) }, one)
	m.lateness = newBounded(o.maxSeries, func(k [1]string) prometheus.Observer { return m.TimerLateness.WithLabelValues(k[0]) }, one)
	m.stepDur = newBounded(o.maxSeries, func(k [2]string) prometheus.Observer { return m.StepDuration.WithLabelValues(k[0], k[1]) },
		func([2]string) [2]string { return [2]string{OtherLabel, OtherLabel} })
	m.steps = newBounded(o.maxSeries, func(k [3]string) prometheus.Counter { return m.Steps.WithLabelValues(k[0], k[1], k[2]) },
		func(k [3]string) [3]string { return [3]string{OtherLabel, OtherLabel, k[2]} })
	m.http = newBounded(o.maxSeries, func(k httpKey) httpSeries {
		return httpSeries{m.HTTPRequests.WithLabelValues(k.route, strconv.Itoa(k.code)), m.HTTPLatency.WithLabelValues(k.route)}
	}, func(k httpKey) httpKey { return httpKey{OtherLabel, k.code} })
	m.registerInstances(reg, o.maxSeries)
	return m
}

// httpKey and httpSeries are one gateway route and status code and their
// children, cached so a request neither formats its code nor hashes its
// labels.
type httpKey struct {
	route string
	code  int
}

type httpSeries struct {
	requests prometheus.Counter
	latency  prometheus.Observer
}

// StepBuckets are the StepDuration buckets in seconds: a step is one or two
// Redis round trips, well under a millisecond on a healthy store.
var StepBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5}

// register registers c, or returns the collector already registered under
// the same descriptor. Any other registration error is a programming error
// (a name clash with a different type) and panics at start-up.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err)
	}
	return c
}

// Handler serves the registry in the Prometheus exposition format. On a nil
// *Metrics it serves the default gatherer.
func (m *Metrics) Handler() http.Handler {
	if m == nil {
		return promhttp.Handler()
	}
	return promhttp.HandlerFor(m.gatherer, promhttp.HandlerOpts{})
}

// Consumed counts one record consumed from topic.
func (m *Metrics) Consumed(topic string) {
	if m == nil {
		return
	}
	m.RecordsConsumed.WithLabelValues(topic).Inc()
}

// Step records the latency of one record's step.
func (m *Metrics) Step(d time.Duration) {
	if m == nil {
		return
	}
	m.StepLatency.Observe(d.Seconds())
}

// Started counts n tasks newly started in domain.
func (m *Metrics) Started(domain string, n int) {
	if m == nil || n <= 0 {
		return
	}
	m.started.get([1]string{domain}).Add(float64(n))
}

// Closed counts one task closed with status.
func (m *Metrics) Closed(status string) {
	if m == nil {
		return
	}
	m.closed.get([1]string{status}).Inc()
}

// Lateness records how late a deadline of domain fired. Early firings
// (negative d, possible with clock skew between replicas) are recorded as
// zero.
func (m *Metrics) Lateness(domain string, d time.Duration) {
	if m == nil {
		return
	}
	m.lateness.get([1]string{domain}).Observe(max(d, 0).Seconds())
}

// Waiting sets the number of waiting tasks of domain.
func (m *Metrics) Waiting(domain string, n int64) {
	if m == nil {
		return
	}
	m.waitingGauges.get([1]string{domain}).Set(float64(max(n, 0)))
}

// StepDone records one saga step run: its saga, step, status and how long
// its action took.
func (m *Metrics) StepDone(saga, step, status string, d time.Duration) {
	if m == nil {
		return
	}
	m.stepDur.get([2]string{saga, step}).Observe(max(d, 0).Seconds())
	m.steps.get([3]string{saga, step, status}).Inc()
}

// Outcome counts one notable outcome of kind.
func (m *Metrics) Outcome(kind string) {
	if m == nil {
		return
	}
	m.outcomes.get([1]string{kind}).Inc()
}

// DeadLetter counts one record sent to the dead-letter topic with code.
func (m *Metrics) DeadLetter(code string) {
	if m == nil {
		return
	}
	m.dead.get([1]string{code}).Inc()
}

// Retry counts one failed step tried again, by error class.
func (m *Metrics) Retry(class string) {
	if m == nil {
		return
	}
	m.retries.get([1]string{class}).Inc()
}

// ProduceFailed counts one output record whose produce failed, by class.
func (m *Metrics) ProduceFailed(class string) {
	if m == nil {
		return
	}
	m.produce.get([1]string{class}).Inc()
}

// Uncommitted sets the age of a partition's oldest uncommitted record.
func (m *Metrics) Uncommitted(topic string, partition int32, age time.Duration) {
	if m == nil {
		return
	}
	m.OldestUncommitted.WithLabelValues(topic, strconv.Itoa(int(partition))).Set(max(age, 0).Seconds())
}

// Lag sets the consumer lag of one partition.
func (m *Metrics) Lag(topic string, partition int32, lag int64) {
	if m == nil {
		return
	}
	if lag < 0 {
		lag = 0
	}
	m.ConsumerLag.WithLabelValues(topic, strconv.Itoa(int(partition))).Set(float64(lag))
}

// DropLag forgets the lag and uncommitted age of a partition this process
// no longer consumes (revoked in a rebalance), so a stale value does not
// linger.
func (m *Metrics) DropLag(topic string, partition int32) {
	if m == nil {
		return
	}
	p := strconv.Itoa(int(partition))
	m.ConsumerLag.DeleteLabelValues(topic, p)
	m.OldestUncommitted.DeleteLabelValues(topic, p)
}

// HTTP records one gateway request: its route pattern, status code and
// latency.
func (m *Metrics) HTTP(route string, code int, d time.Duration) {
	if m == nil {
		return
	}
	c := m.http.get(httpKey{route, code})
	c.requests.Inc()
	c.latency.Observe(d.Seconds())
}
