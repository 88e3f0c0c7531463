package test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/tidwall/gjson"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sagarunner/sagarunner/internal/redistest"
	"github.com/sagarunner/sagarunner/internal/testutil"
	"github.com/sagarunner/sagarunner/statemanager"
)

// Topics of the fault tests besides the runner's own.
const (
	faultPosts    = "fault-posts"
	faultApproved = "fault-posts-approved"
	faultExpired  = "fault-posts-expired"
	faultReplies  = "fault-replies"
)

// Kinds of fault posts (testdata/fault_post.yaml).
const (
	kindWait    = "wait"    // long deadline, never proceeded: must still wait at the end
	kindApprove = "approve" // long deadline, proceeded: must complete
	kindRace    = "race"    // 1.5 s deadline, proceeded around it: one of the two wins
)

// workload produces job posts at a steady pace and proceeds the ones that
// should be proceeded once their task is seen waiting, as a person working
// an inbox would. Proceeds are ProceedTask records on the request topic, so
// they survive the runner being killed just as the posts do.
type workload struct {
	t     *testing.T
	cl    *kgo.Client
	store statemanager.Store
	kinds map[string]string // task id -> kind
	ids   []string

	mu       sync.Mutex
	produced []string
}

func newWorkload(t *testing.T, cl *kgo.Client, store statemanager.Store, n int, kinds ...string) *workload {
	w := &workload{t: t, cl: cl, store: store, kinds: map[string]string{}}
	for i := range n {
		id := fmt.Sprintf("post-%04d", i)
		w.ids = append(w.ids, id)
		w.kinds[id] = kinds[i%len(kinds)]
	}
	return w
}

func proceedRecord(id string) *kgo.Record {
	key := "proceed-" + id
	v := `{"requestMeta":{"requestId":"` + key + `","user":"alice","roles":["manager"],"replyTo":"` + faultReplies + `"},` +
		`"eventMeta":{"action":"ProceedTask","domain":"workflow","inputElement":"parameters",` +
		`"parameters":{"inputPattern":"data","enrichPath":"decision"}},` +
		`"payload":{"parameters":{"taskId":"` + id + `","data":{"user":"alice"}}}}`
	return &kgo.Record{Topic: requestTopic, Key: []byte(key), Value: []byte(v)}
}

// run produces every post, one per pace, and proceeds the ones to proceed,
// until all are produced and proceeded (or found closed by their deadline)
// or ctx ends. Race posts are proceeded after a random delay of up to their
// deadline, so proceeds and timeouts land in both orders.
func (w *workload) run(ctx context.Context, pace time.Duration) error {
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	wg.Add(2)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(pace)
		defer tick.Stop()
		for _, id := range w.ids {
			rec := &kgo.Record{Topic: faultPosts, Key: []byte("r-" + id),
				Value: []byte(`{"productId":"` + id + `","kind":"` + w.kinds[id] + `"}`)}
			if err := w.cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
				errs <- fmt.Errorf("produce %s: %w", id, err)
				return
			}
			w.mu.Lock()
			w.produced = append(w.produced, id)
			w.mu.Unlock()
			select {
			case <-ctx.Done():
				errs <- ctx.Err()
				return
			case <-tick.C:
			}
		}
	}()
	go func() {
		defer wg.Done()
		errs <- w.proceed(ctx)
	}()
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

