package statemanager

import (
	"context"
	"errors"
	"fmt"
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
// Each call stays one command (one script for every change), so its
// atomicity and its reply are those of the unbatched call; a pipeline only
// shares the round trip. On a ClusterClient go-redis splits a pipeline per
// node.
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
	// cmd is the command: built by the caller for plain commands, by the
	// flush for scripts. Read it only once done is closed.
	cmd  redis.Cmder
	done chan struct{}
}

func newPipeliner(client redis.UniversalClient, slots, maxBatch int) *pipeliner {
	return &pipeliner{client: client, slots: slots, maxBatch: maxBatch}
}

// script runs s with keys and args and returns its reply.
func (p *pipeliner) script(ctx context.Context, s *redis.Script, keys []string, args ...interface{}) (interface{}, error) {
	c := &call{ctx: ctx, script: s, keys: keys, args: args}
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
// pipeline.
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
	p.exec(ctx, calls)
	// EVALSHA of a script the server does not hold (first use, restart,
	// SCRIPT FLUSH) fails with NOSCRIPT before running anything, so it is
	// safe to load the script and send those calls once more.
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
