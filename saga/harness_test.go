package saga_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tidwall/gjson"

	"github.com/sagarunner/sagarunner/actions"
	"github.com/sagarunner/sagarunner/clock"
	"github.com/sagarunner/sagarunner/internal/redistest"
	"github.com/sagarunner/sagarunner/saga"
	"github.com/sagarunner/sagarunner/saga/envelope"
	"github.com/sagarunner/sagarunner/statemanager"
)

const (
	requestTopic = "requests"
	notifyTopic  = "notifications"
	deadTopic    = "dead"
	replyTopic   = "responses"
	testShards   = 4
)

// signingKey is the key the harness's engine signs continuations with.
var signingKey = []byte("test-signing-key")

// signed returns the headers of a continuation the runners made: the hex
// HMAC-SHA256 of key || 0x00 || value, as SPEC §11 lets only them make.
func signed(key, value string) []envelope.Header {
	m := hmac.New(sha256.New, signingKey)
	m.Write([]byte(key))
	m.Write([]byte{0})
	m.Write([]byte(value))
	return []envelope.Header{{Key: saga.SignatureHeader, Value: []byte(hex.EncodeToString(m.Sum(nil)))}}
}

// start is the fake clock's start: a fixed instant, so deadlines in
// assertions are exact.
var start = time.UnixMilli(1_763_800_000_000)

// harness drives an engine over real Redis on a fake clock. It plays the
// runner: continuation records go back into Handle, everything else is
// collected for assertions, and acks are applied once a record is handled.
type harness struct {
	t      *testing.T
	ctx    context.Context
	eng    *saga.Engine
	clock  *clock.Fake
	stores statemanager.Resolver
	client redis.UniversalClient
	offset int64
	ids    int
}

func newHarness(t *testing.T, sagaYAML string) *harness {
	t.Helper()
	_, client := redistest.Start(t)
	return newHarnessOn(t, client, sagaYAML)
}

func newHarnessOn(t *testing.T, client redis.UniversalClient, sagaYAML string) *harness {
	t.Helper()
	return newHarnessWith(t, client, sagaYAML, nil)
}

// newHarnessWith lets a test change the engine's config before it is built.
func newHarnessWith(t *testing.T, client redis.UniversalClient, sagaYAML string, configure func(*saga.Config)) *harness {
	t.Helper()
	set := &saga.Set{}
	if sagaYAML != "" {
		var err error
		if set, err = saga.LoadBytes(actions.Default, "test.yaml", []byte(sagaYAML)); err != nil {
			t.Fatalf("load: %v", err)
		}
	}
	h := &harness{t: t, ctx: context.Background(), clock: clock.NewFake(start), client: client,
		stores: statemanager.NewResolver(client, statemanager.RedisConfig{Shards: testShards}, nil)}
	cfg := saga.Config{
		Topics:     actions.Topics{Continuations: requestTopic, Notifications: notifyTopic},
		DeadLetter: deadTopic,
		Stores:     h.stores,
		Clock:      h.clock,
		SigningKey: signingKey,
		NewID: func() string {
			h.ids++
			return "gen-" + strconv.Itoa(h.ids)
		},
	}
	if configure != nil {
		configure(&cfg)
	}
	eng, err := saga.NewEngine(set, cfg)
	if err != nil {
		t.Fatalf("NewEngine: %v", err)
	}
	h.eng = eng
	return h
}

// result is what driving one record produced, continuations excluded.
type result struct {
	records []envelope.Record
	started int
}

// on returns the records produced to topic.
func (r result) on(topic string) []envelope.Record {
	var out []envelope.Record
	for _, rec := range r.records {
		if rec.Topic == topic {
			out = append(out, rec)
		}
	}
	return out
}

// one returns the single record on topic, failing otherwise.
func (r result) one(t *testing.T, topic string) envelope.Record {
	t.Helper()
	recs := r.on(topic)
	if len(recs) != 1 {
		t.Fatalf("%d records on %s, want 1; all: %s", len(recs), topic, r)
	}
	return recs[0]
}

func (r result) String() string {
	s := ""
	for _, rec := range r.records {
		s += fmt.Sprintf("\n  %s %s %s", rec.Topic, rec.Key, rec.Value)
	}
	return s
}

// drive handles a record and every continuation it leads to, as a runner
// would, acking each record's closes once its effects are "produced".
func (h *harness) drive(topic string, key, value string) result {
	h.t.Helper()
	res, err := h.tryDrive(saga.Record{Topic: topic, Key: []byte(key), Value: []byte(value)}, true)
	if err != nil {
		h.t.Fatalf("drive: %v", err)
	}
	return res
}

func (h *harness) tryDrive(first saga.Record, ack bool) (result, error) {
	var res result
	queue := []saga.Record{first}
	for len(queue) > 0 {
		rec := queue[0]
		queue = queue[1:]
		h.offset++
		rec.Offset = h.offset
		out, err := h.eng.Handle(h.ctx, rec)
		if err != nil {
			return res, err
		}
		res.started += out.Started
		queue = append(queue, h.continuations(&res, out)...)
		if ack {
			if err := h.eng.Ack(h.ctx, out.Acks); err != nil {
				return res, err
			}
		}
	}
	return res, nil
}

// continuations splits out's records into the ones fed back to Handle and
// the ones collected.
func (h *harness) continuations(res *result, out saga.Output) []saga.Record {
	var next []saga.Record
	for _, r := range out.Records {
		if r.Topic == requestTopic {
			next = append(next, saga.Record{Topic: r.Topic, Key: r.Key, Value: r.Value, Headers: r.Headers})
			continue
		}
		res.records = append(res.records, r)
	}
	return next
}

// fire runs FireDue over every shard of a domain, then drives the
// continuations the timeouts produced.
func (h *harness) fire(domain string) (result, int) {
	h.t.Helper()
	var res result
	total := 0
	for shard := 0; shard < testShards; shard++ {
		out, n, err := h.eng.FireDue(h.ctx, domain, shard, 100)
		if err != nil {
			h.t.Fatalf("FireDue: %v", err)
		}
		total += n
		if err := h.eng.Ack(h.ctx, out.Acks); err != nil {
			h.t.Fatalf("Ack: %v", err)
		}
		for _, rec := range h.continuations(&res, out) {
			r2, err := h.tryDrive(rec, true)
			if err != nil {
				h.t.Fatalf("drive continuation: %v", err)
			}
			res.records = append(res.records, r2.records...)
			res.started += r2.started
		}
	}
	return res, total
}

// task reads a task straight from its store.
func (h *harness) task(domain, id string) (*statemanager.Task, error) {
	s, err := h.stores.Store(domain)
	if err != nil {
		return nil, err
	}
	return s.Get(h.ctx, id)
}

func (h *harness) mustTask(domain, id string) *statemanager.Task {
	h.t.Helper()
	t, err := h.task(domain, id)
	if err != nil {
		h.t.Fatalf("task %s/%s: %v", domain, id, err)
	}
	return t
}

// get reads a gjson path from a record value.
func get(rec envelope.Record, path string) gjson.Result { return gjson.GetBytes(rec.Value, path) }

// jsonEq compares two JSON texts structurally.
func jsonEq(t *testing.T, what, got, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Fatalf("%s: got invalid JSON %q: %v", what, got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("%s: want invalid JSON %q: %v", what, want, err)
	}
	gb, _ := json.Marshal(g)
	wb, _ := json.Marshal(w)
	if string(gb) != string(wb) {
		t.Errorf("%s:\n got %s\nwant %s", what, gb, wb)
	}
}

func isNotFound(err error) bool { return errors.Is(err, statemanager.ErrNotFound) }
