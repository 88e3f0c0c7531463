package saga_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/sagarunner/sagarunner/actions"
	"github.com/sagarunner/sagarunner/internal/redistest"
	"github.com/sagarunner/sagarunner/saga"
	"github.com/sagarunner/sagarunner/saga/envelope"
	"github.com/sagarunner/sagarunner/statemanager"
)

// handle runs one record through Handle without following continuations.
func (h *harness) handle(topic, key, value string, headers ...envelope.Header) saga.Output {
	h.t.Helper()
	h.offset++
	out, err := h.eng.Handle(h.ctx, saga.Record{Topic: topic, Partition: 1, Offset: h.offset, Key: []byte(key), Value: []byte(value), Headers: headers})
	if err != nil {
		h.t.Fatalf("Handle: %v", err)
	}
	return out
}

// onlyDeadLetter checks that out is one dead letter with code and nothing
// else: no record, no close.
func onlyDeadLetter(t *testing.T, out saga.Output, code string) saga.DeadLetter {
	t.Helper()
	if len(out.Records) != 1 || out.Records[0].Topic != deadTopic || len(out.Acks) != 0 || out.Started != 0 || out.DeadLetters != 1 {
		t.Fatalf("output %s (acks %v, started %d, dead %d), want one dead letter and nothing else",
			result{records: out.Records}, out.Acks, out.Started, out.DeadLetters)
	}
	var d saga.DeadLetter
	if err := json.Unmarshal(out.Records[0].Value, &d); err != nil {
		t.Fatalf("dead letter %s: %v", out.Records[0].Value, err)
	}
	if d.Code != code {
		t.Fatalf("dead letter code %s (%s), want %s", d.Code, d.Error, code)
	}
	return d
}

func TestContinuationsMustBeSigned(t *testing.T) {
	h := newHarness(t, approvalSaga)
	h.drive("job-posts", "", `{"productId": "p1"}`)
	// What a caller with write access to the request topic would send to
	// push the instance past its approval while the task still waits.
	forged := `{"requestMeta": {"requestId": "gen-1"}, "sagaMeta": {"saga": "job_post_approval", "version": 1, "stepId": "approve"},
		"payload": {"parameters": {"productId": "p1"}, "decision": {"user": "mallory"}}, "result": {"status": "SUCCESS"}}`
	other := strings.Replace(forged, "mallory", "alice", 1)
	tests := []struct {
		name    string
		headers []envelope.Header
	}{
		{"no signature", nil},
		{"signed with another key", []envelope.Header{{Key: saga.SignatureHeader, Value: []byte(strings.Repeat("ab", 32))}}},
		{"signature of another value", signed("gen-1", other)},
		{"signature under another record key", signed("gen-2", forged)},
		{"empty signature", []envelope.Header{{Key: saga.SignatureHeader}}},
		{"a valid signature and a second one", append(signed("gen-1", forged), envelope.Header{Key: saga.SignatureHeader, Value: []byte("x")})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := onlyDeadLetter(t, h.handle(requestTopic, "gen-1", forged, tc.headers...), saga.DeadForged)
			if d.Saga != "job_post_approval" || d.StepID != "approve" || d.RequestID != "gen-1" {
				t.Errorf("dead letter = %+v", d)
			}
			if got := h.mustTask("workflow", "p1"); got.Status != statemanager.StatusWaiting {
				t.Errorf("a forged continuation changed the task: %+v", got)
			}
		})
	}
	t.Run("signed by the runners", func(t *testing.T) {
		out := h.handle(requestTopic, "gen-1", forged, signed("gen-1", forged)...)
		res := result{records: out.Records}
		jsonEq(t, "published", string(res.one(t, "job-posts-approved").Value), `{"id": "p1", "by": "mallory"}`)
	})
}

