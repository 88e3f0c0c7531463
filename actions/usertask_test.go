package actions_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"

	"github.com/sagarunner/sagarunner/actions"
	"github.com/sagarunner/sagarunner/clock"
	"github.com/sagarunner/sagarunner/internal/redistest"
	"github.com/sagarunner/sagarunner/saga/envelope"
	"github.com/sagarunner/sagarunner/statemanager"
)

// startEvent is the event a job_post_approval instance carries into its
// StartTask step.
const startEvent = `{
  "requestMeta": {"requestId": "r-42", "user": "carol"},
  "sagaMeta": {"saga": "job_post_approval", "version": 1, "stepId": "approve", "runnerPartition": 3},
  "eventMeta": {"action": "StartTask", "domain": "workflow"},
  "payload": {"parameters": {"productId": "product-1", "brief": "summer vibes"}}
}`

var startParams = map[string]any{
	"inputPattern": "{data: @}",
	"taskIdPath":   "productId",
	"taskName":     "Job Post Approval",
	"taskSpec":     "job_post_approval",
	"taskAction":   "Approve",
	"taskRoles":    "admin, manager",
	"timeout":      60000,
}

var proceedParams = map[string]any{
	"inputPattern":  "data",
	"enrichPath":    "decision",
	"outputPattern": "{brief: parameters.brief, decision: decision.decision, task: task.taskId}",
}

// with returns base with the changes applied; a nil change removes the key.
func with(base, changes map[string]any) map[string]any {
	out := maps.Clone(base)
	for k, v := range changes {
		if v == nil {
			delete(out, k)
			continue
		}
		out[k] = v
	}
	return out
}

func startAction(t *testing.T, params map[string]any) actions.Action {
	return build(t, "StartTask", actions.Input{Domain: "workflow", InputElement: "parameters", OutputElement: "task", Params: params})
}

func closeAction(t *testing.T, name string, params map[string]any) actions.Action {
	return build(t, name, actions.Input{Domain: "workflow", InputElement: "parameters", OutputElement: "process", Params: params})
}

// request is a direct action record from a caller.
func request(id, user string, roles []string, payload string) *envelope.Envelope {
	return &envelope.Envelope{
		RequestMeta: envelope.RequestMeta{RequestID: id, User: user, Roles: roles},
		Payload:     json.RawMessage(payload),
	}
}

const approve = `{"parameters": {"taskId": "product-1", "data": {"decision": "approved"}}}`

