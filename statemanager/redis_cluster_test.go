package statemanager_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sagarunner/sagarunner/internal/testutil"
	"github.com/sagarunner/sagarunner/statemanager"
	"github.com/sagarunner/sagarunner/statemanager/storetest"
)

// TestRedisStoreOnCluster runs the suite through a ClusterClient against a
// two-node Redis Cluster, each node holding half the slots. A node refuses a
// script that touches a key of a slot it does not serve, so this shows every
// script stays inside its task's {P:s} hash tag, and that the pipelined reads
// (Between, List, Pending) and script loading work across nodes.
func TestRedisStoreOnCluster(t *testing.T) {
	client := startCluster(t)
	var n atomic.Int64
	storetest.Run(t, func(t *testing.T) statemanager.Store {
		s, err := statemanager.NewRedisStore(client, "workflow",
			statemanager.RedisConfig{Prefix: fmt.Sprintf("cluster%d", n.Add(1)), Shards: 4})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// startCluster starts two cluster-mode redis-servers, splits the slots
// between them and joins them.
func startCluster(t *testing.T) *redis.ClusterClient {
	t.Helper()
	ctx := context.Background()
	a, b := startClusterNode(t), startClusterNode(t)
	slots := [][2]int{{0, 8191}, {8192, 16383}}
	for i, node := range []*redis.Client{a, b} {
		if err := node.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", slots[i][0], slots[i][1]).Err(); err != nil {
			t.Fatalf("assign slots: %v", err)
		}
	}
	host, port, _ := net.SplitHostPort(b.Options().Addr)
	if err := a.ClusterMeet(ctx, host, port).Err(); err != nil {
		t.Fatalf("cluster meet: %v", err)
	}
	for _, node := range []*redis.Client{a, b} {
		testutil.Eventually(t, 20*time.Second, 50*time.Millisecond, func() error {
			info, err := node.ClusterInfo(ctx).Result()
			if err != nil {
				return err
			}
			if !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_known_nodes:2") {
				return fmt.Errorf("cluster not ready: %s", info)
			}
			return nil
		})
	}
	client := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{a.Options().Addr, b.Options().Addr}})
	t.Cleanup(func() { client.Close() })
	testutil.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
		return client.ForEachShard(ctx, func(ctx context.Context, c *redis.Client) error {
			return c.Ping(ctx).Err()
		})
	})
	return client
}

// startClusterNode starts one cluster-mode redis-server with no slots.
func startClusterNode(t *testing.T) *redis.Client {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("redis-server not on PATH: %v", err)
		}
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	dir := t.TempDir()
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(dir, "nodes.conf"),
		"--save", "", "--appendonly", "no", "--dir", dir, "--logfile", filepath.Join(dir, "redis.log"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	node := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port)})
	t.Cleanup(func() { node.Close() })
	testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
		return node.Ping(context.Background()).Err()
	})
	return node
}

// TestRedisStoreOnClusterMergesPerSlot: concurrent starts, closes and acks
// through a ClusterClient share script calls only within a shard's slot (a
// node refuses a call whose keys cross slots), and every caller gets its
// own answer.
func TestRedisStoreOnClusterMergesPerSlot(t *testing.T) {
	ctx := context.Background()
	client := startCluster(t)
	s, err := statemanager.NewRedisStore(client, "workflow",
		statemanager.RedisConfig{Prefix: "merged", Shards: 8, PipelineBatches: 1})
	if err != nil {
		t.Fatal(err)
	}
	const n, workers = 400, 32
	each := func(op func(id string) error) {
		t.Helper()
		errs := make(chan error, n)
		next := make(chan int, n)
		for i := range n {
			next <- i
		}
		close(next)
		for range workers {
			go func() {
				for i := range next {
					errs <- op("task-" + strconv.Itoa(i))
				}
			}()
		}
		for range n {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
	}
	evalshas := func() int {
		var total atomic.Int64
		err := client.ForEachShard(ctx, func(ctx context.Context, c *redis.Client) error {
			info, err := c.Info(ctx, "commandstats").Result()
			for _, line := range strings.Split(info, "\r\n") {
				if rest, ok := strings.CutPrefix(line, "cmdstat_evalsha:calls="); ok {
					v, _ := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
					total.Add(int64(v))
				}
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return int(total.Load())
	}
	before := evalshas()
	each(func(id string) error {
		_, created, err := s.Start(ctx, &statemanager.Task{ID: id, Roles: []string{"admin"}, Deadline: 9000, StartedAt: 1000})
		if err == nil && !created {
			err = fmt.Errorf("start %q: not created", id)
		}
		return err
	})
	each(func(id string) error {
		task, _, err := s.Close(ctx, statemanager.Close{ID: id, Status: statemanager.StatusCompleted, Key: "k-" + id, By: id})
		if err == nil && (task.ID != id || task.ClosedBy != id) {
			err = fmt.Errorf("close %q answered %q closed by %q", id, task.ID, task.ClosedBy)
		}
		return err
	})
	each(func(id string) error { return s.Ack(ctx, id) })
	calls := evalshas() - before
	t.Logf("%d script calls for %d starts, closes and acks", calls, 3*n)
	if calls >= 3*n {
		t.Errorf("%d script calls for %d operations: nothing merged", calls, 3*n)
	}
	if w, err := s.CountWaiting(ctx); err != nil || w != 0 {
		t.Errorf("CountWaiting = %d, %v; want 0", w, err)
	}
	for i := range n {
		id := "task-" + strconv.Itoa(i)
		if task, err := s.Get(ctx, id); err != nil || task.Status != statemanager.StatusCompleted || task.ClosedBy != id {
			t.Fatalf("Get(%q) = %+v, %v", id, task, err)
		}
	}
}
