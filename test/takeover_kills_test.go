package test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/sagarunner/sagarunner/internal/redistest"
	"github.com/sagarunner/sagarunner/internal/testutil"
)

// Bounds of TestRapidKillsTakeOver.
const (
	// rapidKills is how many times the victim is killed and restarted.
	rapidKills = 20
	// sessionTimeout is kafka.sessionTimeout's default, which the test
	// leaves as is: the broker keeps the clients' own timeouts (10 s
	// session, 60 s rebalance) so that a group waiting for its rebalance
	// timeout instead of its session shows.
	sessionTimeout = 10 * time.Second
	// takeoverSlack is what a rebalance itself takes once the broker has
	// given up on the dead: the live members' join and sync round trips,
	// twice with the cooperative balancer.
	takeoverSlack = 2 * time.Second
)

// startAs starts p under a Kafka client id naming this incarnation, so the
// broker's view of the group tells the live processes from the dead ones.
func startAs(p *runnerProcess, name string) string {
	p.mu.Lock()
	id := fmt.Sprintf("%s-%d", name, p.starts+1)
	p.env = append(slices.Clip(p.env), "SAGARUNNER_KAFKA_CLIENTID="+id)
	p.mu.Unlock()
	p.start()
	return id
}

// groupSettled checks, from the broker's side, that the group is stable,
// that each of its members is one of the live incarnations (every dead one
// has been expired or replaced) and that they own every partition of every
// topic they subscribe to, each once.
func groupSettled(ctx context.Context, adm *kadm.Client, group string, live ...string) error {
	ds, err := adm.DescribeGroups(ctx, group)
	if err != nil {
		return err
	}
	d, ok := ds[group]
	if !ok {
		return fmt.Errorf("group %s not described", group)
	}
	if d.Err != nil {
		return d.Err
	}
	if d.State != "Stable" {
		return fmt.Errorf("group is %s with %d members", d.State, len(d.Members))
	}
	if len(d.Members) == 0 {
		return errors.New("group has no members")
	}
	owned := map[string]map[int32]int{}
	for _, m := range d.Members {
		if !slices.Contains(live, m.ClientID) {
			return fmt.Errorf("member %s of %s, not a live process (%v), is still in the group", m.MemberID, m.ClientID, live)
		}
		a, ok := m.Assigned.AsConsumer()
		if !ok {
			return fmt.Errorf("member %s has no consumer assignment", m.MemberID)
		}
		for _, t := range a.Topics {
			if owned[t.Topic] == nil {
				owned[t.Topic] = map[int32]int{}
			}
			for _, p := range t.Partitions {
				owned[t.Topic][p]++
			}
		}
	}
	topics := d.JoinTopics()
	if len(topics) == 0 {
		return errors.New("members subscribe to no topic")
	}
	var errs []error
	for _, topic := range topics {
		for p := range int32(partitions) {
			if n := owned[topic][p]; n != 1 {
				errs = append(errs, fmt.Errorf("%s[%d] owned %d times", topic, p, n))
			}
		}
	}
	return errorsJoin(errs, 5)
}

// groupRebalancing reports whether the group is between generations.
func groupRebalancing(ctx context.Context, adm *kadm.Client, group string) bool {
	ds, err := adm.DescribeGroups(ctx, group)
	if err != nil {
		return false
	}
	s := ds[group].State
	return s == "PreparingRebalance" || s == "CompletingRebalance"
}

// TestRapidKillsTakeOver is issue 7's "a rapid series of runner kills":
// of two runner binaries in one group, one is SIGKILLed 20 times in quick
// succession, each time restarted at once, some kills landing while the
// group rebalances and some before the new process has even joined. The
// group must own every partition again within one session timeout of the
// last kill, and the workload that streamed through it must settle with
// nothing lost or done twice differently.
//
// With static membership (kafka.instanceId) a restarted runner replaces
// its dead self at once. Without it, as `run` defaults, the broker must
// expire every dead incarnation within its session, including the ones
// killed while their join was parked.
func TestRapidKillsTakeOver(t *testing.T) {
	for _, tc := range []struct {
		name   string
		static bool
	}{
		{"static members", true},
		{"dynamic members", false},
	} {
		t.Run(tc.name, func(t *testing.T) { rapidKillsTakeOver(t, tc.static) })
	}
}