func TestStartThenProceed(t *testing.T) {
	x, clk, stores := newExec(t)
	var started []string
	ctx := actions.WithStartedHook(context.Background(), func(tk *statemanager.Task) { started = append(started, tk.ID) })

	out := runCtx(t, ctx, startAction(t, startParams), x, decode(t, startEvent))
	wantResult(t, out, envelope.StatusSuccess, "")
	if !out.Suspend || out.Finish || len(out.Records) != 0 {
		t.Fatalf("start outcome %+v, want a suspended instance and no records", out)
	}
	if !reflect.DeepEqual(started, []string{"product-1"}) {
		t.Fatalf("started hook saw %v", started)
	}
	jsonEq(t, "task info", []byte(out.Env.Get("task").Raw),
		fmt.Sprintf(`{"taskId": "product-1", "domain": "workflow", "deadline": %d}`, t0.UnixMilli()+60000))

	task := getTask(t, stores, "workflow", "product-1")
	if task.Status != statemanager.StatusWaiting || task.StartedAt != t0.UnixMilli() || task.Deadline != t0.UnixMilli()+60000 {
		t.Fatalf("stored task %+v", task)
	}
	if !reflect.DeepEqual(task.Roles, []string{"admin", "manager"}) || task.Saga != "job_post_approval" ||
		task.StepID != "approve" || task.RequestID != "r-42" || task.Name != "Job Post Approval" {
		t.Fatalf("stored task fields %+v", task)
	}
	jsonEq(t, "stored data", task.Data, `{"data": {"productId": "product-1", "brief": "summer vibes"}}`)
	if string(task.Envelope) != string(out.Env.Encode()) {
		t.Fatalf("stored envelope %s, want the suspended one %s", task.Envelope, out.Env.Encode())
	}

	clk.Advance(12345 * time.Millisecond)
	out = run(t, closeAction(t, "ProceedTask", proceedParams), x, request("p-1", "alice", []string{"manager"}, approve))
	wantResult(t, out, envelope.StatusSuccess, "")
	jsonEq(t, "response output", []byte(out.Env.Get("process").Raw),
		`{"brief": "summer vibes", "decision": "approved", "task": "product-1"}`)
	if out.Env.Get("parameters.taskId").Str != "product-1" {
		t.Fatalf("the response lost its input: %s", out.Env.Payload)
	}
	if !reflect.DeepEqual(out.Acks, []actions.Ack{{Domain: "workflow", ID: "product-1"}}) {
		t.Fatalf("acks %+v", out.Acks)
	}
	if len(out.Records) != 2 {
		t.Fatalf("got %d records, want continuation and notification", len(out.Records))
	}

	cont := out.Records[0]
	if cont.Topic != topics.Continuations || string(cont.Key) != "r-42" {
		t.Fatalf("continuation %s/%s", cont.Topic, cont.Key)
	}
	resumed, err := envelope.Decode(cont.Value, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resumed.Result != (envelope.Result{Status: envelope.StatusSuccess}) || resumed.SagaMeta.StepID != "approve" ||
		resumed.RequestMeta.RequestID != "r-42" || resumed.RequestMeta.User != "carol" {
		t.Fatalf("continuation %s", cont.Value)
	}
	jsonEq(t, "continuation payload", resumed.Payload, fmt.Sprintf(`{
		"parameters": {"productId": "product-1", "brief": "summer vibes"},
		"task": {"taskId": "product-1", "domain": "workflow", "deadline": %d},
		"decision": {"decision": "approved"}}`, t0.UnixMilli()+60000))

	notif := out.Records[1]
	want := compact(t, fmt.Sprintf(`{"taskId": "product-1", "domain": "workflow", "status": "COMPLETED",
	  "saga": "job_post_approval", "stepId": "approve", "requestId": "r-42",
	  "taskName": "Job Post Approval", "taskSpec": "job_post_approval", "taskAction": "Approve",
	  "taskRoles": ["admin", "manager"], "taskUser": "", "startedAt": %d,
	  "deadline": %d, "closedAt": %d, "closedBy": "alice",
	  "data": {"decision": "approved"}}`, t0.UnixMilli(), t0.UnixMilli()+60000, t0.UnixMilli()+12345))
	if notif.Topic != topics.Notifications || string(notif.Key) != "product-1" || string(notif.Value) != want {
		t.Fatalf("notification %s/%s %s\nwant %s", notif.Topic, notif.Key, notif.Value, want)
	}

	task = getTask(t, stores, "workflow", "product-1")
	if task.Status != statemanager.StatusCompleted || task.CloseKey != "p-1" || task.ClosedBy != "alice" || task.EnrichPath != "decision" {
		t.Fatalf("closed task %+v", task)
	}
}

func TestTimeoutTask(t *testing.T) {
	x, clk, stores := newExec(t)
	run(t, startAction(t, startParams), x, decode(t, startEvent))
	clk.Advance(time.Second)

	// A trusted caller (no identity), no patterns, no output element.
	a := build(t, "TimeoutTask", actions.Input{Domain: "workflow", InputElement: "parameters", Params: map[string]any{"enrichPath": "timedOut"}})
	body := `{"parameters": {"taskId": "product-1", "reason": "stale"}}`
	out := run(t, a, x, request("t-1", "", nil, body))
	wantResult(t, out, envelope.StatusSuccess, "")
	jsonEq(t, "response payload", out.Env.Payload, body)
	if len(out.Records) != 2 {
		t.Fatalf("got %d records", len(out.Records))
	}
	resumed, err := envelope.Decode(out.Records[0].Value, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resumed.Result.Status != envelope.StatusTimeout || resumed.SagaMeta.StepID != "approve" {
		t.Fatalf("continuation %s", out.Records[0].Value)
	}
	if got := resumed.Get("timedOut.reason").Str; got != "stale" {
		t.Fatalf("continuation not enriched: %s", resumed.Payload)
	}
	var n actions.Notification
	if err := json.Unmarshal(out.Records[1].Value, &n); err != nil {
		t.Fatal(err)
	}
	if n.Status != statemanager.StatusTimeout || n.ClosedBy != "" || n.ClosedAt != t0.UnixMilli()+1000 {
		t.Fatalf("notification %+v", n)
	}
	if task := getTask(t, stores, "workflow", "product-1"); task.Status != statemanager.StatusTimeout {
		t.Fatalf("task status %s", task.Status)
	}
}

func TestCloseRefusals(t *testing.T) {
	tests := []struct {
		name        string
		start       map[string]any // changes to startParams
		action      string
		params      map[string]any // changes to proceedParams
		before      func(t *testing.T, x *actions.Exec)
		user        string
		roles       []string
		body        string
		wantCode    string // "" means SUCCESS
		wantMessage string
		// wantTask is the task's status afterwards.
		wantTask string
	}{
		{name: "unknown task", body: `{"parameters": {"taskId": "nope", "data": {}}}`,
			wantCode: actions.CodeTaskNotFound, wantMessage: `"nope"`, wantTask: statemanager.StatusWaiting},
		{name: "task proceeded already", before: proceedAs("p-0", "alice"), user: "bob", roles: []string{"admin"}, body: approve,
			wantCode: actions.CodeTaskClosed, wantMessage: `completed by "alice"`, wantTask: statemanager.StatusCompleted},
		{name: "task timed out already", action: "ProceedTask", before: timeoutAs("t-0"), body: approve,
			wantCode: actions.CodeTaskClosed, wantMessage: "(timeout at ", wantTask: statemanager.StatusTimeout},
		{name: "timing out a proceeded task", action: "TimeoutTask", before: proceedAs("p-0", ""), body: approve,
			wantCode: actions.CodeTaskClosed, wantMessage: "(completed at ", wantTask: statemanager.StatusCompleted},
		{name: "caller holds none of the roles", user: "bob", roles: []string{"viewer"}, body: approve,
			wantCode: actions.CodeForbidden, wantMessage: `user "bob" may not close task "product-1"`, wantTask: statemanager.StatusWaiting},
		{name: "caller is not the task user", start: map[string]any{"taskRoles": nil, "taskUser": "dave"},
			user: "alice", roles: []string{"manager"}, body: approve,
			wantCode: actions.CodeForbidden, wantTask: statemanager.StatusWaiting},
		{name: "role-only caller without the role", roles: []string{"viewer"}, body: approve,
			wantCode: actions.CodeForbidden, wantMessage: `roles "viewer"`, wantTask: statemanager.StatusWaiting},
		{name: "the task user may", start: map[string]any{"taskRoles": nil, "taskUser": "dave"}, user: "dave", body: approve,
			wantTask: statemanager.StatusCompleted},
		{name: "a role holder may", roles: []string{"viewer", "admin"}, body: approve, wantTask: statemanager.StatusCompleted},
		{name: "a trusted caller may", body: approve, wantTask: statemanager.StatusCompleted},
		{name: "an unassigned task is open to all", start: map[string]any{"taskRoles": nil}, user: "bob", body: approve,
			wantTask: statemanager.StatusCompleted},
		{name: "a failing output pattern leaves the task open", params: map[string]any{"outputPattern": "abs(parameters.brief)"}, body: approve,
			wantCode: actions.CodePattern, wantMessage: "outputPattern", wantTask: statemanager.StatusWaiting},
		{name: "a failing input pattern leaves the task open", params: map[string]any{"inputPattern": "abs(data)"}, body: approve,
			wantCode: actions.CodePattern, wantMessage: "inputPattern", wantTask: statemanager.StatusWaiting},
		{name: "missing input element", body: `{"taskId": "product-1"}`,
			wantCode: actions.CodeBadInput, wantMessage: `"parameters"`, wantTask: statemanager.StatusWaiting},
		{name: "task id is an object", body: `{"parameters": {"taskId": {"id": "product-1"}}}`,
			wantCode: actions.CodeBadInput, wantMessage: "an object", wantTask: statemanager.StatusWaiting},
		{name: "no task id falls back to this request's step id", body: `{"parameters": {"data": {}}}`,
			wantCode: actions.CodeTaskNotFound, wantMessage: `"p-1::3"`, wantTask: statemanager.StatusWaiting},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x, _, stores := newExec(t)
			run(t, startAction(t, with(startParams, tc.start)), x, decode(t, startEvent))
			if tc.before != nil {
				tc.before(t, x)
			}
			action := tc.action
			if action == "" {
				action = "ProceedTask"
			}
			out := run(t, closeAction(t, action, with(proceedParams, tc.params)), x, request("p-1", tc.user, tc.roles, tc.body))
			if tc.wantCode == "" {
				wantResult(t, out, envelope.StatusSuccess, "")
				if len(out.Records) != 2 || len(out.Acks) != 1 {
					t.Fatalf("a close produced %d records and %d acks", len(out.Records), len(out.Acks))
				}
			} else {
				wantResult(t, out, envelope.StatusFail, tc.wantCode)
				if !strings.Contains(out.Env.Result.Message, tc.wantMessage) {
					t.Fatalf("message %q does not mention %q", out.Env.Result.Message, tc.wantMessage)
				}
				if len(out.Records) != 0 || len(out.Acks) != 0 {
					t.Fatalf("a refused close produced effects: %+v", out)
				}
			}
			if got := getTask(t, stores, "workflow", "product-1").Status; got != tc.wantTask {
				t.Fatalf("task is %s, want %s", got, tc.wantTask)
			}
		})
	}
}

