package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"

	"github.com/sagarunner/sagarunner/saga"
	"github.com/sagarunner/sagarunner/saga/envelope"
)

// Dead-letter codes the runner writes, besides the engine's (saga.Dead*).
const (
	// DeadPermanent: the step failed with an error classified Permanent.
	DeadPermanent = "PERMANENT_ERROR"
	// DeadAttempts: the step failed Config.MaxAttempts times with errors
	// known to be neither transient nor permanent; the reason is the last.
	DeadAttempts = "ATTEMPTS_EXHAUSTED"
	// DeadUndeliverable: an output could not be produced (its topic does
	// not exist or is invalid, the broker refuses it); Target names where
	// it was meant to go.
	DeadUndeliverable = "UNDELIVERABLE"
)

// Handler handles one consumed record. The engine's Handle is the innermost
// one; a nil error means the output is to be made durable and the record
// committed after it. A non-nil error means the record is retried later.
type Handler func(ctx context.Context, rec saga.Record) (saga.Output, error)

// Middleware wraps a Handler with one cross-cutting concern, the way retry,
// poison queue and recovery wrap message handlers in watermill.
type Middleware func(Handler) Handler

// chain wraps h in mws; the first middleware is the outermost.
func chain(h Handler, mws ...Middleware) Handler {
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
}

// PanicError is a panic of a step, recovered. It is Permanent: the same
// record panics the same way again, so it is dead-lettered with code
// saga.DeadPanic.
type PanicError struct {
	Value any
	Stack []byte
}

func (e *PanicError) Error() string { return fmt.Sprintf("panic: %v", e.Value) }

// Unwrap makes the panic classify as Permanent.
func (e *PanicError) Unwrap() error { return saga.ErrPermanent }

// Recoverer turns a panic of next into a *PanicError, so a bug in one step
// fails its record instead of the process. It is the runner's only recover:
// the engine lets panics through to it.
func Recoverer() Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, rec saga.Record) (out saga.Output, err error) {
			defer func() {
				if p := recover(); p != nil {
					out, err = saga.Output{}, &PanicError{Value: p, Stack: debug.Stack()}
				}
			}()
			return next(ctx, rec)
		}
	}
}

// attemptKey carries, in a Handle's context, which attempt at a record this
// is. The worker owns the retry loop (it pauses the partition and backs
// off); the failure policy only needs to know how many tries came before.
type attemptKey struct{}

type attempt struct {
	offset int64
	n      int
}

// withAttempt says that the record at offset is being tried for the n-th
// time (the first try is 1). Other records of the batch are on their first.
func withAttempt(ctx context.Context, offset int64, n int) context.Context {
	return context.WithValue(ctx, attemptKey{}, attempt{offset, n})
}

func attemptOf(ctx context.Context, rec saga.Record) int {
	if a, ok := ctx.Value(attemptKey{}).(attempt); ok && a.offset == rec.Offset {
		return a.n
	}
	return 1
}

// failurePolicy applies the error taxonomy (SPEC §9) to a step: a Permanent
// error dead-letters the record at once, an Unknown one after MaxAttempts
// tries; a Transient one, or an Unknown one with tries left, is returned for
// the worker to retry. A dead-lettered record yields nil error and an output
// of its dead letter alone: nothing partial of the failed step is produced.
func (r *Runner) failurePolicy(next Handler) Handler {
	return func(ctx context.Context, rec saga.Record) (saga.Output, error) {
		out, err := next(ctx, rec)
		if err == nil || ctx.Err() != nil {
			// A hard stop interrupted the step: it is replayed by the
			// next owner, not judged.
			return out, err
		}
		class := Classify(err)
		n := attemptOf(ctx, rec)
		var code string
		switch {
		case class == Permanent:
			code = DeadPermanent
			if pe, ok := errors.AsType[*PanicError](err); ok {
				code = saga.DeadPanic
				r.events.log(slog.LevelError, topicPartition{rec.Topic, rec.Partition}, "runner: step panicked",
					"offset", rec.Offset, "panic", fmt.Sprint(pe.Value), "stack", string(pe.Stack))
			}
		case class == Unknown && n >= r.cfg.MaxAttempts:
			code = DeadAttempts
		default:
			r.metrics.Retry(class.String())
			return saga.Output{}, err
		}
		reason := err.Error()
		if code == DeadAttempts {
			reason = fmt.Sprintf("%d attempts failed, the last with: %v", n, err)
		}
		dl := r.deadLetter(rec, code, reason, "")
		// Counted here, where the code is known; logged once durable,
		// with every other dead letter.
		r.metrics.DeadLetter(code)
		out = saga.Output{Records: []envelope.Record{dl}}
		if d, ok := r.eng.(instanceDeader); ok && r.instances != nil {
			out.Instances = d.DeadInstance(rec, code, reason)
		}
		return out, nil
	}
}

// deadLetter builds the dead letter of src in the engine's shape, cut to
// MaxRecordBytes. target names the topic an output of src was meant for,
// when producing it is what failed.
func (r *Runner) deadLetter(src saga.Record, code, reason, target string) envelope.Record {
	d := saga.NewDeadLetter(src, nil, code, reason)
	d.Target = target
	return d.Record(r.deadLetterTopic, r.cfg.MaxRecordBytes)
}
