package test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

// quietRedisLog drops go-redis's own log lines (dial failures while a test
// has stopped redis-server on purpose); the tests report what matters.
type quietRedisLog struct{}

func (quietRedisLog) Printf(context.Context, string, ...any) {}

func TestMain(m *testing.M) {
	redis.SetLogger(quietRedisLog{})
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// runnerBinary builds cmd/sagarunner once per test binary (with the race
// detector when the tests have it, so the subprocess is checked too) and
// returns its path. Fault tests need a process they can SIGKILL, which a
// goroutine is not.
func runnerBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("fault tests build the sagarunner binary and kill it repeatedly; skipped under -short")
	}
	binOnce.Do(func() {
		goBin, err := exec.LookPath("go")
		if err != nil {
			goBin = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
		}
		binDir, binErr = os.MkdirTemp("", "sagarunner-bin")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "sagarunner")
		args := []string{"build", "-o", binPath}
		if raceEnabled {
			args = append(args, "-race")
		}
		cmd := exec.Command(goBin, append(args, "../cmd/sagarunner")...)
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build ./cmd/sagarunner: %w\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// fastFailover makes the broker give up on a killed member after a few
// seconds instead of the 45 s session (and 60 s rebalance) clients ask for
// by default, so a restarted runner gets its partitions back within a
// bounded test. It rewrites the timeouts of every JoinGroup the broker
// receives, as an operator's group.max.session.timeout.ms would bound them.
// Clients still heartbeat every 3 s, within the session, and the only live
// member rejoins at once, within the rebalance timeout.
func fastFailover(c *kfake.Cluster) {
	c.ControlKey(int16(kmsg.JoinGroup), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if jg, ok := req.(*kmsg.JoinGroupRequest); ok {
			jg.SessionTimeoutMillis = 6000
			jg.RebalanceTimeoutMillis = 6000
		}
		return nil, nil, false
	})
}

// createTopics creates topics up front, so the test's readers see them
// from the start and records to topics only the test reads (replyTo) have
// somewhere to go.
func createTopics(t *testing.T, brokers []string, topics ...string) {
	t.Helper()
	adm := kadm.NewClient(newClient(t, brokers))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := adm.CreateTopics(ctx, partitions, 1, nil, topics...)
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Error(); err != nil {
		t.Fatal(err)
	}
}

// runnerProcess is `sagarunner run` as a subprocess, restarted after each
// kill with the same flags and a fresh HTTP port.
type runnerProcess struct {
	t       *testing.T
	bin     string
	args    []string
	env     []string
	logPath string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan error
	base   string
	starts int
}

// newRunnerProcess prepares `sagarunner run --insecure` against the
// test's broker, Redis and sagas, configured the way an operator would:
// flags for the addresses, SAGARUNNER_* variables for the rest.
func newRunnerProcess(t *testing.T, bin string, brokers []string, redisAddr, sagas string) *runnerProcess {
	r := &runnerProcess{
		t:   t,
		bin: bin,
		args: []string{"run", "--insecure", "--brokers", strings.Join(brokers, ","), "--redis", redisAddr,
			"--sagas", sagas, "--group", "fault"},
		env: append(os.Environ(),
			fmt.Sprintf("SAGARUNNER_TOPICS_PARTITIONS=%d", partitions),
			fmt.Sprintf("SAGARUNNER_REDIS_SHARDS=%d", partitions),
			"SAGARUNNER_TIMERS_POLLINTERVAL=20ms",
			"SAGARUNNER_LOG_LEVEL=info",
		),
		logPath: filepath.Join(t.TempDir(), "sagarunner.log"),
	}
	t.Cleanup(func() {
		r.mu.Lock()
		running := r.cmd != nil
		r.mu.Unlock()
		if running {
			r.kill()
		}
		if t.Failed() {
			r.dumpLog()
		}
	})
	return r
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// start launches the runner; its output is appended to one log across
// restarts.
func (r *runnerProcess) start() {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil {
		r.t.Fatal("runner already running")
	}
	addr := freeAddr(r.t)
	logf, err := os.OpenFile(r.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		r.t.Fatal(err)
	}
	r.starts++
	fmt.Fprintf(logf, "==== start %d at %s\n", r.starts, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(r.bin, append(r.args, "--http", addr)...)
	cmd.Env = r.env
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		r.t.Fatalf("start sagarunner: %v", err)
	}
	exited := make(chan error, 1)
	go func() {
		err := cmd.Wait()
		logf.Close()
		exited <- err
	}()
	r.cmd, r.exited, r.base = cmd, exited, "http://"+addr
}

// kill ends the runner with SIGKILL: no shutdown code runs.
func (r *runnerProcess) kill() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Signal(syscall.SIGKILL)
	<-r.exited
	r.cmd = nil
}

// terminate sends SIGTERM and returns the exit error (nil for status 0).
func (r *runnerProcess) terminate(within time.Duration) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return errors.New("runner not running")
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-r.exited:
		r.cmd = nil
		return err
	case <-time.After(within):
		_ = r.cmd.Process.Signal(syscall.SIGKILL)
		<-r.exited
		r.cmd = nil
		return fmt.Errorf("no exit within %v of SIGTERM", within)
	}
}

// ready reports whether the running runner answers /readyz.
func (r *runnerProcess) ready() error {
	r.mu.Lock()
	base := r.base
	r.mu.Unlock()
	res, err := http.Get(base + "/readyz")
	if err != nil {
		return err
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("/readyz: %d", res.StatusCode)
	}
	return nil
}

// assigned reports whether the runner started last has been given
// partitions, read from its log since its start marker.
func (r *runnerProcess) assigned() error {
	r.mu.Lock()
	starts := r.starts
	r.mu.Unlock()
	b, err := os.ReadFile(r.logPath)
	if err != nil {
		return err
	}
	marker := []byte(fmt.Sprintf("==== start %d at", starts))
	i := bytes.LastIndex(b, marker)
	if i < 0 || !bytes.Contains(b[i:], []byte("runner: partitions assigned")) {
		return fmt.Errorf("start %d has no partitions yet", starts)
	}
	return nil
}

// dumpLog prints the end of the runner's log.
func (r *runnerProcess) dumpLog() {
	b, err := os.ReadFile(r.logPath)
	if err != nil {
		r.t.Logf("runner log: %v", err)
		return
	}
	lines := bytes.Split(b, []byte("\n"))
	if len(lines) > 300 {
		lines = lines[len(lines)-300:]
	}
	r.t.Logf("end of the runner log (%d starts):\n%s", r.starts, bytes.Join(lines, []byte("\n")))
}
