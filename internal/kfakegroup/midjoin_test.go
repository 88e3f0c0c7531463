package kfakegroup_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sagarunner/sagarunner/internal/testutil"
)

const (
	topic      = "orders"
	group      = "runners"
	partitions = 8

	// sessionTimeout is the smallest the broker accepts by default. The
	// rebalance timeout is kgo's default and ten times longer, so a group
	// that waits for it instead of the session shows plainly.
	sessionTimeout   = 6 * time.Second
	rebalanceTimeout = 60 * time.Second
	heartbeat        = 300 * time.Millisecond

	// victims is how many members are killed in one rebalance. A response
	// to a dead connection is dropped or buffered at random by the broker,
	// and only a dropped one strands its member, so several victims make
	// the unpatched broker fail this test all but every 2^victims runs.
	victims = 6
)

// killableDialer dials the broker until killed; then it closes every
// connection it made and refuses new ones, as a SIGKILLed process would
// leave them. The client above it keeps retrying, which is what a dead
// process cannot do, but none of its retries reach the broker.
type killableDialer struct {
	mu     sync.Mutex
	killed bool
	conns  []net.Conn
}

func (d *killableDialer) DialContext(ctx context.Context, network, host string) (net.Conn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.killed {
		return nil, errors.New("process killed")
	}
	c, err := (&net.Dialer{}).DialContext(ctx, network, host)
	if err == nil {
		d.conns = append(d.conns, c)
	}
	return c, err
}

func (d *killableDialer) kill() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.killed = true
	for _, c := range d.conns {
		c.Close()
	}
	d.conns = nil
}

// revive lets the client reach the broker again, so that closing it at the
// end of the test does not wait out retries.
func (d *killableDialer) revive() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.killed = false
}

// owner is a group member that records the partitions it owns.
type owner struct {
	mu    sync.Mutex
	owned map[int32]bool
}

func (o *owner) add(_ context.Context, _ *kgo.Client, ps map[string][]int32) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, p := range ps[topic] {
		o.owned[p] = true
	}
}

func (o *owner) drop(_ context.Context, _ *kgo.Client, ps map[string][]int32) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, p := range ps[topic] {
		delete(o.owned, p)
	}
}

func (o *owner) ownsAll() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.owned) != partitions {
		return fmt.Errorf("the survivor owns %d of %d partitions", len(o.owned), partitions)
	}
	return nil
}

// survivorAlone checks, from the broker's side, that the group is stable
// with the survivor as its only member: every dead member has left.
func survivorAlone(adm *kadm.Client) error {
	ds, err := adm.DescribeGroups(context.Background(), group)
	if err != nil {
		return err
	}
	d := ds[group]
	var ids []string
	for _, m := range d.Members {
		ids = append(ids, m.ClientID)
	}
	if d.State != "Stable" || len(ids) != 1 || ids[0] != "survivor" {
		return fmt.Errorf("group is %s with members %v, want Stable with the survivor alone", d.State, ids)
	}
	return nil
}

func member(t *testing.T, brokers []string, clientID string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(brokers...),
		kgo.ClientID(clientID),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topic),
		kgo.SessionTimeout(sessionTimeout),
		kgo.RebalanceTimeout(rebalanceTimeout),
		kgo.HeartbeatInterval(heartbeat),
	}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// poll keeps a member consuming until the test ends, as a runner does.
func poll(t *testing.T, cl *kgo.Client) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			if cl.PollFetches(ctx).IsClientClosed() {
				return
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
}

// TestMemberKilledMidJoinExpires kills members while their JoinGroup is
// parked at the coordinator, waiting for the rest of the group to rejoin.
// The coordinator answers the join into a dead connection; the dead
// members must then expire one session timeout later, as on Kafka, so the
// surviving member owns every partition again. Without a session timer
// they stay in the group holding partitions until the next rebalance gives
// up on them, a full rebalance timeout later.
func TestMemberKilledMidJoinExpires(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	brokers := c.ListenAddrs()

	survivor := &owner{owned: map[int32]bool{}}
	cl := member(t, brokers, "survivor",
		kgo.OnPartitionsAssigned(survivor.add),
		kgo.OnPartitionsRevoked(survivor.drop),
		kgo.OnPartitionsLost(survivor.drop))
	t.Cleanup(cl.Close)
	poll(t, cl)
	testutil.Eventually(t, 30*time.Second, 20*time.Millisecond, survivor.ownsAll)

	// A victim's second JoinGroup, the one that carries its member ID,
	// is parked until the survivor rejoins; the victim dies right then.
	// The dialers exist before the control that reads them runs.
	dialers := make(map[string]*killableDialer, victims)
	for i := range victims {
		dialers[fmt.Sprintf("victim%d", i)] = &killableDialer{}
	}
	var (
		mu       sync.Mutex
		killed   = map[string]bool{}
		lastKill time.Time
	)
	c.ControlKey(int16(kmsg.JoinGroup), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		jg := req.(*kmsg.JoinGroupRequest)
		id, _, ok := strings.Cut(jg.MemberID, "-member-")
		if d := dialers[id]; ok && d != nil {
			mu.Lock()
			if !killed[id] {
				killed[id] = true
				lastKill = time.Now()
				go d.kill()
			}
			mu.Unlock()
		}
		return nil, nil, false
	})
	for id, d := range dialers {
		v := member(t, brokers, id+"-member", kgo.Dialer(d.DialContext))
		t.Cleanup(func() { d.revive(); v.Close() })
		poll(t, v)
	}

	testutil.Eventually(t, 30*time.Second, 10*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(killed) < victims {
			return fmt.Errorf("%d of %d victims killed mid-join", len(killed), victims)
		}
		return nil
	})
	mu.Lock()
	since := lastKill
	mu.Unlock()

	// One session timeout for the dead to expire, plus a few heartbeats
	// for the survivor to notice and rejoin.
	adm := kadm.NewClient(cl)
	within := sessionTimeout + 10*heartbeat
	testutil.Eventually(t, within-time.Since(since), 20*time.Millisecond, func() error {
		if err := survivorAlone(adm); err != nil {
			return err
		}
		return survivor.ownsAll()
	})
	t.Logf("the survivor owns every partition %v after the last kill", time.Since(since).Round(time.Millisecond))
}
