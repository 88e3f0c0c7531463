package runner

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tidwall/gjson"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sagarunner/sagarunner/internal/redistest"
	"github.com/sagarunner/sagarunner/internal/testutil"
	"github.com/sagarunner/sagarunner/saga"
	"github.com/sagarunner/sagarunner/statemanager"
	"github.com/sagarunner/sagarunner/timers"
)

func TestTriggerStartsWaitingTaskAndCommits(t *testing.T) {
	e := newEnv(t, sharedRedis(t), false) // the runner creates the topics
	cfg := e.config()
	e.start(cfg, e.eng)

	tds, err := e.adm.ListTopics(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, topic := range []string{requestTopic, notifyTopic, deadTopic, "approvals", "quick", "approved", "escalations"} {
		if td, ok := tds[topic]; !ok || len(td.Partitions) != partitions {
			t.Errorf("topic %s not created with %d partitions", topic, partitions)
		}
	}

	rec := e.produce("approvals", "r-1", `{"id": "product-1", "brief": "summer"}`)
	e.waitStatus("product-1", statemanager.StatusWaiting)
	e.waitCommitted(cfg.Group, rec)
	tk, _ := e.task("product-1")
	if tk.Saga != "approval" || tk.StepID != "approve" {
		t.Errorf("task saga/step = %s/%s, want approval/approve", tk.Saga, tk.StepID)
	}
}

func TestProceedTaskContinuesAndNotifies(t *testing.T) {
	e := newEnv(t, sharedRedis(t), true)
	cfg := e.config()
	e.start(cfg, e.eng)

	e.produce("approvals", "r-2", `{"id": "product-2"}`)
	e.waitStatus("product-2", statemanager.StatusWaiting)

	proceed := e.produce(requestTopic, "p-2", `{
		"requestMeta": {"requestId": "p-2", "user": "alice"},
		"eventMeta": {"action": "ProceedTask", "domain": "workflow", "inputElement": "parameters",
		              "parameters": {"taskIdPath": "taskId", "enrichPath": "decision"}},
		"payload": {"parameters": {"taskId": "product-2", "approved": true}}}`)

	notes := e.waitRecords(notifyTopic, "taskId", "product-2", 1)
	if got := gjson.GetBytes(notes[0].Value, "status").String(); got != statemanager.StatusCompleted {
		t.Errorf("notification status %q, want COMPLETED", got)
	}
	if string(notes[0].Key) != "product-2" {
		t.Errorf("notification key %q, want the task id", notes[0].Key)
	}
	// The continuation went through the request topic and resumed the
	// instance, which published the enriched event.
	pub := e.waitRecords("approved", "payload.parameters.id", "product-2", 1)
	if !gjson.GetBytes(pub[0].Value, "payload.decision.approved").Bool() {
		t.Errorf("published event %s lacks the enriched decision", pub[0].Value)
	}
	e.waitStatus("product-2", statemanager.StatusCompleted)
	e.waitCommitted(cfg.Group, proceed)
}

func TestDeadlineFiresByItselfAndEscalates(t *testing.T) {
	e := newEnv(t, sharedRedis(t), true)
	e.start(e.config(), e.eng)

	e.produce("quick", "r-3", `{"id": "quick-1"}`)
	notes := e.waitRecords(notifyTopic, "taskId", "quick-1", 1)
	if got := gjson.GetBytes(notes[0].Value, "status").String(); got != statemanager.StatusTimeout {
		t.Errorf("notification status %q, want TIMEOUT", got)
	}
	e.waitRecords("escalations", "payload.parameters.id", "quick-1", 1)
	if n := len(e.records("approved")); n != 0 {
		t.Errorf("%d records on approved; a timed-out task must take the TIMEOUT route", n)
	}
}

// panicky is the real engine except that it panics on records containing
// "boom", as a buggy step would.
type panicky struct{ engine }

func (p panicky) Handle(ctx context.Context, rec saga.Record) (saga.Output, error) {
	if strings.Contains(string(rec.Value), "boom") {
		panic("step exploded")
	}
	return p.engine.Handle(ctx, rec)
}

func TestPoisonRecordsAreDeadLetteredAndThePartitionMovesOn(t *testing.T) {
	tests := []struct {
		name     string
		value    string
		wantCode string
	}{
		{"value is not JSON", `not json at all`, saga.DeadUndecodable},
		{"continuation not signed by a runner", `{"sagaMeta": {"saga": "nope", "stepId": "x"}}`, saga.DeadForged},
		{"engine panics", `{"id": "boom"}`, saga.DeadPanic},
	}
	e := newEnv(t, sharedRedis(t), true)
	cfg := e.config()
	e.start(cfg, panicky{e.eng})
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Same key: the poison record and the good one share a
			// partition, so the good one is only handled if the
			// partition moved past the poison.
			key := fmt.Sprintf("poison-%d", i)
			topic := "approvals"
			if tc.wantCode == saga.DeadForged {
				topic = requestTopic
			}
			bad := e.produce(topic, key, tc.value)
			good := e.produce(topic, key, fmt.Sprintf(`{"sagaMeta": {"saga": "approval"}, "payload": {"parameters": {"id": "after-%d"}}}`, i))
			if bad.Partition != good.Partition {
				t.Fatalf("records on partitions %d and %d", bad.Partition, good.Partition)
			}
			var dead []*kgo.Record
			testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
				dead = dead[:0]
				for _, r := range e.records(deadTopic) {
					if string(r.Key) == key {
						dead = append(dead, r)
					}
				}
				if len(dead) != 1 {
					return fmt.Errorf("%d dead letters keyed %s, want 1", len(dead), key)
				}
				return nil
			})
			if got := gjson.GetBytes(dead[0].Value, "offset").Int(); got != bad.Offset {
				t.Errorf("dead letter names offset %d, want %d", got, bad.Offset)
			}
			if got := gjson.GetBytes(dead[0].Value, "code").String(); got != tc.wantCode {
				t.Errorf("dead letter code %q, want %q: %s", got, tc.wantCode, dead[0].Value)
			}
			if got := gjson.GetBytes(dead[0].Value, "topic").String(); got != topic {
				t.Errorf("dead letter names topic %q, want %q", got, topic)
			}
			e.waitStatus(fmt.Sprintf("after-%d", i), statemanager.StatusWaiting)
			e.waitCommitted(cfg.Group, good)
		})
	}
}

