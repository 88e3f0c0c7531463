package runner

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/sagarunner/sagarunner/saga"
	"github.com/sagarunner/sagarunner/timers"
)

// Defaults of Config.
const (
	DefaultGroup            = "sagarunner"
	DefaultRequestTopic     = "sagarunner-requests"
	DefaultPartitions       = 16
	DefaultBatchSize        = 500
	DefaultKeyConcurrency   = 8
	DefaultMaxInFlight      = 4 * DefaultBatchSize
	DefaultMaxInFlightBytes = 64 << 20
	DefaultMaxPollRecords   = 10000
	DefaultCommitInterval   = 200 * time.Millisecond
	DefaultFetchMaxWait     = 100 * time.Millisecond
	DefaultProduceTimeout   = 10 * time.Second
	DefaultLinger           = 2 * time.Millisecond
	DefaultBackoffMin       = 100 * time.Millisecond
	DefaultBackoffMax       = 5 * time.Second
	DefaultShutdownTimeout  = 30 * time.Second
	DefaultMaxAttempts      = 5
	DefaultMaxRecordBytes   = saga.DefaultMaxRecordBytes
	DefaultStuckAfter       = 2 * time.Minute
	DefaultWaitingInterval  = 15 * time.Second
)

// Config configures a Runner. Zero fields take the documented defaults when
// Validate runs (New calls it).
type Config struct {
	// Brokers are the seed brokers, host:port. Required.
	Brokers []string
	// Group is the consumer group every runner replica joins. Default
	// "sagarunner".
	Group string
	// InstanceID turns on static group membership (KIP-345) when set: a
	// runner restarted with the same id replaces its old self in the group
	// at once, with its old assignment, instead of waiting for the broker
	// to expire the dead member after the session timeout. Each replica
	// needs its own stable id (a pod name, a host name); two live runners
	// with one id fence each other. A static member does not leave the
	// group when it stops, so after a graceful stop its partitions move to
	// the others only once the session timeout passes, unless it comes
	// back first. Default "" (dynamic membership).
	InstanceID string
	// RequestTopic carries continuations and direct action records. It must
	// equal the engine's continuation topic. Default "sagarunner-requests".
	RequestTopic string
	// Topics are consumed in addition to the request topic and the loaded
	// sagas' trigger topics.
	Topics []string
	// OutputTopics are only produced to (the gateway's reply topic, Publish
	// targets); they matter only for CreateTopics.
	OutputTopics []string

	// CreateTopics creates missing topics at start: the consumed ones, the
	// notification and dead-letter topics and OutputTopics. Default false.
	CreateTopics bool
	// Partitions is the partition count of created topics. Default 16.
	Partitions int32
	// ReplicationFactor of created topics; 0 or -1 takes the broker
	// default. Default -1.
	ReplicationFactor int16

	// BatchSize is the most records of one partition handled before their
	// outputs are produced, acked and committed together. Default 500.
	BatchSize int
	// KeyConcurrency is how many distinct record keys of one partition are
	// handled at once; records of one key are always handled in order.
	// 1 handles a partition strictly in offset order. Default 8.
	KeyConcurrency int
	// MaxInFlight is how many polled records one partition may hold before
	// fetching for it pauses; fetching resumes at half of it. Must be at
	// least BatchSize. Default max(2000, 4×BatchSize).
	MaxInFlight int
	// MaxInFlightBytes bounds, across all partitions, the bytes of polled
	// records not yet committed and of the outputs a batch holds until
	// they are acknowledged (key, value and headers, plus a fixed
	// per-record overhead). A partition whose polled records do not fit
	// pauses its fetching, rewound to the first record left out, and
	// fetches again once the bytes held drop to half of it. A record is
	// taken whenever less than the budget is held, so one larger than the
	// whole budget still goes through; the bytes held never exceed the
	// budget by more than one record and the outputs of the batches in
	// hand. The client's own fetch buffer is bounded from it too: a fetch
	// asks for at most a quarter of it (between 64 KiB and 50 MiB).
	// Default 64 MiB.
	MaxInFlightBytes int
	// MaxPollRecords bounds one poll across all partitions. Default 10000.
	MaxPollRecords int
	// FetchMaxWait bounds how long a fetch waits at the broker for new
	// records. Kept short because a partition resumed after a pause waits
	// for the fetch in flight. Default 100 ms.
	FetchMaxWait time.Duration
	// CommitInterval is how often marked offsets are committed; revocation
	// and shutdown always commit as well. Default 200 ms.
	CommitInterval time.Duration
	// ProduceTimeout fails a record not acknowledged in time, so a Kafka
	// outage surfaces as a retried batch instead of a hung partition.
	// Default 10 s.
	ProduceTimeout time.Duration
	// Linger lets the producer batch records of several partitions into
	// one request. Default 2 ms.
	Linger time.Duration
	// Backoff bounds the exponential wait, with jitter, before retrying a
	// record or a produce that failed. Defaults 100 ms and 5 s.
	Backoff Backoff
	// ShutdownTimeout bounds how long Run waits for in-flight batches
	// after its context is cancelled before abandoning them (uncommitted,
	// so they are replayed). Default 30 s.
	ShutdownTimeout time.Duration

	// MaxAttempts is how many times a record whose step fails with an
	// error classified Unknown is tried before it is dead-lettered with the
	// last error. Transient errors are retried without bound, Permanent
	// ones dead-letter at once. Default 5.
	MaxAttempts int
	// MaxRecordBytes is the largest output record (key, value and
	// headers) the runner produces; a larger one is replaced by a dead
	// letter naming its target, because the broker would refuse it for
	// ever. It must equal the engine's Config.MaxRecordBytes, which cuts
	// dead letters to it; New takes the engine's when it is 0. Default
	// 1,000,000, under Kafka's default 1 MiB message limit.
	MaxRecordBytes int
	// StuckAfter is how old a partition's oldest uncommitted record may
	// get before Readiness reports the partition stuck. Default 2 min.
	StuckAfter time.Duration
	// WaitingInterval is how often the waiting-tasks gauge is sampled from
	// the state managers of the known domains, one count per domain.
	// Default 15 s, a common scrape interval.
	WaitingInterval time.Duration

	// Timers configures the automatic deadlines.
	Timers timers.Config
}

