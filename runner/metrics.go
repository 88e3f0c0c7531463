package runner

import (
	"time"

	"github.com/sagarunner/sagarunner/timers"
)

// Metrics receives the runner's measurements. *metrics.Metrics implements it;
// the runner names only what it records so it does not depend on Prometheus.
// Implementations must be safe for concurrent use and cheap: they are called
// on the hot path of every partition.
type Metrics interface {
	// Consumed counts one record whose effects are durable and whose offset
	// is marked for commit.
	Consumed(topic string)
	// Step observes the time from polling a record to its effects being
	// durable (its offset committable).
	Step(d time.Duration)
	// Started counts n tasks newly started in domain, one of the known
	// domains (the loaded sagas' and the configured ones) or OtherDomain.
	Started(domain string, n int)
	// Waiting sets how many tasks wait in a known domain, as sampled from
	// its state manager every Config.WaitingInterval.
	Waiting(domain string, n int64)
	// StepDone observes one saga step whose effects are durable: its saga
	// and step (from the loaded definitions), how it ended (a
	// saga.StepRun status) and how long its action took.
	StepDone(saga, step, status string, d time.Duration)
	// Outcome counts one notable outcome, by kind (saga.Note*).
	// Closed counts one task-closed notification made durable, by status
	// (COMPLETED, TIMEOUT, CANCELLED).
	Closed(status string)
	Outcome(kind string)
	// DeadLetter counts one dead letter, by code: the runner's (Dead*
	// constants, saga.DeadPanic, saga.DeadTooLarge) or the engine's
	// (saga.Dead*, a malformed instance's result code).
	DeadLetter(code string)
	// Retry counts one failed step that will be tried again, by class
	// ("transient", "unknown").
	Retry(class string)
	// ProduceFailed counts one output record whose produce failed, by
	// class ("transient", "permanent", "unknown").
	ProduceFailed(class string)
	// Lag sets how many records of a partition are not committed: the
	// high watermark minus the committed offset. Uncommitted sets the age
	// of the partition's oldest polled record not yet committed (0 when
	// none). DropLag forgets both for a partition this runner no longer
	// owns.
	Lag(topic string, partition int32, lag int64)
	Uncommitted(topic string, partition int32, age time.Duration)
	DropLag(topic string, partition int32)
	// Lateness observes, per fired deadline of a domain, how long after
	// the deadline its timeout became durable.
	timers.Observer
}

// NopMetrics discards every measurement; it is the default.
type NopMetrics struct{}

var _ Metrics = NopMetrics{}

func (NopMetrics) Consumed(string)                                {}
func (NopMetrics) Step(time.Duration)                             {}
func (NopMetrics) Started(string, int)                            {}
func (NopMetrics) Waiting(string, int64)                          {}
func (NopMetrics) StepDone(string, string, string, time.Duration) {}
func (NopMetrics) Outcome(string)                                 {}
func (NopMetrics) Closed(string)                                  {}
func (NopMetrics) DeadLetter(string)                              {}
func (NopMetrics) Retry(string)                                   {}
func (NopMetrics) ProduceFailed(string)                           {}
func (NopMetrics) Lag(string, int32, int64)                       {}
func (NopMetrics) Uncommitted(string, int32, time.Duration)       {}
func (NopMetrics) DropLag(string, int32)                          {}
func (NopMetrics) Lateness(string, time.Duration)                 {}