func TestEveryContinuationIsSigned(t *testing.T) {
	h := newHarness(t, approvalSaga)
	h.drive("job-posts", "", `{"productId": "p1"}`)
	h.drive("job-posts", "", `{"productId": "p2"}`)
	wantSigned := func(t *testing.T, what string, out saga.Output) {
		t.Helper()
		n := 0
		for _, r := range out.Records {
			if r.Topic != requestTopic {
				continue
			}
			n++
			want := signed(string(r.Key), string(r.Value))
			if len(r.Headers) != 1 || r.Headers[0].Key != want[0].Key || string(r.Headers[0].Value) != string(want[0].Value) {
				t.Errorf("%s: continuation headers %q, want %q", what, r.Headers, want)
			}
		}
		if n != 1 {
			t.Fatalf("%s: %d continuations, want 1: %s", what, n, result{records: out.Records})
		}
	}
	proceed := h.handle(requestTopic, "r", closeRequest("ProceedTask", "r", "alice", "p1", "admin"))
	wantSigned(t, "proceed", proceed)
	if proceed.Closed[statemanager.StatusCompleted] != 1 || len(proceed.Closed) != 1 {
		t.Errorf("proceed counted closes %v", proceed.Closed)
	}

	store, _ := h.stores.Store("workflow")
	h.clock.Advance(time.Minute)
	fired, n, err := h.eng.FireDue(h.ctx, "workflow", store.ShardOf("p2"), 10)
	if err != nil || n != 1 {
		t.Fatalf("FireDue = %d, %v", n, err)
	}
	wantSigned(t, "timeout", fired)
	if fired.Closed[statemanager.StatusTimeout] != 1 || len(fired.Closed) != 1 {
		t.Errorf("firing counted closes %v", fired.Closed)
	}
	recovered, err := h.eng.Recover(h.ctx, "workflow", store.ShardOf("p1"), clockMillis(h), 10)
	if err != nil {
		t.Fatal(err)
	}
	wantSigned(t, "recover", recovered)
}

func TestHops(t *testing.T) {
	h := newHarness(t, approvalSaga+`---
saga: echo
trigger: {topic: echo}
steps:
  - {id: out, action: Publish, parameters: {topic: echo-out}, next: {SUCCESS: shaped}}
  - {id: shaped, action: Publish, parameters: {topic: echo-out, pattern: parameters}}
`)
	req := func(hops int) string {
		return fmt.Sprintf(`{"requestMeta": {"requestId": "h%d", "replyTo": %q, "hops": %d}, "payload": {"parameters": {"productId": "h%d"}}}`, hops, replyTopic, hops, hops)
	}
	t.Run("one below the limit runs, its reply one hop further", func(t *testing.T) {
		res := result{records: h.handle("job-posts", "h31", req(31)).Records}
		reply := res.one(t, replyTopic)
		if get(reply, "requestMeta.hops").Int() != 32 || string(reply.Headers[0].Value) != "32" {
			t.Errorf("reply hops %s, headers %q; want 32", get(reply, "requestMeta.hops").Raw, reply.Headers)
		}
		if _, err := h.task("workflow", "h31"); err != nil {
			t.Errorf("task not started: %v", err)
		}
	})
	t.Run("at the limit dead-lettered before anything runs", func(t *testing.T) {
		onlyDeadLetter(t, h.handle("job-posts", "h32", req(32)), saga.DeadMaxHops)
		if _, err := h.task("workflow", "h32"); !isNotFound(err) {
			t.Errorf("task h32: %v, want not found", err)
		}
	})
	t.Run("the header counts for records without an envelope", func(t *testing.T) {
		onlyDeadLetter(t, h.handle("job-posts", "b", `{"productId": "b"}`, envelope.Header{Key: actions.HopsHeader, Value: []byte("40")}), saga.DeadMaxHops)
	})
	t.Run("a continuation keeps the instance's count", func(t *testing.T) {
		h.handle("job-posts", "h5", req(5))
		out := h.handle(requestTopic, "r5", closeRequest("ProceedTask", "r5", "alice", "h5", "admin"))
		cont := result{records: out.Records}.one(t, requestTopic)
		if got := get(cont, "requestMeta.hops").Int(); got != 5 {
			t.Errorf("continuation hops %d, want 5", got)
		}
	})
	t.Run("published records are one hop further", func(t *testing.T) {
		res := result{records: h.handle("echo", "e", `{"requestMeta": {"requestId": "e", "hops": 3}, "payload": {"parameters": {"n": 1}}}`).Records}
		pub := res.on("echo-out")
		if len(pub) != 2 {
			t.Fatalf("published %s", res)
		}
		if get(pub[0], "requestMeta.hops").Int() != 4 {
			t.Errorf("published envelope hops %s, want 4", get(pub[0], "requestMeta.hops").Raw)
		}
		for _, p := range pub {
			if len(p.Headers) != 1 || p.Headers[0].Key != actions.HopsHeader || string(p.Headers[0].Value) != "4" {
				t.Errorf("published headers %q, want hops 4", p.Headers)
			}
		}
	})
}

