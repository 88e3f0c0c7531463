package saga_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sagarunner/sagarunner/actions"
	"github.com/sagarunner/sagarunner/internal/redistest"
	"github.com/sagarunner/sagarunner/saga"
	"github.com/sagarunner/sagarunner/saga/envelope"
	"github.com/sagarunner/sagarunner/statemanager"
)

// approvalSaga is the SPEC §4 example.
const approvalSaga = `
saga: job_post_approval
version: 1
trigger:
  topic: job-posts
steps:
  - id: approve
    action: StartTask
    domain: workflow
    inputElement: parameters
    parameters:
      inputPattern: "{data: @}"
      taskIdPath: productId
      taskName: Job Post Approval
      taskSpec: job_post_approval
      taskAction: Approve
      taskRoles: admin,manager
      timeout: 60000
    next: {SUCCESS: publish, TIMEOUT: escalate}
  - id: escalate
    action: StartTask
    domain: workflow
    parameters: {taskName: Escalated approval, taskRoles: director, timeout: 86400000}
    next: {SUCCESS: publish, TIMEOUT: reject}
  - id: publish
    action: Publish
    parameters: {topic: job-posts-approved, pattern: "{id: parameters.productId, by: decision.user}"}
  - id: reject
    condition: {type: elementValue, element: parameters.priority}
    next: {high: escalate, "*": fail}
  - id: fail
    action: Fail
`

// closeRequest is a direct ProceedTask / TimeoutTask record as an external
// system or the /ProceedTask saga sends it.
func closeRequest(action, requestID, user, taskID string, roles ...string) string {
	rm := map[string]any{"requestId": requestID, "replyTo": replyTopic}
	if user != "" {
		rm["user"] = user
	}
	if len(roles) > 0 {
		rm["roles"] = roles
	}
	b, _ := json.Marshal(map[string]any{
		"requestMeta": rm,
		"eventMeta": map[string]any{
			"action": action, "domain": "workflow", "inputElement": "parameters", "outputElement": "task",
			"parameters": map[string]any{"taskIdPath": "taskId", "inputPattern": "data", "enrichPath": "decision",
				"outputPattern": "{product: parameters.productId, decision: decision}"},
		},
		"payload": map[string]any{"parameters": map[string]any{"taskId": taskID, "data": map[string]any{"user": user, "approved": true}}},
	})
	return string(b)
}

func TestStartThenProceed(t *testing.T) {
	h := newHarness(t, approvalSaga)
	res := h.drive("job-posts", "", `{"productId": "p1", "brief": "summer vibes"}`)
	if res.started != 1 || len(res.records) != 0 {
		t.Fatalf("start: started %d, records %s; want one task and nothing produced", res.started, res)
	}
	task := h.mustTask("workflow", "p1")
	if task.Status != statemanager.StatusWaiting || task.Saga != "job_post_approval" || task.StepID != "approve" ||
		task.RequestID != "gen-1" || task.Deadline != start.UnixMilli()+60000 || !reflect.DeepEqual(task.Roles, []string{"admin", "manager"}) {
		t.Errorf("stored task = %+v", task)
	}
	jsonEq(t, "task data", string(task.Data), `{"data": {"productId": "p1", "brief": "summer vibes"}}`)

	h.clock.Advance(5 * time.Second)
	res = h.drive(requestTopic, "r-proceed", closeRequest("ProceedTask", "r-proceed", "alice", "p1", "manager"))

	resp := res.one(t, replyTopic)
	if string(resp.Key) != "r-proceed" || get(resp, "result.status").String() != envelope.StatusSuccess {
		t.Errorf("response = %s %s", resp.Key, resp.Value)
	}
	jsonEq(t, "response output", get(resp, "payload.task").Raw,
		`{"product": "p1", "decision": {"user": "alice", "approved": true}}`)

	note := res.one(t, notifyTopic)
	if string(note.Key) != "p1" || get(note, "status").String() != statemanager.StatusCompleted ||
		get(note, "closedBy").String() != "alice" || get(note, "stepId").String() != "approve" ||
		get(note, "closedAt").Int() != start.UnixMilli()+5000 {
		t.Errorf("notification = %s", note.Value)
	}
	// The SUCCESS route ran with the decision enriched into the stored event.
	pub := res.one(t, "job-posts-approved")
	jsonEq(t, "published", string(pub.Value), `{"id": "p1", "by": "alice"}`)
	if string(pub.Key) != "gen-1" {
		t.Errorf("published key %q, want the instance's requestId", pub.Key)
	}
	if got := h.mustTask("workflow", "p1"); got.Status != statemanager.StatusCompleted {
		t.Errorf("task status %s, want COMPLETED", got.Status)
	}
	// The deadline of a proceeded task never fires.
	h.clock.Advance(time.Hour)
	if _, fired := h.fire("workflow"); fired != 0 {
		t.Errorf("%d deadlines fired after the proceed", fired)
	}
}