func proceedAs(requestID, user string) func(*testing.T, *actions.Exec) {
	return func(t *testing.T, x *actions.Exec) {
		t.Helper()
		var roles []string
		if user != "" {
			roles = []string{"manager"}
		}
		out := run(t, closeAction(t, "ProceedTask", proceedParams), x, request(requestID, user, roles, approve))
		wantResult(t, out, envelope.StatusSuccess, "")
	}
}

func timeoutAs(requestID string) func(*testing.T, *actions.Exec) {
	return func(t *testing.T, x *actions.Exec) {
		t.Helper()
		out := run(t, closeAction(t, "TimeoutTask", nil), x, request(requestID, "", nil, approve))
		wantResult(t, out, envelope.StatusSuccess, "")
	}
}

// A redelivered proceed (same requestId) answers and emits exactly what the
// first one did, even after its effects were acked and time moved on.
func TestProceedReplay(t *testing.T) {
	x, clk, stores := newExec(t)
	run(t, startAction(t, startParams), x, decode(t, startEvent))
	proceed := closeAction(t, "ProceedTask", proceedParams)
	req := request("p-1", "alice", []string{"manager"}, approve)

	first := run(t, proceed, x, req)
	wantResult(t, first, envelope.StatusSuccess, "")
	store, _ := stores.Store("workflow")
	if err := store.Ack(context.Background(), "product-1"); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute)

	for _, name := range []string{"replay", "second replay"} {
		t.Run(name, func(t *testing.T) {
			again := run(t, proceed, x, req)
			if !reflect.DeepEqual(again, first) {
				t.Fatalf("replay differs:\n%+v\n%+v", again, first)
			}
		})
	}
}

