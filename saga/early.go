package saga

import (
	"context"
	"fmt"

	"github.com/sagarunner/sagarunner/actions"
	"github.com/sagarunner/sagarunner/clock"
	"github.com/sagarunner/sagarunner/statemanager"
)

// DeadEarlyExpired is the dead-letter code of an early answer whose task
// never started within tasks.earlyTTL (actions.CodeEarlyExpired).
const DeadEarlyExpired = actions.CodeEarlyExpired

// ExpireEarly dead-letters, with code EARLY_EXPIRED, up to limit early
// answers of one domain's shard (see actions/early.go) whose time to wait
// ran out by now (per the engine clock), and returns the output and how
// many it expired. Each dead letter keeps the original record's topic,
// partition, offset, key and value; an operation with replyTo is also
// answered FAIL EARLY_EXPIRED there. The output's acks remove the
// operations from the store once its records are durable, so a crash
// before that expires them again. A store without early answers expires
// nothing; only a failing store call is an error (ErrRetry).
func (e *Engine) ExpireEarly(ctx context.Context, domain string, shard, limit int) (Output, int, error) {
	store, err := e.cfg.Stores.Store(domain)
	if err != nil {
		return Output{}, 0, fmt.Errorf("%w: domain %q: %w", ErrRetry, domain, err)
	}
	ea, ok := store.(statemanager.EarlyAnswers)
	if !ok {
		return Output{}, 0, nil
	}
	expired, err := ea.Expired(ctx, shard, clock.NowMillis(e.cfg.Clock), limit)
	if err != nil {
		return Output{}, 0, fmt.Errorf("%w: expired early answers of %q shard %d: %w", ErrRetry, domain, shard, err)
	}
	if len(expired) == 0 {
		return Output{}, 0, nil
	}
	var out Output
	refs := make([]statemanager.EarlyRef, 0, len(expired))
	for _, p := range expired {
		refs = append(refs, statemanager.EarlyRef{TaskID: p.TaskID, Key: p.Key})
		op, err := actions.DecodeParked(p)
		if err != nil {
			continue // unreadable (edited by hand): removed, nothing to tell
		}
		rec := Record{Topic: op.Topic, Partition: op.Partition, Offset: op.Offset, Key: op.Key, Value: op.Value}
		reason := fmt.Sprintf("no task %s started in %q while the operation waited for it (tasks.earlyTTL)", quoteCut(p.TaskID), domain)
		env, err := op.Envelope()
		if err != nil {
			out.Records = append(out.Records, e.deadLetter(rec, nil, DeadEarlyExpired, reason))
			continue
		}
		env.Fail(actions.CodeEarlyExpired, "%s", reason)
		// stop answers replyTo and dead-letters the EARLY_EXPIRED failure.
		out = e.stop(out, rec, env, true)
	}
	out.Acks = append(out.Acks, actions.Ack{Domain: domain, Early: refs})
	e.seal(&out)
	return out, len(expired), nil
}
