package saga_test

import (
	"testing"
	"time"

	"github.com/sagarunner/sagarunner/actions"
	"github.com/sagarunner/sagarunner/saga"
	"github.com/sagarunner/sagarunner/saga/envelope"
)

// A ProceedTask on Kafka before its task starts is kept, answers nothing,
// and resumes the saga once the task starts, exactly as a proceed after
// the start would: one continuation, one notification, one answer.
func TestEarlyProceedResumesOnStart(t *testing.T) {
	h := newHarness(t, approvalSaga)
	early := h.drive(requestTopic, "", closeRequest("ProceedTask", "early-1", "alice", "p1", "admin"))
	if len(early.records) != 0 {
		t.Fatalf("the early proceed produced %s; want nothing until its task starts", early)
	}
	res := h.drive("job-posts", "", `{"productId": "p1", "brief": "summer vibes"}`)
	if res.started != 1 {
		t.Fatalf("started %d", res.started)
	}
	if got := get(res.one(t, "job-posts-approved"), "by").String(); got != "alice" {
		t.Errorf("published by %q, want alice: the saga resumed with the early answer", got)
	}
	res.one(t, notifyTopic)
	if r := res.one(t, replyTopic); get(r, "result.status").String() != envelope.StatusSuccess || get(r, "requestMeta.requestId").String() != "early-1" {
		t.Errorf("answer %s", r.Value)
	}
	// Applied and acked: a replayed start finds nothing left to apply.
	again := h.drive("job-posts", "", `{"productId": "p1", "brief": "summer vibes"}`)
	if len(again.on(notifyTopic)) != 0 || len(again.on(replyTopic)) != 0 {
		t.Errorf("a replayed start applied the early answer again: %s", again)
	}
}

// An early answer whose task never starts is dead-lettered EARLY_EXPIRED
// with the original record's coordinates and value, answered FAIL on its
// replyTo, and gone once that is acked.
func TestEarlyAnswerExpires(t *testing.T) {
	h := newHarness(t, approvalSaga)
	value := closeRequest("ProceedTask", "early-2", "alice", "never", "admin")
	h.offset = 41
	if res := h.drive(requestTopic, "k-2", value); len(res.records) != 0 {
		t.Fatalf("parked operation produced %s", res)
	}
	expire := func() (saga.Output, int) {
		var all saga.Output
		n := 0
		for shard := range testShards {
			out, k, err := h.eng.ExpireEarly(h.ctx, "workflow", shard, 100)
			if err != nil {
				t.Fatal(err)
			}
			if err := h.eng.Ack(h.ctx, out.Acks); err != nil {
				t.Fatal(err)
			}
			all.Append(out)
			n += k
		}
		return all, n
	}
	if _, n := expire(); n != 0 {
		t.Fatalf("%d expired before their time", n)
	}
	h.clock.Advance(11 * time.Minute)
	out, n := expire()
	if n != 1 || out.DeadLetters != 1 || out.DeadLetterCodes.Get(saga.DeadEarlyExpired) != 1 {
		t.Fatalf("expired %d, dead letters %d %v", n, out.DeadLetters, out.DeadLetterCodes)
	}
	res := result{records: out.Records}
	dl := res.one(t, deadTopic)
	if get(dl, "code").String() != actions.CodeEarlyExpired || get(dl, "topic").String() != requestTopic ||
		get(dl, "offset").Int() != 42 || string(dl.Key) != "k-2" || get(dl, "value.requestMeta.requestId").String() != "early-2" {
		t.Errorf("dead letter %s (key %q)", dl.Value, dl.Key)
	}
	if r := res.one(t, replyTopic); get(r, "result.code").String() != actions.CodeEarlyExpired {
		t.Errorf("answer %s", r.Value)
	}
	if _, n := expire(); n != 0 {
		t.Errorf("expired again after the ack: %d", n)
	}
	// The task starting now finds nothing waiting.
	if res := h.drive("job-posts", "", `{"productId": "never"}`); len(res.records) != 0 {
		t.Errorf("start after expiry produced %s", res)
	}
}