func TestStartTask(t *testing.T) {
	deadline := t0.UnixMilli() + 3_600_000
	tests := []struct {
		name         string
		params       map[string]any // changes to startParams
		event        string
		wantID       string
		wantDeadline int64
	}{
		{name: "id from the input", wantID: "product-1", wantDeadline: t0.UnixMilli() + 60000},
		{name: "id from the envelope root", params: map[string]any{"taskIdPath": "$.requestMeta.requestId"},
			wantID: "r-42", wantDeadline: t0.UnixMilli() + 60000},
		{name: "no id falls back to request, step and partition", params: map[string]any{"taskIdPath": "missing"},
			wantID: "r-42:approve:3", wantDeadline: t0.UnixMilli() + 60000},
		{name: "default id path", params: map[string]any{"taskIdPath": nil},
			wantID: "r-42:approve:3", wantDeadline: t0.UnixMilli() + 60000},
		{name: "numeric id", params: map[string]any{"taskIdPath": "n"},
			event:  strings.Replace(startEvent, `"brief"`, `"n": 7, "brief"`, 1),
			wantID: "7", wantDeadline: t0.UnixMilli() + 60000},
		{name: "absolute deadline", params: map[string]any{"timeout": nil, "timeoutOn": deadline},
			wantID: "product-1", wantDeadline: deadline},
		{name: "no deadline", params: map[string]any{"timeout": nil}, wantID: "product-1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x, _, stores := newExec(t)
			event := tc.event
			if event == "" {
				event = startEvent
			}
			out := run(t, startAction(t, with(startParams, tc.params)), x, decode(t, event))
			wantResult(t, out, envelope.StatusSuccess, "")
			if got := out.Env.Get("task.taskId").String(); got != tc.wantID {
				t.Fatalf("task id %q, want %q", got, tc.wantID)
			}
			task := getTask(t, stores, "workflow", tc.wantID)
			if task.Deadline != tc.wantDeadline || out.Env.Get("task.deadline").Int() != tc.wantDeadline {
				t.Fatalf("deadline %d (response %s), want %d", task.Deadline, out.Env.Get("task.deadline").Raw, tc.wantDeadline)
			}
		})
	}
}

// A replayed StartTask changes nothing and reports the task that exists.
func TestStartTaskTwiceIsNoop(t *testing.T) {
	x, clk, stores := newExec(t)
	created := 0
	ctx := actions.WithStartedHook(context.Background(), func(*statemanager.Task) { created++ })
	a := startAction(t, startParams)
	first := runCtx(t, ctx, a, x, decode(t, startEvent))
	clk.Advance(10 * time.Second)
	second := runCtx(t, ctx, a, x, decode(t, startEvent))

	if created != 1 {
		t.Fatalf("started hook called %d times, want 1", created)
	}
	if !second.Suspend || !reflect.DeepEqual(second, first) {
		t.Fatalf("replayed start\n%+v\nwant\n%+v", second, first)
	}
	if task := getTask(t, stores, "workflow", "product-1"); task.StartedAt != t0.UnixMilli() {
		t.Fatalf("replay restarted the task at %d", task.StartedAt)
	}
}

// A task started by a direct action record (no saga) closes with a
// notification only: there is no instance to continue.
func TestTaskOutsideSaga(t *testing.T) {
	x, _, _ := newExec(t)
	start := build(t, "StartTask", actions.Input{Domain: "workflow", InputElement: "parameters"})
	out := run(t, start, x, request("r-7", "", nil, `{"parameters": {"taskId": "loose-1"}}`))
	wantResult(t, out, envelope.StatusSuccess, "")
	out = run(t, closeAction(t, "ProceedTask", map[string]any{"inputPattern": "data"}), x,
		request("p-7", "", nil, `{"parameters": {"taskId": "loose-1", "data": 1}}`))
	wantResult(t, out, envelope.StatusSuccess, "")
	if len(out.Records) != 1 || out.Records[0].Topic != topics.Notifications {
		t.Fatalf("records %+v, want only the notification", out.Records)
	}
}

func TestStartTaskBadInput(t *testing.T) {
	tests := []struct {
		name     string
		in       actions.Input
		payload  string
		wantCode string
	}{
		{"missing input element", actions.Input{Domain: "workflow", InputElement: "nothing"},
			`{"parameters": {"taskId": "a"}}`, actions.CodeBadInput},
		{"id is an array", actions.Input{Domain: "workflow", InputElement: "parameters"},
			`{"parameters": {"taskId": [1, 2]}}`, actions.CodeBadInput},
		{"failing input pattern", actions.Input{Domain: "workflow", Params: map[string]any{"inputPattern": "abs(parameters.brief)"}},
			`{"parameters": {"taskId": "a", "brief": "summer"}}`, actions.CodePattern},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x, _, stores := newExec(t)
			env := decode(t, startEvent)
			env.Payload = json.RawMessage(tc.payload)
			out := run(t, build(t, "StartTask", tc.in), x, env)
			wantResult(t, out, envelope.StatusFail, tc.wantCode)
			if out.Suspend {
				t.Fatal("a failed start suspended the instance")
			}
			s, _ := stores.Store("workflow")
			if ts, err := s.List(context.Background(), statemanager.Filter{}); err != nil || len(ts) != 0 {
				t.Fatalf("a failed start stored %d tasks (%v)", len(ts), err)
			}
		})
	}
}

