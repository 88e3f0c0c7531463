package actions_test

import (
	"bytes"
	"context"
	"encoding/json"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sagarunner/sagarunner/actions"
	"github.com/sagarunner/sagarunner/clock"
	"github.com/sagarunner/sagarunner/internal/redistest"
	"github.com/sagarunner/sagarunner/saga/envelope"
	"github.com/sagarunner/sagarunner/statemanager"
)

// t0 is where every virtual clock starts: 2025-11-22T08:26:40Z.
var t0 = time.UnixMilli(1763800000000)

var topics = actions.Topics{Continuations: "requests", Notifications: "HTM_TASK_CLOSED_NOTIFICATION"}

// build builds an action through the default registry, exactly as a saga
// load or a direct action record does.
func build(t *testing.T, name string, in actions.Input) actions.Action {
	t.Helper()
	spec, ok := actions.Default.Lookup(name)
	if !ok {
		t.Fatalf("action %s is not registered", name)
	}
	a, errs := spec.Build(in)
	if len(errs) > 0 {
		t.Fatalf("build %s: %v", name, errs)
	}
	return a
}

// decode parses an envelope literal.
func decode(t *testing.T, s string) *envelope.Envelope {
	t.Helper()
	env, err := envelope.Decode([]byte(s), func() string { return "generated" })
	if err != nil {
		t.Fatalf("decode %s: %v", s, err)
	}
	return env
}

// run executes a on a copy of env, as the engine hands each step a private
// copy, and fails the test on an infrastructure error.
func run(t *testing.T, a actions.Action, x *actions.Exec, env *envelope.Envelope) actions.Outcome {
	t.Helper()
	return runCtx(t, context.Background(), a, x, env)
}

// runCtx is run under ctx.
func runCtx(t *testing.T, ctx context.Context, a actions.Action, x *actions.Exec, env *envelope.Envelope) actions.Outcome {
	t.Helper()
	out, err := a.Execute(ctx, x, env.Clone())
	if err != nil {
		t.Fatalf("execute: %v", err)
	}
	if out.Env == nil {
		t.Fatal("execute returned no envelope")
	}
	return out
}

// wantResult checks an outcome's status and code.
func wantResult(t *testing.T, out actions.Outcome, status, code string) {
	t.Helper()
	r := out.Env.Result
	if r.Status != status || r.Code != code {
		t.Fatalf("result = %+v, want status %q code %q", r, status, code)
	}
}

// redisStores resolves each domain to a RedisStore on one real redis-server.
type redisStores struct {
	client *redis.Client
	mu     sync.Mutex
	stores map[string]*statemanager.RedisStore
}

func (r *redisStores) Store(domain string) (statemanager.Store, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s, ok := r.stores[domain]; ok {
		return s, nil
	}
	s, err := statemanager.NewRedisStore(r.client, domain, statemanager.RedisConfig{Shards: 4})
	if err != nil {
		return nil, err
	}
	r.stores[domain] = s
	return s, nil
}

// newExec returns an Exec over a freshly flushed real Redis and a virtual
// clock at t0, as partition 3 of the runner.
func newExec(t *testing.T) (*actions.Exec, *clock.Fake, *redisStores) {
	t.Helper()
	_, client := redistest.Start(t)
	stores := &redisStores{client: client, stores: map[string]*statemanager.RedisStore{}}
	clk := clock.NewFake(t0)
	return &actions.Exec{Stores: stores, Clock: clk, Topics: topics, Partition: 3}, clk, stores
}

// getTask reads a task straight from its store.
func getTask(t *testing.T, stores *redisStores, domain, id string) *statemanager.Task {
	t.Helper()
	s, _ := stores.Store(domain)
	task, err := s.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("get task %q: %v", id, err)
	}
	return task
}

// jsonEq compares two JSON documents for equal content.
func jsonEq(t *testing.T, what string, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("%s: bad JSON %s: %v", what, got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("%s: bad wanted JSON %s: %v", what, want, err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("%s =\n  %s\nwant\n  %s", what, got, want)
	}
}

// compact strips insignificant whitespace from a JSON literal.
func compact(t *testing.T, s string) string {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(s)); err != nil {
		t.Fatalf("compact %s: %v", s, err)
	}
	return b.String()
}
