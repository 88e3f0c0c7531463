package test

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/tidwall/gjson"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sagarunner/sagarunner/actions"
	"github.com/sagarunner/sagarunner/internal/redistest"
	"github.com/sagarunner/sagarunner/internal/testutil"
	"github.com/sagarunner/sagarunner/statemanager"
)

const earlyReplies = "early-replies"

// earlyProceed is a direct ProceedTask an external system publishes for
// task id, answered on earlyReplies.
func earlyProceed(reqID, id string) *kgo.Record {
	v := fmt.Sprintf(`{"requestMeta": {"requestId": %q, "replyTo": %q},
		"eventMeta": {"action": "ProceedTask", "domain": "workflow", "inputElement": "parameters", "parameters": {"enrichPath": "decision"}},
		"payload": {"parameters": {"taskId": %q, "user": "alice"}}}`, reqID, earlyReplies, id)
	return &kgo.Record{Topic: requestTopic, Key: []byte(reqID), Value: []byte(v)}
}

// TestEarlyAnswers is SPEC §12 "Early answers" on the real binary: a
// ProceedTask produced before the trigger of the saga whose task it
// answers waits, and the saga resumes on it once when the task starts; one
// whose task never starts is dead-lettered EARLY_EXPIRED (and answered)
// after tasks.earlyTTL; over HTTP an unknown task is 404 and nothing waits.
func TestEarlyAnswers(t *testing.T) {
	bin := runnerBinary(t)
	redisAddr, _ := redistest.Start(t)
	cluster := newCluster(t)
	brokers := cluster.ListenAddrs()
	createTopics(t, brokers, "quick-posts", "quick-posts-approved", earlyReplies, requestTopic, notificationTopic, deadLetterTopic)
	out := readTopics(t, brokers, "quick-posts-approved", earlyReplies, notificationTopic, deadLetterTopic)
	cl := newClient(t, brokers)
	sagas := sagaDir(t)
	store := storeOf(t, newConfig(t, brokers, redisAddr, sagas), "workflow")
	early := store.(statemanager.EarlyAnswers)
	proc := newRunnerProcess(t, bin, brokers, redisAddr, sagas)
	proc.env = append(proc.env, "SAGARUNNER_TASKS_EARLYTTL=4s")
	proc.start()
	testutil.Eventually(t, waitLong, poll, proc.assigned)
	ctx := context.Background()
	waiting := func(id string) func() error {
		return func() error {
			ps, err := early.Early(ctx, id)
			if err != nil || len(ps) != 1 {
				return fmt.Errorf("%d operations wait for %q (%v)", len(ps), id, err)
			}
			return nil
		}
	}

	// The answer first, then the post that starts its task.
	produce(t, cl, earlyProceed("early-p1", "early-post-1"))
	testutil.Eventually(t, waitLong, poll, waiting("early-post-1"))
	if n := len(out.byKey(earlyReplies, "early-p1")); n != 0 {
		t.Fatalf("the waiting answer was answered %d times already", n)
	}
	produce(t, cl, &kgo.Record{Topic: "quick-posts", Key: []byte("post-1"),
		Value: []byte(`{"requestMeta": {"requestId": "post-1"}, "payload": {"parameters": {"productId": "early-post-1"}}}`)})
	approved := out.waitFor(t, "quick-posts-approved", "post-1", nil)
	if got := gjson.GetBytes(approved.Value, "by").String(); got != "alice" {
		t.Errorf("approved by %q, want alice: %s", got, approved.Value)
	}
	reply := out.waitFor(t, earlyReplies, "early-p1", nil)
	if got := gjson.GetBytes(reply.Value, "result.status").String(); got != "SUCCESS" {
		t.Errorf("answer %s", reply.Value)
	}
	note := out.waitFor(t, notificationTopic, "early-post-1", nil)
	if got := gjson.GetBytes(note.Value, "status").String(); got != statemanager.StatusCompleted {
		t.Errorf("notification %s", note.Value)
	}
	testutil.Eventually(t, waitLong, poll, func() error {
		if ps, err := early.Early(ctx, "early-post-1"); err != nil || len(ps) != 0 {
			return fmt.Errorf("%d still parked (%v)", len(ps), err)
		}
		return nil
	})

	// An answer whose task never starts.
	never := earlyProceed("early-p2", "early-never")
	produce(t, cl, never)
	dl := out.waitFor(t, deadLetterTopic, "early-p2", nil)
	d := gjson.ParseBytes(dl.Value)
	if d.Get("code").String() != actions.CodeEarlyExpired || d.Get("topic").String() != requestTopic ||
		int32(d.Get("partition").Int()) != never.Partition || d.Get("offset").Int() != never.Offset ||
		d.Get("value.requestMeta.requestId").String() != "early-p2" {
		t.Errorf("dead letter %s, want EARLY_EXPIRED of %s/%d@%d", dl.Value, requestTopic, never.Partition, never.Offset)
	}
	if r := out.waitFor(t, earlyReplies, "early-p2", nil); gjson.GetBytes(r.Value, "result.code").String() != actions.CodeEarlyExpired {
		t.Errorf("answer %s", r.Value)
	}

	// Over HTTP an unknown task is 404 at once, and nothing waits for it.
	testutil.Eventually(t, waitLong, poll, proc.ready)
	code, body := do(t, http.MethodPost, proc.base+"/tasks/workflow/early-http/claim", "", `{}`)
	if code != http.StatusNotFound {
		t.Errorf("claim of an unknown task over HTTP: %d %s, want 404", code, body)
	}
	if ps, err := early.Early(ctx, "early-http"); err != nil || len(ps) != 0 {
		t.Errorf("%d operations wait for the HTTP claim's task (%v)", len(ps), err)
	}

	// By now the first task's saga has had time to run twice: it ran once.
	if n := len(out.byKey(notificationTopic, "early-post-1")); n != 1 {
		t.Errorf("%d notifications of the early-answered task, want 1", n)
	}
	if n := len(out.byKey("quick-posts-approved", "post-1")); n != 1 {
		t.Errorf("%d approvals published, want 1", n)
	}
}