func TestTimeoutBetween(t *testing.T) {
	x, _, stores := newExec(t)
	ms := t0.UnixMilli()
	d := []int64{ms + 1000, ms + 2000, ms + 3000, ms + 4000}
	for i, deadline := range d {
		ev := decode(t, startEvent)
		ev.RequestMeta.RequestID = fmt.Sprintf("r-%d", i)
		ev.Payload = json.RawMessage(fmt.Sprintf(`{"parameters": {"productId": "task-%d"}}`, i))
		run(t, startAction(t, with(startParams, map[string]any{"timeout": nil, "timeoutOn": deadline})), x, ev)
	}
	store, _ := stores.Store("workflow")
	status := func() []string {
		var out []string
		for i := range d {
			out = append(out, getTask(t, stores, "workflow", fmt.Sprintf("task-%d", i)).Status)
		}
		return out
	}
	const W, T = statemanager.StatusWaiting, statemanager.StatusTimeout

	steps := []struct {
		name          string
		params        map[string]any
		body          string
		wantClosed    []string
		wantStatus    []string
		wantWatermark int64
	}{
		{"explicit range", map[string]any{"fromTimePath": "start", "toTimePath": "end"},
			fmt.Sprintf(`{"tick": {"start": %d, "end": "%d"}}`, d[1], d[2]),
			[]string{"task-1", "task-2"}, []string{W, T, T, W}, d[2]},
		{"from the watermark", map[string]any{"toTimePath": "end"},
			fmt.Sprintf(`{"tick": {"end": %q}}`, time.UnixMilli(d[3]).UTC().Format(time.RFC3339Nano)),
			[]string{"task-3"}, []string{W, T, T, T}, d[3]},
		{"an empty range still moves the watermark", map[string]any{"toTimePath": "end"},
			fmt.Sprintf(`{"tick": {"end": %d}}`, d[3]+500),
			nil, []string{W, T, T, T}, d[3] + 500},
		{"to defaults to now", map[string]any{"fromTimePath": "start", "toTimePath": "end"},
			fmt.Sprintf(`{"tick": {"start": %d}}`, ms),
			nil, []string{W, T, T, T}, d[3] + 500},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			a := build(t, "TimeoutBetween", actions.Input{InputElement: "tick", OutputElement: "swept", Params: st.params})
			out := run(t, a, x, request("tick-"+st.name, "", nil, st.body))
			wantResult(t, out, envelope.StatusSuccess, "")
			var closed []string
			for _, ack := range out.Acks {
				closed = append(closed, ack.ID)
			}
			if !reflect.DeepEqual(closed, st.wantClosed) {
				t.Fatalf("closed %v, want %v", closed, st.wantClosed)
			}
			if len(out.Records) != 2*len(st.wantClosed) {
				t.Fatalf("got %d records, want a continuation and a notification per task", len(out.Records))
			}
			for i := 0; i < len(out.Records); i += 2 {
				resumed, err := envelope.Decode(out.Records[i].Value, nil)
				if err != nil || resumed.Result.Status != envelope.StatusTimeout {
					t.Fatalf("continuation %s (%v)", out.Records[i].Value, err)
				}
			}
			if got := status(); !reflect.DeepEqual(got, st.wantStatus) {
				t.Fatalf("statuses %v, want %v", got, st.wantStatus)
			}
			if out.Env.Get("swept.count").Int() != int64(len(st.wantClosed)) {
				t.Fatalf("output %s", out.Env.Get("swept").Raw)
			}
			if wm, err := store.Watermark(context.Background()); err != nil || wm != st.wantWatermark {
				t.Fatalf("watermark %d (%v), want %d", wm, err, st.wantWatermark)
			}
		})
	}
	// The first task is before the watermark and was never in a range.
	if task := getTask(t, stores, "workflow", "task-0"); task.Status != W {
		t.Fatalf("task-0 is %s", task.Status)
	}
	// A timeout from TimeoutBetween is the same decision as the automatic one.
	if task := getTask(t, stores, "workflow", "task-1"); task.CloseKey != actions.TimeoutKey || task.ClosedBy != "" {
		t.Fatalf("task-1 closed with key %q by %q", task.CloseKey, task.ClosedBy)
	}
}

// More due tasks than one page of the store are all swept.
func TestTimeoutBetweenPages(t *testing.T) {
	x, clk, _ := newExec(t)
	const n = 130
	start := startAction(t, startParams)
	for i := range n {
		ev := decode(t, startEvent)
		ev.RequestMeta.RequestID = fmt.Sprintf("r-%d", i)
		ev.Payload = json.RawMessage(fmt.Sprintf(`{"parameters": {"productId": "task-%03d"}}`, i))
		run(t, start, x, ev)
	}
	clk.Advance(2 * time.Minute)
	out := run(t, build(t, "TimeoutBetween", actions.Input{}), x, request("tick", "", nil, `{}`))
	wantResult(t, out, envelope.StatusSuccess, "")
	if len(out.Acks) != n {
		t.Fatalf("closed %d tasks, want %d", len(out.Acks), n)
	}
}

func TestTimeoutBetweenBadTime(t *testing.T) {
	x, _, _ := newExec(t)
	a := build(t, "TimeoutBetween", actions.Input{Params: map[string]any{"toTimePath": "end"}})
	out := run(t, a, x, request("tick", "", nil, `{"end": "tomorrow"}`))
	wantResult(t, out, envelope.StatusFail, actions.CodeBadInput)
}

