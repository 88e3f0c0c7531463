package saga

import (
	"errors"

	"github.com/sagarunner/sagarunner/actions"
	"github.com/sagarunner/sagarunner/clock"
	"github.com/sagarunner/sagarunner/saga/envelope"
	"github.com/sagarunner/sagarunner/statemanager"
)

// Record is one consumed Kafka record handed to the engine.
type Record struct {
	Topic     string
	Partition int32
	Offset    int64
	Key       []byte
	Value     []byte
	Headers   []envelope.Header
}

// Output is everything one Handle (or timer firing) wants produced. The
// runner produces Records, waits for their acks, calls Engine.Ack with Acks,
// and only then commits the offset of the record that caused them.
type Output struct {
	Records []envelope.Record
	Acks    []actions.Ack
	// Started counts tasks newly started (for metrics).
	Started int
}

// Append adds o2 to o.
func (o *Output) Append(o2 Output) {
	o.Records = append(o.Records, o2.Records...)
	o.Acks = append(o.Acks, o2.Acks...)
	o.Started += o2.Started
}

// Config configures an Engine.
type Config struct {
	// Topics names the continuation (the runner's request topic) and
	// notification topics.
	Topics actions.Topics
	// DeadLetter is the topic for records that cannot be processed.
	DeadLetter string
	Stores     statemanager.Resolver
	// Clock defaults to clock.Real.
	Clock clock.Clock
	// Registry defaults to actions.Default.
	Registry *actions.Registry
	// NewID, when set, names records that carry neither a requestId nor a
	// key (tests use it for readable ids). By default such a record is
	// named after its position, topic-partition-offset, so replays of it
	// get the same id.
	NewID func() string
}

// Validate checks the config and fills defaults.
func (c *Config) Validate() error {
	if c.Topics.Continuations == "" {
		return errors.New("saga: Config.Topics.Continuations is required")
	}
	if c.Topics.Notifications == "" {
		c.Topics.Notifications = DefaultNotificationTopic
	}
	if c.DeadLetter == "" {
		c.DeadLetter = DefaultDeadLetterTopic
	}
	if c.Stores == nil {
		return errors.New("saga: Config.Stores is required")
	}
	if c.Clock == nil {
		c.Clock = clock.Real{}
	}
	if c.Registry == nil {
		c.Registry = actions.Default
	}
	return nil
}

// Default topic names.
const (
	DefaultNotificationTopic = "HTM_TASK_CLOSED_NOTIFICATION"
	DefaultDeadLetterTopic   = "sagarunner-dead-letter"
)

// ErrRetry wraps errors from Handle, FireDue, Recover and Ack that come from
// unavailable infrastructure: nothing was lost, retry the same call later.
var ErrRetry = errors.New("saga: infrastructure unavailable, retry")

// Handle processes one consumed record: it starts, resumes or runs a direct
// action, walking the saga's steps until the instance waits, finishes or
// fails, and returns what to produce. A record that cannot be processed (bad
// JSON, unknown saga or action, a bad pattern or element) yields a dead-letter
// record in Output with the reason, never an error. A non-nil error wraps
// ErrRetry; Handle is safe to call again with the same record (replays are
// idempotent).
//
// Record kinds (SPEC §3): sagaMeta.saga and sagaMeta.stepId set: a
// continuation, routed from that step on result.status; a record on a trigger
// topic, or on the continuation topic with sagaMeta.saga set and no stepId:
// starts an instance; eventMeta.action set and no saga: runs that action once.
// When requestMeta.replyTo is set, a response record (the envelope when the
// instance stopped) goes there, keyed by requestId.
// (e *Engine) Handle(ctx context.Context, rec Record) (Output, error)

// FireDue times out the waiting tasks of one domain's shard whose deadline is
// at or before now (per the engine clock), at most limit of them, exactly as
// TimeoutTask would. It returns the output and how many it fired.
// (e *Engine) FireDue(ctx context.Context, domain string, shard, limit int) (Output, int, error)

// Recover re-emits the effects of tasks closed at or before closedBefore whose
// effects were never acked (a crash between Close and produce).
// (e *Engine) Recover(ctx context.Context, domain string, shard int, closedBefore int64, limit int) (Output, error)

// Ack acknowledges closes whose effects are durable.
// (e *Engine) Ack(ctx context.Context, acks []actions.Ack) error

// Domains lists the state-manager domains the loaded sagas use.
// (e *Engine) Domains() []string
