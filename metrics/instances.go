package metrics

import "github.com/prometheus/client_golang/prometheus"

// instanceMetrics are the instance counters of SPEC §13, registered by New.
type instanceMetrics struct {
	// InstancesStarted counts instances started, by saga.
	InstancesStarted *prometheus.CounterVec
	// InstancesEnded counts instances ended, by saga and status
	// (COMPLETED, FAILED, CANCELLED).
	InstancesEnded *prometheus.CounterVec
	// InstancesOpen is the number of open (RUNNING or WAITING) instances,
	// as the runner last sampled it from the instance store; the same on
	// every replica: aggregate it with max.
	InstancesOpen prometheus.Gauge

	instStarted *bounded[[1]string, prometheus.Counter]
	instEnded   *bounded[[2]string, prometheus.Counter]
}

func (m *Metrics) registerInstances(reg prometheus.Registerer, maxSeries int) {
	m.InstancesStarted = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "instances_started_total",
		Help: "Saga instances started, by saga.",
	}, []string{"saga"}))
	m.InstancesEnded = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "instances_ended_total",
		Help: "Saga instances ended, by saga and status.",
	}, []string{"saga", "status"}))
	m.InstancesOpen = register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "instances_open",
		Help: "Open saga instances, as last sampled from the instance store (the same on every replica).",
	}))
	m.instStarted = newBounded(maxSeries, func(k [1]string) prometheus.Counter { return m.InstancesStarted.WithLabelValues(k[0]) }, one)
	m.instEnded = newBounded(maxSeries, func(k [2]string) prometheus.Counter { return m.InstancesEnded.WithLabelValues(k[0], k[1]) },
		func(k [2]string) [2]string { return [2]string{OtherLabel, k[1]} })
}

// InstanceStarted counts an instance of saga started.
func (m *Metrics) InstanceStarted(saga string) {
	if m == nil {
		return
	}
	m.instStarted.get([1]string{saga}).Inc()
}

// InstanceEnded counts an instance of saga ended with status.
func (m *Metrics) InstanceEnded(saga, status string) {
	if m == nil {
		return
	}
	m.instEnded.get([2]string{saga, status}).Inc()
}

// OpenInstances sets the open instances gauge.
func (m *Metrics) OpenInstances(n int64) {
	if m == nil {
		return
	}
	m.InstancesOpen.Set(float64(n))
}
