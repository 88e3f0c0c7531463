package saga

import (
	"errors"
	"fmt"
	"iter"
	"time"

	"github.com/sagarunner/sagarunner/actions"
	"github.com/sagarunner/sagarunner/clock"
	"github.com/sagarunner/sagarunner/instances"
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
//
// The rest is for metrics and logs, filled where the records are made, so
// the runner never parses what it produces. On the happy path none of it
// allocates: Notes stays nil, and the tallies and Steps keep their first
// entry inline.
type Output struct {
	Records []envelope.Record
	Acks    []actions.Ack
	// Started counts tasks newly started; StartedIn is the same by domain.
	Started   int
	StartedIn Tally
	// Closed counts the task-closed notifications in Records by status
	// (COMPLETED, TIMEOUT, CANCELLED).
	Closed map[string]int
	// DeadLetters counts the dead letters in Records; DeadLetterCodes is
	// the same by dead-letter code (the Dead* constants or the result code
	// of a malformed instance).
	DeadLetters     int
	DeadLetterCodes Tally
	// Steps are the saga steps run, with how each ended and took.
	Steps StepRuns
	// Notes are outcomes an operator would otherwise never see: nil
	// unless something worth a log line happened.
	Notes []Note
	// Instances are the instance timeline events this output adds, in
	// order (Config.TrackInstances; nil when off). The runner applies them
	// to the instance store and publishes them on the audit topic with
	// Records, before it commits the input.
	Instances []instances.Event
}

// Append adds o2 to o.
func (o *Output) Append(o2 Output) {
	o.Records = append(o.Records, o2.Records...)
	o.Acks = append(o.Acks, o2.Acks...)
	o.Started += o2.Started
	o.StartedIn.Merge(o2.StartedIn)
	for st, n := range o2.Closed {
		o.countClosed(st, n)
	}
	o.DeadLetters += o2.DeadLetters
	o.DeadLetterCodes.Merge(o2.DeadLetterCodes)
	o.Steps.Merge(o2.Steps)
	o.Notes = append(o.Notes, o2.Notes...)
	o.Instances = append(o.Instances, o2.Instances...)
}

func (o *Output) countClosed(status string, n int) {
	if o.Closed == nil {
		o.Closed = make(map[string]int, 1)
	}
	o.Closed[status] += n
}

// Tally counts by label: a domain, a dead-letter code. The first label is
// kept inline: an output almost always has at most one, which then costs
// no allocation. The zero value is empty and ready to use.
type Tally struct {
	first Count
	more  []Count
}

// Count is one label's count in a Tally.
type Count struct {
	Label string
	N     int
}

// Add counts n more under label; n <= 0 is ignored.
func (t *Tally) Add(label string, n int) {
	if n <= 0 {
		return
	}
	switch {
	case t.first.N == 0:
		t.first = Count{label, n}
		return
	case t.first.Label == label:
		t.first.N += n
		return
	}
	for i := range t.more {
		if t.more[i].Label == label {
			t.more[i].N += n
			return
		}
	}
	t.more = append(t.more, Count{label, n})
}

// Merge adds every count of t2 to t.
func (t *Tally) Merge(t2 Tally) {
	for label, n := range t2.All() {
		t.Add(label, n)
	}
}

// Get returns the count of label.
func (t Tally) Get(label string) int {
	for l, n := range t.All() {
		if l == label {
			return n
		}
	}
	return 0
}

// Total is the sum of the counts.
func (t Tally) Total() int {
	n := 0
	for _, c := range t.All() {
		n += c
	}
	return n
}

// Len is the number of labels counted.
func (t Tally) Len() int {
	if t.first.N == 0 {
		return 0
	}
	return 1 + len(t.more)
}

// All yields each label with its count, in the order first counted.
func (t Tally) All() iter.Seq2[string, int] {
	return func(yield func(string, int) bool) {
		if t.first.N == 0 || !yield(t.first.Label, t.first.N) {
			return
		}
		for _, c := range t.more {
			if !yield(c.Label, c.N) {
				return
			}
		}
	}
}

// StepRun is one saga step run for a record: which step, how it ended and
// how long its action took. Saga and Step come from the loaded
// definitions and Status from a fixed set, so they can label metrics.
type StepRun struct {
	Saga, Step string
	// Status is the step's result (envelope.StatusSuccess, StatusFail,
	// StatusTimeout, StatusCancelled), StepWaiting when it suspended the
	// instance, or StepOther for anything else an action left there.
	Status   string
	Duration time.Duration
}

// Step statuses besides the result statuses.
const (
	StepWaiting = "WAITING" // the step suspended the instance (a task waits)
	StepOther   = "OTHER"   // the action left a status outside the known set
)

// StepRuns lists the steps one output ran, the first inline: a record
// usually runs one action step, which then costs no allocation. The zero
// value is empty and ready to use.
type StepRuns struct {
	n     int
	first StepRun
	more  []StepRun
}

// Add appends r.
func (s *StepRuns) Add(r StepRun) {
	if s.n == 0 {
		s.first = r
	} else {
		s.more = append(s.more, r)
	}
	s.n++
}

// Merge appends every run of s2.
func (s *StepRuns) Merge(s2 StepRuns) {
	for r := range s2.All() {
		s.Add(r)
	}
}

// Len is the number of steps run.
func (s StepRuns) Len() int { return s.n }

// All yields the runs in the order they ran.
func (s StepRuns) All() iter.Seq[StepRun] {
	return func(yield func(StepRun) bool) {
		if s.n == 0 || !yield(s.first) {
			return
		}
		for _, r := range s.more {
			if !yield(r) {
				return
			}
		}
	}
}

// Note kinds: outcomes that produce no dead letter and, often, no answer
// anyone reads, so the runner logs and counts them.
const (
	// NoteTaskIDInUse: a StartTask found its task id waiting for another
	// instance (actions.CodeTaskIDInUse) and this instance stopped.
	NoteTaskIDInUse = "task_id_in_use"
	// NoteUnknownTask: a close (ProceedTask, TimeoutTask) named a task that
	// does not exist (actions.CodeTaskNotFound).
	NoteUnknownTask = "unknown_task"
	// NoteClosedTask: a close found its task closed already
	// (actions.CodeTaskClosed), usually a proceed that lost to a timeout.
	NoteClosedTask = "closed_task"
	// NoteFailed: an instance, or a direct action, ended FAIL with no
	// requestMeta.replyTo, so nobody hears the answer.
	NoteFailed = "failed"
)

// Note is one notable outcome of a record, for the runner to log with its
// ids. Kind is one of the Note* constants; the rest comes from the record
// and may be anything a producer sent, so it is for logs, never labels.
type Note struct {
	Kind string
	// Saga and Step are empty for a direct action.
	Saga, Step string
	// Action is the action that answered: the step's, or the direct one.
	Action    string
	RequestID string
	Domain    string
	// Code and Message are the FAIL result; the message names the task.
	Code, Message string
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
	// MaxRecordBytes bounds the key and value of every record the engine
	// returns: a larger output is replaced by a dead letter naming it, and
	// dead letters are cut to fit. Default DefaultMaxRecordBytes, the
	// broker's default message size less the batch overhead; set it to
	// what the producer and broker accept.
	MaxRecordBytes int
	// SigningKey signs continuations (SignatureHeader) so that only the
	// runners produce records that resume an instance. The runners of one
	// deployment share one key, which the app supplies; when empty,
	// NewEngine draws a random one, which suits an engine running alone.
	SigningKey []byte
	// MaxHops dead-letters a record whose requestMeta.hops reaches it, so
	// a chain of replies and published records that feeds itself ends.
	// Default DefaultMaxHops.
	MaxHops int
	// AdminRoles are the roles that may act on any task of their tenant
	// (auth.adminRoles); actions see them in Exec.AdminRoles.
	AdminRoles []string
	// TrackInstances makes every output carry the instance events of
	// what it did (Output.Instances, SPEC §13).
	TrackInstances bool
	// Instances is where CancelInstance reads instance records; nil when
	// tracking is off.
	Instances actions.Instances
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
	if c.MaxRecordBytes == 0 {
		c.MaxRecordBytes = DefaultMaxRecordBytes
	}
	if c.MaxHops == 0 {
		c.MaxHops = DefaultMaxHops
	}
	var errs []error
	if c.MaxRecordBytes < minRecordBytes {
		errs = append(errs, fmt.Errorf("saga: Config.MaxRecordBytes %d is below %d", c.MaxRecordBytes, minRecordBytes))
	}
	if c.MaxHops < 1 {
		errs = append(errs, fmt.Errorf("saga: Config.MaxHops %d: must be at least 1", c.MaxHops))
	}
	// The three are told apart by topic: a shared name would make
	// notifications or dead letters look like continuations.
	named := map[string]string{}
	for _, t := range []struct{ what, topic string }{
		{"Topics.Continuations", c.Topics.Continuations},
		{"Topics.Notifications", c.Topics.Notifications},
		{"DeadLetter", c.DeadLetter},
	} {
		if err := actions.ValidTopic(t.topic); err != nil {
			errs = append(errs, fmt.Errorf("saga: Config.%s: %w", t.what, err))
		}
		if other, dup := named[t.topic]; dup {
			errs = append(errs, fmt.Errorf("saga: Config.%s and Config.%s are both %q", other, t.what, t.topic))
		}
		named[t.topic] = t.what
	}
	return errors.Join(errs...)
}

// Defaults.
const (
	DefaultNotificationTopic = "HTM_TASK_CLOSED_NOTIFICATION"
	DefaultDeadLetterTopic   = "sagarunner-dead-letter"
	// DefaultMaxRecordBytes is the broker's default message.max.bytes
	// (1 MiB plus 12) less room for the batch and record framing.
	DefaultMaxRecordBytes = 1_000_000
	DefaultMaxHops        = 32
	// minRecordBytes leaves room for a dead letter's coordinates.
	minRecordBytes = 4096
)

// Errors, by what the caller does with them. Handle, FireDue, Recover and
// Ack return nil or an error wrapping ErrRetry when a store call failed or
// an action reported actions.ErrRetryable; any other error they return is
// unclassified: the caller retries it a bounded number of times, then
// dead-letters the record. Bad input never is an error: it is a dead letter
// in Output. The engine never returns ErrPermanent itself; it is what the
// runner's stages (producing, middleware) wrap errors in that no retry can
// cure.
var (
	// ErrRetry: infrastructure unavailable (Redis or a broker unreachable,
	// a timeout); nothing was lost, retry the same call later, with
	// backoff, for as long as it lasts.
	ErrRetry = errors.New("saga: infrastructure unavailable, retry")
	// ErrPermanent: the record can never be processed (a record too large,
	// a topic that does not exist, a value the store refuses);
	// dead-letter it at once and move on.
	ErrPermanent = errors.New("saga: permanent failure, dead-letter the record")
)

// Handle processes one consumed record: it starts, resumes or runs a direct
// action, walking the saga's steps until the instance waits, finishes or
// fails, and returns what to produce. A record that cannot be processed (bad
// JSON, unknown saga or action, a bad pattern or element, a forged
// continuation, too many hops, a bad replyTo, an output too large) yields a
// dead-letter record in Output with the reason, never an error. Errors are
// as the Errors block says; Handle is safe to call again with the same
// record (replays are idempotent). A panicking action or condition panics
// out of Handle: the runner's recovery middleware dead-letters the record.
//
// Trust (SPEC §11): a record that resumes an instance runs only when it
// carries the signature the engine puts on every continuation it returns
// (SignatureHeader); starts and direct actions need none. A reply carries
// the record's hop count plus one; continuations keep the instance's.
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
// TimeoutTask would. It returns the output and how many it fired. A task
// whose effects cannot be built (a corrupt stored envelope) or would exceed
// MaxRecordBytes is dead-lettered (CORRUPT_TASK, RECORD_TOO_LARGE, naming
// its domain and id) and acked like the others, so one task never stops
// its shard; only a failing store call is an error (ErrRetry).
// (e *Engine) FireDue(ctx context.Context, domain string, shard, limit int) (Output, int, error)

// Recover re-emits the effects of tasks closed at or before closedBefore whose
// effects were never acked (a crash between Close and produce), with
// FireDue's rule for tasks whose effects cannot be built.
// (e *Engine) Recover(ctx context.Context, domain string, shard int, closedBefore int64, limit int) (Output, error)

// Ack acknowledges closes whose effects are durable.
// (e *Engine) Ack(ctx context.Context, acks []actions.Ack) error

// Domains lists the state-manager domains the loaded sagas use.
// (e *Engine) Domains() []string