func TestDeadlineRoutesToEscalation(t *testing.T) {
	h := newHarness(t, approvalSaga)
	h.drive("job-posts", "", `{"productId": "p1"}`)

	h.clock.Advance(59 * time.Second)
	if _, fired := h.fire("workflow"); fired != 0 {
		t.Fatalf("%d fired before the deadline", fired)
	}
	h.clock.Advance(time.Second)
	res, fired := h.fire("workflow")
	if fired != 1 {
		t.Fatalf("%d fired at the deadline, want 1", fired)
	}
	note := res.one(t, notifyTopic)
	if string(note.Key) != "p1" || get(note, "status").String() != statemanager.StatusTimeout || get(note, "closedBy").String() != "" {
		t.Errorf("notification = %s", note.Value)
	}
	// The TIMEOUT route started the escalation task, with the default id.
	if res.started != 1 {
		t.Errorf("escalation started %d tasks, want 1", res.started)
	}
	esc := h.mustTask("workflow", "gen-1:escalate:0")
	if esc.Status != statemanager.StatusWaiting || esc.StepID != "escalate" || !reflect.DeepEqual(esc.Roles, []string{"director"}) ||
		esc.Deadline != start.UnixMilli()+60000+86400000 {
		t.Errorf("escalation task = %+v", esc)
	}
	if _, fired := h.fire("workflow"); fired != 0 {
		t.Errorf("a fired deadline fired again (%d)", fired)
	}

	// The escalation times out too: reject finds no priority and fails.
	h.clock.Advance(24 * time.Hour)
	res, fired = h.fire("workflow")
	if fired != 1 || len(res.on(notifyTopic)) != 1 || len(res.on(deadTopic)) != 0 {
		t.Errorf("escalation timeout: fired %d, records %s", fired, res)
	}
}

func TestTimeoutTask(t *testing.T) {
	h := newHarness(t, approvalSaga)
	h.drive("job-posts", "", `{"productId": "p1"}`)
	res := h.drive(requestTopic, "r-t", closeRequest("TimeoutTask", "r-t", "", "p1"))
	if got := res.one(t, replyTopic); get(got, "result.status").String() != envelope.StatusSuccess {
		t.Errorf("response = %s", got.Value)
	}
	if got := res.one(t, notifyTopic); get(got, "status").String() != statemanager.StatusTimeout {
		t.Errorf("notification = %s", got.Value)
	}
	if res.started != 1 {
		t.Errorf("TIMEOUT route started %d tasks, want the escalation", res.started)
	}
	if got := h.mustTask("workflow", "gen-1:escalate:0"); got.Status != statemanager.StatusWaiting {
		t.Errorf("escalation task = %+v", got)
	}
	if len(res.on("job-posts-approved")) != 0 {
		t.Errorf("the SUCCESS route ran: %s", res)
	}
}

