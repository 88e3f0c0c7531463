package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sagarunner/sagarunner/internal/redisserver"
)

// startBroker starts the embedded Kafka-protocol broker in this process.
func startBroker(partitions int) (*kfake.Cluster, error) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(partitions))
	if err != nil {
		return nil, fmt.Errorf("bench: start the embedded broker: %w", err)
	}
	return c, nil
}

// startRedis starts a redis-server on a free port, with persistence off so
// the numbers are not those of the disk. Without redis-server on PATH it
// falls back to an embedded miniredis, which is much slower and says
// nothing about production: the caller reports which one it got.
func startRedis(log io.Writer) (addr, kind string, pid int, stop func(), err error) {
	if _, lerr := exec.LookPath("redis-server"); lerr != nil {
		fmt.Fprintln(log, "bench: redis-server is not on PATH; falling back to an embedded miniredis "+
			"(figures will not reflect a real Redis; install redis-server or pass --redis)")
		mr := miniredis.NewMiniRedis()
		if err := mr.StartAddr("127.0.0.1:0"); err != nil {
			return "", "", 0, nil, fmt.Errorf("bench: start miniredis: %w", err)
		}
		return mr.Addr(), "miniredis", 0, mr.Close, nil
	}
	srv, err := redisserver.Start()
	if err != nil {
		return "", "", 0, nil, fmt.Errorf("bench: %w", err)
	}
	return srv.Addr, "redis-server", srv.Pid(), srv.Stop, nil
}

// child is the runner under test, running as a process of its own.
type child struct {
	cmd  *exec.Cmd
	http string // base URL of its gateway
	dir  string
	done chan error
}

// childSpec is what a child runner is pointed at.
type childSpec struct {
	argv       []string
	env        []string
	brokers    []string
	redis      string
	group      string
	partitions int
	cpuProfile string
	log        io.Writer
}

// startChild writes the bench sagas to a temporary folder and starts the
// runner on them. Configuration goes through SAGARUNNER_* variables, which
// every sagarunner command reads, so the child's flags stay those of `run`.
func startChild(s childSpec) (*child, error) {
	dir, err := os.MkdirTemp("", "sagarunner-bench")
	if err != nil {
		return nil, err
	}
	sagasDir := filepath.Join(dir, "sagas")
	if err := WriteSagas(sagasDir); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	port, err := redisserver.FreePort()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	httpAddr := "127.0.0.1:" + strconv.Itoa(port)
	argv := s.argv
	if len(argv) == 0 {
		exe, err := os.Executable()
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("bench: find this executable to run the runner: %w", err)
		}
		argv = []string{exe, "run", "--insecure"}
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	// A profile asked of the bench itself must not be overwritten by the
	// child's.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SAGARUNNER_CPUPROFILE=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env,
		"SAGARUNNER_BROKERS="+strings.Join(s.brokers, ","),
		"SAGARUNNER_REDIS_ADDR="+s.redis,
		"SAGARUNNER_REDIS_SHARDS="+strconv.Itoa(s.partitions),
		"SAGARUNNER_TOPICS_PARTITIONS="+strconv.Itoa(s.partitions),
		"SAGARUNNER_SAGAS="+sagasDir,
		"SAGARUNNER_HTTP_ADDR="+httpAddr,
		"SAGARUNNER_GROUP="+s.group,
		"SAGARUNNER_LOG_LEVEL=warn",
	)
	if s.cpuProfile != "" {
		cmd.Env = append(cmd.Env, "SAGARUNNER_CPUPROFILE="+s.cpuProfile)
	}
	cmd.Env = append(cmd.Env, s.env...)
	cmd.Stdout = s.log
	cmd.Stderr = s.log
	// Tied to the bench: a bench killed with -9 leaves no runner behind.
	if err := redisserver.StartTied(cmd); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("bench: start the runner %v: %w", argv, err)
	}
	c := &child{cmd: cmd, http: "http://" + httpAddr, dir: dir, done: make(chan error, 1)}
	go func() { c.done <- cmd.Wait(); close(c.done) }()
	return c, nil
}

// waitHTTPReady polls the gateway's /readyz until it answers 200.
func waitHTTPReady(ctx context.Context, base string, c *child) error {
	cl := &http.Client{Timeout: time.Second}
	for {
		if c != nil {
			select {
			case err := <-c.done:
				return fmt.Errorf("bench: the runner exited before it was ready: %v", err)
			default:
			}
		}
		resp, err := cl.Get(base + "/readyz")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		// The gateway logs every 503 it answers: poll gently.
		if !sleepCtx(ctx, 250*time.Millisecond) {
			return fmt.Errorf("bench: the runner's gateway %s never became ready: %w", base, ctx.Err())
		}
	}
}

// stop asks the runner to shut down gracefully (SIGTERM: finish, commit,
// leave the group, write the profile) and waits for it.
func (c *child) stop() error {
	defer os.RemoveAll(c.dir)
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	select {
	case err := <-c.done:
		return err
	case <-time.After(60 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
		return errors.New("bench: the runner did not stop within 60 s of SIGTERM; killed")
	}
}

// procStats are one process's resource figures from /proc.
type procStats struct {
	peakRSS float64 // MiB, VmHWM
	rss     float64 // MiB, VmRSS
	cpu     float64 // seconds of user and system time
}

// clockTicks is USER_HZ, which Linux fixes at 100 for every architecture
// Go runs on; /proc/<pid>/stat counts CPU time in it.
const clockTicks = 100

func readProc(pid int) (procStats, error) {
	var st procStats
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return st, fmt.Errorf("bench: runner memory: %w", err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "VmHWM" && k != "VmRSS") {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		kb, _ := strconv.ParseFloat(f[0], 64)
		if k == "VmHWM" {
			st.peakRSS = kb / 1024
		} else {
			st.rss = kb / 1024
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return st, fmt.Errorf("bench: runner CPU time: %w", err)
	}
	// The command name may hold spaces; fields count from after its ')'.
	s := string(stat)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return st, fmt.Errorf("bench: short /proc/%d/stat", pid)
	}
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	st.cpu = (utime + stime) / clockTicks
	return st, nil
}

// loadAverage is the 1-minute load average, to tell a quiet machine from a
// busy one when reading the figures.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
