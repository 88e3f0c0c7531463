package test

import (
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/tidwall/gjson"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sagarunner/sagarunner/internal/redistest"
	"github.com/sagarunner/sagarunner/internal/testutil"
	"github.com/sagarunner/sagarunner/statemanager"
)

// split checks that the processes own every partition of topics between
// them, each partition once, and that each owns some.
func split(topics []string, procs ...*process) error {
	owners := map[string]map[int32]string{}
	for _, p := range procs {
		assigned := p.app.Runner().Assigned()
		n := 0
		for topic, parts := range assigned {
			for _, part := range parts {
				if owners[topic] == nil {
					owners[topic] = map[int32]string{}
				}
				if other, ok := owners[topic][part]; ok {
					return fmt.Errorf("%s[%d] owned by %s and %s", topic, part, other, p.name)
				}
				owners[topic][part] = p.name
				n++
			}
		}
		if n == 0 {
			return fmt.Errorf("%s owns no partition", p.name)
		}
	}
	for _, topic := range topics {
		if len(owners[topic]) != partitions {
			return fmt.Errorf("%d of %d partitions of %s owned: %v", len(owners[topic]), partitions, topic, owners[topic])
		}
	}
	return nil
}

// TestTwoProcessesShareAndTakeOver runs two processes in one consumer group:
// they split the partitions, and when one stops the other fires the
// deadlines of the partitions it took over and serves their tasks.
func TestTwoProcessesShareAndTakeOver(t *testing.T) {
	redisAddr, _ := redistest.Start(t)
	cluster := newCluster(t)
	brokers := cluster.ListenAddrs()
	dir := sagaDir(t)
	a := startProcess(t, "runner-a", newConfig(t, brokers, redisAddr, dir))
	b := startProcess(t, "runner-b", newConfig(t, brokers, redisAddr, dir))
	topics := a.app.Runner().Topics()
	testutil.Eventually(t, waitLong, poll, func() error { return split(topics, a, b) })

	// The victim is a process owning deadline shards (shard s belongs to
	// the owner of request partition s).
	victim, survivor := a, b
	if len(a.app.Runner().Assigned()[requestTopic]) == 0 {
		victim, survivor = b, a
	}
	owned := victim.app.Runner().Assigned()
	t.Logf("%s owns %v", victim.name, owned)

	out := readTopics(t, brokers, notificationTopic, "takeover-posts-expired", "job-posts-approved")
	cl := newClient(t, brokers, kgo.RecordPartitioner(kgo.ManualPartitioner()))

	// Tasks whose deadlines the victim's timers own.
	var due []string
	for n := 0; len(due) < 3; n++ {
		id := fmt.Sprintf("takeover-%d", n)
		if slices.Contains(owned[requestTopic], int32(statemanager.ShardOf(id, partitions))) {
			due = append(due, id)
		}
	}
	// A long task started on a trigger partition of the victim, if it owns
	// one, so the survivor later serves a task it did not start.
	postPart := int32(0)
	if ps := owned["job-posts"]; len(ps) > 0 {
		postPart = ps[0]
	}
	var recs []*kgo.Record
	for i, id := range due {
		recs = append(recs, &kgo.Record{Topic: "takeover-posts", Partition: int32(i % partitions), Key: []byte("r-" + id), Value: []byte(`{"productId":"` + id + `"}`)})
	}
	recs = append(recs, &kgo.Record{Topic: "job-posts", Partition: postPart, Key: []byte("r-served"), Value: []byte(`{"productId":"served"}`)})
	produce(t, cl, recs...)
	deadlines := map[string]int64{}
	for _, id := range append([]string{"served"}, due...) {
		task := waitTask(t, survivor.base, "", "workflow", id, "WAITING")
		deadlines[id] = int64(task["deadline"].(float64))
	}

	victim.stop(t)
	stoppedAt := time.Now().UnixMilli()
	testutil.Eventually(t, waitLong, poll, func() error { return split(topics, survivor) })

	t.Run("the survivor fires the deadlines the stopped process owned", func(t *testing.T) {
		fired := 0
		for _, id := range due {
			n := out.waitFor(t, notificationTopic, id, nil)
			if s := gjson.GetBytes(n.Value, "status").String(); s != "TIMEOUT" {
				t.Errorf("%s closed with %s: %s", id, s, n.Value)
			}
			out.waitFor(t, "takeover-posts-expired", id, nil)
			if deadlines[id] > stoppedAt {
				fired++
				if closed := gjson.GetBytes(n.Value, "closedAt").Int(); closed < stoppedAt {
					t.Errorf("%s closed at %d, before %s stopped at %d", id, closed, victim.name, stoppedAt)
				}
			}
			if got := len(out.byKey(notificationTopic, id)); got != 1 {
				t.Errorf("%d notifications for %s, want 1", got, id)
			}
		}
		if fired == 0 {
			t.Fatalf("every deadline passed before %s stopped (at %d; deadlines %v): nothing was left to take over", victim.name, stoppedAt, deadlines)
		}
	})

	t.Run("the survivor serves the tasks the stopped process started", func(t *testing.T) {
		st, body := do(t, "POST", survivor.base+"/ProceedTask", "", `{"taskId":"served","data":{"user":"carol"}}`)
		if st != http.StatusOK {
			t.Fatalf("POST /ProceedTask: %d %s", st, body)
		}
		approved := out.waitFor(t, "job-posts-approved", "r-served", nil)
		if !jsonEqual(approved.Value, []byte(`{"id":"served","by":"carol"}`)) {
			t.Errorf("job-posts-approved: %s", approved.Value)
		}
	})

	t.Run("the survivor consumes the partitions it took over", func(t *testing.T) {
		produce(t, cl, &kgo.Record{Topic: "job-posts", Partition: postPart, Key: []byte("r-after"), Value: []byte(`{"productId":"after"}`)})
		waitTask(t, survivor.base, "", "workflow", "after", "WAITING")
	})
}
