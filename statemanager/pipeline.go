package statemanager

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/redis/go-redis/v9"
)

// Defaults of the automatic pipelining of RedisStore (see RedisConfig).
const (
	// DefaultPipelineBatches is how many pipelines one store keeps in
	// flight at once. Two let Redis run one batch while the next is written
	// and the previous one's replies are handed out.
	DefaultPipelineBatches = 2
	// DefaultPipelineMaxBatch caps the commands of one pipeline, so one
	// flush stays a bounded write (a StartTask carries its envelope, around
	// a kilobyte) and the callers at the front of a long queue are answered
	// without waiting for the whole queue.
	DefaultPipelineMaxBatch = 256
)

// pipeliner coalesces the per-record calls of concurrent callers (the
// runner's partition workers) into few pipelines. A partition handles its
// records one after another, so with per-call round trips a runner is bound
// by round-trip latency times partitions, and Redis pays a read and a write
// syscall for every command; a pipeline pays them once per batch.
//
// A call that finds a flush slot free runs at once on its own, exactly as
// without pipelining, so a lone caller gains no latency; calls that arrive
// while every slot is busy queue up, and the slot that frees first sends the
// whole queue as one pipeline. No goroutine runs while the store is idle,
// so there is nothing to stop: a store can be dropped at any time.
//
// Each call keeps the atomicity and the reply of the unbatched call; a
// pipeline shares the round trip. Besides, queued calls of one script that
// can serve many items (start, close, ack: see merger) on one hash slot are
// merged into one call of it, so Redis pays Lua's per-call cost once per
// batch instead of once per call; each caller still gets its own reply. On
// a ClusterClient go-redis splits a pipeline per node, and a merged call
// touches the one slot its calls share.
type pipeliner struct {
	client   redis.UniversalClient
	slots    int
	maxBatch int

	mu      sync.Mutex
	running int // flushes in progress, inline or draining the queue
	queue   []*call
}

// call is one command of one caller.
type call struct {
	ctx context.Context
	// script, when set, makes the command an EVALSHA of it with keys and
	// args, built at flush time so that a NOSCRIPT reply can be retried.
	script *redis.Script
	keys   []string
	args   []interface{}
	// merge, when set, lets the flush merge this call with others of the
	// same script, merger and slot (the shard's key prefix, the hash tag
	// every key of the call is under).
	merge *merger
	slot  string
	// members are the calls a merged call carries, in order.
	members []*call
	// cmd is the command: built by the caller for plain commands, by the
	// flush for scripts. Read it only once done is closed.
	cmd  redis.Cmder
	done chan struct{}
}

func newPipeliner(client redis.UniversalClient, slots, maxBatch int) *pipeliner {
	return &pipeliner{client: client, slots: slots, maxBatch: maxBatch}
}

// merger says how the calls of one script on one slot merge: the script
// takes items one after another in its KEYS and ARGV, each as it would run
// alone, and answers one reply per item, in order.
type merger struct {
	// keyHead and argHead are how many leading keys and args every call of
	// one slot shares (close's due and pending keys, say); the merged call
	// sends them once, then every call's own keys and args in order. Calls
	// whose heads differ are not merged.
	keyHead, argHead int
	// replies is how many elements of the merged reply are the call's own;
	// its reply is that run of elements. Nil: the script answers the same
	// whatever the items (ack), and every call gets that reply.
	replies func(c *call) int
}

// script runs s with keys and args and returns its reply.
func (p *pipeliner) script(ctx context.Context, s *redis.Script, keys []string, args ...interface{}) (interface{}, error) {
	return p.scriptCall(ctx, &call{ctx: ctx, script: s, keys: keys, args: args})
}

// scriptCall runs the script call c and returns its reply.
func (p *pipeliner) scriptCall(ctx context.Context, c *call) (interface{}, error) {
	if err := p.do(ctx, c); err != nil {
		return nil, err
	}
	return c.cmd.(*redis.Cmd).Result()
}

// doAll runs the calls as do does and answers the error of the round trip
// or, joined, those of the calls; what names them in the error.
func (p *pipeliner) doAll(ctx context.Context, what string, calls ...*call) error {
	if err := p.do(ctx, calls...); err != nil {
		return fmt.Errorf("statemanager: redis %s: %w", what, err)
	}
	var errs []error
	for _, c := range calls {
		if err := c.cmd.Err(); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("statemanager: redis %s: %w", what, errors.Join(errs...))
	}
	return nil
}