// TestLoopEndsAtMaxHops: a saga publishing its own input back to its
// trigger topic would run for ever; the hop count ends it.
func TestLoopEndsAtMaxHops(t *testing.T) {
	h := newHarness(t, `
saga: loop
trigger: {topic: spin}
steps:
  - {id: again, action: Publish, parameters: {topic: spin, pattern: parameters}}
`)
	rec := saga.Record{Topic: "spin", Key: []byte("k"), Value: []byte(`{"n": 1}`)}
	for i := 0; ; i++ {
		if i > saga.DefaultMaxHops {
			t.Fatalf("still looping after %d records", i)
		}
		out, err := h.eng.Handle(h.ctx, rec)
		if err != nil {
			t.Fatal(err)
		}
		if out.DeadLetters == 1 {
			d := onlyDeadLetter(t, out, saga.DeadMaxHops)
			if i != saga.DefaultMaxHops {
				t.Errorf("dead-lettered after %d records, want %d: %s", i, saga.DefaultMaxHops, d.Error)
			}
			return
		}
		next := out.Records[0]
		rec = saga.Record{Topic: next.Topic, Key: next.Key, Value: next.Value, Headers: next.Headers}
	}
}

func TestBadReplyTo(t *testing.T) {
	h := newHarness(t, approvalSaga)
	tests := []struct {
		name, topic, replyTo, reason string
	}{
		{"not a topic name", "job-posts", "job posts", "only letters"},
		{"too long", "job-posts", strings.Repeat("r", 250), "not a valid topic name"},
		{"dot-dot", "job-posts", "..", "not a valid topic name"},
		{"the request topic", "job-posts", requestTopic, "the runner's request topic"},
		{"the notification topic", "job-posts", notifyTopic, "the runner's notification topic"},
		{"the dead-letter topic", "job-posts", deadTopic, "the runner's dead-letter topic"},
		{"the trigger topic it came from", "job-posts", "job-posts", "the topic the record came from"},
		{"a direct action answering its own topic", requestTopic, requestTopic, "the runner's request topic"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := fmt.Sprintf("b%d", i)
			v := fmt.Sprintf(`{"requestMeta": {"requestId": %q, "replyTo": %q}, "payload": {"parameters": {"productId": %q}}}`, id, tc.replyTo, id)
			if tc.topic == requestTopic {
				v = strings.Replace(closeRequest("TimeoutTask", id, "", "p1"), `"replyTo":"responses"`, fmt.Sprintf(`"replyTo":%q`, tc.replyTo), 1)
			}
			d := onlyDeadLetter(t, h.handle(tc.topic, id, v), saga.DeadBadReplyTo)
			if !strings.Contains(d.Error, tc.reason) || d.Topic != tc.topic {
				t.Errorf("dead letter %+v, want a reason saying %q", d, tc.reason)
			}
			if _, err := h.task("workflow", id); !isNotFound(err) {
				t.Errorf("task %s: %v, want none started", id, err)
			}
		})
	}
}

