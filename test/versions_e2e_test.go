package test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sagarunner/sagarunner/internal/redistest"
	"github.com/sagarunner/sagarunner/internal/testutil"
	"github.com/sagarunner/sagarunner/saga"
	"github.com/sagarunner/sagarunner/statemanager"
)

// Topics of testdata/versions/application_v*.yaml and of this test.
const (
	versionsTrigger = "versions-applications"
	versionsDecided = "versions-decided"
	versionsReplies = "versions-replies"
	versionsDomain  = "versions"
)

// TestVersionsSideBySide runs the binary through a saga's upgrade and a
// rollback of its old version (SPEC §13):
//
//  1. with version 1 alone, two instances start and wait on their tasks;
//  2. the runner restarts with version 2 beside version 1: a new trigger
//     starts on version 2, and a waiting version 1 instance resumes on
//     version 1's steps when its task is proceeded (each version publishes
//     its own number);
//  3. the runner restarts with version 2 alone: start-up warns that an
//     instance waits on version 1, and proceeding its task dead-letters the
//     continuation with UNKNOWN_SAGA_VERSION instead of running version 2.
func TestVersionsSideBySide(t *testing.T) {
	bin := runnerBinary(t)
	redisAddr, _ := redistest.Start(t)
	cluster := newCluster(t)
	brokers := cluster.ListenAddrs()
	createTopics(t, brokers, versionsTrigger, versionsDecided, versionsReplies, requestTopic, notificationTopic, deadLetterTopic)
	out := readTopics(t, brokers, versionsDecided, deadLetterTopic)
	cl := newClient(t, brokers)

	dir := t.TempDir()
	deploy := func(files ...string) {
		t.Helper()
		old, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
		for _, f := range old {
			if err := os.Remove(f); err != nil {
				t.Fatal(err)
			}
		}
		for _, f := range files {
			b, err := os.ReadFile(filepath.Join("testdata", "versions", f))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	store := storeOf(t, newConfig(t, brokers, redisAddr, dir), versionsDomain)
	proc := newRunnerProcess(t, bin, brokers, redisAddr, dir)
	run := func() {
		t.Helper()
		proc.start()
		testutil.Eventually(t, waitLong, poll, proc.ready)
		testutil.Eventually(t, waitLong, poll, proc.assigned)
	}
	stop := func() {
		t.Helper()
		if err := proc.terminate(40 * time.Second); err != nil {
			t.Fatalf("SIGTERM: %v", err)
		}
	}
	apply := func(id string) {
		t.Helper()
		v := `{"requestMeta":{"requestId":"r-` + id + `"},"payload":{"parameters":{"applicationId":"` + id + `"}}}`
		produce(t, cl, &kgo.Record{Topic: versionsTrigger, Key: []byte("r-" + id), Value: []byte(v)})
	}
	// waiting polls until the task waits and returns the version its
	// instance started on, as its suspended envelope carries it.
	waiting := func(id string) int64 {
		t.Helper()
		var task *statemanager.Task
		testutil.Eventually(t, waitLong, poll, func() error {
			var err error
			if task, err = store.Get(t.Context(), id); err != nil {
				return err
			}
			if !task.Waiting() {
				return fmt.Errorf("task %s is %s", id, task.Status)
			}
			return nil
		})
		return gjson.GetBytes(task.Envelope, "sagaMeta.version").Int()
	}
	proceed := func(id string) {
		t.Helper()
		key := "proceed-" + id
		v := `{"requestMeta":{"requestId":"` + key + `","user":"rita","roles":["reviewer"],"replyTo":"` + versionsReplies + `"},` +
			`"eventMeta":{"action":"ProceedTask","domain":"` + versionsDomain + `","inputElement":"parameters"},` +
			`"payload":{"parameters":{"taskId":"` + id + `"}}}`
		produce(t, cl, &kgo.Record{Topic: requestTopic, Key: []byte(key), Value: []byte(v)})
	}
	decided := func(id, version string) {
		t.Helper()
		rec := out.waitFor(t, versionsDecided, "r-"+id, nil)
		if got := gjson.GetBytes(rec.Value, "version").String(); got != version {
			t.Errorf("application %s decided by %s, want %s: %s", id, got, version, rec.Value)
		}
	}

	// 1. Version 1 alone: two instances wait.
	deploy("application_v1.yaml")
	run()
	apply("app-1")
	apply("app-2")
	for _, id := range []string{"app-1", "app-2"} {
		if v := waiting(id); v != 1 {
			t.Fatalf("%s started on version %d, want 1", id, v)
		}
	}
	stop()

	// 2. Version 2 beside version 1.
	deploy("application_v1.yaml", "application_v2.yaml")
	run()
	apply("app-3")
	if v := waiting("app-3"); v != 2 {
		t.Fatalf("a new trigger started on version %d, want 2", v)
	}
	proceed("app-1")
	decided("app-1", "v1")
	proceed("app-3")
	decided("app-3", "v2")
	if strings.Contains(proc.logSince(), "instances wait on a saga version that is not loaded") {
		t.Errorf("start-up warned about unloaded versions with both loaded:\n%s", proc.logSince())
	}
	stop()

	// 3. Version 2 alone, app-2 still waiting on version 1.
	deploy("application_v2.yaml")
	run()
	testutil.Eventually(t, waitLong, poll, func() error {
		log := proc.logSince()
		for _, want := range []string{"instances wait on a saga version that is not loaded", "domain=versions",
			"saga=application_review", "version=1", "loadedVersions=[2]", "waitingTasks=1"} {
			if !strings.Contains(log, want) {
				return fmt.Errorf("no start-up warning with %q yet", want)
			}
		}
		return nil
	})
	proceed("app-2")
	dl := out.waitFor(t, deadLetterTopic, "r-app-2", nil)
	if code := gjson.GetBytes(dl.Value, "code").String(); code != saga.DeadUnknownVersion {
		t.Errorf("dead letter code %q, want %s: %s", code, saga.DeadUnknownVersion, dl.Value)
	}
	if msg := gjson.GetBytes(dl.Value, "error").String(); !strings.Contains(msg, `saga "application_review" version 1 is not loaded (loaded: 2)`) {
		t.Errorf("dead letter error %q", msg)
	}
	// The decision is kept (an operator can load version 1 again and
	// replay the dead letter); nothing ran on version 2.
	task, err := store.Get(t.Context(), "app-2")
	if err != nil || task.Status != statemanager.StatusCompleted {
		t.Errorf("task app-2 = %+v, %v; want COMPLETED", task, err)
	}
	if recs := out.byKey(versionsDecided, "r-app-2"); len(recs) != 0 {
		t.Errorf("app-2 was decided on another version: %s", recs[0].Value)
	}
	stop()
}

// logSince returns the log of the runner started last.
func (r *runnerProcess) logSince() string {
	r.mu.Lock()
	starts := r.starts
	r.mu.Unlock()
	b, err := os.ReadFile(r.logPath)
	if err != nil {
		return ""
	}
	if i := bytes.LastIndex(b, []byte(fmt.Sprintf("==== start %d at", starts))); i >= 0 {
		b = b[i:]
	}
	return string(b)
}