// flaky is the real engine with its failed Handle calls counted, so a test
// knows the runner tried a record while Redis was down.
type flaky struct {
	engine
	failures atomic.Int64
}

func (f *flaky) Handle(ctx context.Context, rec saga.Record) (saga.Output, error) {
	out, err := f.engine.Handle(ctx, rec)
	if err != nil {
		f.failures.Add(1)
	}
	return out, err
}

func TestRedisOutagePausesConsumptionUntilRedisIsBack(t *testing.T) {
	srv := redistest.StartOwn(t)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr, DialTimeout: 200 * time.Millisecond,
		ReadTimeout: 200 * time.Millisecond, MaxRetries: 1})
	t.Cleanup(func() { client.Close() })
	e := newEnv(t, client, true)
	cfg := e.config()
	eng := &flaky{engine: e.eng}
	e.start(cfg, eng)

	first := e.produce("approvals", "same-key", `{"id": "before-outage"}`)
	e.waitStatus("before-outage", statemanager.StatusWaiting)
	e.waitCommitted(cfg.Group, first)

	srv.Stop()
	second := e.produce("approvals", "same-key", `{"id": "during-outage"}`)
	third := e.produce("approvals", "same-key", `{"id": "also-during-outage"}`)
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
		if n := eng.failures.Load(); n < 3 {
			return fmt.Errorf("%d failed attempts, want the record retried at least 3 times", n)
		}
		return nil
	})
	if got := e.committed(cfg.Group, second.Topic, second.Partition); got != first.Offset+1 {
		t.Fatalf("committed %d during the outage, want %d: nothing may be committed past the failing record",
			got, first.Offset+1)
	}

	restartRedis(t, srv.Addr)
	e.waitStatus("during-outage", statemanager.StatusWaiting)
	e.waitStatus("also-during-outage", statemanager.StatusWaiting)
	e.waitCommitted(cfg.Group, third)
}

