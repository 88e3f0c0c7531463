// Package sagas_test loads every saga shipped in this folder and runs each
// through the engine against a real redis-server on a virtual clock, so an
// example cannot rot: a saga added here without an exercise fails the test.
package sagas_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/sagarunner/sagarunner/actions"
	"github.com/sagarunner/sagarunner/actions/actionstest"
	"github.com/sagarunner/sagarunner/clock"
	"github.com/sagarunner/sagarunner/internal/redistest"
	"github.com/sagarunner/sagarunner/saga"
	"github.com/sagarunner/sagarunner/saga/envelope"
	"github.com/sagarunner/sagarunner/statemanager"
)

const (
	requestTopic = "requests"
	replyTopic   = "responses"
	shards       = 4
)

var start = time.UnixMilli(1_763_800_000_000)

// runner plays the Kafka runner around an engine: continuations go back into
// Handle, acks are applied, everything else is collected.
type runner struct {
	t      *testing.T
	eng    *saga.Engine
	clock  *clock.Fake
	stores statemanager.Resolver
	ids    int
}

func newRunner(t *testing.T, set *saga.Set) *runner {
	t.Helper()
	_, client := redistest.Start(t)
	return newRunnerOn(t, set, statemanager.NewResolver(client, statemanager.RedisConfig{Shards: shards}, nil))
}

// newLifecycleRunner runs the engine over in-memory stores with the task
// lifecycle, for the sagas whose tasks are claimed and approved.
func newLifecycleRunner(t *testing.T, set *saga.Set) *runner {
	t.Helper()
	return newRunnerOn(t, set, actionstest.NewResolver())
}

func newRunnerOn(t *testing.T, set *saga.Set, stores statemanager.Resolver) *runner {
	t.Helper()
	r := &runner{t: t, clock: clock.NewFake(start), stores: stores}
	eng, err := saga.NewEngine(set, saga.Config{
		Topics: actions.Topics{Continuations: requestTopic, TaskEvents: actions.DefaultTaskEventTopic},
		Stores: r.stores,
		Clock:  r.clock,
		NewID:  func() string { r.ids++; return "req-" + strconv.Itoa(r.ids) },
	})
	if err != nil {
		t.Fatal(err)
	}
	r.eng = eng
	return r
}

// produced is what one request led to, by topic.
type produced map[string][]envelope.Record

func (p produced) one(t *testing.T, topic string) envelope.Record {
	t.Helper()
	if len(p[topic]) != 1 {
		t.Fatalf("%d records on %s, want 1 (all: %v)", len(p[topic]), topic, p.topics())
	}
	return p[topic][0]
}

func (p produced) topics() []string {
	var out []string
	for k, v := range p {
		out = append(out, k+":"+strconv.Itoa(len(v)))
	}
	sort.Strings(out)
	return out
}

func (r *runner) feed(p produced, queue []saga.Record) {
	r.t.Helper()
	for len(queue) > 0 {
		rec := queue[0]
		queue = queue[1:]
		out, err := r.eng.Handle(context.Background(), rec)
		if err != nil {
			r.t.Fatalf("Handle: %v", err)
		}
		queue = append(queue, r.collect(p, out)...)
	}
}

func (r *runner) collect(p produced, out saga.Output) []saga.Record {
	r.t.Helper()
	if err := r.eng.Ack(context.Background(), out.Acks); err != nil {
		r.t.Fatalf("Ack: %v", err)
	}
	var next []saga.Record
	for _, rec := range out.Records {
		if rec.Topic == requestTopic {
			next = append(next, saga.Record{Topic: rec.Topic, Key: rec.Key, Value: rec.Value, Headers: rec.Headers})
			continue
		}
		p[rec.Topic] = append(p[rec.Topic], rec)
	}
	return next
}

// publish starts whatever a record on topic starts.
func (r *runner) publish(topic, value string) produced {
	p := produced{}
	r.feed(p, []saga.Record{{Topic: topic, Value: []byte(value)}})
	return p
}