// do runs the calls and returns when each has its reply (read it from
// call.cmd) or ctx is done. A call abandoned by its caller's ctx is not sent
// if its batch has not been sent yet.
func (p *pipeliner) do(ctx context.Context, calls ...*call) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if p.slots <= 0 {
		p.run(ctx, calls)
		return nil
	}
	p.mu.Lock()
	if p.running < p.slots {
		// The queue is empty whenever a slot is free (a flush only gives
		// its slot back once the queue is drained), so nothing waits that
		// could share this round trip: send it now.
		p.running++
		p.mu.Unlock()
		p.run(ctx, calls)
		p.release()
		return nil
	}
	for _, c := range calls {
		c.done = make(chan struct{})
	}
	p.queue = append(p.queue, calls...)
	p.mu.Unlock()
	for _, c := range calls {
		select {
		case <-c.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// release gives a slot back, or keeps it to drain what queued meanwhile.
func (p *pipeliner) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.queue) > 0 {
		go p.drain()
		return
	}
	p.running--
}

// drain sends the queue in batches until it is empty, then gives its slot
// back.
func (p *pipeliner) drain() {
	var batch []*call
	for {
		p.mu.Lock()
		n := min(len(p.queue), p.maxBatch)
		if n == 0 {
			p.running--
			p.mu.Unlock()
			return
		}
		batch = append(batch[:0], p.queue[:n]...)
		// Shift instead of reslicing so the backing array is reused and the
		// sent calls are not kept alive by it.
		rest := copy(p.queue, p.queue[n:])
		clear(p.queue[rest:])
		p.queue = p.queue[:rest]
		p.mu.Unlock()
		p.flush(batch)
	}
}

// flush sends a batch of queued calls and hands every caller its reply.
// Calls whose callers gave up are dropped unsent. The batch runs without any
// caller's ctx, so one caller's cancellation cannot fail the others; the
// client's own timeouts bound it.
func (p *pipeliner) flush(batch []*call) {
	live := batch[:0]
	for _, c := range batch {
		if c.ctx.Err() != nil {
			close(c.done)
			continue
		}
		live = append(live, c)
	}
	p.run(context.Background(), live)
	for _, c := range live {
		close(c.done)
	}
}

// run sends calls in one round trip: a lone call as itself, several as one
// pipeline, those that merge (see merger) as one call each group.
func (p *pipeliner) run(ctx context.Context, calls []*call) {
	switch len(calls) {
	case 0:
		return
	case 1:
		c := calls[0]
		if c.script != nil {
			// Script.Run falls back to EVAL on NOSCRIPT, which loads it.
			c.cmd = c.script.Run(ctx, p.client, c.keys, c.args...)
		} else {
			_ = p.client.Process(ctx, c.cmd)
		}
		return
	}
	units := mergeCalls(calls)
	p.send(ctx, units)
	// A merged call that failed as a whole (a server error before or
	// instead of running it: out of memory, busy, a script that cannot be
	// loaded) runs again as its calls, one by one, so each caller gets its
	// own answer. The items' own failures are values in the reply, never a
	// failure of the call (itemReply in lib.lua). A failed round trip (the
	// connection) fails them all, as it does the calls of a pipeline.
	var alone []*call
	for _, u := range units {
		if u.members == nil {
			continue
		}
		err := u.cmd.Err()
		var rerr redis.Error
		switch {
		case err == nil:
			splitReply(ctx, u)
		case errors.As(err, &rerr):
			alone = append(alone, u.members...)
		default:
			for _, m := range u.members {
				m.cmd = failedCmd(ctx, err)
			}
		}
	}
	if len(alone) > 0 {
		p.send(ctx, alone)
	}
}

// send sends calls as one pipeline. EVALSHA of a script the server does not
// hold (first use, restart, SCRIPT FLUSH) fails with NOSCRIPT before
// running anything, so it is safe to load the script and send those calls
// once more.
func (p *pipeliner) send(ctx context.Context, calls []*call) {
	p.exec(ctx, calls)
	var retry []*call
	loaded := map[*redis.Script]error{}
	for _, c := range calls {
		if c.script == nil || !isNoScript(c.cmd.Err()) {
			continue
		}
		err, seen := loaded[c.script]
		if !seen {
			// On a ClusterClient this loads it on every node.
			err = c.script.Load(ctx, p.client).Err()
			loaded[c.script] = err
		}
		if err == nil {
			retry = append(retry, c)
		}
	}
	if len(retry) > 0 {
		p.exec(ctx, retry)
	}
}

// mergeKey names the calls that merge: one script, merger and slot.
type mergeKey struct {
	script *redis.Script
	merge  *merger
	slot   string
}

