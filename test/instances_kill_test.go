package test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sagarunner/sagarunner/instances"
	"github.com/sagarunner/sagarunner/internal/redistest"
	"github.com/sagarunner/sagarunner/internal/testutil"
)

// TestInstancesSurviveKills starts and proceeds instances while the runner
// is killed with SIGKILL again and again, then checks every instance ended
// COMPLETED (none stuck RUNNING or WAITING with its work done) with a
// timeline that agrees with its task: one start, the task opened once and
// completed once, one end, no event twice.
func TestInstancesSurviveKills(t *testing.T) {
	bin := runnerBinary(t)
	c := newCluster(t)
	fastFailover(c)
	addr, rdb := redistest.Start(t)
	sagas := sagaDir(t)
	createTopics(t, c.ListenAddrs(), "instance-flow", "sagarunner-requests")
	p := newRunnerProcess(t, bin, c.ListenAddrs(), addr, sagas)
	p.start()
	testutil.Eventually(t, waitLong, poll, p.ready)

	const n = 40
	cl := newClient(t, c.ListenAddrs())
	var recs []*kgo.Record
	for i := range n {
		id := fmt.Sprintf("kill-%02d", i)
		recs = append(recs, &kgo.Record{Topic: "instance-flow", Key: []byte(id),
			Value: fmt.Appendf(nil, `{"orderId":"order-%s","outcome":"ok"}`, id)})
		recs = append(recs, &kgo.Record{Topic: "sagarunner-requests", Key: []byte("p-" + id), Value: fmt.Appendf(nil,
			`{"requestMeta":{"requestId":"p-%s"},"eventMeta":{"action":"ProceedTask","domain":"workflow","inputElement":"parameters","parameters":{"taskIdPath":"taskId","enrichPath":"decision"}},"payload":{"parameters":{"taskId":"order-%s"}}}`,
			id, id)})
	}
	rng := rand.New(rand.NewPCG(7, 9))
	for kill := range 4 {
		produce(t, cl, recs[kill*len(recs)/4:(kill+1)*len(recs)/4]...)
		time.Sleep(time.Duration(50+rng.IntN(250)) * time.Millisecond)
		p.kill()
		p.start()
	}
	testutil.Eventually(t, waitLong, poll, p.ready)

	st, err := instances.NewStore(rdb, instances.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range n {
		id := fmt.Sprintf("kill-%02d", i)
		testutil.Eventually(t, 2*waitLong, poll, func() error {
			in, err := st.Get(ctx, id)
			if err != nil {
				return fmt.Errorf("%s: %w", id, err)
			}
			if in.Status != instances.StatusCompleted || len(in.OpenTasks) != 0 {
				return fmt.Errorf("%s is %s with open tasks %v", id, in.Status, in.OpenTasks)
			}
			return nil
		})
		tl, err := st.Timeline(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for _, e := range tl {
			if slices.Contains(keys, e.Key) {
				t.Fatalf("%s: event %s twice: %s", id, e.Key, describe(tl))
			}
			keys = append(keys, e.Key)
		}
		// A close written before its start (another partition was quicker,
		// or the start was replayed) comes first; the events are the same.
		got := strings.Fields(describe(tl))
		slices.Sort(got)
		want := strings.Fields("started step:approve:WAITING task:completed step:done:SUCCESS finished")
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("%s: timeline %s", id, describe(tl))
		}
	}
}