func TestTimeoutBetween(t *testing.T) {
	h := newHarness(t, approvalSaga)
	h.drive("job-posts", "", `{"productId": "p1"}`) // deadline start+60s
	h.clock.Advance(30 * time.Second)
	h.drive("job-posts", "", `{"productId": "p2"}`) // deadline start+90s

	between := func(requestID string, params string, input string) string {
		return fmt.Sprintf(`{"requestMeta": {"requestId": %q, "replyTo": %q},
			"eventMeta": {"action": "TimeoutBetween", "domain": "workflow", "inputElement": "parameters", "outputElement": "swept", "parameters": %s},
			"payload": {"parameters": %s}}`, requestID, replyTopic, params, input)
	}
	s := start.UnixMilli()
	tests := []struct {
		name    string
		value   string
		swept   string
		closed  []string
		waiting []string
	}{
		{
			name:    "with fromTimePath",
			value:   between("b1", `{"fromTimePath": "from", "toTimePath": "to"}`, fmt.Sprintf(`{"from": %d, "to": %d}`, s, s+60000)),
			swept:   fmt.Sprintf(`{"count": 1, "from": %d, "to": %d}`, s, s+60000),
			closed:  []string{"p1"},
			waiting: []string{"p2"},
		},
		{
			name:    "from the watermark",
			value:   between("b2", `{"toTimePath": "to"}`, fmt.Sprintf(`{"to": %d}`, s+90000)),
			swept:   fmt.Sprintf(`{"count": 1, "from": %d, "to": %d}`, s+60000, s+90000),
			closed:  []string{"p1", "p2"},
			waiting: nil,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := h.drive(requestTopic, "", tc.value)
			jsonEq(t, "swept", get(res.one(t, replyTopic), "payload.swept").Raw, tc.swept)
			for _, id := range tc.closed {
				if got := h.mustTask("workflow", id); got.Status != statemanager.StatusTimeout {
					t.Errorf("task %s is %s, want TIMEOUT", id, got.Status)
				}
			}
			for _, id := range tc.waiting {
				if got := h.mustTask("workflow", id); got.Status != statemanager.StatusWaiting {
					t.Errorf("task %s is %s, want WAITING", id, got.Status)
				}
			}
			// Each timed-out task notified once and its saga escalated.
			if n := len(res.on(notifyTopic)); n != 1 || res.started != 1 {
				t.Errorf("%d notifications, %d escalations; want 1 and 1: %s", n, res.started, res)
			}
		})
	}
}

func TestDuplicateStartIsANoOp(t *testing.T) {
	h := newHarness(t, approvalSaga)
	rec := `{"requestMeta": {"requestId": "r1", "replyTo": "responses"}, "payload": {"parameters": {"productId": "p1"}}}`
	first := h.drive("job-posts", "r1", rec)
	before := h.mustTask("workflow", "p1")
	h.clock.Advance(10 * time.Second)
	again := h.drive("job-posts", "r1", rec)

	if first.started != 1 || again.started != 0 {
		t.Errorf("started %d then %d, want 1 then 0", first.started, again.started)
	}
	after := h.mustTask("workflow", "p1")
	if after.StartedAt != before.StartedAt || after.Deadline != before.Deadline || after.Status != statemanager.StatusWaiting {
		t.Errorf("replay changed the task: %+v -> %+v", before, after)
	}
	// Both deliveries answer the same: the instance waits at approve.
	a, b := first.one(t, replyTopic), again.one(t, replyTopic)
	if !bytes.Equal(a.Value, b.Value) || get(a, "sagaMeta.stepId").String() != "approve" {
		t.Errorf("responses differ:\n%s\n%s", a.Value, b.Value)
	}
}

