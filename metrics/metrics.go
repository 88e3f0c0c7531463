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
	// TimerLateness is how long after its deadline a task was timed out, in
	// seconds. Buckets are fine below one second because the target is a
	// p99 under 100 ms.
	TimerLateness prometheus.Histogram
	// DeadLettered counts records sent to the dead-letter topic, by code
	// ("ENGINE" for the engine's own, whose code is in the record).
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
}

// LatenessBuckets are the TimerLateness buckets in seconds.
var LatenessBuckets = []float64{.001, .0025, .005, .01, .025, .05, .075, .1, .15, .2, .3, .5, .75, 1, 2.5, 5, 10, 30, 60}

// New creates the collectors and registers them with reg. A nil reg gets a
// fresh registry with the Go and process collectors, which Handler then
// serves. When reg is also a prometheus.Gatherer (a *prometheus.Registry),
// Handler serves it; otherwise Handler serves prometheus.DefaultGatherer.
// Registering into a registry that already holds these collectors (two
// components sharing one registry) reuses the registered ones.
func New(reg prometheus.Registerer) *Metrics {
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
	m.TimerLateness = register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: Namespace, Name: "timer_lateness_seconds",
		Help:    "How long after its deadline a task was timed out.",
		Buckets: LatenessBuckets,
	}))
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
	return m
}

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
	m.TasksStarted.WithLabelValues(domain).Add(float64(n))
}

// Closed counts one task closed with status.
func (m *Metrics) Closed(status string) {
	if m == nil {
		return
	}
	m.TasksClosed.WithLabelValues(status).Inc()
}

// Lateness records how late a deadline fired. Early firings (negative d,
// possible with clock skew between replicas) are recorded as zero.
func (m *Metrics) Lateness(d time.Duration) {
	if m == nil {
		return
	}
	if d < 0 {
		d = 0
	}
	m.TimerLateness.Observe(d.Seconds())
}

// DeadLetter counts one record sent to the dead-letter topic with code.
func (m *Metrics) DeadLetter(code string) {
	if m == nil {
		return
	}
	m.DeadLettered.WithLabelValues(code).Inc()
}

// Retry counts one failed step tried again, by error class.
func (m *Metrics) Retry(class string) {
	if m == nil {
		return
	}
	m.Retries.WithLabelValues(class).Inc()
}

// ProduceFailed counts one output record whose produce failed, by class.
func (m *Metrics) ProduceFailed(class string) {
	if m == nil {
		return
	}
	m.ProduceFailures.WithLabelValues(class).Inc()
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
	m.HTTPRequests.WithLabelValues(route, strconv.Itoa(code)).Inc()
	m.HTTPLatency.WithLabelValues(route).Observe(d.Seconds())
}
