package bench

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sagarunner/sagarunner/internal/redisserver"
)

// clusterSlots is the number of hash slots of a Redis Cluster.
const clusterSlots = 16384

// redisCluster is a Redis Cluster of redis-server processes on this
// machine, each a master holding an equal share of the slots, with no
// replicas and persistence off.
type redisCluster struct {
	nodes []*redisserver.Server
}

// addrs are the nodes' addresses, the seed list of a cluster client.
func (c *redisCluster) addrs() []string {
	out := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = n.Addr
	}
	return out
}

func (c *redisCluster) pids() []int {
	out := make([]int, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = n.Pid()
	}
	return out
}

func (c *redisCluster) stop() {
	for _, n := range c.nodes {
		n.Stop()
	}
}

// startRedisCluster starts n cluster-mode redis-servers on free ports,
// splits the slots between them, joins them and waits until every node
// reports cluster_state:ok with every slot served.
func startRedisCluster(ctx context.Context, n int) (_ *redisCluster, err error) {
	if n < 1 {
		return nil, fmt.Errorf("bench: a Redis Cluster needs at least one node, got %d", n)
	}
	c := &redisCluster{}
	defer func() {
		if err != nil {
			c.stop()
		}
	}()
	for i := 0; i < n; i++ {
		// The node's files (nodes.conf among them) land in the server's
		// own directory, which Stop removes.
		srv, err := redisserver.Start("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-require-full-coverage", "yes")
		if err != nil {
			return nil, fmt.Errorf("bench: start Redis Cluster node %d of %d: %w", i+1, n, err)
		}
		c.nodes = append(c.nodes, srv)
	}
	clients := make([]*redis.Client, n)
	for i, srv := range c.nodes {
		clients[i] = redis.NewClient(&redis.Options{Addr: srv.Addr})
		defer clients[i].Close()
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for i, cl := range clients {
		from, to := slotRange(i, n)
		if err := addSlots(ctx, cl, from, to); err != nil {
			return nil, fmt.Errorf("bench: assign slots %d-%d to %s: %w", from, to, c.nodes[i].Addr, err)
		}
	}
	for _, srv := range c.nodes[1:] {
		host, port, err := net.SplitHostPort(srv.Addr)
		if err != nil {
			return nil, err
		}
		if err := clients[0].ClusterMeet(ctx, host, port).Err(); err != nil {
			return nil, fmt.Errorf("bench: CLUSTER MEET %s: %w", srv.Addr, err)
		}
	}
	want := fmt.Sprintf("cluster_known_nodes:%d", n)
	for i, cl := range clients {
		var last string
		for {
			info, err := cl.ClusterInfo(ctx).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") && strings.Contains(info, want) &&
				strings.Contains(info, fmt.Sprintf("cluster_slots_ok:%d", clusterSlots)) {
				break
			}
			last = strings.Join(strings.Fields(info), " ")
			if err != nil {
				last = err.Error()
			}
			if !sleepCtx(ctx, 50*time.Millisecond) {
				return nil, fmt.Errorf("bench: Redis Cluster node %s never reached cluster_state:ok (last: %s): %w",
					c.nodes[i].Addr, last, ctx.Err())
			}
		}
	}
	// Every node must also know which node serves each slot, or a client
	// that seeds from it would be sent around in circles.
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.addrs()})
	defer cc.Close()
	for {
		err := cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error { return m.Ping(ctx).Err() })
		if err == nil {
			slots, serr := cc.ClusterSlots(ctx).Result()
			if serr == nil && len(slots) == n {
				return c, nil
			}
			err = serr
		}
		if !sleepCtx(ctx, 50*time.Millisecond) {
			return nil, fmt.Errorf("bench: Redis Cluster never served every slot through a cluster client (%v): %w", err, ctx.Err())
		}
	}
}

// slotRange is the slots node i of n serves.
func slotRange(i, n int) (from, to int) {
	return i * clusterSlots / n, (i+1)*clusterSlots/n - 1
}

// addSlots assigns slots from..to to a node: CLUSTER ADDSLOTSRANGE where
// the server has it (Redis 7), CLUSTER ADDSLOTS otherwise.
func addSlots(ctx context.Context, cl *redis.Client, from, to int) error {
	err := cl.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", from, to).Err()
	if err == nil || !strings.Contains(strings.ToLower(err.Error()), "unknown subcommand") {
		return err
	}
	args := make([]any, 0, to-from+3)
	args = append(args, "CLUSTER", "ADDSLOTS")
	for s := from; s <= to; s++ {
		args = append(args, s)
	}
	return cl.Do(ctx, args...).Err()
}

// forEachNode runs fn on the one Redis server of a plain client, or on
// every master of a cluster client.
func forEachNode(ctx context.Context, rdb redis.UniversalClient, fn func(ctx context.Context, c *redis.Client) error) error {
	switch c := rdb.(type) {
	case *redis.ClusterClient:
		return c.ForEachMaster(ctx, fn)
	case *redis.Client:
		return fn(ctx, c)
	}
	return fmt.Errorf("bench: unsupported Redis client %T", rdb)
}

// shardsPerNode counts, for each node of a cluster whose slots
// startRedisCluster split evenly, how many of the bench domain's shards
// (the hash tag {domain:s} of the store's keys, for s below shards) fall in
// its slots.
func shardsPerNode(ctx context.Context, rdb redis.UniversalClient, shards, nodes int) ([]int, error) {
	out := make([]int, nodes)
	for s := 0; s < shards; s++ {
		slot, err := rdb.ClusterKeySlot(ctx, "{"+Domain+":"+strconv.Itoa(s)+"}").Result()
		if err != nil {
			return nil, fmt.Errorf("bench: CLUSTER KEYSLOT: %w", err)
		}
		for i := range out {
			if from, to := slotRange(i, nodes); int(slot) >= from && int(slot) <= to {
				out[i]++
			}
		}
	}
	return out, nil
}