func TestPublishToOwnTopicsRefused(t *testing.T) {
	_, client := redistest.Start(t)
	stores := statemanager.NewResolver(client, statemanager.RedisConfig{Shards: testShards}, nil)
	cfg := saga.Config{Topics: actions.Topics{Continuations: requestTopic, Notifications: notifyTopic}, DeadLetter: deadTopic, Stores: stores}

	t.Run("at load, every step at once with its line", func(t *testing.T) {
		set, err := saga.LoadBytes(actions.Default, "own.yaml", []byte(`
saga: own
trigger: {topic: own}
steps:
  - {id: a, action: Publish, parameters: {topic: requests}, next: {SUCCESS: b}}
  - {id: b, action: Publish, parameters: {topic: notifications}, next: {SUCCESS: c}}
  - {id: c, action: Publish, parameters: {topic: dead}, next: {SUCCESS: d}}
  - {id: d, action: Publish, parameters: {topic: fine}}
`))
		if err != nil {
			t.Fatalf("load: %v", err)
		}
		_, err = saga.NewEngine(set, cfg)
		if err == nil {
			t.Fatal("NewEngine accepted Publish steps to the runner's own topics")
		}
		for _, want := range []string{`own.yaml:5: saga "own" step "a"`, "request topic", `own.yaml:6:`, "notification topic", `own.yaml:7:`, "dead-letter topic"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %q", err, want)
			}
		}
		if strings.Contains(err.Error(), `step "d"`) {
			t.Errorf("error names the allowed step: %v", err)
		}
	})
	t.Run("a topic that is no topic name fails the load", func(t *testing.T) {
		_, err := saga.LoadBytes(actions.Default, "bad.yaml", []byte("saga: bad\ntrigger: {topic: bad}\nsteps:\n  - {id: a, action: Publish, parameters: {topic: \"no such/topic\"}}\n"))
		if err == nil || !strings.Contains(err.Error(), "bad.yaml:4") || !strings.Contains(err.Error(), "only letters") {
			t.Errorf("load error = %v", err)
		}
	})
	t.Run("at run time, a direct Publish", func(t *testing.T) {
		h := newHarness(t, "")
		for _, topic := range []string{requestTopic, notifyTopic, deadTopic} {
			d := onlyDeadLetter(t, h.handle(requestTopic, "k", fmt.Sprintf(`{"eventMeta": {"action": "Publish", "parameters": {"topic": %q}}}`, topic)), actions.CodeReservedTopic)
			if !strings.Contains(d.Error, topic) {
				t.Errorf("reason %q does not name %s", d.Error, topic)
			}
		}
	})
}

func TestDirectDomainChecked(t *testing.T) {
	h := newHarness(t, "")
	for _, tc := range []struct{ name, domain, reason string }{
		{"braces", "a{b}", "only letters"},
		{"too long", strings.Repeat("d", 65), "1 to 64 characters"},
		{"hostile size", strings.Repeat("d", 300_000), "1 to 64 characters"},
		{"a space", "work flow", "only letters"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := strings.Replace(closeRequest("ProceedTask", "r", "alice", "p1"), `"domain":"workflow"`, fmt.Sprintf(`"domain":%q`, tc.domain), 1)
			out := h.handle(requestTopic, "r", v)
			d := onlyDeadLetter(t, out, saga.DeadBadConfig)
			if !strings.Contains(d.Error, tc.reason) || len(d.Error) > 300 {
				t.Errorf("reason %.400q, want a short one saying %q", d.Error, tc.reason)
			}
		})
	}
}

