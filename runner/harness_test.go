package runner

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tidwall/gjson"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sagarunner/sagarunner/actions"
	"github.com/sagarunner/sagarunner/internal/redistest"
	"github.com/sagarunner/sagarunner/internal/testutil"
	"github.com/sagarunner/sagarunner/metrics"
	"github.com/sagarunner/sagarunner/saga"
	"github.com/sagarunner/sagarunner/statemanager"
)

// The runner must accept the Prometheus collectors as they are.
var _ Metrics = (*metrics.Metrics)(nil)

const (
	requestTopic = "requests"
	notifyTopic  = "notifications"
	deadTopic    = "dead"
	partitions   = 4
	shards       = 4
	domain       = "workflow"
)

// testSagas: "approval" waits long and publishes the decision; "quick" times
// out after 300 ms and "slow" after 3 s, and both then escalate.
const testSagas = `
saga: approval
version: 1
trigger: {topic: approvals}
steps:
  - id: approve
    action: StartTask
    domain: workflow
    inputElement: parameters
    parameters: {taskIdPath: id, timeout: 600000}
    next: {SUCCESS: publish, TIMEOUT: escalate}
  - id: publish
    action: Publish
    parameters: {topic: approved}
  - id: escalate
    action: Publish
    parameters: {topic: escalations}
---
saga: quick
version: 1
trigger: {topic: quick}
steps:
  - id: approve
    action: StartTask
    domain: workflow
    inputElement: parameters
    parameters: {taskIdPath: id, timeout: 300}
    next: {SUCCESS: publish, TIMEOUT: escalate}
  - id: publish
    action: Publish
    parameters: {topic: approved}
  - id: escalate
    action: Publish
    parameters: {topic: escalations}
---
saga: slow
version: 1
trigger: {topic: slow}
steps:
  - id: approve
    action: StartTask
    domain: workflow
    inputElement: parameters
    parameters: {taskIdPath: id, timeout: 3000}
    next: {SUCCESS: publish, TIMEOUT: escalate}
  - id: publish
    action: Publish
    parameters: {topic: approved}
  - id: escalate
    action: Publish
    parameters: {topic: escalations}
`

var outputTopics = []string{"approved", "escalations"}

// stores resolves every domain to a RedisStore on one real server.
type stores struct {
	client redis.UniversalClient
	mu     sync.Mutex
	m      map[string]*statemanager.RedisStore
}

func newStores(client redis.UniversalClient) *stores {
	return &stores{client: client, m: map[string]*statemanager.RedisStore{}}
}

func (s *stores) Store(d string) (statemanager.Store, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.m[d]; ok {
		return st, nil
	}
	st, err := statemanager.NewRedisStore(s.client, d, statemanager.RedisConfig{Shards: shards})
	if err != nil {
		return nil, err
	}
	s.m[d] = st
	return st, nil
}

// env is one test's world: an in-process Kafka over TCP, a real Redis, the
// real engine over the test sagas, and a client that produces inputs and
// reads everything the runners produce.
type env struct {
	t       *testing.T
	ctx     context.Context
	cluster *kfake.Cluster
	brokers []string
	stores  *stores
	eng     *saga.Engine
	cl      *kgo.Client
	adm     *kadm.Client

	mu  sync.Mutex
	out map[string][]*kgo.Record
}

func newEnv(t *testing.T, client redis.UniversalClient, seed bool) *env {
	t.Helper()
	opts := []kfake.Opt{kfake.NumBrokers(1)}
	if seed {
		opts = append(opts, kfake.SeedTopics(partitions, append([]string{requestTopic, notifyTopic, deadTopic,
			"approvals", "quick", "slow"}, outputTopics...)...))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatalf("kfake: %v", err)
	}
	t.Cleanup(c.Close)
	set, err := saga.LoadBytes(actions.Default, "test.yaml", []byte(testSagas))
	if err != nil {
		t.Fatalf("load sagas: %v", err)
	}
	e := &env{t: t, ctx: context.Background(), cluster: c, brokers: c.ListenAddrs(),
		stores: newStores(client), out: map[string][]*kgo.Record{}}
	e.eng, err = saga.NewEngine(set, saga.Config{
		Topics:     actions.Topics{Continuations: requestTopic, Notifications: notifyTopic},
		DeadLetter: deadTopic,
		Stores:     e.stores,
	})
	if err != nil {
		t.Fatalf("engine: %v", err)
	}
	e.cl, err = kgo.NewClient(kgo.SeedBrokers(e.brokers...),
		kgo.ConsumeTopics(append([]string{notifyTopic, deadTopic}, outputTopics...)...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.MetadataMinAge(50*time.Millisecond),
		kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	e.adm = kadm.NewClient(e.cl)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			fs := e.cl.PollFetches(ctx)
			if ctx.Err() != nil || fs.IsClientClosed() {
				return
			}
			fs.EachRecord(func(r *kgo.Record) {
				e.mu.Lock()
				e.out[r.Topic] = append(e.out[r.Topic], r)
				e.mu.Unlock()
			})
		}
	}()
	t.Cleanup(func() { cancel(); <-done; e.cl.Close() })
	return e
}

