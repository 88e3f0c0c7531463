package runner

import (
	"time"

	"github.com/sagarunner/sagarunner/timers"
)

// Metrics receives the runner's measurements. The Prometheus collectors of
// package metrics implement it; the runner defines only what it needs so it
// does not depend on Prometheus. Implementations must be safe for concurrent
// use and fast: they are called on the hot path of every partition.
type Metrics interface {
	// RecordsConsumed counts records whose effects are durable and whose
	// offsets are marked for commit.
	RecordsConsumed(topic string, n int)
	// StepLatency observes how long the engine took to handle one record.
	StepLatency(d time.Duration)
	// TasksStarted counts tasks newly started.
	TasksStarted(n int)
	// TasksClosed counts task-closed notifications made durable, by their
	// status (COMPLETED, TIMEOUT, CANCELLED).
	TasksClosed(status string, n int)
	// DeadLettered counts records produced to the dead-letter topic.
	DeadLettered(n int)
	// ConsumerLag reports, per partition, how many records wait behind the
	// last one polled.
	ConsumerLag(topic string, partition int32, lag int64)
	// TimerLateness observes, per fired deadline, how long after the
	// deadline its timeout became durable.
	timers.Observer
}

// NopMetrics discards every measurement; it is the default.
type NopMetrics struct{}

var _ Metrics = NopMetrics{}

func (NopMetrics) RecordsConsumed(string, int)      {}
func (NopMetrics) StepLatency(time.Duration)        {}
func (NopMetrics) TasksStarted(int)                 {}
func (NopMetrics) TasksClosed(string, int)          {}
func (NopMetrics) DeadLettered(int)                 {}
func (NopMetrics) ConsumerLag(string, int32, int64) {}
func (NopMetrics) TimerLateness(time.Duration)      {}
