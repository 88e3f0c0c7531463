package test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sagarunner/sagarunner/internal/redistest"
	"github.com/sagarunner/sagarunner/internal/testutil"
)

// The callers of TestTaskLifecycle. The tasks of lifecycle_review are
// offered to clerks and approved by two of legal.
const (
	tokCarol = "tok-lc-carol-0123456789" // clerk
	tokCid   = "tok-lc-cid-0123456789"   // clerk and legal
	tokLee   = "tok-lc-lee-0123456789"   // legal
	tokLiz   = "tok-lc-liz-0123456789"   // legal
	tokAdmin = "tok-lc-root-0123456789"  // admin
	tokNone  = "tok-lc-mal-0123456789"   // no roles
	tokOther = "tok-lc-eve-0123456789"   // clerk of another tenant
)

const lifecycleConfig = `
auth:
  adminRoles: [admin]
  tokens:
    - {token: ` + tokCarol + `, user: carol, roles: [clerk]}
    - {token: ` + tokCid + `, user: cid, roles: [clerk, legal]}
    - {token: ` + tokLee + `, user: lee, roles: [legal]}
    - {token: ` + tokLiz + `, user: liz, roles: [legal]}
    - {token: ` + tokAdmin + `, user: root, roles: [admin]}
    - {token: ` + tokNone + `, user: mallory}
    - {token: ` + tokOther + `, user: eve, roles: [clerk], tenant: globex}
`

// Topics of TestTaskLifecycle besides the defaults.
const (
	taskEventTopic = "sagarunner-task-events"
	lcTrigger      = "lc-contracts"
	lcApproved     = "lc-approved"
	lcRework       = "lc-rework"
	lcReplies      = "lc-replies"
)

// lifecycleRun is one runner binary with authentication on, and the
// test's views of it: HTTP, Kafka, and the topics it writes.
type lifecycleRun struct {
	base  string
	out   *topicReader
	kafka *kgo.Client
}

// start starts an instance of lifecycle_review whose task is id, from a
// record on its trigger topic, and returns the task once it waits.
func (r *lifecycleRun) start(t *testing.T, id string) gjson.Result {
	t.Helper()
	produce(t, r.kafka, &kgo.Record{Topic: lcTrigger, Key: []byte("start-" + id), Value: []byte(`{"contractId": "` + id + `", "title": "Supply"}`)})
	return gjson.ParseBytes(mustJSON(t, waitTask(t, r.base, tokAdmin, "workflow", id, "WAITING")))
}

// op posts a task operation over HTTP and checks its status and, for a
// refusal, its code.
func (r *lifecycleRun) op(t *testing.T, token, id, op, body string, wantStatus int, wantCode string) gjson.Result {
	t.Helper()
	st, raw := do(t, "POST", fmt.Sprintf("%s/tasks/workflow/%s/%s", r.base, id, op), token, body)
	if st != wantStatus {
		t.Fatalf("%s %s: status %d, want %d: %s", op, id, st, wantStatus, raw)
	}
	res := gjson.ParseBytes(raw)
	if wantCode != "" && res.Get("code").String() != wantCode {
		t.Fatalf("%s %s: code %q, want %s: %s", op, id, res.Get("code").String(), wantCode, raw)
	}
	return res
}

// history reads GET …/history as an admin.
func (r *lifecycleRun) history(t *testing.T, id string) []gjson.Result {
	t.Helper()
	st, raw := do(t, "GET", fmt.Sprintf("%s/tasks/workflow/%s/history", r.base, id), tokAdmin, "")
	if st != http.StatusOK {
		t.Fatalf("history of %s: %d %s", id, st, raw)
	}
	return gjson.ParseBytes(raw).Array()
}

