package ui_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sagarunner/sagarunner/auth"
	"github.com/sagarunner/sagarunner/gateway"
	"github.com/sagarunner/sagarunner/internal/redistest"
	"github.com/sagarunner/sagarunner/statemanager"
	"github.com/sagarunner/sagarunner/ui"
)

const (
	taskEvents = "test-task-events"
	audit      = "test-audit"
)

// liveEnv is a gateway serving for real (its feed runs only while it
// serves), with the live topics created and a producer to them.
type liveEnv struct {
	base     string
	store    statemanager.Store
	producer *kgo.Client
	// stop ends Serve and returns its error, or an error if it does not
	// return within 30s.
	stop func() error
}

func newLiveEnv(t *testing.T, cfg ui.Config) *liveEnv {
	t.Helper()
	_, rdb := redistest.Start(t)
	store, err := statemanager.NewRedisStore(rdb, "workflow", statemanager.RedisConfig{Shards: 4})
	if err != nil {
		t.Fatal(err)
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(2))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	producer, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ProducerLinger(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(producer.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := kadm.NewClient(producer).CreateTopics(ctx, 2, 1, nil, taskEvents, audit); err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	cfg.TaskEventTopic, cfg.AuditTopic = taskEvents, audit
	g, err := gateway.New(gateway.Config{Auth: auth.Config{Tokens: tokens, AdminRoles: []string{"ops"}}, UI: cfg},
		gateway.Deps{Stores: domains{"workflow": store}, Client: cl})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- g.Serve(sctx, ln) }()
	var once sync.Once
	var stopErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case stopErr = <-served:
			case <-time.After(30 * time.Second):
				stopErr = fmt.Errorf("Serve did not return within 30s: a live stream held the shutdown")
			}
		})
		return stopErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	})
	return &liveEnv{base: "http://" + ln.Addr().String(), store: store, producer: producer, stop: stop}
}

// stream is one browser's event stream, read line by line.
type sseStream struct {
	events chan string // "name data"
	cancel context.CancelFunc
}

func openStream(t *testing.T, base, token string) *sseStream {
	t.Helper()
	return openStreamAt(t, base, token, "/ui/events")
}

func openStreamAt(t *testing.T, base, token, path string) *sseStream {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	res, err := c.PostForm(base+"/ui/signin", url.Values{"token": {token}})
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	req.Header.Set("Accept", "text/event-stream")
	res, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %d %v", res.StatusCode, res.Header)
	}
	s := &sseStream{events: make(chan string, 100), cancel: cancel}
	go func() {
		defer res.Body.Close()
		defer close(s.events)
		sc := bufio.NewScanner(res.Body)
		var name string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				s.events <- name + " " + strings.TrimPrefix(line, "data: ")
			}
		}
	}()
	return s
}

// next waits for the next event; "" when the stream ended.
func (s *sseStream) next(t *testing.T) string {
	t.Helper()
	select {
	case ev, ok := <-s.events:
		if !ok {
			return ""
		}
		return ev
	case <-time.After(30 * time.Second):
		t.Fatal("no event within 30s")
		return ""
	}
}