// CloseTask is how the engine fires deadlines: the same decision and effects
// as the actions, with the store's errors still recognisable.
func TestCloseTask(t *testing.T) {
	x, clk, _ := newExec(t)
	run(t, startAction(t, startParams), x, decode(t, startEvent))
	ctx := context.Background()
	timeout := statemanager.Close{ID: "product-1", Status: statemanager.StatusTimeout, Key: actions.TimeoutKey}

	t.Run("unknown task", func(t *testing.T) {
		_, _, err := actions.CloseTask(ctx, x, "workflow", statemanager.Close{ID: "nope", Status: statemanager.StatusTimeout, Key: actions.TimeoutKey})
		if !errors.Is(err, statemanager.ErrNotFound) || errors.Is(err, actions.ErrRetryable) {
			t.Fatalf("err = %v, want ErrNotFound", err)
		}
	})
	clk.Advance(time.Minute)
	var first []envelope.Record
	t.Run("automatic timeout", func(t *testing.T) {
		task, recs, err := actions.CloseTask(ctx, x, "workflow", timeout)
		if err != nil {
			t.Fatal(err)
		}
		if task.Status != statemanager.StatusTimeout || task.ClosedAt != clock.NowMillis(clk) || len(recs) != 2 {
			t.Fatalf("task %+v, %d records", task, len(recs))
		}
		first = recs
	})
	t.Run("fired again by another replica", func(t *testing.T) {
		clk.Advance(time.Second)
		_, recs, err := actions.CloseTask(ctx, x, "workflow", timeout)
		if err != nil || !reflect.DeepEqual(recs, first) {
			t.Fatalf("refire: %v, records differ: %v", err, !reflect.DeepEqual(recs, first))
		}
	})
	t.Run("a proceed after the timeout", func(t *testing.T) {
		task, _, err := actions.CloseTask(ctx, x, "workflow", statemanager.Close{ID: "product-1", Status: statemanager.StatusCompleted, Key: "p-9"})
		if !errors.Is(err, statemanager.ErrClosed) || task == nil || task.Status != statemanager.StatusTimeout {
			t.Fatalf("err = %v task %+v, want ErrClosed with the timeout decision", err, task)
		}
	})
}

// With Redis gone, the actions report a retryable error instead of a result.
func TestStoreDownIsRetryable(t *testing.T) {
	srv := redistest.StartOwn(t)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1, DialTimeout: time.Second, DialerRetries: 1})
	t.Cleanup(func() { client.Close() })
	stores := &redisStores{client: client, stores: map[string]*statemanager.RedisStore{}}
	x := &actions.Exec{Stores: stores, Clock: clock.NewFake(t0), Topics: topics}
	srv.Stop()

	tests := []struct {
		name   string
		action actions.Action
		env    *envelope.Envelope
	}{
		{"StartTask", startAction(t, startParams), decode(t, startEvent)},
		{"ProceedTask", closeAction(t, "ProceedTask", proceedParams), request("p-1", "", nil, approve)},
		{"TimeoutBetween", build(t, "TimeoutBetween", actions.Input{}), request("tick", "", nil, `{}`)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.action.Execute(context.Background(), x, tc.env)
			if !errors.Is(err, actions.ErrRetryable) {
				t.Fatalf("err = %v, want ErrRetryable", err)
			}
		})
	}
}

// tenantRequest is request from a caller of tenant.
func tenantRequest(id, tenant, user string, roles []string, payload string) *envelope.Envelope {
	env := request(id, user, roles, payload)
	env.RequestMeta.Tenant = tenant
	return env
}

// startIn starts product-1 for an instance of tenant, with the given changes
// to startParams.
func startIn(t *testing.T, x *actions.Exec, tenant string, params map[string]any) {
	t.Helper()
	env := decode(t, startEvent)
	env.RequestMeta.Tenant = tenant
	wantResult(t, run(t, startAction(t, with(startParams, params)), x, env), envelope.StatusSuccess, "")
}

// A task records the tenant of the request that started it, and its
// notification names it.
func TestStartTaskRecordsTenant(t *testing.T) {
	x, _, stores := newExec(t)
	startIn(t, x, "acme", nil)
	if task := getTask(t, stores, "workflow", "product-1"); task.Tenant != "acme" {
		t.Fatalf("stored tenant %q, want acme", task.Tenant)
	}
	out := run(t, closeAction(t, "ProceedTask", proceedParams), x, tenantRequest("p-1", "acme", "alice", []string{"manager"}, approve))
	wantResult(t, out, envelope.StatusSuccess, "")
	var n actions.Notification
	if err := json.Unmarshal(out.Records[1].Value, &n); err != nil || n.Tenant != "acme" {
		t.Fatalf("notification tenant %q (%v): %s", n.Tenant, err, out.Records[1].Value)
	}
}

