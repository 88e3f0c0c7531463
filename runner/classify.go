package runner

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sagarunner/sagarunner/saga"
	"github.com/sagarunner/sagarunner/statemanager"
)

// Class is what the runner does about an error (SPEC §9). Every error of a
// step, a produce or a timer firing is classified here and nowhere else.
type Class int

const (
	// Unknown errors are neither known to pass nor known to last: the
	// record is retried up to Config.MaxAttempts times, then dead-lettered.
	Unknown Class = iota
	// Transient errors come from infrastructure that is down or slow
	// (Redis, a broker, the network): the partition pauses and the record
	// is retried with backoff for as long as it lasts. Nothing is lost.
	Transient
	// Permanent errors will fail the same way on every attempt: the
	// record is dead-lettered at once.
	Permanent
)

func (c Class) String() string {
	switch c {
	case Transient:
		return "transient"
	case Permanent:
		return "permanent"
	default:
		return "unknown"
	}
}

// permanentKafka are broker answers that no retry changes. An unknown topic
// is permanent only once the client has given up on it (its own
// UnknownTopicRetries): producing never creates topics.
var permanentKafka = []error{
	kerr.MessageTooLarge,
	kerr.RecordListTooLarge,
	kerr.InvalidTopicException,
	kerr.UnknownTopicOrPartition,
	kerr.UnknownTopicID,
	kerr.TopicAuthorizationFailed,
	kerr.InvalidRecord,
}

// transientRedis are the reply prefixes of a Redis that is starting, failing
// over or resharding; go-redis retries them itself a few times and then
// hands them to us. NOSCRIPT is one too: a restarted Redis has lost its
// scripts, nothing ran, and the store loads them again on the next try.
var transientRedis = []string{"LOADING", "READONLY", "CLUSTERDOWN", "TRYAGAIN", "MASTERDOWN", "MOVED", "ASK", "NOSCRIPT"}

// Classify says how the runner treats err. Permanent markers win over
// transient ones: a record that timed out because its topic does not exist
// wraps both, and retrying it would hold the partition for ever. As in
// franz-go's isRetryableBrokerErr, an error is transient only when it is
// known to be; saga.ErrRetry alone does not make it so, because the engine
// wraps every action error in it, including refusals that never pass.
func Classify(err error) Class {
	switch {
	case err == nil:
		return Unknown
	case errors.Is(err, saga.ErrPermanent), errors.Is(err, statemanager.ErrInvalidDomain):
		return Permanent
	}
	for _, k := range permanentKafka {
		if errors.Is(err, k) {
			return Permanent
		}
	}
	if transient(err) {
		return Transient
	}
	return Unknown
}

func transient(err error) bool {
	if errors.Is(err, statemanager.ErrClosePending) ||
		errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, redis.ErrPoolTimeout) || errors.Is(err, redis.ErrPoolExhausted) ||
		errors.Is(err, kgo.ErrRecordTimeout) || errors.Is(err, kgo.ErrRecordRetries) || errors.Is(err, kgo.ErrMaxBuffered) {
		return true
	}
	if _, ok := errors.AsType[net.Error](err); ok {
		return true
	}
	for _, p := range transientRedis {
		if redis.HasErrorPrefix(err, p) {
			return true
		}
	}
	if ke, ok := errors.AsType[*kerr.Error](err); ok && ke.Retriable {
		return true
	}
	return kgo.IsRetryableBrokerErr(err)
}