func (w *workload) proceed(ctx context.Context) error {
	todo := 0
	for _, id := range w.ids {
		if w.kinds[id] != kindWait {
			todo++
		}
	}
	seen := map[string]time.Time{} // first seen waiting
	delay := map[string]time.Duration{}
	done := map[string]bool{}
	for len(done) < todo {
		w.mu.Lock()
		produced := append([]string(nil), w.produced...)
		w.mu.Unlock()
		for _, id := range produced {
			if w.kinds[id] == kindWait || done[id] {
				continue
			}
			task, err := w.store.Get(ctx, id)
			if err != nil {
				// Not started yet, or Redis is down: look again.
				continue
			}
			if !task.Waiting() {
				done[id] = true // its deadline won the race
				continue
			}
			if w.kinds[id] == kindRace {
				if _, ok := seen[id]; !ok {
					seen[id] = time.Now()
					delay[id] = time.Duration(rand.Int64N(int64(1500 * time.Millisecond)))
				}
				if time.Since(seen[id]) < delay[id] {
					continue
				}
			}
			if err := w.cl.ProduceSync(ctx, proceedRecord(id)).FirstErr(); err != nil {
				return fmt.Errorf("produce proceed of %s: %w", id, err)
			}
			done[id] = true
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d of %d proceeds sent: %w", len(done), todo, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// identical checks that recs (all the records of one key) are at least
// one and byte-identical, and returns the first.
func identical(what string, recs []*kgo.Record) ([]byte, error) {
	if len(recs) == 0 {
		return nil, fmt.Errorf("no %s", what)
	}
	for _, r := range recs[1:] {
		if !bytes.Equal(r.Value, recs[0].Value) {
			return nil, fmt.Errorf("%d %s differ: %s vs %s", len(recs), what, recs[0].Value, r.Value)
		}
	}
	return recs[0].Value, nil
}

// settled checks SPEC §9's promises over everything the workload did: no
// post lost, waiting tasks still waiting, each task closed once with one
// decision, every closed task's notification and continuation effect
// present, duplicates identical, and every close's effects acked.
func (w *workload) settled(ctx context.Context, out *topicReader) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	for _, id := range w.ids {
		task, err := w.store.Get(ctx, id)
		if err != nil {
			bad("%s (%s): no task: %v", id, w.kinds[id], err)
			continue
		}
		if task.RequestID != "r-"+id {
			bad("%s: requestId %q", id, task.RequestID)
		}
		notes := out.byKey(notificationTopic, id)
		approved, expired := out.byKey(faultApproved, id), out.byKey(faultExpired, id)
		replies := out.byKey(faultReplies, "proceed-"+id)
		switch w.kinds[id] {
		case kindWait:
			if task.Status != statemanager.StatusWaiting || len(notes)+len(approved)+len(expired) > 0 {
				bad("%s: should still wait: %s with %d notifications", id, task.Status, len(notes))
			}
			continue
		case kindApprove:
			if task.Status != statemanager.StatusCompleted {
				bad("%s: %s, want COMPLETED", id, task.Status)
				continue
			}
		case kindRace:
			if task.Waiting() {
				bad("%s: still waiting past its deadline", id)
				continue
			}
		}
		note, err := identical("notifications", notes)
		if err != nil {
			bad("%s: %v", id, err)
			continue
		}
		if s := gjson.GetBytes(note, "status").String(); s != task.Status {
			bad("%s: notification says %s, the decision in Redis %s", id, s, task.Status)
		}
		if at := gjson.GetBytes(note, "closedAt").Int(); at != task.ClosedAt {
			bad("%s: notification closedAt %d, decision %d", id, at, task.ClosedAt)
		}
		switch task.Status {
		case statemanager.StatusCompleted:
			if task.CloseKey != "proceed-"+id || task.ClosedBy != "alice" {
				bad("%s: completed by %q with key %q", id, task.ClosedBy, task.CloseKey)
			}
			v, err := identical("approvals", approved)
			if err != nil {
				bad("%s: %v", id, err)
			} else if !jsonEqual(v, []byte(`{"id":"`+id+`","by":"alice"}`)) {
				bad("%s: approval %s", id, v)
			}
			if len(expired) > 0 {
				bad("%s: completed and also expired", id)
			}
			reply, err := identical("proceed replies", replies)
			if err != nil {
				bad("%s: %v", id, err)
			} else if s := gjson.GetBytes(reply, "result.status").String(); s != "SUCCESS" {
				bad("%s: completed, but its proceed was answered %s", id, reply)
			}
		case statemanager.StatusTimeout:
			if task.CloseKey != "timeout" {
				bad("%s: timed out with key %q", id, task.CloseKey)
			}
			v, err := identical("expiries", expired)
			if err != nil {
				bad("%s: %v", id, err)
			} else if !jsonEqual(v, []byte(`{"id":"`+id+`","outcome":"expired"}`)) {
				bad("%s: expiry %s", id, v)
			}
			if len(approved) > 0 {
				bad("%s: timed out and also approved", id)
			}
			// A proceed sent before the timeout won loses with TASK_CLOSED.
			for _, r := range replies {
				if gjson.GetBytes(r.Value, "result.code").String() != "TASK_CLOSED" {
					bad("%s: timed out, but its proceed was answered %s", id, r.Value)
				}
			}
		default:
			bad("%s: closed as %s", id, task.Status)
		}
	}
	for shard := range w.store.Shards() {
		pending, err := w.store.Pending(ctx, shard, time.Now().UnixMilli(), 10)
		if err != nil {
			bad("pending of shard %d: %v", shard, err)
		}
		for _, p := range pending {
			bad("%s: closed but its effects never acked", p.ID)
		}
	}
	if dl := out.records(deadLetterTopic); len(dl) > 0 {
		bad("%d dead letters, the first: %s", len(dl), dl[0].Value)
	}
	return errorsJoin(errs, 15)
}

// faultEnv is the broker, topics, readers and workload client shared by the
// fault tests.
type faultEnv struct {
	brokers []string
	sagas   string
	out     *topicReader
	cl      *kgo.Client
}

func newFaultEnv(t *testing.T) *faultEnv {
	cluster := newCluster(t)
	fastFailover(cluster)
	brokers := cluster.ListenAddrs()
	createTopics(t, brokers, faultPosts, faultApproved, faultExpired, faultReplies, requestTopic,
		notificationTopic, deadLetterTopic)
	return &faultEnv{
		brokers: brokers,
		sagas:   sagaDir(t),
		out:     readTopics(t, brokers, notificationTopic, faultApproved, faultExpired, faultReplies, deadLetterTopic),
		cl:      newClient(t, brokers),
	}
}

// TestKillTheRunner is SPEC §9 "kill the process at any instant": the
// runner binary is SIGKILLed at random moments while posts, proceeds and
// deadlines stream through it, restarted each time, and must then drain to
// a state where nothing was lost or done twice differently.
func TestKillTheRunner(t *testing.T) {
	bin := runnerBinary(t)
	redisAddr, _ := redistest.Start(t)
	env := newFaultEnv(t)
	cfg := newConfig(t, env.brokers, redisAddr, env.sagas)
	w := newWorkload(t, env.cl, storeOf(t, cfg, "workflow"), 300, kindApprove, kindRace, kindWait)
	proc := newRunnerProcess(t, bin, env.brokers, redisAddr, env.sagas)
	proc.start()

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	worked := make(chan error, 1)
	go func() { worked <- w.run(ctx, 40*time.Millisecond) }()

	// Kill at random moments: some during start-up, some mid-batch, some
	// while deadlines fire. The pauses schedule the faults; they wait for
	// no effect.
	const kills = 4
	for k := range kills {
		// Each kill comes after the runner has its partitions. A member
		// killed between joining the group and being assigned was seen to
		// stay in the embedded broker's group for good, holding partitions
		// no later runner is ever given; a real broker expires it.
		testutil.Eventually(t, waitLong, poll, proc.assigned)
		time.Sleep(time.Duration(1000+rand.IntN(2500)) * time.Millisecond)
		proc.kill()
		t.Logf("kill %d after %d posts produced", k+1, len(w.producedSoFar()))
		proc.start()
	}
	if err := <-worked; err != nil {
		t.Fatalf("workload: %v", err)
	}
	testutil.Eventually(t, 90*time.Second, 200*time.Millisecond, func() error { return w.settled(ctx, env.out) })
	testutil.Eventually(t, waitLong, poll, proc.ready)
	if err := proc.terminate(40 * time.Second); err != nil {
		t.Errorf("SIGTERM: %v", err)
	}
	t.Logf("%d posts, %d notifications, %d approvals, %d expiries, %d proceed replies",
		len(w.ids), len(env.out.records(notificationTopic)), len(env.out.records(faultApproved)),
		len(env.out.records(faultExpired)), len(env.out.records(faultReplies)))
}

func (w *workload) producedSoFar() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.produced...)
}