// SPEC §11: a caller with an identity closes only tasks of its own tenant
// that it is a candidate for or, with an admin role, any of them; other
// tenants cannot even tell that the id exists.
func TestCloseAuthorization(t *testing.T) {
	const (
		notFound = `no task "product-1" in "workflow"`
		waiting  = statemanager.StatusWaiting
	)
	tests := []struct {
		name        string
		start       map[string]any // changes to startParams
		taskTenant  string
		closedFirst bool // proceeded by a candidate of the task's tenant first
		action      string
		tenant      string
		user        string
		roles       []string
		wantCode    string // "" means SUCCESS
		wantMessage string
		wantTask    string
	}{
		{name: "candidate of the tenant", taskTenant: "acme", tenant: "acme", roles: []string{"manager"}, wantTask: statemanager.StatusCompleted},
		{name: "candidate role in another tenant", taskTenant: "acme", tenant: "beta", user: "alice", roles: []string{"manager"},
			wantCode: actions.CodeTaskNotFound, wantMessage: notFound, wantTask: waiting},
		{name: "another tenant times out", action: "TimeoutTask", taskTenant: "acme", tenant: "beta", roles: []string{"manager"},
			wantCode: actions.CodeTaskNotFound, wantMessage: notFound, wantTask: waiting},
		{name: "default tenant caller, tenant task", taskTenant: "acme", user: "alice", roles: []string{"manager"},
			wantCode: actions.CodeTaskNotFound, wantMessage: notFound, wantTask: waiting},
		{name: "tenant caller, default tenant task", tenant: "acme", user: "alice", roles: []string{"manager"},
			wantCode: actions.CodeTaskNotFound, wantMessage: notFound, wantTask: waiting},
		{name: "another tenant learns nothing of a closed task", taskTenant: "acme", closedFirst: true, tenant: "beta", roles: []string{"manager"},
			wantCode: actions.CodeTaskNotFound, wantMessage: notFound, wantTask: statemanager.StatusCompleted},
		{name: "admin role of the tenant", taskTenant: "acme", tenant: "acme", user: "root", roles: []string{"ops"}, wantTask: statemanager.StatusCompleted},
		{name: "admin role of another tenant", taskTenant: "acme", tenant: "beta", user: "root", roles: []string{"ops"},
			wantCode: actions.CodeTaskNotFound, wantMessage: notFound, wantTask: waiting},
		{name: "admin times out a task of the user", action: "TimeoutTask", start: map[string]any{"taskRoles": nil, "taskUser": "dave"},
			roles: []string{"ops"}, wantTask: statemanager.StatusTimeout},
		{name: "non-candidate of the tenant", taskTenant: "acme", tenant: "acme", user: "bob", roles: []string{"viewer"},
			wantCode: actions.CodeForbidden, wantTask: waiting},
		{name: "non-candidate learns nothing of a closed task", taskTenant: "acme", closedFirst: true, tenant: "acme", user: "bob",
			wantCode: actions.CodeForbidden, wantTask: statemanager.StatusCompleted},
		{name: "non-candidate times out", action: "TimeoutTask", user: "bob", wantCode: actions.CodeForbidden, wantTask: waiting},
		{name: "unassigned task, same tenant", start: map[string]any{"taskRoles": nil}, taskTenant: "acme", tenant: "acme", user: "bob",
			wantTask: statemanager.StatusCompleted},
		{name: "unassigned task, other tenant", start: map[string]any{"taskRoles": nil}, taskTenant: "acme", tenant: "beta", user: "bob",
			wantCode: actions.CodeTaskNotFound, wantMessage: notFound, wantTask: waiting},
		{name: "trusted caller of any tenant", taskTenant: "acme", tenant: "beta", wantTask: statemanager.StatusCompleted},
		{name: "empty role is no role", taskTenant: "acme", tenant: "acme", user: "bob", roles: []string{""},
			wantCode: actions.CodeForbidden, wantTask: waiting},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x, _, stores := newExec(t)
			x.AdminRoles = []string{"ops"}
			startIn(t, x, tc.taskTenant, tc.start)
			if tc.closedFirst {
				out := run(t, closeAction(t, "ProceedTask", proceedParams), x, tenantRequest("p-0", tc.taskTenant, "alice", []string{"manager"}, approve))
				wantResult(t, out, envelope.StatusSuccess, "")
			}
			action := tc.action
			if action == "" {
				action = "ProceedTask"
			}
			// Without outputPattern a trusted caller takes the fast path;
			// an identified caller must still be checked.
			for _, params := range []map[string]any{proceedParams, {"inputPattern": "data", "enrichPath": "decision"}} {
				out := run(t, closeAction(t, action, params), x, tenantRequest("p-1", tc.tenant, tc.user, tc.roles, approve))
				if tc.wantCode == "" {
					wantResult(t, out, envelope.StatusSuccess, "")
					break // closed now; the second shape would replay
				}
				wantResult(t, out, envelope.StatusFail, tc.wantCode)
				if !strings.Contains(out.Env.Result.Message, tc.wantMessage) {
					t.Fatalf("message %q does not mention %q", out.Env.Result.Message, tc.wantMessage)
				}
				if tc.wantCode != actions.CodeTaskClosed && strings.Contains(out.Env.Result.Message, "alice") {
					t.Fatalf("a refused caller learned who closed the task: %q", out.Env.Result.Message)
				}
				if len(out.Records) != 0 || len(out.Acks) != 0 {
					t.Fatalf("a refused close produced effects: %+v", out)
				}
			}
			if got := getTask(t, stores, "workflow", "product-1").Status; got != tc.wantTask {
				t.Fatalf("task is %s, want %s", got, tc.wantTask)
			}
		})
	}
}

// countingStores counts the Gets of the stores it resolves.
type countingStores struct {
	*redisStores
	gets *int
}

type countingStore struct {
	statemanager.Store
	gets *int
}

func (c countingStores) Store(domain string) (statemanager.Store, error) {
	s, err := c.redisStores.Store(domain)
	if err != nil {
		return nil, err
	}
	return countingStore{Store: s, gets: c.gets}, nil
}

func (c countingStore) Get(ctx context.Context, id string) (*statemanager.Task, error) {
	*c.gets++
	return c.Store.Get(ctx, id)
}

// Only trusted callers close without reading the task first: the read is
// what checks everyone else.
func TestCloseReadsFirstForIdentifiedCallers(t *testing.T) {
	tests := []struct {
		name     string
		user     string
		roles    []string
		wantGets int
	}{
		{"trusted caller", "", nil, 0},
		{"user", "alice", nil, 1},
		{"roles only", "", []string{"manager"}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x, _, stores := newExec(t)
			startIn(t, x, "", map[string]any{"taskUser": "alice"})
			gets := 0
			x.Stores = countingStores{redisStores: stores, gets: &gets}
			out := run(t, closeAction(t, "ProceedTask", map[string]any{"inputPattern": "data"}), x,
				request("p-1", tc.user, tc.roles, `{"parameters": {"taskId": "product-1", "data": 1}}`))
			wantResult(t, out, envelope.StatusSuccess, "")
			if gets != tc.wantGets {
				t.Fatalf("%d reads before the close, want %d", gets, tc.wantGets)
			}
		})
	}
}