// call sends a request the way the gateway does for an HTTP path: the body
// at payload.parameters, the saga named in sagaMeta, a replyTo to answer on.
func (r *runner) call(path, user string, roles []string, body string) (produced, gjson.Result) {
	r.t.Helper()
	g, ok := r.eng.Sagas().ByPath(path)
	if !ok {
		r.t.Fatalf("no saga serves %s", path)
	}
	r.ids++
	id := "http-" + strconv.Itoa(r.ids)
	env := envelope.Envelope{
		RequestMeta: envelope.RequestMeta{RequestID: id, User: user, Roles: roles, ReplyTo: replyTopic},
		SagaMeta:    envelope.SagaMeta{Saga: g.Name},
		Payload:     json.RawMessage(`{"parameters": ` + body + `}`),
	}
	p := produced{}
	r.feed(p, []saga.Record{{Topic: requestTopic, Key: []byte(id), Value: env.Encode()}})
	return p, gjson.ParseBytes(p.one(r.t, replyTopic).Value)
}

// operate sends a lifecycle operation as a direct action record of user
// with roles and returns what it produced and its result.
func (r *runner) operate(action, user string, roles []string, body string) (produced, gjson.Result) {
	r.t.Helper()
	r.ids++
	id := "op-" + strconv.Itoa(r.ids)
	env := envelope.Envelope{
		RequestMeta: envelope.RequestMeta{RequestID: id, User: user, Roles: roles, ReplyTo: replyTopic},
		EventMeta:   envelope.EventMeta{Action: action, Domain: "workflow", InputElement: "parameters"},
		Payload:     json.RawMessage(`{"parameters": ` + body + `}`),
	}
	p := produced{}
	r.feed(p, []saga.Record{{Topic: requestTopic, Key: []byte(id), Value: env.Encode()}})
	return p, gjson.ParseBytes(p.one(r.t, replyTopic).Value).Get("result")
}

// fire runs every due deadline of the workflow domain.
func (r *runner) fire() produced {
	r.t.Helper()
	p := produced{}
	for shard := 0; shard < r.shards(); shard++ {
		out, _, err := r.eng.FireDue(context.Background(), "workflow", shard, 100)
		if err != nil {
			r.t.Fatalf("FireDue: %v", err)
		}
		r.feed(p, r.collect(p, out))
	}
	return p
}

func (r *runner) shards() int {
	s, err := r.stores.Store("workflow")
	if err != nil {
		r.t.Fatal(err)
	}
	return s.Shards()
}

func (r *runner) task(id string) *statemanager.Task {
	r.t.Helper()
	s, err := r.stores.Store("workflow")
	if err != nil {
		r.t.Fatal(err)
	}
	t, err := s.Get(context.Background(), id)
	if err != nil {
		r.t.Fatalf("task %s: %v", id, err)
	}
	return t
}

func jsonEq(t *testing.T, what, got, want string) {
	t.Helper()
	var g, w any
	if json.Unmarshal([]byte(got), &g) != nil || json.Unmarshal([]byte(want), &w) != nil {
		t.Fatalf("%s: invalid JSON: got %s want %s", what, got, want)
	}
	gb, _ := json.Marshal(g)
	wb, _ := json.Marshal(w)
	if string(gb) != string(wb) {
		t.Errorf("%s:\n got %s\nwant %s", what, gb, wb)
	}
}