func TestCloseFailures(t *testing.T) {
	h := newHarness(t, approvalSaga)
	h.drive("job-posts", "", `{"productId": "p1"}`)
	h.drive(requestTopic, "", closeRequest("ProceedTask", "won", "alice", "p1", "admin"))
	h.drive("job-posts", "", `{"productId": "p2"}`)

	tests := []struct {
		name   string
		value  string
		status string
		code   string
	}{
		// No task id of its own: a named one not started yet would wait
		// for its task (an early answer, see early_test.go).
		{"unknown task", closeRequest("ProceedTask", "q1", "alice", "", "admin"), envelope.StatusFail, actions.CodeTaskNotFound},
		{"closed task", closeRequest("ProceedTask", "q2", "bob", "p1", "admin"), envelope.StatusFail, actions.CodeTaskClosed},
		{"timeout of a closed task", closeRequest("TimeoutTask", "q3", "", "p1"), envelope.StatusFail, actions.CodeTaskClosed},
		{"forbidden caller", closeRequest("ProceedTask", "q4", "eve", "p2", "intern"), envelope.StatusFail, actions.CodeForbidden},
		{"replay of the winning request", closeRequest("ProceedTask", "won", "alice", "p1", "admin"), envelope.StatusSuccess, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := h.drive(requestTopic, "", tc.value)
			resp := res.one(t, replyTopic)
			if got := get(resp, "result.status").String(); got != tc.status {
				t.Errorf("status %s, want %s: %s", got, tc.status, resp.Value)
			}
			if got := get(resp, "result.code").String(); got != tc.code {
				t.Errorf("code %q, want %q: %s", got, tc.code, resp.Value)
			}
			if tc.code != "" && len(res.records) != 1 {
				t.Errorf("a business failure produced more than its answer: %s", res)
			}
		})
	}
	if got := h.mustTask("workflow", "p2"); got.Status != statemanager.StatusWaiting {
		t.Errorf("a refused proceed changed p2: %+v", got)
	}
}

const routingSagas = `
saga: route
trigger: {topic: orders}
steps:
  - id: kind
    condition: {type: elementValue, element: parameters.kind}
    next: {book: isbn, "*": shape}
  - id: isbn
    condition: {type: hasElement, element: parameters.isbn}
    next: {"true": size, "false": no-isbn}
  - id: size
    condition: {type: jmespath, element: parameters, pattern: "qty > ` + "`10`" + `"}
    next: {"true": bulk, "*": single}
  - {id: bulk, action: Publish, parameters: {topic: out, pattern: "'bulk'"}}
  - {id: single, action: Publish, parameters: {topic: out, pattern: "'single'"}}
  - {id: no-isbn, action: Publish, parameters: {topic: out, pattern: "'no-isbn'"}}
  - id: shape
    action: Transform
    inputElement: parameters.spec
    outputElement: shaped
    parameters: {pattern: "@"}
    next: {"*": status}
  - id: status
    condition: {type: eventStatus}
    next: {SUCCESS: shaped, FAIL: unshaped}
  - {id: shaped, action: Publish, parameters: {topic: out, pattern: shaped}}
  - {id: unshaped, action: Publish, parameters: {topic: out, pattern: "'unshaped'"}}
---
saga: strict
trigger: {topic: strict}
steps:
  - {id: shape, action: Transform, inputElement: parameters.spec, outputElement: shaped, parameters: {pattern: "@"}, next: {SUCCESS: done}}
  - {id: done, action: Publish, parameters: {topic: out, pattern: "'done'"}}
---
saga: lenient
autoFail: false
trigger: {topic: lenient}
steps:
  - {id: shape, action: Transform, inputElement: parameters.spec, outputElement: shaped, parameters: {pattern: "@"}, next: {SUCCESS: done}}
  - {id: done, action: Publish, parameters: {topic: out, pattern: "'done'"}}
`