// SPEC §11: a task id waiting for another instance is never taken over; the
// step fails with TASK_ID_IN_USE and the waiting task is untouched. A replay
// of the same start stays a no-op.
func TestStartTaskIDInUse(t *testing.T) {
	x, clk, stores := newExec(t)
	created := 0
	ctx := actions.WithStartedHook(context.Background(), func(*statemanager.Task) { created++ })
	a := startAction(t, startParams)
	first := runCtx(t, ctx, a, x, decode(t, startEvent))
	before := getTask(t, stores, "workflow", "product-1")
	clk.Advance(time.Second)

	other := decode(t, startEvent)
	other.RequestMeta.RequestID = "r-43"
	out := runCtx(t, ctx, a, x, other)
	wantResult(t, out, envelope.StatusFail, actions.CodeTaskIDInUse)
	if out.Suspend || !strings.Contains(out.Env.Result.Message, `"product-1"`) || strings.Contains(out.Env.Result.Message, "r-42") {
		t.Fatalf("outcome %+v, message %q: want a routable FAIL naming the id only", out, out.Env.Result.Message)
	}
	direct := build(t, "StartTask", actions.Input{Domain: "workflow", InputElement: "parameters"})
	out = runCtx(t, ctx, direct, x, tenantRequest("r-44", "", "", nil, `{"parameters": {"taskId": "product-1"}}`))
	wantResult(t, out, envelope.StatusFail, actions.CodeTaskIDInUse)

	if after := getTask(t, stores, "workflow", "product-1"); !reflect.DeepEqual(after, before) {
		t.Fatalf("the waiting task changed:\n%+v\n%+v", after, before)
	}
	if again := runCtx(t, ctx, a, x, decode(t, startEvent)); !reflect.DeepEqual(again, first) {
		t.Fatalf("a replayed start is no longer a no-op:\n%+v\n%+v", again, first)
	}
	if created != 1 {
		t.Fatalf("started hook called %d times, want 1", created)
	}
}

// Task ids and assignment are checked where they enter, so the store never
// refuses them later and a notification names exactly the stored id.
func TestStartTaskValidatesFields(t *testing.T) {
	ids := []struct {
		name, id string
		ok       bool
	}{
		{"512 bytes", strings.Repeat("a", 512), true},
		{"unicode", "produkt-ü-1", true},
		{"513 bytes", strings.Repeat("a", 513), false},
		{"invalid UTF-8", "bad-\xff-id", false},
		{"control character", "a\x1fb", false},
		{"newline", "a\nb", false},
		{"empty string", "", false},
	}
	for _, tc := range ids {
		t.Run("id "+tc.name, func(t *testing.T) {
			x, _, stores := newExec(t)
			body, _ := json.Marshal(map[string]any{"parameters": map[string]string{"taskId": tc.id}})
			if !utf8.ValidString(tc.id) {
				body = []byte(`{"parameters": {"taskId": "bad-\\xff-id"}}`)
				body = []byte(strings.Replace(string(body), `\\xff`, "\xff", 1))
			}
			env := request("r-1", "", nil, string(body))
			a := build(t, "StartTask", actions.Input{Domain: "workflow", InputElement: "parameters"})
			out := run(t, a, x, env)
			if tc.ok {
				wantResult(t, out, envelope.StatusSuccess, "")
				getTask(t, stores, "workflow", tc.id)
				return
			}
			if tc.id == "" {
				// An empty id falls back to <requestId>:<stepId>:<partition>.
				wantResult(t, out, envelope.StatusSuccess, "")
				return
			}
			wantResult(t, out, envelope.StatusFail, actions.CodeBadInput)
			if !strings.Contains(out.Env.Result.Message, "task id") {
				t.Fatalf("message %q gives no reason", out.Env.Result.Message)
			}
			s, _ := stores.Store("workflow")
			if ts, err := s.List(context.Background(), statemanager.Filter{}); err != nil || len(ts) != 0 {
				t.Fatalf("a refused id stored %d tasks (%v)", len(ts), err)
			}
		})
	}

	configs := []struct {
		name   string
		action string
		in     actions.Input
		want   string
	}{
		{"role with the separator", "StartTask", actions.Input{Domain: "workflow", Params: map[string]any{"taskRoles": "a\x1fb,c"}}, "taskRoles"},
		{"user with a control character", "StartTask", actions.Input{Domain: "workflow", Params: map[string]any{"taskUser": "al\x00ice"}}, "taskUser"},
		{"StartTask domain with braces", "StartTask", actions.Input{Domain: "a{b}"}, "domain"},
		{"ProceedTask long domain", "ProceedTask", actions.Input{Domain: strings.Repeat("d", 65)}, "domain"},
		{"TimeoutTask domain with a colon", "TimeoutTask", actions.Input{Domain: "wf:1"}, "domain"},
		{"TimeoutBetween domain with a space", "TimeoutBetween", actions.Input{Domain: "w f"}, "domain"},
	}
	for _, tc := range configs {
		t.Run(tc.name, func(t *testing.T) {
			spec, _ := actions.Default.Lookup(tc.action)
			_, errs := spec.Build(tc.in)
			if len(errs) == 0 {
				t.Fatal("Build accepted the config")
			}
			if !strings.Contains(fmt.Sprint(errs), tc.want) {
				t.Fatalf("errors %v do not mention %q", errs, tc.want)
			}
		})
	}
}