// Backoff is an exponential backoff range.
type Backoff struct {
	Min time.Duration
	Max time.Duration
}

// Validate fills the defaults and reports every conflict at once.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("runner: "+format, args...)) }
	if len(c.Brokers) == 0 {
		bad("Brokers is required")
	}
	for i, b := range c.Brokers {
		if b == "" {
			bad("Brokers[%d] is empty", i)
		}
	}
	if c.Group == "" {
		c.Group = DefaultGroup
	}
	if c.RequestTopic == "" {
		c.RequestTopic = DefaultRequestTopic
	}
	for i, t := range c.Topics {
		if t == "" {
			bad("Topics[%d] is empty", i)
		}
	}
	for i, t := range c.OutputTopics {
		if t == "" {
			bad("OutputTopics[%d] is empty", i)
		}
		if t == c.RequestTopic || slices.Contains(c.Topics, t) {
			bad("topic %q is both consumed and listed in OutputTopics", t)
		}
	}
	if c.Partitions < 0 {
		bad("Partitions %d is negative", c.Partitions)
	} else if c.Partitions == 0 {
		c.Partitions = DefaultPartitions
	}
	if c.ReplicationFactor == 0 {
		c.ReplicationFactor = -1
	} else if c.ReplicationFactor < -1 {
		bad("ReplicationFactor %d is invalid", c.ReplicationFactor)
	}
	positive := func(name string, v *int, def int) {
		switch {
		case *v < 0:
			bad("%s %d is negative", name, *v)
		case *v == 0:
			*v = def
		}
	}
	positive("BatchSize", &c.BatchSize, DefaultBatchSize)
	positive("KeyConcurrency", &c.KeyConcurrency, DefaultKeyConcurrency)
	positive("MaxInFlight", &c.MaxInFlight, max(DefaultMaxInFlight, 4*c.BatchSize))
	positive("MaxInFlightBytes", &c.MaxInFlightBytes, DefaultMaxInFlightBytes)
	positive("MaxPollRecords", &c.MaxPollRecords, DefaultMaxPollRecords)
	if c.MaxInFlight < c.BatchSize {
		bad("MaxInFlight %d is below BatchSize %d", c.MaxInFlight, c.BatchSize)
	}
	duration := func(name string, v *time.Duration, def time.Duration) {
		switch {
		case *v < 0:
			bad("%s %v is negative", name, *v)
		case *v == 0:
			*v = def
		}
	}
	duration("CommitInterval", &c.CommitInterval, DefaultCommitInterval)
	duration("FetchMaxWait", &c.FetchMaxWait, DefaultFetchMaxWait)
	duration("ProduceTimeout", &c.ProduceTimeout, DefaultProduceTimeout)
	if c.ProduceTimeout > 0 && c.ProduceTimeout < time.Second {
		bad("ProduceTimeout %v is below the 1s Kafka clients accept", c.ProduceTimeout)
	}
	if c.Linger < 0 {
		bad("Linger %v is negative", c.Linger)
	} else if c.Linger == 0 {
		c.Linger = DefaultLinger
	}
	duration("Backoff.Min", &c.Backoff.Min, DefaultBackoffMin)
	duration("Backoff.Max", &c.Backoff.Max, DefaultBackoffMax)
	if c.Backoff.Min > c.Backoff.Max {
		bad("Backoff.Min %v is above Backoff.Max %v", c.Backoff.Min, c.Backoff.Max)
	}
	duration("ShutdownTimeout", &c.ShutdownTimeout, DefaultShutdownTimeout)
	positive("MaxAttempts", &c.MaxAttempts, DefaultMaxAttempts)
	positive("MaxRecordBytes", &c.MaxRecordBytes, DefaultMaxRecordBytes)
	duration("StuckAfter", &c.StuckAfter, DefaultStuckAfter)
	duration("WaitingInterval", &c.WaitingInterval, DefaultWaitingInterval)
	if c.Timers.BackoffMin == 0 && c.Timers.BackoffMax == 0 {
		c.Timers.BackoffMin, c.Timers.BackoffMax = c.Backoff.Min, c.Backoff.Max
	}
	if err := c.Timers.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
