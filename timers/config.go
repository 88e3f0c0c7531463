package timers

import (
	"errors"
	"fmt"
	"time"

	"github.com/sagarunner/sagarunner/statemanager"
)

// Defaults of Config.
const (
	// DefaultPollInterval keeps p99 lateness well under 100 ms: a deadline
	// waits at most one interval plus one produce round trip.
	DefaultPollInterval = 10 * time.Millisecond
	// DefaultBatchSize bounds one FireDue call, so a burst of due deadlines
	// is drained in chunks that each become durable quickly.
	DefaultBatchSize = 500
	// DefaultBackoffMin and DefaultBackoffMax bound the wait between
	// attempts while Redis or Kafka are unavailable.
	DefaultBackoffMin = 100 * time.Millisecond
	DefaultBackoffMax = 5 * time.Second
	// DefaultEarlyInterval is how often a loop sweeps its shard's expired
	// early answers: an answer waits minutes (tasks.earlyTTL), so a second
	// late is nothing, and a sweep per second per shard is nothing either.
	DefaultEarlyInterval = time.Second
	// DefaultMaxIdle caps how long a loop with nothing due sleeps before it
	// looks at its shard again. Wake-ups (see Waker) cut a sleep short when
	// a nearer deadline appears; the cap bounds the delay a lost wake-up
	// can cause, and costs one read per shard per cap while idle.
	DefaultMaxIdle = time.Second
)

// Config configures a Scheduler. The zero value is valid: Validate fills the
// defaults.
type Config struct {
	// PollInterval is how long a loop waits after a FireDue call that found
	// fewer than BatchSize due tasks. Default DefaultPollInterval (10 ms).
	PollInterval time.Duration
	// BatchSize is the most tasks one FireDue or Recover call handles. A
	// full batch makes the loop go again at once. Default 500.
	BatchSize int
	// Domains are fired in addition to the engine's own domains, for tasks
	// started by direct StartTask records that no loaded saga names.
	Domains []string
	// BackoffMin and BackoffMax bound the exponential wait after a failed
	// FireDue, Recover or emit. Defaults 100 ms and 5 s.
	BackoffMin time.Duration
	BackoffMax time.Duration
	// EarlyInterval is how often each loop expires its shard's early
	// answers (see EarlyExpirer). Default DefaultEarlyInterval (1 s).
	EarlyInterval time.Duration
	// MaxIdle is the longest a loop sleeps when nothing of its shard is due
	// before the shard's next deadline: it is how late a deadline can fire
	// when its wake-up was lost. Only stores that implement Waker let a
	// loop sleep; with others it polls every PollInterval. Default
	// DefaultMaxIdle (1 s), at most statemanager.WakeHorizon (10 s), at
	// least PollInterval.
	MaxIdle time.Duration
}

// Validate fills the defaults and rejects impossible values, reporting every
// problem at once.
func (c *Config) Validate() error {
	var errs []error
	if c.PollInterval < 0 {
		errs = append(errs, fmt.Errorf("timers: PollInterval %v is negative", c.PollInterval))
	} else if c.PollInterval == 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.BatchSize < 0 {
		errs = append(errs, fmt.Errorf("timers: BatchSize %d is negative", c.BatchSize))
	} else if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.BackoffMin < 0 || c.BackoffMax < 0 {
		errs = append(errs, fmt.Errorf("timers: backoff %v..%v is negative", c.BackoffMin, c.BackoffMax))
	}
	if c.BackoffMin == 0 {
		c.BackoffMin = DefaultBackoffMin
	}
	if c.BackoffMax == 0 {
		c.BackoffMax = DefaultBackoffMax
	}
	if c.EarlyInterval < 0 {
		errs = append(errs, fmt.Errorf("timers: EarlyInterval %v is negative", c.EarlyInterval))
	} else if c.EarlyInterval == 0 {
		c.EarlyInterval = DefaultEarlyInterval
	}
	if c.MaxIdle < 0 {
		errs = append(errs, fmt.Errorf("timers: MaxIdle %v is negative", c.MaxIdle))
	} else if c.MaxIdle == 0 {
		c.MaxIdle = DefaultMaxIdle
	}
	if c.MaxIdle > statemanager.WakeHorizon {
		errs = append(errs, fmt.Errorf("timers: MaxIdle %v is above %v, the horizon of wake-ups", c.MaxIdle, statemanager.WakeHorizon))
	}
	if c.MaxIdle > 0 && c.PollInterval > 0 && c.MaxIdle < c.PollInterval {
		errs = append(errs, fmt.Errorf("timers: MaxIdle %v is below PollInterval %v", c.MaxIdle, c.PollInterval))
	}
	if c.BackoffMin > c.BackoffMax {
		errs = append(errs, fmt.Errorf("timers: BackoffMin %v is above BackoffMax %v", c.BackoffMin, c.BackoffMax))
	}
	for i, d := range c.Domains {
		if d == "" {
			errs = append(errs, fmt.Errorf("timers: Domains[%d] is empty", i))
		}
	}
	return errors.Join(errs...)
}