func rapidKillsTakeOver(t *testing.T, static bool) {
	bin := runnerBinary(t)
	redisAddr, _ := redistest.Start(t)
	cluster := newCluster(t)
	brokers := cluster.ListenAddrs()
	createTopics(t, brokers, faultPosts, faultApproved, faultExpired, faultReplies, requestTopic,
		notificationTopic, deadLetterTopic)
	sagas := sagaDir(t)
	out := readTopics(t, brokers, notificationTopic, faultApproved, faultExpired, faultReplies, deadLetterTopic)
	cl := newClient(t, brokers)
	adm := kadm.NewClient(cl)
	cfg := newConfig(t, brokers, redisAddr, sagas)
	w := newWorkload(t, cl, storeOf(t, cfg, "workflow"), 240, kindApprove, kindRace, kindWait)

	const group = "fault" // newRunnerProcess's --group
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	procs := map[string]*runnerProcess{}
	live := map[string]string{} // process -> client id of its running incarnation
	for _, name := range []string{"runner-a", "runner-b"} {
		p := newRunnerProcess(t, bin, brokers, redisAddr, sagas)
		if static {
			p.env = append(p.env, "SAGARUNNER_KAFKA_INSTANCEID="+name)
		}
		live[name] = startAs(p, name)
		procs[name] = p
	}
	survivor, victim := procs["runner-a"], procs["runner-b"]
	settled := func() error { return groupSettled(ctx, adm, group, live["runner-a"], live["runner-b"]) }
	testutil.Eventually(t, waitLong, poll, survivor.assigned)
	testutil.Eventually(t, waitLong, poll, victim.assigned)

	worked := make(chan error, 1)
	go func() { worked <- w.run(ctx, 60*time.Millisecond) }()

	// Every other kill waits (briefly) for the group to be mid-rebalance,
	// which each restart starts; the others come at a random moment of
	// the new process's start-up, join or first batches. The pauses
	// schedule the faults; they wait for no effect.
	var duringRebalance int
	var lastKill time.Time
	for k := range rapidKills {
		if k%2 == 1 {
			deadline := time.Now().Add(1500 * time.Millisecond)
			for !groupRebalancing(ctx, adm, group) && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
		} else {
			time.Sleep(time.Duration(rand.IntN(1500)) * time.Millisecond)
		}
		if groupRebalancing(ctx, adm, group) {
			duringRebalance++
		}
		victim.kill()
		lastKill = time.Now()
		live["runner-b"] = startAs(victim, "runner-b")
	}
	t.Logf("%d kills, %d of them while the group was rebalancing; %d posts produced by the last",
		rapidKills, duringRebalance, len(w.producedSoFar()))
	if !static && duringRebalance == 0 {
		// Each dynamic restart starts a rebalance; none caught means
		// the test no longer checks what it says.
		t.Errorf("no kill landed while the group was rebalancing")
	}

	testutil.Eventually(t, sessionTimeout+takeoverSlack-time.Since(lastKill), poll, settled)
	t.Logf("every partition owned again %v after the last kill", time.Since(lastKill).Round(time.Millisecond))

	if err := <-worked; err != nil {
		t.Fatalf("workload: %v", err)
	}
	testutil.Eventually(t, waitLong, 200*time.Millisecond, func() error { return w.settled(ctx, out) })
	testutil.Eventually(t, waitLong, poll, victim.assigned)
	testutil.Eventually(t, waitLong, poll, settled)
	for _, p := range []*runnerProcess{survivor, victim} {
		testutil.Eventually(t, waitLong, poll, p.ready)
	}
}