// mergeCalls returns calls with each group of two or more that merge
// replaced by one call carrying them (members), at the place of the
// group's first. A call abandons nothing by being merged: the merged
// call's script runs each item as the item's own call would.
func mergeCalls(calls []*call) []*call {
	var groups map[mergeKey][]*call
	for _, c := range calls {
		if c.merge == nil || c.script == nil {
			continue
		}
		if groups == nil {
			groups = map[mergeKey][]*call{}
		}
		k := mergeKey{c.script, c.merge, c.slot}
		groups[k] = append(groups[k], c)
	}
	if groups == nil {
		return calls
	}
	units := make([]*call, 0, len(calls))
	merged := map[mergeKey]bool{}
	for _, c := range calls {
		if c.merge == nil || c.script == nil {
			units = append(units, c)
			continue
		}
		k := mergeKey{c.script, c.merge, c.slot}
		g := groups[k]
		if len(g) == 1 {
			units = append(units, c)
			continue
		}
		if merged[k] {
			continue
		}
		merged[k] = true
		units = append(units, mergeGroup(g)...)
	}
	return units
}

// mergeGroup merges calls of one mergeKey, those whose heads match the
// first's into one call; any other (a head that differs) stays alone.
func mergeGroup(g []*call) []*call {
	m := g[0].merge
	first := g[0]
	var members, out []*call
	nkeys, nargs := m.keyHead, m.argHead
	for _, c := range g {
		if len(c.keys) < m.keyHead || len(c.args) < m.argHead ||
			!slices.Equal(c.keys[:m.keyHead], first.keys[:m.keyHead]) || !sameArgs(c.args[:m.argHead], first.args[:m.argHead]) {
			out = append(out, c)
			continue
		}
		members = append(members, c)
		nkeys += len(c.keys) - m.keyHead
		nargs += len(c.args) - m.argHead
	}
	if len(members) < 2 {
		return g
	}
	u := &call{ctx: first.ctx, script: first.script, members: members,
		keys: make([]string, 0, nkeys), args: make([]interface{}, 0, nargs)}
	u.keys = append(u.keys, first.keys[:m.keyHead]...)
	u.args = append(u.args, first.args[:m.argHead]...)
	for _, c := range members {
		u.keys = append(u.keys, c.keys[m.keyHead:]...)
		u.args = append(u.args, c.args[m.argHead:]...)
	}
	return append([]*call{u}, out...)
}

// sameArgs reports whether two argument lists are equal, comparing only
// the types a head holds (strings and integers); any other is unequal.
func sameArgs(a, b []interface{}) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		switch x := a[i].(type) {
		case string:
			if y, ok := b[i].(string); !ok || x != y {
				return false
			}
		case int64:
			if y, ok := b[i].(int64); !ok || x != y {
				return false
			}
		case int:
			if y, ok := b[i].(int); !ok || x != y {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// splitReply hands each member of the merged call u its run of u's reply.
func splitReply(ctx context.Context, u *call) {
	res := u.cmd.(*redis.Cmd).Val()
	m := u.members[0].merge
	if m.replies == nil {
		for _, c := range u.members {
			c.cmd = answeredCmd(ctx, res)
		}
		return
	}
	all, _ := res.([]interface{})
	want := 0
	for _, c := range u.members {
		want += m.replies(c)
	}
	if len(all) != want {
		err := fmt.Errorf("statemanager: merged script answered %d replies, want %d", len(all), want)
		for _, c := range u.members {
			c.cmd = failedCmd(ctx, err)
		}
		return
	}
	for _, c := range u.members {
		n := m.replies(c)
		c.cmd = answeredCmd(ctx, all[:n:n])
		all = all[n:]
	}
}

func answeredCmd(ctx context.Context, v interface{}) *redis.Cmd {
	cmd := redis.NewCmd(ctx)
	cmd.SetVal(v)
	return cmd
}

func failedCmd(ctx context.Context, err error) *redis.Cmd {
	cmd := redis.NewCmd(ctx)
	cmd.SetErr(err)
	return cmd
}

// exec sends calls as one pipeline. Each command carries its own error;
// the pipeline's first error is one of them.
func (p *pipeliner) exec(ctx context.Context, calls []*call) {
	_, _ = p.client.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for _, c := range calls {
			if c.script != nil {
				c.cmd = c.script.EvalSha(ctx, pipe, c.keys, c.args...)
			} else {
				_ = pipe.Process(ctx, c.cmd)
			}
		}
		return nil
	})
}