func TestTwoRunnersSplitPartitionsAndTakeOverDeadlines(t *testing.T) {
	e := newEnv(t, sharedRedis(t), true)
	cfg := e.config()
	a := e.start(cfg, e.eng)
	b := e.start(cfg, e.eng)

	testutil.Eventually(t, 15*time.Second, 20*time.Millisecond, func() error {
		pa, pb := a.Assigned()[requestTopic], b.Assigned()[requestTopic]
		all := append(slices.Clone(pa), pb...)
		slices.Sort(all)
		if len(pa) == 0 || len(pb) == 0 || !slices.Equal(all, []int32{0, 1, 2, 3}) {
			return fmt.Errorf("request partitions split %v / %v, want all four, disjoint", pa, pb)
		}
		if len(a.timers.Running()) == 0 || len(b.timers.Running()) == 0 {
			return fmt.Errorf("deadline loops %v / %v, want both runners firing", a.timers.Running(), b.timers.Running())
		}
		return nil
	})

	// Two tasks per deadline shard, so runner a certainly owns some.
	var ids []string
	perShard := map[int]int{}
	for i := 0; len(ids) < 2*shards; i++ {
		id := fmt.Sprintf("task-%d", i)
		if s := statemanager.ShardOf(id, shards); perShard[s] < 2 {
			perShard[s]++
			ids = append(ids, id)
		}
	}
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Saga "slow" times out after 3 s: long enough to close a
			// before any deadline fires.
			e.produce(requestTopic, id, fmt.Sprintf(`{"sagaMeta": {"saga": "slow"},
				"payload": {"parameters": {"id": %q}}}`, id))
		}()
	}
	wg.Wait()
	for _, id := range ids {
		e.waitStatus(id, statemanager.StatusWaiting)
	}

	a.Close()
	testutil.Eventually(t, 15*time.Second, 20*time.Millisecond, func() error {
		if got := b.Assigned()[requestTopic]; !slices.Equal(got, []int32{0, 1, 2, 3}) {
			return fmt.Errorf("b owns %v after a left", got)
		}
		if n := len(b.timers.Running()); n != shards {
			return fmt.Errorf("b runs %d deadline loops, want %d", n, shards)
		}
		return nil
	})

	// b alone fires every deadline, including those of a's old shards.
	for _, id := range ids {
		e.waitStatus(id, statemanager.StatusTimeout)
	}
	for _, id := range ids {
		if n := len(e.matching(notifyTopic, "taskId", id)); n > 1 {
			t.Errorf("task %s notified %d times", id, n)
		}
		e.waitRecords("escalations", "payload.parameters.id", id, 1)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr []string
	}{
		{name: "defaults", cfg: Config{Brokers: []string{"localhost:9092"}}},
		{name: "no brokers", cfg: Config{}, wantErr: []string{"Brokers is required"}},
		{name: "every conflict at once", cfg: Config{
			Brokers:      []string{"b:9092"},
			BatchSize:    100,
			MaxInFlight:  50,
			Backoff:      Backoff{Min: time.Second, Max: time.Millisecond},
			Partitions:   -1,
			OutputTopics: []string{DefaultRequestTopic},
		}, wantErr: []string{"MaxInFlight 50 is below BatchSize 100", "Backoff.Min", "Partitions -1", "both consumed"}},
		{name: "produce timeout under a second", cfg: Config{Brokers: []string{"b:9092"}, ProduceTimeout: time.Millisecond},
			wantErr: []string{"ProduceTimeout"}},
		{name: "failure policy bounds", cfg: Config{Brokers: []string{"b:9092"}, MaxAttempts: -1, MaxRecordBytes: -1, StuckAfter: -time.Second},
			wantErr: []string{"MaxAttempts", "MaxRecordBytes", "StuckAfter"}},
		{name: "negative byte budget", cfg: Config{Brokers: []string{"b:9092"}, MaxInFlightBytes: -1},
			wantErr: []string{"MaxInFlightBytes -1 is negative"}},
		{name: "timer config is checked", cfg: Config{Brokers: []string{"b:9092"}, Timers: timers.Config{PollInterval: -1}},
			wantErr: []string{"PollInterval"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				c := tc.cfg
				if c.Group != DefaultGroup || c.RequestTopic != DefaultRequestTopic || c.Partitions != DefaultPartitions ||
					c.BatchSize != DefaultBatchSize || c.Backoff.Min != DefaultBackoffMin || c.Backoff.Max != DefaultBackoffMax ||
					c.ReplicationFactor != -1 || c.Timers.PollInterval == 0 ||
					c.MaxAttempts != DefaultMaxAttempts || c.MaxRecordBytes != DefaultMaxRecordBytes || c.StuckAfter != DefaultStuckAfter ||
					c.MaxInFlightBytes != DefaultMaxInFlightBytes {
					t.Errorf("defaults not filled: %+v", c)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate accepted a bad config")
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestNewRejectsARequestTopicTheEngineDoesNotContinueOn(t *testing.T) {
	e := newEnv(t, sharedRedis(t), true)
	cfg := e.config()
	cfg.RequestTopic = "other"
	if _, err := New(cfg, e.eng, e.stores); err == nil || !strings.Contains(err.Error(), "continuation topic") {
		t.Errorf("New = %v, want a continuation topic mismatch", err)
	}
}

func TestNewRejectsAMaxRecordBytesOtherThanTheEngines(t *testing.T) {
	e := newEnv(t, sharedRedis(t), true)
	cfg := e.config()
	cfg.MaxRecordBytes = saga.DefaultMaxRecordBytes / 2
	if _, err := New(cfg, e.eng, e.stores); err == nil || !strings.Contains(err.Error(), "MaxRecordBytes") {
		t.Errorf("New = %v, want a MaxRecordBytes mismatch", err)
	}
	cfg.MaxRecordBytes = 0 // takes the engine's
	if _, err := New(cfg, e.eng, e.stores); err != nil {
		t.Errorf("New with the engine's limit: %v", err)
	}
}

// TestRecordsOfOneKeyStayInOrderUnderKeyConcurrency starts and proceeds
// tasks with pairs of direct-action records that share a key: the proceed
// only finds its task if the start before it in the partition ran first,
// although records of different keys in the same batch run at once.
func TestRecordsOfOneKeyStayInOrderUnderKeyConcurrency(t *testing.T) {
	e := newEnv(t, sharedRedis(t), true)
	cfg := e.config()
	cfg.KeyConcurrency = 8
	e.start(cfg, e.eng)

	const pairs = 40
	var recs []*kgo.Record
	for i := range pairs {
		key := fmt.Sprintf("k-%d", i)
		recs = append(recs,
			&kgo.Record{Topic: requestTopic, Key: []byte(key), Value: []byte(fmt.Sprintf(`{
				"requestMeta": {"requestId": "s-%d"},
				"eventMeta": {"action": "StartTask", "domain": "workflow", "inputElement": "parameters",
				              "parameters": {"taskIdPath": "id"}},
				"payload": {"parameters": {"id": "ordered-%d"}}}`, i, i))},
			&kgo.Record{Topic: requestTopic, Key: []byte(key), Value: []byte(fmt.Sprintf(`{
				"requestMeta": {"requestId": "p-%d"},
				"eventMeta": {"action": "ProceedTask", "domain": "workflow", "inputElement": "parameters",
				              "parameters": {"taskIdPath": "id"}},
				"payload": {"parameters": {"id": "ordered-%d"}}}`, i, i))})
	}
	if err := e.cl.ProduceSync(e.ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	for i := range pairs {
		e.waitStatus(fmt.Sprintf("ordered-%d", i), statemanager.StatusCompleted)
	}
	e.waitCommitted(cfg.Group, recs[len(recs)-1])
}