func (e *liveEnv) taskEvent(t *testing.T, id, tenant, typ string) {
	t.Helper()
	v, _ := json.Marshal(map[string]string{"taskId": id, "domain": "workflow", "tenant": tenant, "status": "WAITING", "type": typ})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.producer.ProduceSync(ctx, &kgo.Record{Topic: taskEvents, Key: []byte(id), Value: v}).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// TestLiveUpdates shows that each stream receives the changes of the
// tasks its caller may see and nothing else: another tenant's task never
// reaches it, and junk on the topics is skipped.
func TestLiveUpdates(t *testing.T) {
	e := newLiveEnv(t, ui.Config{})
	ctx := context.Background()
	for _, task := range []statemanager.Task{
		{ID: "acme-1", Roles: []string{"clerk"}, Tenant: "acme", StartedAt: 1},
		{ID: "acme-private", User: "carol", Tenant: "acme", StartedAt: 2},
		{ID: "globex-1", Roles: []string{"clerk"}, Tenant: "globex", StartedAt: 3},
	} {
		task.Domain = "workflow"
		task.Envelope = json.RawMessage(`{}`)
		if _, _, err := e.store.Start(ctx, &task); err != nil {
			t.Fatal(err)
		}
	}
	alice, eve := openStream(t, e.base, "tok-alice"), openStream(t, e.base, "tok-eve")
	for _, s := range []*sseStream{alice, eve} {
		if got := s.next(t); got != "ready {}" {
			t.Fatalf("first event %q, want ready", got)
		}
	}
	// Junk first: it must not stop the feed.
	if err := e.producer.ProduceSync(ctx, &kgo.Record{Topic: taskEvents, Value: []byte("{not json")},
		&kgo.Record{Topic: audit, Value: []byte(`{"instanceId":""}`)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// In order: a task of acme alice may not see, one of globex, then
	// one of acme for clerks. Each stream's first change must be its own.
	e.taskEvent(t, "acme-private", "acme", "started")
	e.taskEvent(t, "globex-1", "globex", "claimed")
	e.taskEvent(t, "acme-1", "acme", "claimed")
	// A lying event (it claims globex for an acme task) is checked against
	// the task itself and does not reach eve.
	e.taskEvent(t, "acme-1", "globex", "claimed")
	e.taskEvent(t, "globex-1", "globex", "commented")

	want := func(s *sseStream, who string, ids ...string) {
		t.Helper()
		for _, id := range ids {
			got := s.next(t)
			if !strings.HasPrefix(got, "change ") || !strings.Contains(got, fmt.Sprintf(`"taskId":%q`, id)) {
				t.Fatalf("%s's next event %q, want a change of %s", who, got, id)
			}
			if strings.Contains(got, "tenant") {
				t.Fatalf("%s's event carries more than ids and states: %s", who, got)
			}
		}
	}
	want(alice, "alice", "acme-1")
	want(eve, "eve", "globex-1", "globex-1")
}

// TestStreamBounds shows that a session cannot open streams without end.
func TestStreamBounds(t *testing.T) {
	e := newLiveEnv(t, ui.Config{StreamsPerSession: 1})
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	res, err := c.PostForm(e.base+"/ui/signin", url.Values{"token": {"tok-alice"}})
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.base+"/ui/events", nil)
	first, err := c.Do(req)
	if err != nil || first.StatusCode != http.StatusOK {
		t.Fatalf("first stream: %v %v", first, err)
	}
	defer first.Body.Close()
	second, err := c.Get(e.base + "/ui/events")
	if err != nil {
		t.Fatal(err)
	}
	second.Body.Close()
	if second.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("a second stream of the session: %d, want 503", second.StatusCode)
	}
}

// TestShutdownEndsStreams shows that a gateway shutting down ends its open
// streams rather than waiting on them, and that an idle stream gets
// heartbeats meanwhile.
func TestShutdownEndsStreams(t *testing.T) {
	e := newLiveEnv(t, ui.Config{Heartbeat: 20 * time.Millisecond})
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	res, err := c.PostForm(e.base+"/ui/signin", url.Values{"token": {"tok-alice"}})
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	res, err = c.Get(e.base + "/ui/events")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	pinged := false
	for !pinged && sc.Scan() {
		pinged = sc.Text() == ": ping"
	}
	if !pinged {
		t.Fatalf("the stream ended without a heartbeat: %v", sc.Err())
	}
	if err := e.stop(); err != nil {
		t.Fatal(err)
	}
	for sc.Scan() {
	}
	// The stream ended (EOF or a reset): the scanner stopped.
}

// TestStreamCatchesUp shows that a stream opened by a page gets the
// changes made since the page was rendered, which the page's data may
// have missed, and not older ones.
func TestStreamCatchesUp(t *testing.T) {
	e := newLiveEnv(t, ui.Config{})
	task := statemanager.Task{ID: "acme-1", Domain: "workflow", Roles: []string{"clerk"}, Tenant: "acme", StartedAt: 1, Envelope: json.RawMessage(`{}`)}
	if _, _, err := e.store.Start(context.Background(), &task); err != nil {
		t.Fatal(err)
	}
	watcher := openStream(t, e.base, "tok-alice")
	if got := watcher.next(t); got != "ready {}" {
		t.Fatalf("first event %q", got)
	}
	e.taskEvent(t, "acme-1", "acme", "claimed") // before the page
	if got := watcher.next(t); !strings.Contains(got, `"type":"claimed"`) {
		t.Fatalf("watcher got %q", got)
	}
	// since= has millisecond precision: let the clock pass the claim's
	// millisecond, so the claim is strictly before the render.
	time.Sleep(2 * time.Millisecond)
	rendered := time.Now().UnixMilli()
	e.taskEvent(t, "acme-1", "acme", "commented")
	if got := watcher.next(t); !strings.Contains(got, `"type":"commented"`) {
		t.Fatalf("watcher got %q", got)
	}
	// The feed has read both. A page rendered between them opens its
	// stream now: it gets the second, not the first.
	late := openStreamAt(t, e.base, "tok-alice", fmt.Sprintf("/ui/events?since=%d", rendered))
	if got := late.next(t); got != "ready {}" {
		t.Fatalf("first event %q", got)
	}
	if got := late.next(t); !strings.Contains(got, `"type":"commented"`) {
		t.Fatalf("catch-up %q, want the comment only", got)
	}
}