func TestConditionsAndRoutes(t *testing.T) {
	h := newHarness(t, routingSagas)
	tests := []struct {
		name  string
		input string
		want  string
	}{
		{"elementValue, hasElement true, jmespath true", `{"kind": "book", "isbn": "978", "qty": 20}`, `"bulk"`},
		{"jmespath false takes *", `{"kind": "book", "isbn": "978", "qty": 2}`, `"single"`},
		{"hasElement false", `{"kind": "book", "qty": 2}`, `"no-isbn"`},
		{"* route on an element value", `{"kind": "toy", "spec": {"colour": "red"}}`, `{"colour": "red"}`},
		{"* route takes a FAIL, eventStatus routes it", `{"kind": "toy"}`, `"unshaped"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := h.drive("orders", "", tc.input)
			jsonEq(t, "published", string(res.one(t, "out").Value), tc.want)
			if len(res.on(deadTopic)) != 0 {
				t.Errorf("dead letter for a routed FAIL: %s", res)
			}
		})
	}
}

func TestAutoFail(t *testing.T) {
	h := newHarness(t, routingSagas)
	withReply := func(params string) string {
		return `{"requestMeta": {"requestId": "r", "replyTo": "responses"}, "payload": {"parameters": ` + params + `}}`
	}
	tests := []struct {
		name  string
		topic string
		input string
		out   int
		code  string
		dead  bool
	}{
		{"routed success", "strict", withReply(`{"spec": 1}`), 1, "", false},
		{"unrouted FAIL fails the instance", "strict", withReply(`{}`), 0, actions.CodeBadInput, true},
		{"autoFail off ends the instance", "lenient", withReply(`{}`), 0, actions.CodeBadInput, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := h.drive(tc.topic, "r", tc.input)
			if n := len(res.on("out")); n != tc.out {
				t.Errorf("%d published, want %d: %s", n, tc.out, res)
			}
			if got := get(res.one(t, replyTopic), "result.code").String(); got != tc.code {
				t.Errorf("response code %q, want %q", got, tc.code)
			}
			dead := res.on(deadTopic)
			if (len(dead) == 1) != tc.dead {
				t.Fatalf("dead letters %s, want dead=%v", res, tc.dead)
			}
			if tc.dead {
				var d saga.DeadLetter
				if err := json.Unmarshal(dead[0].Value, &d); err != nil {
					t.Fatal(err)
				}
				if d.Code != actions.CodeBadInput || d.Saga != tc.topic || d.StepID != "shape" || !strings.Contains(d.Error, "parameters.spec") {
					t.Errorf("dead letter = %+v", d)
				}
			}
		})
	}
}

func TestPoisonRecordsAreDeadLettered(t *testing.T) {
	h := newHarness(t, approvalSaga)
	tests := []struct {
		name   string
		value  string
		signed bool // a continuation the runners made
		code   string
		reason string
		stored string // the dead letter's value field
	}{
		{"not JSON", `not json`, false, saga.DeadUndecodable, "invalid JSON", `"not json"`},
		{"not an object", `[1, 2]`, false, saga.DeadUndecodable, "got JSON", `[1, 2]`},
		{"unknown saga", `{"sagaMeta": {"saga": "gone", "stepId": "a"}}`, true, saga.DeadUnknownSaga, `unknown saga "gone"`, ""},
		{"unknown step", `{"sagaMeta": {"saga": "job_post_approval", "version": 1, "stepId": "gone"}}`, true, saga.DeadUnknownStep, `has no step "gone"`, ""},
		{"version not loaded", `{"sagaMeta": {"saga": "job_post_approval", "version": 7, "stepId": "approve"}}`, true, saga.DeadUnknownVersion, `saga "job_post_approval" version 7 is not loaded (loaded: 1)`, ""},
		{"unsigned continuation", `{"sagaMeta": {"saga": "job_post_approval", "stepId": "approve"}, "result": {"status": "SUCCESS"}}`, false, saga.DeadForged, "without a valid sagarunner-sig header", ""},
		{"unknown saga to start", `{"sagaMeta": {"saga": "gone"}}`, false, saga.DeadUnknownSaga, `unknown saga "gone"`, ""},
		{"unknown action", `{"eventMeta": {"action": "Teleport"}}`, false, saga.DeadUnknownAction, `unknown action "Teleport" (known: `, ""},
		{"direct action missing its domain", `{"eventMeta": {"action": "ProceedTask"}}`, false, saga.DeadBadConfig, "domain is required by ProceedTask", ""},
		{"direct action with an unknown parameter", `{"eventMeta": {"action": "ProceedTask", "domain": "workflow", "parameters": {"speed": 1}}}`, false, saga.DeadBadConfig, `parameter "speed"`, ""},
		{"direct action parameters not an object", `{"eventMeta": {"action": "ProceedTask", "domain": "workflow", "parameters": [1]}}`, false, saga.DeadBadConfig, "must be an object", ""},
		{"direct action on malformed data", `{"eventMeta": {"action": "ProceedTask", "domain": "workflow", "inputElement": "parameters"}, "payload": {}}`, false, actions.CodeBadInput, `input element "parameters" is missing`, ""},
		{"no kind", `{"requestMeta": {"requestId": "x"}}`, false, saga.DeadNoKind, "names no saga or action", ""},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key := fmt.Sprintf("k%d", i)
			rec := saga.Record{Topic: requestTopic, Partition: 3, Offset: int64(100 + i), Key: []byte(key), Value: []byte(tc.value)}
			if tc.signed {
				rec.Headers = signed(key, tc.value)
			}
			out, err := h.eng.Handle(context.Background(), rec)
			if err != nil {
				t.Fatalf("Handle: %v", err)
			}
			if len(out.Records) != 1 || out.Records[0].Topic != deadTopic || string(out.Records[0].Key) != key || out.DeadLetters != 1 {
				t.Fatalf("records = %+v (%d counted), want one dead letter keyed %s", out.Records, out.DeadLetters, key)
			}
			var d saga.DeadLetter
			if err := json.Unmarshal(out.Records[0].Value, &d); err != nil {
				t.Fatalf("dead letter %s: %v", out.Records[0].Value, err)
			}
			if d.Code != tc.code || !strings.Contains(d.Error, tc.reason) || d.Topic != requestTopic || d.Partition != 3 || d.Offset != int64(100+i) {
				t.Errorf("dead letter = %+v, want code %s and a reason containing %q", d, tc.code, tc.reason)
			}
			want := tc.stored
			if want == "" {
				want = tc.value
			}
			jsonEq(t, "original value", string(d.Value), want)
		})
	}
}

// TestPanicLeavesHandle: the engine does not recover panics of actions and
// conditions; the runner's recovery middleware dead-letters the record (its
// tests cover that), so a panic must reach it unchanged.
func TestPanicLeavesHandle(t *testing.T) {
	reg := actions.NewRegistry()
	reg.Register(&actions.Spec{Name: "Explode", New: func(actions.Config) (actions.Action, error) { return explode{}, nil }})
	set, err := saga.LoadBytes(reg, "p.yaml", []byte("saga: boom\ntrigger: {topic: boom}\nsteps:\n  - {id: a, action: Explode}\n"))
	if err != nil {
		t.Fatal(err)
	}
	_, client := redistest.Start(t)
	eng, err := saga.NewEngine(set, saga.Config{Topics: actions.Topics{Continuations: requestTopic}, Stores: statemanager.NewResolver(client, statemanager.RedisConfig{}, nil), Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if p := recover(); p != "kaboom" {
			t.Errorf("recovered %v, want the action's panic", p)
		}
	}()
	out, err := eng.Handle(context.Background(), saga.Record{Topic: "boom", Key: []byte("k"), Value: []byte(`{"a": 1}`)})
	t.Errorf("Handle returned %+v, %v; want a panic", out, err)
}

type explode struct{}

func (explode) Execute(context.Context, *actions.Exec, *envelope.Envelope) (actions.Outcome, error) {
	panic("kaboom")
}

func TestRedisDownIsRetried(t *testing.T) {
	srv := redistest.StartOwn(t)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { client.Close() })
	h := newHarnessOn(t, client, approvalSaga)
	srv.Stop()

	for _, tc := range []struct{ name, topic, value string }{
		{"start", "job-posts", `{"productId": "p1"}`},
		{"proceed", requestTopic, closeRequest("ProceedTask", "r", "", "p1")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := h.eng.Handle(context.Background(), saga.Record{Topic: tc.topic, Value: []byte(tc.value)})
			if !errors.Is(err, saga.ErrRetry) {
				t.Fatalf("err = %v, want ErrRetry", err)
			}
			if len(out.Records) != 0 || len(out.Acks) != 0 {
				t.Errorf("partial output on error: %+v", out)
			}
		})
	}
	if _, _, err := h.eng.FireDue(context.Background(), "workflow", 0, 10); !errors.Is(err, saga.ErrRetry) {
		t.Errorf("FireDue err = %v, want ErrRetry", err)
	}
}

func TestRecoverReemitsIdenticalEffects(t *testing.T) {
	h := newHarness(t, approvalSaga)
	h.drive("job-posts", "", `{"productId": "p1"}`)
	// The proceed is handled but the runner dies before producing and acking.
	out, err := h.eng.Handle(h.ctx, saga.Record{Topic: requestTopic, Value: []byte(closeRequest("ProceedTask", "r", "alice", "p1", "admin"))})
	if err != nil {
		t.Fatal(err)
	}
	var effects []envelope.Record
	for _, r := range out.Records {
		if r.Topic != replyTopic {
			effects = append(effects, r)
		}
	}
	if len(effects) != 2 || len(out.Acks) != 1 {
		t.Fatalf("proceed output = %+v", out)
	}

	store, _ := h.stores.Store("workflow")
	shard := store.ShardOf("p1")
	h.clock.Advance(time.Minute)
	rec, err := h.eng.Recover(h.ctx, "workflow", shard, clockMillis(h), 10)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(rec.Records, effects) {
		t.Errorf("recovered records differ:\n got %s\nwant %s", result{records: rec.Records}, result{records: effects})
	}
	if !reflect.DeepEqual(rec.Acks, out.Acks) {
		t.Errorf("recovered acks %+v, want %+v", rec.Acks, out.Acks)
	}
	if err := h.eng.Ack(h.ctx, rec.Acks); err != nil {
		t.Fatal(err)
	}
	if again, err := h.eng.Recover(h.ctx, "workflow", shard, clockMillis(h), 10); err != nil || len(again.Records) != 0 {
		t.Errorf("after ack Recover = %+v, %v; want nothing", again, err)
	}
}

func clockMillis(h *harness) int64 { return h.clock.Now().UnixMilli() }

func TestStartFromContinuationTopic(t *testing.T) {
	h := newHarness(t, approvalSaga)
	res := h.drive(requestTopic, "g1", `{"requestMeta": {"requestId": "g1", "replyTo": "responses"},
		"sagaMeta": {"saga": "job_post_approval"}, "payload": {"parameters": {"productId": "p9"}}}`)
	if res.started != 1 {
		t.Fatalf("started %d, want 1", res.started)
	}
	resp := res.one(t, replyTopic)
	if get(resp, "sagaMeta.stepId").String() != "approve" || get(resp, "sagaMeta.version").Int() != 1 || get(resp, "result.status").String() != envelope.StatusSuccess {
		t.Errorf("response = %s", resp.Value)
	}
	if got := h.mustTask("workflow", "p9"); got.RequestID != "g1" {
		t.Errorf("task = %+v", got)
	}
}

func TestDomains(t *testing.T) {
	h := newHarness(t, approvalSaga+"---\n"+strings.Replace(strings.Replace(approvalSaga, "domain: workflow", "domain: hr", 1),
		"job_post_approval\nversion", "other\nversion", 1))
	if got := h.eng.Domains(); !reflect.DeepEqual(got, []string{"hr", "workflow"}) {
		t.Errorf("Domains() = %v", got)
	}
}

func TestTriggerTopicRecords(t *testing.T) {
	h := newHarness(t, `
saga: first
trigger: {topic: shared}
steps:
  - {id: a, action: Publish, parameters: {topic: out-first}}
---
saga: second
trigger: {topic: shared}
steps:
  - {id: b, action: Publish, parameters: {topic: out-second, pattern: parameters}}
`)
	tests := []struct {
		name  string
		value string
	}{
		{"a bare object starts every saga of the topic", `{"n": 1}`},
		// A Publish step may forward a whole envelope of another instance:
		// on a trigger topic it starts new instances, it does not resume.
		{"a forwarded envelope starts, not continues", `{"requestMeta": {"requestId": "up"}, "sagaMeta": {"saga": "other", "stepId": "x"},
			"result": {"status": "FAIL"}, "payload": {"parameters": {"n": 1}}}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := h.drive("shared", "", tc.value)
			first := res.one(t, "out-first")
			if get(first, "sagaMeta.saga").String() != "first" || get(first, "sagaMeta.stepId").String() != "a" || get(first, "result.status").String() != "" {
				t.Errorf("first saga published %s", first.Value)
			}
			jsonEq(t, "second saga published", string(res.one(t, "out-second").Value), `{"n": 1}`)
			if len(res.on(deadTopic)) != 0 {
				t.Errorf("dead letters: %s", res)
			}
		})
	}
}