// exercises runs each shipped saga by name. The job post saga is driven
// through the HTTP sagas, as an operator would.
var exercises = map[string]func(t *testing.T, set *saga.Set){
	"job_post_approval": func(t *testing.T, set *saga.Set) {
		t.Run("approved", func(t *testing.T) {
			r := newRunner(t, set)
			r.publish("job-posts", `{"productId": "product-1", "brief": "summer vibes"}`)
			if got := r.task("product-1"); got.Status != statemanager.StatusWaiting || got.Deadline != start.UnixMilli()+60000 {
				t.Fatalf("task = %+v", got)
			}
			p, resp := r.call("/ProceedTask", "alice", []string{"manager"}, `{"taskId": "product-1", "data": {"user": "alice"}}`)
			if resp.Get("result.status").String() != envelope.StatusSuccess {
				t.Fatalf("response = %s", resp.Raw)
			}
			jsonEq(t, "published", string(p.one(t, "job-posts-approved").Value), `{"id": "product-1", "by": "alice"}`)
			if n := p.one(t, saga.DefaultNotificationTopic); gjson.GetBytes(n.Value, "status").String() != statemanager.StatusCompleted {
				t.Errorf("notification = %s", n.Value)
			}
		})
		t.Run("escalated, then rejected", func(t *testing.T) {
			r := newRunner(t, set)
			r.publish("job-posts", `{"productId": "product-2"}`)
			r.clock.Advance(time.Minute)
			p := r.fire()
			if len(p[saga.DefaultNotificationTopic]) != 1 {
				t.Fatalf("approval timeout produced %v", p.topics())
			}
			if got := r.task("req-1:escalate:0"); got.Status != statemanager.StatusWaiting {
				t.Fatalf("escalation = %+v", got)
			}
			r.clock.Advance(24 * time.Hour)
			p = r.fire()
			if len(p[saga.DefaultNotificationTopic]) != 1 || len(p["job-posts-approved"]) != 0 {
				t.Errorf("escalation timeout produced %v", p.topics())
			}
		})
		t.Run("high priority is escalated again", func(t *testing.T) {
			r := newRunner(t, set)
			r.publish("job-posts", `{"productId": "product-3", "priority": "high"}`)
			_, resp := r.call("/TimeoutTask", "", nil, `{"taskId": "product-3"}`)
			if resp.Get("result.status").String() != envelope.StatusSuccess {
				t.Fatalf("timeout response = %s", resp.Raw)
			}
			r.clock.Advance(24 * time.Hour)
			r.fire()
			// The loop back into escalate started a fresh task under the
			// same default id.
			if got := r.task("req-1:escalate:0"); got.Status != statemanager.StatusWaiting {
				t.Fatalf("second escalation = %+v", got)
			}
			p, resp := r.call("/ProceedTask", "dora", []string{"director"}, `{"taskId": "req-1:escalate:0", "data": {"user": "dora"}}`)
			if resp.Get("result.status").String() != envelope.StatusSuccess {
				t.Fatalf("proceed response = %s", resp.Raw)
			}
			jsonEq(t, "published", string(p.one(t, "job-posts-approved").Value), `{"id": "product-3", "by": "dora"}`)
		})
	},
	"proceed_task": func(t *testing.T, set *saga.Set) {
		r := newRunner(t, set)
		r.publish("job-posts", `{"productId": "p1", "brief": "b"}`)
		// A task of another domain, started by a direct StartTask record.
		r.publish(requestTopic, `{"requestMeta": {"requestId": "c-1"},
			"eventMeta": {"action": "StartTask", "domain": "contracts", "inputElement": "parameters",
			              "parameters": {"taskIdPath": "id", "taskRoles": "legal"}},
			"payload": {"parameters": {"id": "contract-7"}}}`)
		tests := []struct {
			name, user, body, status, code, task string
			roles                                []string
		}{
			{name: "unknown task", user: "alice", roles: []string{"admin"}, body: `{"taskId": "nope", "data": {}}`,
				status: envelope.StatusFail, code: actions.CodeTaskNotFound},
			{name: "forbidden", user: "eve", roles: []string{"intern"}, body: `{"taskId": "p1", "data": {}}`,
				status: envelope.StatusFail, code: actions.CodeForbidden},
			{name: "proceeded", user: "alice", roles: []string{"admin"}, body: `{"taskId": "p1", "data": {"user": "alice", "ok": true}}`,
				status: envelope.StatusSuccess, task: `{"parameters": {"productId": "p1", "brief": "b"}, "decision": {"user": "alice", "ok": true}}`},
			{name: "closed", user: "alice", roles: []string{"admin"}, body: `{"taskId": "p1", "data": {}}`,
				status: envelope.StatusFail, code: actions.CodeTaskClosed},
			{name: "other domain needs the domain", user: "lee", roles: []string{"legal"}, body: `{"taskId": "contract-7", "data": {}}`,
				status: envelope.StatusFail, code: actions.CodeTaskNotFound},
			{name: "unsafe domain", user: "lee", roles: []string{"legal"}, body: `{"taskId": "contract-7", "domain": "a:{b}", "data": {}}`,
				status: envelope.StatusFail, code: actions.CodeBadInput},
			{name: "other domain", user: "lee", roles: []string{"legal"}, body: `{"taskId": "contract-7", "domain": "contracts", "data": {"ok": true}}`,
				status: envelope.StatusSuccess},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				_, resp := r.call("/ProceedTask", tc.user, tc.roles, tc.body)
				if resp.Get("result.status").String() != tc.status || resp.Get("result.code").String() != tc.code {
					t.Errorf("response = %s", resp.Raw)
				}
				if tc.task != "" {
					jsonEq(t, "response task", resp.Get("payload.task").Raw, tc.task)
				}
			})
		}
	},
	"contract_review": func(t *testing.T, set *saga.Set) {
		clerk, legal := []string{"clerk"}, []string{"legal"}
		ok := func(t *testing.T, res gjson.Result) {
			t.Helper()
			if res.Get("status").String() != envelope.StatusSuccess {
				t.Fatalf("result = %s", res.Raw)
			}
		}
		refused := func(t *testing.T, res gjson.Result, code string) {
			t.Helper()
			if res.Get("status").String() != envelope.StatusFail || res.Get("code").String() != code {
				t.Fatalf("result = %s, want FAIL %s", res.Raw, code)
			}
		}
		t.Run("approved by two after a reject", func(t *testing.T) {
			r := newLifecycleRunner(t, set)
			r.publish("contracts", `{"contractId": "c-1", "title": "Supply"}`)
			_, res := r.operate("ClaimTask", "bob", clerk, `{"taskId": "c-1"}`)
			ok(t, res)
			_, res = r.operate("CompleteTask", "bob", clerk, `{"taskId": "c-1", "outcome": "approve", "note": "fine"}`)
			ok(t, res)
			_, res = r.operate("ApproveTask", "bob", []string{"clerk", "legal"}, `{"taskId": "c-1"}`)
			refused(t, res, actions.CodeSelfApproval)
			_, res = r.operate("RejectTask", "lea", legal, `{"taskId": "c-1", "note": "clause 4"}`)
			ok(t, res)
			if got := r.task("c-1"); got.Status != statemanager.StatusWaiting || got.ClaimedBy != "bob" {
				t.Fatalf("after reject: %+v", got)
			}
			_, res = r.operate("CompleteTask", "bob", clerk, `{"taskId": "c-1", "outcome": "approve"}`)
			ok(t, res)
			p, res := r.operate("ApproveTask", "lea", legal, `{"taskId": "c-1"}`)
			ok(t, res)
			if len(p["contracts-approved"]) != 0 {
				t.Fatal("published after one approval")
			}
			_, res = r.operate("ApproveTask", "lea", legal, `{"taskId": "c-1"}`)
			refused(t, res, actions.CodeAlreadyApproved)
			p, res = r.operate("ApproveTask", "max", legal, `{"taskId": "c-1"}`)
			ok(t, res)
			jsonEq(t, "published", string(p.one(t, "contracts-approved").Value), `{"id": "c-1"}`)
			n := p.one(t, saga.DefaultNotificationTopic)
			if gjson.GetBytes(n.Value, "outcome").String() != "approve" || gjson.GetBytes(n.Value, "approvals.#").Int() != 2 {
				t.Errorf("notification = %s", n.Value)
			}
			if len(p[actions.DefaultTaskEventTopic]) != 1 {
				t.Errorf("closing approval produced %v", p.topics())
			}
		})
		t.Run("rejected outcome goes to rework", func(t *testing.T) {
			r := newLifecycleRunner(t, set)
			r.publish("contracts", `{"contractId": "c-2"}`)
			_, res := r.operate("CompleteTask", "bob", clerk, `{"taskId": "c-2", "outcome": "maybe"}`)
			refused(t, res, actions.CodeBadInput)
			_, res = r.operate("CompleteTask", "bob", clerk, `{"taskId": "c-2", "outcome": "reject"}`)
			ok(t, res)
			r.operate("ApproveTask", "lea", legal, `{"taskId": "c-2"}`)
			p, _ := r.operate("ApproveTask", "max", legal, `{"taskId": "c-2"}`)
			if len(p["contracts-approved"]) != 0 || r.task("c-2").Status != statemanager.StatusCompleted {
				t.Fatalf("a rejected contract was published: %v", p.topics())
			}
			// The continuation routed on the outcome, to rework.
			jsonEq(t, "rework", string(p.one(t, "contracts-rework").Value), `{"id": "c-2"}`)
		})
		t.Run("timeout escalates, a moved deadline fires at once", func(t *testing.T) {
			r := newLifecycleRunner(t, set)
			r.publish("contracts", `{"contractId": "c-3"}`)
			_, res := r.operate("SetDeadline", "", nil, `{"taskId": "c-3", "timeoutOn": 1}`)
			ok(t, res)
			p := r.fire()
			if len(p[saga.DefaultNotificationTopic]) != 1 {
				t.Fatalf("the moved deadline produced %v", p.topics())
			}
			if got := r.task("req-1:escalate:0"); got.Status != statemanager.StatusWaiting {
				t.Fatalf("escalation = %+v", got)
			}
		})
	},
	"timeout_task": func(t *testing.T, set *saga.Set) {
		r := newRunner(t, set)
		r.publish("job-posts", `{"productId": "p1"}`)
		p, resp := r.call("/TimeoutTask", "", nil, `{"taskId": "p1", "data": {"reason": "withdrawn"}}`)
		if resp.Get("result.status").String() != envelope.StatusSuccess {
			t.Fatalf("response = %s", resp.Raw)
		}
		if got := r.task("p1"); got.Status != statemanager.StatusTimeout {
			t.Errorf("task = %+v", got)
		}
		if n := p.one(t, saga.DefaultNotificationTopic); gjson.GetBytes(n.Value, "status").String() != statemanager.StatusTimeout {
			t.Errorf("notification = %s", n.Value)
		}
		// The TIMEOUT route ran: the escalation task waits, with the reason
		// enriched into its stored event.
		esc := r.task("req-1:escalate:0")
		if gjson.GetBytes(esc.Envelope, "payload.decision.reason").String() != "withdrawn" {
			t.Errorf("escalation envelope = %s", esc.Envelope)
		}
	},
}

func TestShippedSagas(t *testing.T) {
	files, err := filepath.Glob("*.y*ml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no saga files: %v", err)
	}
	set, err := saga.Load(actions.Default, ".")
	if err != nil {
		t.Fatalf("shipped sagas do not validate:\n%v", err)
	}
	perFile := map[string]int{}
	for _, g := range set.Sagas {
		perFile[g.File]++
		if exercises[g.Name] == nil {
			t.Errorf("saga %s (%s) has no exercise in this test", g.Name, g.File)
		}
	}
	for _, f := range files {
		if perFile[f] == 0 {
			if _, err := os.Stat(f); err == nil {
				t.Errorf("%s defines no saga", f)
			}
		}
	}
	for _, g := range set.Sagas {
		if fn := exercises[g.Name]; fn != nil {
			t.Run(g.Name, func(t *testing.T) { fn(t, set) })
		}
	}
}