// TestRedisOutage stops redis-server under a running runner binary while
// posts and proceeds keep coming, restarts it on the same port, and checks
// that everything drains by itself with nothing lost.
func TestRedisOutage(t *testing.T) {
	bin := runnerBinary(t)
	redis := redistest.StartDurable(t)
	env := newFaultEnv(t)
	cfg := newConfig(t, env.brokers, redis.Addr, env.sagas)
	w := newWorkload(t, env.cl, storeOf(t, cfg, "workflow"), 120, kindApprove, kindApprove, kindWait)
	proc := newRunnerProcess(t, bin, env.brokers, redis.Addr, env.sagas)
	proc.start()
	testutil.Eventually(t, waitLong, poll, proc.ready)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	worked := make(chan error, 1)
	go func() { worked <- w.run(ctx, 40*time.Millisecond) }()

	// The outage starts mid-stream and lasts a few seconds.
	time.Sleep(1500 * time.Millisecond)
	redis.Kill()
	t.Logf("redis down after %d posts produced", len(w.producedSoFar()))
	time.Sleep(3 * time.Second)
	if err := redis.Restart(); err != nil {
		t.Fatal(err)
	}
	t.Logf("redis back after %d posts produced", len(w.producedSoFar()))

	if err := <-worked; err != nil {
		t.Fatalf("workload: %v", err)
	}
	testutil.Eventually(t, 90*time.Second, 200*time.Millisecond, func() error { return w.settled(ctx, env.out) })
	if err := proc.terminate(40 * time.Second); err != nil {
		t.Errorf("SIGTERM: %v", err)
	}
}
