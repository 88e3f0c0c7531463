package statemanager

import (
	"context"
	"errors"
	"time"
)

// Early answers (SPEC §12): an operation that arrives on Kafka for a task
// that has not started yet is parked with the store, keyed by its task id,
// and applied the moment the task starts. The store keeps parked operations
// as opaque values: what they are, and how to apply or dead-letter them, is
// the caller's (the actions').

// Defaults of the early-answer limits (RedisConfig.EarlyTTL, EarlyMax).
const (
	// DefaultEarlyTTL is how long an operation waits for its task.
	DefaultEarlyTTL = 10 * time.Minute
	// DefaultEarlyMax bounds the operations parked in one domain.
	DefaultEarlyMax = 10_000
	// EarlyPerTask bounds the operations parked for one task id: a task
	// has a handful of operations before anyone sees it, and a producer
	// repeating one id must not fill the domain's share.
	EarlyPerTask = 16
)

// Parked is one operation waiting for its task.
type Parked struct {
	// TaskID is the task the operation waits for.
	TaskID string
	// Key is the operation's request id: one task keeps one operation per
	// key, so a redelivered operation is parked once.
	Key string
	// Seq orders a task's operations by arrival; the store assigns it.
	Seq int64
	// ExpiresAt is the epoch ms after which the operation is expired
	// (Park sets it to the park time plus the store's EarlyTTL).
	ExpiresAt int64
	// Value is the operation, opaque to the store.
	Value []byte
}

// EarlyRef names one parked operation.
type EarlyRef struct {
	TaskID string
	Key    string
}

// Errors of Park. Both are answers, not infrastructure trouble.
var (
	// ErrTaskExists: a task with the id exists (it started since the
	// caller looked): apply the operation to it instead. Nothing parked.
	ErrTaskExists = errors.New("statemanager: the task exists; nothing parked")
	// ErrEarlyFull: the task id already has EarlyPerTask operations
	// waiting, or the domain its share of EarlyMax. Nothing parked.
	ErrEarlyFull = errors.New("statemanager: too many early answers waiting")
)

// EarlyAnswers is an optional extension of Store that keeps early answers;
// check for it with a type assertion. A store without it answers an
// operation on an unknown task with ErrNotFound, as before.
//
// A parked operation stays until Unpark removes it: the caller removes it
// only once applying (or expiring) it has durable effects, so a crash in
// between applies it again, which the operations' request ids make
// harmless.
type EarlyAnswers interface {
	// StartEarly is Start that also reports whether operations wait for
	// the task's id, read in the same atomic step (no extra round trip).
	// It reports them on a replayed start too, so a start re-consumed
	// after a crash applies what is still parked.
	StartEarly(ctx context.Context, t *Task) (stored *Task, created, early bool, err error)

	// Park keeps p (TaskID, Key, Value; the store sets Seq and ExpiresAt
	// from at) for the task until Unpark. It returns parked=false when p.Key
	// is parked for the task already (a redelivery: nothing changes),
	// ErrTaskExists when the task exists, and ErrEarlyFull (wrapped with
	// which limit) when a limit is reached.
	Park(ctx context.Context, p Parked, at int64) (parked bool, err error)

	// Early returns the operations parked for a task id, in arrival
	// order (at most EarlyPerTask).
	Early(ctx context.Context, id string) ([]Parked, error)

	// Unpark removes parked operations; unknown refs are ignored.
	Unpark(ctx context.Context, refs []EarlyRef) error

	// Expired returns up to limit operations of one deadline shard whose
	// ExpiresAt is at or before now, earliest first, without removing
	// them (Unpark does, once their dead letters are durable); one whose
	// stored value cannot be read comes with a nil Value. Shards
	// and ShardOf are the Store's: a task's operations live in its shard.
	Expired(ctx context.Context, shard int, now int64, limit int) ([]Parked, error)
}