func TestDeadLetterCutToFit(t *testing.T) {
	const max = 1_000_000
	big := func(n int, c string) []byte { return []byte(`{"brief": "` + strings.Repeat(c, n) + `"}`) }
	invalid := make([]byte, 900_000)
	for i := range invalid {
		invalid[i] = 0xff
	}
	tests := []struct {
		name      string
		value     []byte
		reason    string
		max       int
		truncated bool
	}{
		{"small JSON kept as it is", []byte(`{"a": 1}`), "r", max, false},
		{"small invalid UTF-8 kept as a string", []byte("a\xffb"), "r", max, false},
		{"900 KB of invalid UTF-8 escapes six-fold", invalid, "r", max, true},
		{"2 MB of JSON", big(2_000_000, "x"), "r", max, true},
		{"2 MB of HTML characters escape six-fold", big(2_000_000, "<"), "r", max, true},
		{"multi-byte runes cut on a boundary", big(700_000, "é"), "r", max, true},
		{"a 300 KB reason and a tiny limit", big(10_000, "x"), strings.Repeat("why ", 75_000), 4096, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := saga.Record{Topic: "job-posts", Partition: 7, Offset: 123456, Key: []byte("the-key"), Value: tc.value}
			env := &envelope.Envelope{RequestMeta: envelope.RequestMeta{RequestID: "r-1"}, SagaMeta: envelope.SagaMeta{Saga: "s", StepID: "st"}}
			d := saga.NewDeadLetter(src, env, saga.DeadTooLarge, tc.reason)
			d.Target = "job-posts-approved"
			rec := d.Record(deadTopic, tc.max)
			if size := len(rec.Key) + len(rec.Value); size > tc.max {
				t.Fatalf("dead letter is %d bytes, limit %d", size, tc.max)
			}
			if !json.Valid(rec.Value) || !utf8.Valid(rec.Value) {
				t.Fatalf("dead letter is not valid UTF-8 JSON: %.200s", rec.Value)
			}
			var got saga.DeadLetter
			if err := json.Unmarshal(rec.Value, &got); err != nil {
				t.Fatal(err)
			}
			if rec.Topic != deadTopic || string(rec.Key) != "the-key" || got.Topic != "job-posts" || got.Partition != 7 || got.Offset != 123456 ||
				got.Code != saga.DeadTooLarge || got.Saga != "s" || got.StepID != "st" || got.RequestID != "r-1" || got.Target != "job-posts-approved" {
				t.Errorf("coordinates lost: %+v", got)
			}
			if got.Truncated != tc.truncated {
				t.Fatalf("truncated = %v, want %v", got.Truncated, tc.truncated)
			}
			if !tc.truncated {
				if got.Size != 0 {
					t.Errorf("size %d on a whole value", got.Size)
				}
				return
			}
			var kept string
			if err := json.Unmarshal(got.Value, &kept); err != nil {
				t.Fatalf("truncated value is not a string: %.100s", got.Value)
			}
			// The prefix as a JSON reader sees the original: each invalid
			// byte one U+FFFD.
			if whole := string([]rune(string(tc.value))); got.Size != len(tc.value) || !strings.HasPrefix(whole, kept) {
				t.Errorf("size %d (want %d), kept %.40q is no prefix of the original", got.Size, len(tc.value), kept)
			}
			// Cut to fit, not to nothing.
			if len(rec.Value) < tc.max*9/10 {
				t.Errorf("dead letter of %d bytes uses less than 90%% of %d", len(rec.Value), tc.max)
			}
		})
	}
}

func TestHandleCutsDeadLettersToFit(t *testing.T) {
	h := newHarness(t, approvalSaga)
	invalid := strings.Repeat("\xff", 900_000)
	for _, tc := range []struct{ name, value string }{
		{"900 KB of invalid UTF-8", invalid},
		{"2 MB that is not JSON", strings.Repeat("not json ", 230_000)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := h.handle(requestTopic, "k", tc.value)
			d := onlyDeadLetter(t, out, saga.DeadUndecodable)
			if n := len(out.Records[0].Key) + len(out.Records[0].Value); n > saga.DefaultMaxRecordBytes {
				t.Errorf("dead letter of %d bytes", n)
			}
			if !d.Truncated || d.Size != len(tc.value) || d.Topic != requestTopic || d.Offset != h.offset || d.Partition != 1 {
				t.Errorf("dead letter %+v", d)
			}
		})
	}
}

