package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sagarunner/sagarunner/actions"
	"github.com/sagarunner/sagarunner/internal/testutil"
	"github.com/sagarunner/sagarunner/saga"
	"github.com/sagarunner/sagarunner/saga/envelope"
)

const (
	requestTopic = "gw-requests"
	replyTopic   = "gw-replies"
	triggerTopic = "gw-trigger"
	eventsTopic  = "gw-events"
)

// testSagas are served by every test gateway. Their steps never run here:
// the responder below stands in for the runner.
const testSagas = `
saga: echo
version: 2
trigger: {path: /echo}
steps:
  - id: done
    action: Finish
---
saga: on_topic
trigger: {path: /on-topic, topic: gw-trigger}
steps:
  - id: done
    action: Finish
---
saga: proceed_task
trigger: {path: /ProceedTask}
steps:
  - id: proceed
    action: ProceedTask
    domain: workflow
    inputElement: parameters
    parameters: {enrichPath: decision}
---
saga: close_by_ref
trigger: {path: /close-by-ref}
steps:
  - id: close
    action: TimeoutTask
    domain: workflow
    inputElement: parameters
    parameters: {taskIdPath: ref.id}
---
saga: sweep
trigger: {path: /sweep}
steps:
  - id: sweep
    action: GatewayTestSweep
---
saga: sweep_between
trigger: {path: /sweep-between}
steps:
  - id: sweep
    action: TimeoutBetween
    domain: workflow
`

type noAction struct{}

func (noAction) Execute(context.Context, *actions.Exec, *envelope.Envelope) (actions.Outcome, error) {
	return actions.Outcome{}, errors.New("not run in the gateway tests")
}

// GatewayTestSweep is a sweeping action of the tests' own, so the admin
// rule is shown to follow the spec, whatever the action is called.
func init() {
	actions.Default.Register(&actions.Spec{
		Name:   "GatewayTestSweep",
		Doc:    "Stands for an action that acts on many tasks at once.",
		Sweeps: true,
		// The responder stands in for the runner: the action never runs.
		New: func(actions.Config) (actions.Action, error) { return noAction{}, nil },
	})
}

func loadSagas(t testing.TB) *saga.Set {
	t.Helper()
	set, err := saga.LoadBytes(actions.Default, "gateway_test.yaml", []byte(testSagas))
	if err != nil {
		t.Fatalf("load test sagas: %v", err)
	}
	return set
}

// newCluster starts an in-process Kafka broker reached over TCP.
func newCluster(t testing.TB, topics ...string) []string {
	t.Helper()
	opts := []kfake.Opt{kfake.NumBrokers(1)}
	if len(topics) > 0 {
		opts = append(opts, kfake.SeedTopics(3, topics...))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

func newClient(t testing.TB, brokers []string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// served is a gateway serving on a port-0 listener.
type served struct {
	gw   *Gateway
	base string
	stop func() error
}

// serve starts a gateway on brokers with cfg (topics filled in) and waits
// until its reply consumer is positioned.
func serve(t testing.TB, brokers []string, cfg Config, deps Deps) *served {
	t.Helper()
	if cfg.RequestTopic == "" {
		cfg.RequestTopic = requestTopic
	}
	if cfg.ReplyTopic == "" {
		cfg.ReplyTopic = replyTopic
	}
	if deps.Client == nil {
		deps.Client = newClient(t, brokers)
	}
	if deps.Sagas == nil {
		deps.Sagas = loadSagas(t)
	}
	gw, err := New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- gw.Serve(ctx, ln) }()
	var once sync.Once
	var serveErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			serveErr = <-done
		})
		return serveErr
	}
	t.Cleanup(func() { _ = stop() })
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
		if !gw.positioned.Load() {
			return errors.New("reply consumer not positioned")
		}
		return nil
	})
	return &served{gw: gw, base: "http://" + ln.Addr().String(), stop: stop}
}

// seen is what the responder observed of one request record.
type seen struct {
	Topic string
	Key   string
	Env   *envelope.Envelope
}

// responder stands in for the runner over real Kafka: it consumes the
// request and trigger topics and answers on requestMeta.replyTo with the
// result the request's parameters ask for ("reply"), or not at all
// ("silent": true). Its payload echoes the request so tests can assert
// what the gateway sent.
type responder struct {
	mu   sync.Mutex
	seen map[string]seen
}

func startResponder(t *testing.T, brokers []string) *responder {
	t.Helper()
	cl := newClient(t, brokers, kgo.ConsumeTopics(requestTopic, triggerTopic))
	r := &responder{seen: map[string]seen{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		for {
			fs := cl.PollFetches(ctx)
			if ctx.Err() != nil {
				return
			}
			fs.EachRecord(func(rec *kgo.Record) { r.handle(ctx, t, cl, rec) })
		}
	}()
	return r
}

func (r *responder) handle(ctx context.Context, t *testing.T, cl *kgo.Client, rec *kgo.Record) {
	env, err := envelope.Decode(rec.Value, saga.NewID)
	if err != nil {
		t.Errorf("responder: %v", err)
		return
	}
	r.mu.Lock()
	r.seen[env.RequestMeta.RequestID] = seen{Topic: rec.Topic, Key: string(rec.Key), Env: env}
	r.mu.Unlock()
	params := env.Get("parameters")
	if params.Get("silent").Bool() || env.RequestMeta.ReplyTo == "" {
		return
	}
	reply := env.Clone()
	reply.Succeed()
	if res := params.Get("reply"); res.Exists() {
		_ = json.Unmarshal([]byte(res.Raw), &reply.Result)
	}
	echo, _ := json.Marshal(map[string]any{
		"echo":  json.RawMessage(params.Raw),
		"topic": rec.Topic,
		"saga":  env.SagaMeta.Saga,
		"user":  env.RequestMeta.User,
		"roles": env.RequestMeta.Roles,
	})
	reply.Payload = echo
	out := &kgo.Record{Topic: env.RequestMeta.ReplyTo, Key: []byte(env.RequestMeta.RequestID), Value: reply.Encode()}
	if err := cl.ProduceSync(ctx, out).FirstErr(); err != nil && ctx.Err() == nil {
		t.Errorf("responder: produce reply: %v", err)
	}
}

func (r *responder) get(id string) (seen, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.seen[id]
	return s, ok
}

// response is a decoded HTTP answer.
type response struct {
	status int
	header http.Header
	raw    []byte
	body   map[string]any
}

func do(t *testing.T, method, url, token string, body []byte) response {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := response{status: res.StatusCode, header: res.Header, raw: raw}
	if ct := res.Header.Get("Content-Type"); ct != "application/json" && method != http.MethodHead && res.Request.URL.Path != "/metrics" {
		t.Errorf("%s %s: Content-Type %q, want application/json", method, url, ct)
	}
	_ = json.Unmarshal(raw, &out.body)
	return out
}

func loadClash() (*saga.Set, error) {
	return saga.LoadBytes(actions.Default, "clash.yaml", []byte(`
saga: clash
trigger: {path: /tasks}
steps:
  - id: done
    action: Finish
`))
}
