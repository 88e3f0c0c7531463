package runner

import (
	"context"
	"log/slog"
	"slices"
	"time"

	"github.com/sagarunner/sagarunner/saga"
	"github.com/sagarunner/sagarunner/statemanager"
	"github.com/sagarunner/sagarunner/timers"
)

// OtherDomain labels the metrics of a domain that is neither a loaded
// saga's nor configured (a direct StartTask naming its own): a domain name
// arrives in records, and metric labels must come from a bounded set.
const OtherDomain = "other"

// countOutcomes feeds the metrics and the log from an output whose effects
// are durable, from what the engine recorded on it. src names the record
// it came from (a deadline shard for the timers' outputs) and offset its
// offset (-1 for a deadline's). The runner's own dead letters are counted
// where they are made, with their code; out.DeadLetterCodes holds the
// engine's.
func (r *Runner) countOutcomes(src topicPartition, offset int64, out *saga.Output) {
	for d, n := range out.StartedIn.All() {
		r.metrics.Started(r.domainLabel(d), n)
	}
	for status, n := range out.Closed {
		for range n {
			r.metrics.Closed(status)
		}
	}
	for code, n := range out.DeadLetterCodes.All() {
		for range n {
			r.metrics.DeadLetter(code)
		}
	}
	for s := range out.Steps.All() {
		r.metrics.StepDone(s.Saga, s.Step, s.Status, s.Duration)
	}
	for i := range out.Notes {
		r.metrics.Outcome(out.Notes[i].Kind)
		r.logNote(src, offset, &out.Notes[i])
	}
}

// domainLabel is d when it is a known domain, else OtherDomain.
func (r *Runner) domainLabel(d string) string {
	if _, ok := slices.BinarySearch(r.domains, d); ok {
		return d
	}
	return OtherDomain
}

// noteLog is how each kind of note is logged. A note is an answer, not a
// failure of the runner: the level says how likely it is that someone
// needs to act.
var noteLog = map[string]struct {
	level slog.Level
	msg   string
}{
	saga.NoteTaskIDInUse: {slog.LevelWarn, "runner: task id already waiting for another instance; this instance stopped"},
	saga.NoteUnknownTask: {slog.LevelWarn, "runner: no such task to close"},
	saga.NoteClosedTask:  {slog.LevelInfo, "runner: task closed already"},
	saga.NoteFailed:      {slog.LevelWarn, "runner: instance ended FAIL with nobody to answer"},
}

// logNote logs one note, rate-limited per partition and kind like the dead
// letters, so a producer repeating a mistake cannot flood the log.
func (r *Runner) logNote(src topicPartition, offset int64, n *saga.Note) {
	how, ok := noteLog[n.Kind]
	if !ok {
		how.level, how.msg = slog.LevelWarn, "runner: notable outcome"
	}
	r.events.logf(how.level, src, how.msg, func() []any {
		attrs := []any{"offset", offset, "kind", n.Kind}
		if n.Saga != "" {
			attrs = append(attrs, "saga", n.Saga, "step", n.Step)
		}
		attrs = append(attrs, "action", n.Action, "requestId", n.RequestID)
		if n.Domain != "" {
			attrs = append(attrs, "domain", n.Domain)
		}
		return append(attrs, "code", n.Code, "message", cut(n.Message, 500))
	})
}

// emitCounted is the timers' Emitter: emit, with the output counted by
// countOutcomes once durable. emit gets the output without its counters,
// so they are counted once, here, on whichever attempt succeeds.
func (r *Runner) emitCounted(ctx context.Context, k timers.Key, attempt int, out saga.Output) (saga.Output, error) {
	counters := out
	rest, err := r.emit(ctx, k, attempt, withoutCounters(out))
	if err != nil {
		// The scheduler retries with rest: the counters go with it.
		rest.Started, rest.StartedIn, rest.Closed = counters.Started, counters.StartedIn, counters.Closed
		rest.DeadLetters, rest.DeadLetterCodes = counters.DeadLetters, counters.DeadLetterCodes
		rest.Steps, rest.Notes = counters.Steps, counters.Notes
		return rest, err
	}
	r.countOutcomes(topicPartition{"deadlines:" + k.Domain, int32(k.Shard)}, -1, &counters)
	return rest, nil
}

// withoutCounters is out with only what is to be produced, acked and
// written to the instance store.
func withoutCounters(out saga.Output) saga.Output {
	return saga.Output{Records: out.Records, Acks: out.Acks, Instances: out.Instances}
}

// sampleWaiting sets the waiting-tasks gauge of every known domain every
// WaitingInterval until ctx ends.
func (r *Runner) sampleWaiting(ctx context.Context) {
	t := time.NewTicker(r.cfg.WaitingInterval)
	defer t.Stop()
	for {
		r.sampleWaitingOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sampleWaitingOnce sets the waiting-tasks gauge of every known domain
// whose store can count them. A failed count leaves the last value and is
// logged, rate-limited: the gauge is a view, never a reason to stop.
func (r *Runner) sampleWaitingOnce(ctx context.Context) {
	for _, d := range r.domains {
		st, err := r.stores.Store(d)
		if err != nil {
			continue
		}
		// A store that cannot count cheaply leaves its domain's gauge unset.
		c, ok := st.(statemanager.Counter)
		if !ok {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		n, err := c.CountWaiting(cctx)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				r.events.log(slog.LevelWarn, topicPartition{"waiting:" + d, 0}, "runner: cannot count waiting tasks",
					"domain", d, "reason", err.Error())
			}
			continue
		}
		r.metrics.Waiting(d, n)
	}
	r.sampleOpenInstances(ctx)
}