// TestOversizedOutputDeadLettered: an output the producer would refuse is
// replaced by a dead letter naming it; the rest of the output goes out.
func TestOversizedOutputDeadLettered(t *testing.T) {
	_, client := redistest.Start(t)
	h := newHarnessWith(t, client, approvalSaga, func(c *saga.Config) { c.MaxRecordBytes = 8192 })
	brief := strings.Repeat("b", 10_000)
	out := h.handle("job-posts", "big", `{"requestMeta": {"requestId": "big", "replyTo": "responses"}, "payload": {"parameters": {"productId": "big", "brief": "`+brief+`"}}}`)
	if len(out.Records) != 1 || out.Records[0].Topic != deadTopic || out.Started != 1 {
		t.Fatalf("start output: %d records, started %d; want the task started and its reply dead-lettered", len(out.Records), out.Started)
	}
	var d saga.DeadLetter
	if err := json.Unmarshal(out.Records[0].Value, &d); err != nil {
		t.Fatal(err)
	}
	if d.Code != saga.DeadTooLarge || d.Target != replyTopic || !d.Truncated || len(out.Records[0].Value) > 8192 {
		t.Errorf("dead letter %+v, want the reply named as target", d)
	}
	if got := h.mustTask("workflow", "big"); got.Status != statemanager.StatusWaiting {
		t.Errorf("task %+v", got)
	}

	// The task's continuation is as large: at its deadline it is
	// dead-lettered with the task named, and the notification still goes.
	h.clock.Advance(time.Minute)
	store, _ := h.stores.Store("workflow")
	fired, n, err := h.eng.FireDue(h.ctx, "workflow", store.ShardOf("big"), 10)
	if err != nil || n != 1 || len(fired.Acks) != 1 {
		t.Fatalf("FireDue = %d, %v, acks %v", n, err, fired.Acks)
	}
	res := result{records: fired.Records}
	var td saga.DeadLetter
	if err := json.Unmarshal(res.one(t, deadTopic).Value, &td); err != nil {
		t.Fatal(err)
	}
	if td.Code != saga.DeadTooLarge || td.Target != requestTopic || td.Domain != "workflow" || td.TaskID != "big" {
		t.Errorf("dead letter %+v", td)
	}
	if res.one(t, notifyTopic); fired.DeadLetters != 1 || fired.Closed[statemanager.StatusTimeout] != 1 {
		t.Errorf("counters: dead %d, closed %v", fired.DeadLetters, fired.Closed)
	}
}