// kafkaOp sends a lifecycle operation as a direct action record of user
// with roles, and returns its reply. A reqID sent before is a replay: the
// reply returned is the one after the ones already read.
func (r *lifecycleRun) kafkaOp(t *testing.T, action, reqID, user string, roles []string, input string) gjson.Result {
	t.Helper()
	before := len(r.replies(reqID))
	rm := map[string]any{"requestId": reqID, "replyTo": lcReplies}
	if user != "" {
		rm["user"], rm["roles"] = user, roles
	}
	env := map[string]any{
		"requestMeta": rm,
		"eventMeta":   map[string]any{"action": action, "domain": "workflow", "inputElement": "parameters", "outputElement": "task"},
		"payload":     map[string]any{"parameters": json.RawMessage(input)},
	}
	produce(t, r.kafka, &kgo.Record{Topic: requestTopic, Key: []byte(reqID), Value: mustJSON(t, env)})
	var reply gjson.Result
	testutil.Eventually(t, waitLong, poll, func() error {
		rs := r.replies(reqID)
		if len(rs) <= before {
			return fmt.Errorf("no reply to %s %s yet", action, reqID)
		}
		reply = rs[before]
		return nil
	})
	return reply
}

func (r *lifecycleRun) replies(reqID string) []gjson.Result {
	var out []gjson.Result
	for _, rec := range r.out.records(lcReplies) {
		if v := gjson.ParseBytes(rec.Value); v.Get("requestMeta.requestId").String() == reqID {
			out = append(out, v)
		}
	}
	return out
}

// wantReply checks a Kafka reply's status and code.
func wantReply(t *testing.T, what string, reply gjson.Result, status, code string) {
	t.Helper()
	if reply.Get("result.status").String() != status || reply.Get("result.code").String() != code {
		t.Fatalf("%s: result %s, want %s %s", what, reply.Get("result").Raw, status, code)
	}
}

// eventLine is what TestTaskLifecycle compares of a history event and of a
// task-event record: type, actor, from, to, outcome.
func eventLine(e gjson.Result) string {
	return strings.Join([]string{e.Get("type").String(), e.Get("actor").String(), e.Get("from").String(),
		e.Get("to").String(), e.Get("outcome").String()}, "|")
}

func eventLines(es []gjson.Result) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = eventLine(e)
	}
	return out
}