// config is the runner config the tests share: fast commits and backoff so
// effects show quickly.
func (e *env) config() Config {
	return Config{
		Brokers:        e.brokers,
		Group:          "test-group",
		RequestTopic:   requestTopic,
		OutputTopics:   outputTopics,
		CreateTopics:   true,
		Partitions:     partitions,
		CommitInterval: 20 * time.Millisecond,
		Backoff:        Backoff{Min: 20 * time.Millisecond, Max: 200 * time.Millisecond},
	}
}

// quiet keeps expected retry warnings out of the test output.
var quiet = slog.New(slog.DiscardHandler)

// start runs a runner over eng until the test ends and waits until it owns
// partitions.
func (e *env) start(cfg Config, eng engine, opts ...Option) *Runner {
	e.t.Helper()
	opts = append([]Option{WithLogger(quiet),
		// Fast heartbeats let a rebalance reach the other members quickly.
		WithKafkaOptions(kgo.HeartbeatInterval(100*time.Millisecond), kgo.FetchMaxWait(100*time.Millisecond))}, opts...)
	r, err := newRunner(cfg, eng, e.eng.Config(), e.eng.Sagas().Topics(), e.stores, opts...)
	if err != nil {
		e.t.Fatalf("runner: %v", err)
	}
	errc := make(chan error, 1)
	go func() { errc <- r.Run(context.Background()) }()
	e.t.Cleanup(func() {
		r.Close()
		if err := <-errc; err != nil {
			e.t.Errorf("Run: %v", err)
		}
	})
	testutil.Eventually(e.t, 10*time.Second, 10*time.Millisecond, func() error {
		if !r.Ready() || len(r.Assigned()) == 0 {
			return fmt.Errorf("runner not consuming yet (ready %v, assigned %v)", r.Ready(), r.Assigned())
		}
		return nil
	})
	return r
}

// produce writes one record and returns where it landed.
func (e *env) produce(topic, key, value string, headers ...kgo.RecordHeader) *kgo.Record {
	e.t.Helper()
	rec := &kgo.Record{Topic: topic, Key: []byte(key), Value: []byte(value), Headers: headers}
	if err := e.cl.ProduceSync(e.ctx, rec).FirstErr(); err != nil {
		e.t.Fatalf("produce to %s: %v", topic, err)
	}
	return rec
}

// records returns what was produced to topic so far.
func (e *env) records(topic string) []*kgo.Record {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]*kgo.Record(nil), e.out[topic]...)
}

// matching returns the records of topic whose value has path == want.
func (e *env) matching(topic, path, want string) []*kgo.Record {
	var out []*kgo.Record
	for _, r := range e.records(topic) {
		if gjson.GetBytes(r.Value, path).String() == want {
			out = append(out, r)
		}
	}
	return out
}

// waitRecords waits until exactly n records of topic have path == want.
func (e *env) waitRecords(topic, path, want string, n int) []*kgo.Record {
	e.t.Helper()
	var got []*kgo.Record
	testutil.Eventually(e.t, 10*time.Second, 10*time.Millisecond, func() error {
		got = e.matching(topic, path, want)
		if len(got) != n {
			return fmt.Errorf("%d records on %s with %s=%q, want %d", len(got), topic, path, want, n)
		}
		return nil
	})
	return got
}

func (e *env) task(id string) (*statemanager.Task, error) {
	st, err := e.stores.Store(domain)
	if err != nil {
		return nil, err
	}
	return st.Get(e.ctx, id)
}

// waitStatus waits until task id has status.
func (e *env) waitStatus(id, status string) {
	e.t.Helper()
	testutil.Eventually(e.t, 10*time.Second, 10*time.Millisecond, func() error {
		tk, err := e.task(id)
		if err != nil {
			return err
		}
		if tk.Status != status {
			return fmt.Errorf("task %s is %s, want %s", id, tk.Status, status)
		}
		return nil
	})
}

// committed returns the group's committed offset of a partition (-1 if none).
func (e *env) committed(group, topic string, p int32) int64 {
	e.t.Helper()
	os, err := e.adm.FetchOffsets(e.ctx, group)
	if err != nil {
		return -1
	}
	o, ok := os.Lookup(topic, p)
	if !ok || o.Err != nil {
		return -1
	}
	return o.At
}

// waitCommitted waits until the group has committed past rec.
func (e *env) waitCommitted(group string, rec *kgo.Record) {
	e.t.Helper()
	testutil.Eventually(e.t, 10*time.Second, 10*time.Millisecond, func() error {
		if got := e.committed(group, rec.Topic, rec.Partition); got < rec.Offset+1 {
			return fmt.Errorf("committed %d on %s/%d, want >= %d", got, rec.Topic, rec.Partition, rec.Offset+1)
		}
		return nil
	})
}

// restartRedis starts a redis-server on the address a stopped one used, the
// way an operator restarts Redis: clients reconnect to the same address.
func restartRedis(t *testing.T, addr string) {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cmd := exec.Command("redis-server", "--port", port, "--bind", host, "--save", "", "--appendonly", "no", "--dir", dir)
	cmd.Stdout, cmd.Stderr = nil, nil
	if err := cmd.Start(); err != nil {
		t.Fatalf("restart redis: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	testutil.Eventually(t, 5*time.Second, 20*time.Millisecond, func() error { return c.Ping(context.Background()).Err() })
}

// sharedRedis returns a client on the package's redis-server, flushed.
func sharedRedis(t *testing.T) *redis.Client {
	_, client := redistest.Start(t)
	return client
}