// TestCorruptTaskAtFiring: a task whose stored envelope cannot be read is
// dead-lettered and acked at its deadline; its shard's other tasks fire in
// the same call.
func TestCorruptTaskAtFiring(t *testing.T) {
	h := newHarness(t, approvalSaga)
	store, _ := h.stores.Store("workflow")
	// Healthy tasks until two share the corrupt one's shard.
	const corrupt = "broken"
	shard := store.ShardOf(corrupt)
	var healthy []string
	for i := 0; len(healthy) < 2; i++ {
		id := fmt.Sprintf("p%d", i)
		h.drive("job-posts", "", fmt.Sprintf(`{"productId": %q}`, id))
		if store.ShardOf(id) == shard {
			healthy = append(healthy, id)
		}
	}
	if _, _, err := store.Start(h.ctx, &statemanager.Task{ID: corrupt, Domain: "workflow", Saga: "job_post_approval", StepID: "approve",
		RequestID: "r-broken", StartKey: "k", StartedAt: start.UnixMilli(), Deadline: start.UnixMilli() + 1000,
		Envelope: []byte(`{"requestMeta": `)}); err != nil {
		t.Fatalf("store corrupt task: %v", err)
	}

	h.clock.Advance(time.Minute)
	out, n, err := h.eng.FireDue(h.ctx, "workflow", shard, 100)
	if err != nil {
		t.Fatalf("FireDue: %v", err)
	}
	if n != len(healthy)+1 || len(out.Acks) != n {
		t.Fatalf("fired %d with %d acks, want %d", n, len(out.Acks), len(healthy)+1)
	}
	res := result{records: out.Records}
	var d saga.DeadLetter
	if err := json.Unmarshal(res.one(t, deadTopic).Value, &d); err != nil {
		t.Fatal(err)
	}
	if d.Code != saga.DeadCorruptTask || d.Domain != "workflow" || d.TaskID != corrupt || d.RequestID != "r-broken" ||
		string(d.Value) != `"{\"requestMeta\": "` || !strings.Contains(d.Error, "stored envelope") {
		t.Errorf("dead letter %+v (value %s)", d, d.Value)
	}
	// Every task notified, healthy ones continued.
	if len(res.on(notifyTopic)) != n || len(res.on(requestTopic)) != len(healthy) || out.DeadLetters != 1 {
		t.Errorf("records %s", res)
	}
	if err := h.eng.Ack(h.ctx, out.Acks); err != nil {
		t.Fatal(err)
	}
	if again, n, err := h.eng.FireDue(h.ctx, "workflow", shard, 100); err != nil || n != 0 || len(again.Records) != 0 {
		t.Errorf("second firing: %d, %v, %s", n, err, result{records: again.Records})
	}
	if pending, err := h.eng.Recover(h.ctx, "workflow", shard, clockMillis(h), 100); err != nil || len(pending.Records) != 0 {
		t.Errorf("Recover after ack: %s, %v", result{records: pending.Records}, err)
	}
}

func TestAdminRolesReachActions(t *testing.T) {
	reg := actions.NewRegistry()
	var seen []string
	reg.Register(&actions.Spec{Name: "Peek", New: func(actions.Config) (actions.Action, error) {
		return peek(func(x *actions.Exec) { seen = x.AdminRoles }), nil
	}})
	eng, err := saga.NewEngine(nil, saga.Config{Topics: actions.Topics{Continuations: requestTopic}, Registry: reg, AdminRoles: []string{"ops"},
		Stores: statemanager.NewResolver(nil, statemanager.RedisConfig{}, nil)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := eng.Handle(context.Background(), saga.Record{Topic: requestTopic, Value: []byte(`{"eventMeta": {"action": "Peek"}}`)}); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 1 || seen[0] != "ops" {
		t.Errorf("action saw admin roles %v", seen)
	}
}

type peek func(*actions.Exec)

func (p peek) Execute(_ context.Context, x *actions.Exec, env *envelope.Envelope) (actions.Outcome, error) {
	p(x)
	env.Succeed()
	return actions.Outcome{Env: env}, nil
}

func TestConfigValidate(t *testing.T) {
	stores := statemanager.NewResolver(nil, statemanager.RedisConfig{}, nil)
	for _, tc := range []struct {
		name string
		cfg  saga.Config
		want string
	}{
		{"dead letters on the request topic", saga.Config{Topics: actions.Topics{Continuations: "r"}, DeadLetter: "r", Stores: stores}, "both"},
		{"a topic that is no name", saga.Config{Topics: actions.Topics{Continuations: "r r"}, Stores: stores}, "Topics.Continuations"},
		{"no room for a dead letter", saga.Config{Topics: actions.Topics{Continuations: "r"}, Stores: stores, MaxRecordBytes: 100}, "MaxRecordBytes"},
		{"negative hops", saga.Config{Topics: actions.Topics{Continuations: "r"}, Stores: stores, MaxHops: -1}, "MaxHops"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate() = %v, want an error about %s", err, tc.want)
			}
		})
	}
	cfg := saga.Config{Topics: actions.Topics{Continuations: "r"}, Stores: stores}
	if err := cfg.Validate(); err != nil || cfg.MaxHops != saga.DefaultMaxHops || cfg.MaxRecordBytes != saga.DefaultMaxRecordBytes {
		t.Errorf("defaults: %v, %+v", err, cfg)
	}
}