// wantHistory checks the history of id, event by event.
func (r *lifecycleRun) wantHistory(t *testing.T, id string, want []string) []gjson.Result {
	t.Helper()
	h := r.history(t, id)
	if got := eventLines(h); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("history of %s:\n%s\nwant:\n%s", id, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for i, e := range h {
		if e.Get("seq").Int() != int64(i+1) || e.Get("at").Int() <= 0 {
			t.Errorf("history of %s: event %d has seq %d, at %d", id, i, e.Get("seq").Int(), e.Get("at").Int())
		}
	}
	return h
}

// unchanged checks that a refusal left the history of id as long as it
// was.
func (r *lifecycleRun) unchanged(t *testing.T, id string, n int) {
	t.Helper()
	if h := r.history(t, id); len(h) != n {
		t.Fatalf("a refusal changed the history of %s: %d events, want %d: %v", id, len(h), n, eventLines(h))
	}
}

// wantTaskState checks the task's state a 409 answers (over HTTP, at
// task; over Kafka, at the operation's outputElement).
func wantTaskState(t *testing.T, what string, task gjson.Result, want map[string]string) {
	t.Helper()
	if !task.IsObject() {
		t.Fatalf("%s: no task state in %s", what, task.Raw)
	}
	for _, k := range []string{"taskId", "status", "claimedBy", "completedBy", "approvals", "deadline", "version"} {
		if !task.Get(k).Exists() {
			t.Errorf("%s: task state lacks %s: %s", what, k, task.Raw)
		}
	}
	for _, k := range []string{"envelope", "data", "requestMeta"} {
		if task.Get(k).Exists() {
			t.Errorf("%s: task state shows %s: %s", what, k, task.Raw)
		}
	}
	for k, v := range want {
		if got := task.Get(k).String(); got != v {
			t.Errorf("%s: task %s = %q, want %q", what, k, got, v)
		}
	}
}

// TestTaskLifecycle drives the task lifecycle of SPEC §12 through the real
// binary with authentication on: every operation over HTTP and as a direct
// action on Kafka, each with its refusals (the right 4xx or FAIL code, the
// task's state with a conflict, the history untouched), a task's whole
// life read back from its history and from the task-event topic, the
// closed notification and the saga routed on the outcome with the
// executor's data, and replays by request id. One runner serves every
// subtest.
func TestTaskLifecycle(t *testing.T) {
	bin := runnerBinary(t)
	redisAddr, _ := redistest.Start(t)
	cluster := newCluster(t)
	brokers := cluster.ListenAddrs()
	createTopics(t, brokers, requestTopic, "sagarunner-replies", notificationTopic, deadLetterTopic, taskEventTopic,
		lcTrigger, lcApproved, lcRework, lcReplies)
	cfgPath := filepath.Join(t.TempDir(), "sagarunner.yaml")
	if err := os.WriteFile(cfgPath, []byte(lifecycleConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	proc := newRunnerProcess(t, bin, brokers, redisAddr, sagaDir(t))
	proc.args = append(proc.args, "--config", cfgPath)
	// An operation on a task that never starts waits this long for it.
	proc.env = append(proc.env, "SAGARUNNER_TASKS_EARLYTTL=2s")
	proc.start()
	testutil.Eventually(t, waitLong, poll, proc.ready)
	r := &lifecycleRun{base: proc.base, kafka: newClient(t, brokers),
		out: readTopics(t, brokers, notificationTopic, taskEventTopic, lcApproved, lcRework, lcReplies, deadLetterTopic)}
	defer func() {
		// A malformed request on Kafka (BAD_INPUT) is dead-lettered
		// besides its FAIL answer, and an operation on a task that never
		// started once it expired; nothing else is.
		for _, rec := range r.out.records(deadLetterTopic) {
			if code := gjson.GetBytes(rec.Value, "code").String(); code != "BAD_INPUT" && code != "EARLY_EXPIRED" {
				t.Errorf("dead letter: %s", rec.Value)
			}
		}
	}()

	// claim → reassign → complete → reject → complete → approve ×2 over
	// HTTP, with a refusal of each kind between the steps.
	t.Run("a task's whole life over HTTP", func(t *testing.T) {
		const id = "lc-1"
		r.start(t, id)
		task := r.op(t, tokCarol, id, "claim", `{}`, 200, "")
		if task.Get("claimedBy").String() != "carol" || task.Get("status").String() != "WAITING" {
			t.Fatalf("claim: %s", task.Raw)
		}
		// The loser of a claim learns who holds the task; another
		// tenant learns nothing, not even that it exists.
		res := r.op(t, tokCid, id, "claim", `{}`, 409, "TASK_CLAIMED")
		wantTaskState(t, "a claim of a claimed task", res.Get("task"), map[string]string{"taskId": id, "status": "WAITING", "claimedBy": "carol", "version": "2"})
		if res := r.op(t, tokOther, id, "claim", `{}`, 404, "TASK_NOT_FOUND"); res.Get("task").Exists() {
			t.Fatalf("another tenant's refusal shows the task: %s", res.Raw)
		}
		r.op(t, tokCid, "lc-none", "claim", `{}`, 404, "TASK_NOT_FOUND")
		r.unchanged(t, id, 2)

		r.op(t, tokCarol, id, "assign", `{"user": "cid"}`, 200, "")
		r.op(t, tokCid, id, "complete", `{"outcome": "maybe"}`, 400, "BAD_INPUT")
		r.op(t, tokCid, id, "deadline", `{"timeout": "soon"}`, 400, "BAD_INPUT")
		r.op(t, tokCid, id, "deadline", `{"timeoutOn": "2026-12-01T00:00:00Z"}`, 400, "BAD_INPUT")
		r.unchanged(t, id, 3)

		task = r.op(t, tokCid, id, "complete", `{"outcome": "reject", "note": "needs work", "data": {"first": true}}`, 200, "")
		if task.Get("status").String() != "IN_APPROVAL" {
			t.Fatalf("complete: %s", task.Raw)
		}
		res = r.op(t, tokCid, id, "approve", `{}`, 409, "SELF_APPROVAL")
		wantTaskState(t, "an executor's approval", res.Get("task"), map[string]string{"status": "IN_APPROVAL", "completedBy": "cid"})
		r.op(t, tokNone, id, "approve", `{}`, 403, "FORBIDDEN")
		r.unchanged(t, id, 4)

		task = r.op(t, tokLee, id, "reject", `{"note": "redo"}`, 200, "")
		if task.Get("status").String() != "WAITING" || task.Get("claimedBy").String() != "cid" {
			t.Fatalf("reject: %s", task.Raw)
		}
		// The executor completes again through the /ProceedTask hook,
		// whose data the waiting event receives at decision.
		st, body := do(t, "POST", r.base+"/ProceedTask", tokCid, `{"taskId": "`+id+`", "outcome": "approve", "note": "all good", "data": {"second": true}}`)
		if st != http.StatusOK {
			t.Fatalf("/ProceedTask: %d %s", st, body)
		}
		waitTask(t, r.base, tokAdmin, "workflow", id, "IN_APPROVAL")
		r.op(t, tokLee, id, "approve", `{"note": "fine"}`, 200, "")
		res = r.op(t, tokLee, id, "approve", `{}`, 409, "ALREADY_APPROVED")
		wantTaskState(t, "a second approval by one approver", res.Get("task"), map[string]string{"status": "IN_APPROVAL", "approvals.#": "1", "approvals.0.user": "lee"})
		r.unchanged(t, id, 7)
		task = r.op(t, tokLiz, id, "approve", `{}`, 200, "")
		if task.Get("status").String() != "COMPLETED" || task.Get("approvals.#").Int() != 2 {
			t.Fatalf("last approval: %s", task.Raw)
		}
		res = r.op(t, tokCarol, id, "comments", `{"text": "too late"}`, 409, "TASK_CLOSED")
		wantTaskState(t, "an operation on a closed task", res.Get("task"), map[string]string{"status": "COMPLETED"})

		h := r.wantHistory(t, id, []string{
			"started||||",
			"claimed|carol||carol|",
			"assigned|carol|carol|cid|",
			"completed|cid|||reject",
			"rejected|lee||cid|",
			"completed|cid|||approve",
			"approved|lee|||",
			"approved|liz|||",
		})
		if h[3].Get("note").String() != "needs work" || h[4].Get("note").String() != "redo" || h[5].Get("note").String() != "all good" {
			t.Errorf("history notes: %v", h)
		}

		// The task-event topic carries the same events, keyed by the
		// task id, in the same order, the start included.
		var events []gjson.Result
		testutil.Eventually(t, waitLong, poll, func() error {
			events = events[:0]
			for _, rec := range r.out.byKey(taskEventTopic, id) {
				events = append(events, gjson.ParseBytes(rec.Value))
			}
			if len(events) < len(h) {
				return fmt.Errorf("%d task events of %s, want %d", len(events), id, len(h))
			}
			return nil
		})
		if got, want := eventLines(events), eventLines(h); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("task events of %s:\n%s\nwant the history's:\n%s", id, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		for i, e := range events {
			if e.Get("taskId").String() != id || e.Get("requestId").String() != h[i].Get("requestId").String() {
				t.Errorf("task event %d: %s, history %s", i, e.Raw, h[i].Raw)
			}
		}

		n := gjson.ParseBytes(r.out.waitFor(t, notificationTopic, id, nil).Value)
		for k, want := range map[string]string{"status": "COMPLETED", "outcome": "approve", "note": "all good", "claimedBy": "cid",
			"closedBy": "cid", "approvals.#": "2", "approvals.0.user": "lee", "approvals.1.user": "liz", "data.second": "true"} {
			if got := n.Get(k).String(); got != want {
				t.Errorf("notification %s = %q, want %q: %s", k, got, want, n.Raw)
			}
		}
		if len(r.out.byKey(notificationTopic, id)) != 1 {
			t.Errorf("%d notifications of %s", len(r.out.byKey(notificationTopic, id)), id)
		}
		// The saga routed on the executor's outcome and resumed with the
		// data of the completion the approvals approved.
		var published gjson.Result
		testutil.Eventually(t, waitLong, poll, func() error {
			for _, rec := range r.out.records(lcApproved) {
				if v := gjson.ParseBytes(rec.Value); v.Get("id").String() == id {
					published = v
					return nil
				}
			}
			return fmt.Errorf("%s not published on %s", id, lcApproved)
		})
		if published.Get("decision").Raw != `{"second":true}` {
			t.Errorf("published %s, want the executor's decision {\"second\":true}", published.Raw)
		}
		for _, rec := range r.out.records(lcRework) {
			if gjson.GetBytes(rec.Value, "id").String() == id {
				t.Errorf("%s also routed to rework: %s", id, rec.Value)
			}
		}
	})

	t.Run("unclaim, assign to a role, comment, deadline and cancel over HTTP", func(t *testing.T) {
		const id = "lc-2"
		started := r.start(t, id)
		r.op(t, tokCarol, id, "claim", `{}`, 200, "")
		r.op(t, tokCid, id, "unclaim", `{}`, 403, "FORBIDDEN")
		if task := r.op(t, tokCarol, id, "unclaim", `{}`, 200, ""); task.Get("claimedBy").String() != "" {
			t.Fatalf("unclaim: %s", task.Raw)
		}
		r.op(t, tokCarol, id, "comments", `{"text": "looking"}`, 200, "")
		r.op(t, tokNone, id, "comments", `{"text": "me too"}`, 403, "FORBIDDEN")
		r.op(t, tokCarol, id, "comments", `{"text": ""}`, 400, "BAD_INPUT")
		r.op(t, tokAdmin, id, "assign", `{"role": "legal"}`, 200, "")
		r.op(t, tokAdmin, id, "assign", `{"role": "legal", "user": "cid"}`, 400, "BAD_INPUT")
		task := r.op(t, tokAdmin, id, "deadline", `{"timeout": 600000}`, 200, "")
		moved := task.Get("deadline").Int()
		if moved <= started.Get("startedAt").Int() || moved == started.Get("deadline").Int() {
			t.Fatalf("deadline moved to %d from %d", moved, started.Get("deadline").Int())
		}
		r.op(t, tokAdmin, id, "deadline", `{"timeout": 1, "timeoutOn": 1}`, 400, "BAD_INPUT")
		r.op(t, tokCarol, id, "cancel", `{"reason": "mine"}`, 403, "FORBIDDEN")
		r.unchanged(t, id, 6)
		if task = r.op(t, tokAdmin, id, "cancel", `{"reason": "withdrawn"}`, 200, ""); task.Get("status").String() != "CANCELLED" {
			t.Fatalf("cancel: %s", task.Raw)
		}
		r.op(t, tokAdmin, id, "cancel", `{}`, 409, "TASK_CLOSED")
		h := r.wantHistory(t, id, []string{
			"started||||",
			"claimed|carol||carol|",
			"unclaimed|carol|carol||",
			"commented|carol|||",
			"assigned|root||role:legal|",
			fmt.Sprintf("deadline|root|%d|%d|", started.Get("deadline").Int(), moved),
			"cancelled|root|||",
		})
		if h[3].Get("note").String() != "looking" || h[6].Get("note").String() != "withdrawn" {
			t.Errorf("history notes: %v", h)
		}
		n := gjson.ParseBytes(r.out.waitFor(t, notificationTopic, id, nil).Value)
		if n.Get("status").String() != "CANCELLED" || n.Get("note").String() != "withdrawn" || n.Get("closedBy").String() != "root" {
			t.Errorf("notification: %s", n.Raw)
		}
		if got := len(r.out.byKey(taskEventTopic, id)); got != len(h) {
			t.Errorf("%d task events of %s, want %d", got, id, len(h))
		}
	})

	t.Run("a deadline moved into the past over HTTP fires at once", func(t *testing.T) {
		const id = "lc-3"
		r.start(t, id)
		r.op(t, tokCarol, id, "claim", `{}`, 200, "")
		r.op(t, tokCid, id, "deadline", `{"timeoutOn": 1}`, 403, "FORBIDDEN")
		r.op(t, tokCarol, id, "deadline", `{"timeoutOn": -5}`, 400, "BAD_INPUT")
		r.op(t, tokCarol, id, "deadline", `{"timeoutOn": 1}`, 200, "")
		waitTask(t, r.base, tokAdmin, "workflow", id, "TIMEOUT")
		n := gjson.ParseBytes(r.out.waitFor(t, notificationTopic, id, nil).Value)
		if n.Get("status").String() != "TIMEOUT" || n.Get("deadline").Int() != 1 || n.Get("claimedBy").String() != "carol" {
			t.Errorf("notification: %s", n.Raw)
		}
		r.wantHistory(t, id, []string{
			"started||||",
			"claimed|carol||carol|",
			fmt.Sprintf("deadline|carol|%d|1|", r.history(t, id)[0].Get("at").Int()+3600000),
			"timedout||||",
		})
		r.op(t, tokCarol, id, "deadline", `{"timeout": 1000}`, 409, "TASK_CLOSED")
	})

	// Every operation as a direct action on Kafka, identity as the
	// producer states it (trusted as Kafka ACLs say), with a FAIL code for
	// each refusal and the replay of a request id changing nothing.
	t.Run("every operation as a direct action on Kafka", func(t *testing.T) {
		const id = "lc-4"
		r.start(t, id)
		clerk, legal := []string{"clerk"}, []string{"legal"}
		in := func(extra string) string {
			if extra == "" {
				return `{"taskId": "` + id + `"}`
			}
			return `{"taskId": "` + id + `", ` + extra + `}`
		}
		steps := []struct {
			action, reqID, user string
			roles               []string
			input               string
			status, code        string
			// task: gjson paths of the answer's task state and their values.
			task map[string]string
		}{
			{"ClaimTask", "k-claim", "cid", clerk, in(""), "SUCCESS", "", map[string]string{"claimedBy": "cid"}},
			{"ClaimTask", "k-claim-2", "carol", clerk, in(""), "FAIL", "TASK_CLAIMED", map[string]string{"claimedBy": "cid", "status": "WAITING"}},
			{"AssignTask", "k-assign", "cid", clerk, in(`"user": "carol"`), "SUCCESS", "", map[string]string{"claimedBy": "carol"}},
			{"AssignTask", "k-assign-2", "cid", clerk, in(`"user": "cid"`), "FAIL", "FORBIDDEN", nil},
			{"UnclaimTask", "k-unclaim", "carol", clerk, in(""), "SUCCESS", "", map[string]string{"claimedBy": ""}},
			{"ClaimTask", "k-claim-3", "carol", clerk, in(""), "SUCCESS", "", map[string]string{"claimedBy": "carol"}},
			{"CommentTask", "k-comment", "cid", clerk, in(`"text": "on it"`), "SUCCESS", "", nil},
			{"SetDeadline", "k-deadline-bad", "carol", clerk, in(`"timeout": "soon"`), "FAIL", "BAD_INPUT", nil},
			{"SetDeadline", "k-deadline", "carol", clerk, in(`"timeout": 600000`), "SUCCESS", "", nil},
			{"CompleteTask", "k-complete-bad", "carol", clerk, in(`"outcome": "maybe"`), "FAIL", "BAD_INPUT", nil},
			{"CompleteTask", "k-complete", "carol", clerk, in(`"outcome": "approve", "note": "ours", "data": {"v": 1}`), "SUCCESS", "",
				map[string]string{"status": "IN_APPROVAL", "completedBy": "carol", "outcome": "approve"}},
			{"ApproveTask", "k-self", "carol", []string{"clerk", "legal"}, in(""), "FAIL", "SELF_APPROVAL", map[string]string{"completedBy": "carol"}},
			{"ApproveTask", "k-approve", "lee", legal, in(`"note": "fine"`), "SUCCESS", "", map[string]string{"approvals.0.user": "lee"}},
			{"ApproveTask", "k-approve-2", "lee", legal, in(""), "FAIL", "ALREADY_APPROVED", map[string]string{"approvals.#": "1"}},
			{"RejectTask", "k-reject", "liz", legal, in(`"note": "not ours"`), "SUCCESS", "",
				map[string]string{"status": "WAITING", "claimedBy": "carol", "approvals.#": "0"}},
			{"CompleteTask", "k-complete-2", "carol", clerk, in(`"outcome": "reject", "note": "rework", "data": {"v": 2}`), "SUCCESS", "", nil},
			{"ApproveTask", "k-approve-3", "lee", legal, in(""), "SUCCESS", "", nil},
			{"ApproveTask", "k-approve-4", "liz", legal, in(""), "SUCCESS", "", map[string]string{"status": "COMPLETED", "outcome": "reject"}},
			{"CommentTask", "k-late", "carol", clerk, in(`"text": "late"`), "FAIL", "TASK_CLOSED", map[string]string{"status": "COMPLETED"}},
		}
		for _, st := range steps {
			n := len(r.history(t, id))
			reply := r.kafkaOp(t, st.action, st.reqID, st.user, st.roles, st.input)
			wantReply(t, st.reqID, reply, st.status, st.code)
			task := reply.Get("payload.task")
			if st.status == "FAIL" && st.code != "TASK_NOT_FOUND" && st.code != "FORBIDDEN" && st.code != "BAD_INPUT" {
				wantTaskState(t, st.reqID, task, st.task)
			} else {
				for k, v := range st.task {
					if got := task.Get(k).String(); got != v {
						t.Errorf("%s: task %s = %q, want %q (%s)", st.reqID, k, got, v, task.Raw)
					}
				}
			}
			if st.status == "FAIL" {
				if (st.code == "FORBIDDEN" || st.code == "TASK_NOT_FOUND") && task.Exists() {
					t.Errorf("%s: a %s refusal shows the task: %s", st.reqID, st.code, task.Raw)
				}
				r.unchanged(t, id, n)
			}
		}
		h := r.wantHistory(t, id, []string{
			"started||||",
			"claimed|cid||cid|",
			"assigned|cid|cid|carol|",
			"unclaimed|carol|carol||",
			"claimed|carol||carol|",
			"commented|cid|||",
			fmt.Sprintf("deadline|carol|%d|%d|", r.history(t, id)[0].Get("at").Int()+3600000, r.history(t, id)[6].Get("to").Int()),
			"completed|carol|||approve",
			"approved|lee|||",
			"rejected|liz||carol|",
			"completed|carol|||reject",
			"approved|lee|||",
			"approved|liz|||",
		})
		for i, e := range h[1:] {
			if e.Get("requestId").String() != steps[0].reqID && e.Get("requestId").String() == "" {
				t.Errorf("event %d has no request id: %s", i+1, e.Raw)
			}
		}

		// Replays: an operation that changed the task and one that
		// closed it answer with the first result and change nothing.
		for _, st := range []struct{ action, reqID, user string }{{"ApproveTask", "k-approve", "lee"}, {"ApproveTask", "k-approve-4", "liz"}, {"ClaimTask", "k-claim", "cid"}} {
			first := r.replies(st.reqID)[0]
			again := r.kafkaOp(t, st.action, st.reqID, st.user, legal, in(""))
			wantReply(t, "replay of "+st.reqID, again, first.Get("result.status").String(), first.Get("result.code").String())
			// A replay answers where the task stands now: the same as
			// the first answer for the closing one, which ended it.
			if st.reqID == "k-approve-4" && again.Get("payload.task").Raw != first.Get("payload.task").Raw {
				t.Errorf("replay of %s answers %s, first %s", st.reqID, again.Get("payload.task").Raw, first.Get("payload.task").Raw)
			}
			r.unchanged(t, id, len(h))
		}

		// An operation on a task that never started is kept for
		// tasks.earlyTTL (short here) in case the task starts, and then
		// refused: a FAIL answer or an EARLY_EXPIRED dead letter.
		produce(t, r.kafka, &kgo.Record{Topic: requestTopic, Key: []byte("k-unknown"), Value: mustJSON(t, map[string]any{
			"requestMeta": map[string]any{"requestId": "k-unknown", "replyTo": lcReplies, "user": "carol", "roles": clerk},
			"eventMeta":   map[string]any{"action": "ClaimTask", "domain": "workflow", "inputElement": "parameters", "outputElement": "task"},
			"payload":     map[string]any{"parameters": map[string]any{"taskId": "lc-none"}},
		})})
		testutil.Eventually(t, waitLong, poll, func() error {
			if rs := r.replies("k-unknown"); len(rs) > 0 {
				if code := rs[0].Get("result.code").String(); rs[0].Get("result.status").String() != "FAIL" || (code != "TASK_NOT_FOUND" && code != "EARLY_EXPIRED") {
					t.Fatalf("an operation on an unknown task answers %s", rs[0].Get("result").Raw)
				}
				return nil
			}
			for _, rec := range r.out.records(deadLetterTopic) {
				if v := gjson.ParseBytes(rec.Value); v.Get("requestId").String() == "k-unknown" {
					if v.Get("code").String() != "EARLY_EXPIRED" {
						t.Fatalf("an operation on an unknown task dead-lettered: %s", rec.Value)
					}
					return nil
				}
			}
			return fmt.Errorf("an operation on an unknown task is neither answered nor dead-lettered")
		})

		// The closing approval's notification, published once more by
		// the replay with the same content, and the saga routed on the
		// outcome of the approved completion, with its data.
		notes := r.out.byKey(notificationTopic, id)
		if len(notes) == 0 {
			t.Fatalf("no notification of %s", id)
		}
		for _, rec := range notes[1:] {
			if string(rec.Value) != string(notes[0].Value) {
				t.Errorf("notifications of %s differ:\n%s\n%s", id, notes[0].Value, rec.Value)
			}
		}
		n := gjson.ParseBytes(notes[0].Value)
		if n.Get("outcome").String() != "reject" || n.Get("note").String() != "rework" || n.Get("claimedBy").String() != "carol" ||
			n.Get("approvals.#").Int() != 2 || n.Get("data.v").Int() != 2 {
			t.Errorf("notification: %s", n.Raw)
		}
		testutil.Eventually(t, waitLong, poll, func() error {
			for _, rec := range r.out.records(lcRework) {
				if gjson.GetBytes(rec.Value, "id").String() == id {
					return nil
				}
			}
			return fmt.Errorf("%s not routed to %s", id, lcRework)
		})
	})

	t.Run("cancel and a deadline in the past as direct actions on Kafka", func(t *testing.T) {
		r.start(t, "lc-5")
		r.start(t, "lc-6")
		wantReply(t, "a cancel by a clerk", r.kafkaOp(t, "CancelTask", "k5-cancel-1", "cid", []string{"clerk"}, `{"taskId": "lc-5", "reason": "mine"}`), "FAIL", "FORBIDDEN")
		reply := r.kafkaOp(t, "CancelTask", "k5-cancel", "root", []string{"admin"}, `{"taskId": "lc-5", "reason": "withdrawn"}`)
		wantReply(t, "a cancel by an admin", reply, "SUCCESS", "")
		if reply.Get("payload.task.status").String() != "CANCELLED" {
			t.Fatalf("cancel: %s", reply.Raw)
		}
		reply = r.kafkaOp(t, "CancelTask", "k5-cancel-2", "", nil, `{"taskId": "lc-5"}`)
		wantReply(t, "a cancel of a cancelled task", reply, "FAIL", "TASK_CLOSED")
		wantTaskState(t, "a cancel of a cancelled task", reply.Get("payload.task"), map[string]string{"status": "CANCELLED"})
		r.wantHistory(t, "lc-5", []string{"started||||", "cancelled|root|||"})

		wantReply(t, "a deadline without a time", r.kafkaOp(t, "SetDeadline", "k6-deadline-1", "", nil, `{"taskId": "lc-6"}`), "FAIL", "BAD_INPUT")
		wantReply(t, "a deadline in the past", r.kafkaOp(t, "SetDeadline", "k6-deadline", "", nil, `{"taskId": "lc-6", "timeoutOn": 1}`), "SUCCESS", "")
		waitTask(t, r.base, tokAdmin, "workflow", "lc-6", "TIMEOUT")
		if n := gjson.ParseBytes(r.out.waitFor(t, notificationTopic, "lc-6", nil).Value); n.Get("status").String() != "TIMEOUT" {
			t.Errorf("notification: %s", n.Raw)
		}
		h := r.history(t, "lc-6")
		if got := eventLines(h); len(got) != 3 || got[1] != fmt.Sprintf("deadline||%d|1|", h[0].Get("at").Int()+3600000) || got[2] != "timedout||||" {
			t.Fatalf("history of lc-6: %v", got)
		}
	})
}
