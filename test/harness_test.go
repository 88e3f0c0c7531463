package test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sagarunner/sagarunner/config"
	"github.com/sagarunner/sagarunner/internal/app"
	"github.com/sagarunner/sagarunner/internal/testutil"
	"github.com/sagarunner/sagarunner/statemanager"
)

// Topic names: the configuration defaults, which the README's commands use.
const (
	requestTopic      = "sagarunner-requests"
	notificationTopic = "HTM_TASK_CLOSED_NOTIFICATION"
	deadLetterTopic   = "sagarunner-dead-letter"
	partitions        = 4
)

// Generous bounds for polling: effects usually show in milliseconds, but a
// loaded CI machine under -race can stall a consumer-group join for seconds.
const (
	waitLong = 45 * time.Second
	poll     = 20 * time.Millisecond
)

// newCluster starts an in-process Kafka broker that clients reach over TCP,
// creating topics on demand like a development cluster.
func newCluster(t *testing.T, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{
		kfake.NumBrokers(1),
		kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(partitions),
	}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// sagaDir copies the shipped sagas and the test sagas into one folder, as an
// operator would deploy them.
func sagaDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	var files []string
	for _, glob := range []string{"../sagas/*.yaml", "testdata/*.yaml"} {
		m, err := filepath.Glob(glob)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) == 0 {
		t.Fatal("no saga files found")
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// newConfig is the configuration `sagarunner run` would load with nothing
// set, pointed at the test's broker, Redis and sagas. Partitions and shards
// are equal so each partition owns one deadline shard.
func newConfig(t *testing.T, brokers []string, redisAddr, sagas string) *config.Config {
	t.Helper()
	cfg, err := config.Load("", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Brokers = brokers
	cfg.Redis.Addr = redisAddr
	cfg.RedisExplicit = true
	cfg.Sagas = sagas
	cfg.Topics.Partitions = partitions
	cfg.Redis.Shards = partitions
	cfg.Timers.PollInterval = 20 * time.Millisecond
	// Any non-empty address turns the gateway on; the listener given to
	// app.New is what it serves on.
	cfg.HTTP.Addr = "127.0.0.1:0"
	return cfg
}

// testLog collects a process's log and prints it only when the test fails,
// so a green run stays quiet and a red one explains itself.
type testLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *testLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func newTestLog(t *testing.T, name string) *testLog {
	l := &testLog{}
	t.Cleanup(func() {
		if t.Failed() {
			l.mu.Lock()
			defer l.mu.Unlock()
			t.Logf("log of %s:\n%s", name, l.buf.String())
		}
	})
	return l
}

// process is one sagarunner process built by internal/app, as the binary
// builds it, running in this test binary.
type process struct {
	name   string
	app    *app.App
	base   string
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

// startProcess builds and runs a process and waits until its gateway
// answers /readyz (runner consuming, reply consumer positioned). It is
// stopped when the test ends.
func startProcess(t *testing.T, name string, cfg *config.Config) *process {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(newTestLog(t, name), &slog.HandlerOptions{Level: slog.LevelInfo}))
	a, err := app.New(cfg, log, app.Options{Registerer: prometheus.NewRegistry(), Listener: ln})
	if err != nil {
		ln.Close()
		t.Fatalf("%s: %v", name, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &process{name: name, app: a, base: "http://" + ln.Addr().String(), cancel: cancel, done: make(chan error, 1)}
	go func() { p.done <- a.Run(ctx) }()
	t.Cleanup(func() { p.stop(t) })
	testutil.Eventually(t, waitLong, poll, func() error {
		if st, body := do(t, "GET", p.base+"/readyz", "", ""); st != http.StatusOK {
			return fmt.Errorf("%s /readyz: %d %s", name, st, body)
		}
		return nil
	})
	return p
}

// stop shuts the process down gracefully (SIGTERM's path: finish in-flight
// records, commit, leave the group) and fails the test if Run failed.
func (p *process) stop(t *testing.T) {
	t.Helper()
	p.once.Do(func() {
		p.cancel()
		if err := <-p.done; err != nil {
			t.Errorf("%s: Run: %v", p.name, err)
		}
		p.app.Close()
	})
}

// do sends one HTTP request and returns the status and body. A transport
// error is status 0 with the error as body, so callers can poll through
// a process that is not listening yet.
func do(t *testing.T, method, url, token, body string) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = bytes.NewReader([]byte(body))
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
		return 0, []byte(err.Error())
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return 0, []byte(err.Error())
	}
	return res.StatusCode, b
}

// newClient is a plain Kafka client of the test (no consumer group).
func newClient(t *testing.T, brokers []string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(brokers...),
		kgo.ProducerLinger(0),
		kgo.AllowAutoTopicCreation(),
	}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// produce publishes records and fails the test unless every one is
// acknowledged.
func produce(t *testing.T, cl *kgo.Client, recs ...*kgo.Record) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

// topicReader collects every record of some topics from their start, the
// way a downstream consumer (kcat -C) sees them.
type topicReader struct {
	mu   sync.Mutex
	recs []*kgo.Record
}

func readTopics(t *testing.T, brokers []string, topics ...string) *topicReader {
	t.Helper()
	cl := newClient(t, brokers,
		kgo.ConsumeTopics(topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		// Topics the runner creates after this client starts are
		// found quickly instead of at the next periodic refresh.
		kgo.MetadataMinAge(100*time.Millisecond),
		kgo.MetadataMaxAge(time.Second),
		kgo.FetchMaxWait(100*time.Millisecond),
	)
	r := &topicReader{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			fs := cl.PollFetches(ctx)
			if ctx.Err() != nil || fs.IsClientClosed() {
				return
			}
			r.mu.Lock()
			fs.EachRecord(func(rec *kgo.Record) { r.recs = append(r.recs, rec) })
			r.mu.Unlock()
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return r
}

// records returns what was read so far, optionally of one topic only.
func (r *topicReader) records(topic string) []*kgo.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*kgo.Record
	for _, rec := range r.recs {
		if topic == "" || rec.Topic == topic {
			out = append(out, rec)
		}
	}
	return out
}

// waitFor polls until a record of topic with key matches and returns the
// first such record.
func (r *topicReader) waitFor(t *testing.T, topic, key string, match func(*kgo.Record) bool) *kgo.Record {
	t.Helper()
	var found *kgo.Record
	testutil.Eventually(t, waitLong, poll, func() error {
		for _, rec := range r.records(topic) {
			if string(rec.Key) == key && (match == nil || match(rec)) {
				found = rec
				return nil
			}
		}
		return fmt.Errorf("no matching record with key %q on %s (have %d records there)", key, topic, len(r.records(topic)))
	})
	return found
}

// byKey returns the records of topic with the given key.
func (r *topicReader) byKey(topic, key string) []*kgo.Record {
	var out []*kgo.Record
	for _, rec := range r.records(topic) {
		if string(rec.Key) == key {
			out = append(out, rec)
		}
	}
	return out
}

// waitTask polls GET /tasks/{domain}/{id} until the task has the status.
func waitTask(t *testing.T, base, token, domain, id, status string) map[string]any {
	t.Helper()
	var task map[string]any
	testutil.Eventually(t, waitLong, poll, func() error {
		st, body := do(t, "GET", fmt.Sprintf("%s/tasks/%s/%s", base, domain, id), token, "")
		if st != http.StatusOK {
			return fmt.Errorf("GET task %s: %d %s", id, st, body)
		}
		task = nil
		if err := json.Unmarshal(body, &task); err != nil {
			return err
		}
		if task["status"] != status {
			return fmt.Errorf("task %s is %v, want %s", id, task["status"], status)
		}
		return nil
	})
	return task
}

// storeOf opens the state manager of a domain the way the process does,
// so tests can read what the process stored.
func storeOf(t *testing.T, cfg *config.Config, domain string) statemanager.Store {
	t.Helper()
	res, closeAll, err := app.BuildStores(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closeAll)
	s, err := res.Store(domain)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// jsonEqual reports whether two JSON documents are equal as values.
func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}

// errorsJoin keeps the first few errors of a check readable.
func errorsJoin(errs []error, limit int) error {
	if len(errs) > limit {
		errs = append(errs[:limit], fmt.Errorf("... and %d more", len(errs)-limit))
	}
	return errors.Join(errs...)
}
