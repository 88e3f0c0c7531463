package test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sagarunner/sagarunner/internal/redistest"
	"github.com/sagarunner/sagarunner/internal/testutil"
)

// readmeCommands are the README's worked example, line for line. The test
// below runs each one's equivalent (a kgo client for kcat, net/http for
// curl) against a process built as `sagarunner dev` builds it; checking
// that the README still holds these lines makes an edit of either side fail
// until the other follows.
var readmeCommands = []string{
	`echo '{"productId":"product-1","brief":"summer vibes"}' | kcat -P -b localhost:9092 -t job-posts -k r-1`,
	`curl -s 'localhost:8080/tasks?domain=workflow'`,
	`curl -s localhost:8080/tasks/workflow/product-1`,
	`curl -s -X POST localhost:8080/ProceedTask -d '{"taskId":"product-1","data":{"decision":"approved","user":"alice"}}'`,
	`kcat -C -b localhost:9092 -t HTM_TASK_CLOSED_NOTIFICATION -e -q`,
	`kcat -C -b localhost:9092 -t job-posts-approved -e -q`,
	// Proceeding over Kafka: a new key and product, and the direct action
	// on the request topic (on the trigger topic it would start an instance).
	`echo '{"productId":"product-3","brief":"winter"}' | kcat -P -b localhost:9092 -t job-posts -k r-3`,
	`echo '` + kafkaProceed + `' | kcat -P -b localhost:9092 -t sagarunner-requests -k p-3`,
	// Timeouts and escalation.
	`echo '{"productId":"product-2","brief":"autumn"}' | kcat -P -b localhost:9092 -t job-posts -k r-2`,
	"curl -X POST localhost:8080/TimeoutTask -d '{\"taskId\":\"product-2\"}'",
	`curl -s 'localhost:8080/tasks?domain=workflow&role=director'`,
}

// kafkaProceed is the README's ProceedTask envelope for sagarunner-requests.
const kafkaProceed = `{"requestMeta":{"requestId":"p-3"},"eventMeta":{"action":"ProceedTask","domain":"workflow","inputElement":"parameters","parameters":{"taskIdPath":"taskId","enrichPath":"decision","inputPattern":"data"}},"payload":{"parameters":{"taskId":"product-3","data":{"decision":"approved","user":"bob"}}}}`

// readmeSetupCommands are README lines this test only requires to be
// there: what they do is tested where it is built (the binary by
// binary_test.go, version in cmd/sagarunner, scripts/test by CI running it).
var readmeSetupCommands = []string{
	"go run ./cmd/sagarunner dev",
	"./scripts/test",
	"go install ./cmd/sagarunner",
	"sagarunner version",
	"docker build -t sagarunner .",
}

// curlPost sends a body the way `curl -X POST -d` does, form content type
// included: the hooks must not depend on a JSON content type.
func curlPost(t *testing.T, url, body string) (int, []byte) {
	t.Helper()
	res, err := http.Post(url, "application/x-www-form-urlencoded", bytes.NewReader([]byte(body)))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, b
}

// TestReadmeWorkedExample follows the README's worked example step by step.
func TestReadmeWorkedExample(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, cmd := range append(readmeCommands, readmeSetupCommands...) {
		if !bytes.Contains(readme, []byte(cmd)) {
			t.Errorf("README.md no longer holds the command %s; update this test with it", cmd)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	redisAddr, _ := redistest.Start(t)
	cluster := newCluster(t)
	brokers := cluster.ListenAddrs()
	p := startProcess(t, "dev", newConfig(t, brokers, redisAddr, sagaDir(t)))
	kcat := newClient(t, brokers)
	out := readTopics(t, brokers, notificationTopic, "job-posts-approved", deadLetterTopic)

	t.Run("1. publish a job post", func(t *testing.T) {
		// echo adds a newline; kcat -P sends each line without it.
		produce(t, kcat, &kgo.Record{Topic: "job-posts", Key: []byte("r-1"), Value: []byte(`{"productId":"product-1","brief":"summer vibes"}`)})
	})

	t.Run("2. see the waiting task in the inbox", func(t *testing.T) {
		var task gjson.Result
		testutil.Eventually(t, waitLong, poll, func() error {
			st, body := do(t, "GET", p.base+"/tasks?domain=workflow", "", "")
			if st != http.StatusOK {
				return fmt.Errorf("GET /tasks: %d %s", st, body)
			}
			for _, tk := range gjson.ParseBytes(body).Array() {
				if tk.Get("taskId").String() == "product-1" {
					task = tk
					return nil
				}
			}
			return fmt.Errorf("product-1 not in the inbox: %s", body)
		})
		want := map[string]string{"domain": "workflow", "taskName": "Job Post Approval", "taskRoles": `["admin","manager"]`,
			"saga": "job_post_approval", "stepId": "approve", "requestId": "r-1", "status": "WAITING",
			"data": `{"data":{"brief":"summer vibes","productId":"product-1"}}`}
		for k, v := range want {
			got := task.Get(k)
			if got.String() != v && !jsonEqual([]byte(got.Raw), []byte(v)) {
				t.Errorf("inbox %s = %s, want %s", k, got.Raw, v)
			}
		}
		if task.Get("envelope").Exists() {
			t.Errorf("the inbox shows the suspended envelope: %s", task.Raw)
		}
		st, body := do(t, "GET", p.base+"/tasks/workflow/product-1", "", "")
		if st != http.StatusOK || gjson.GetBytes(body, "status").String() != "WAITING" {
			t.Errorf("GET /tasks/workflow/product-1: %d %s", st, body)
		}
	})

	t.Run("3. approve it through the generic ProceedTask hook", func(t *testing.T) {
		st, body := curlPost(t, p.base+"/ProceedTask", `{"taskId":"product-1","data":{"decision":"approved","user":"alice"}}`)
		if st != http.StatusOK {
			t.Fatalf("POST /ProceedTask: %d %s", st, body)
		}
		if got := gjson.GetBytes(body, "task.parameters"); !jsonEqual([]byte(got.Raw), []byte(`{"productId":"product-1","brief":"summer vibes"}`)) {
			t.Errorf("answer task.parameters = %s", got.Raw)
		}
		if got := gjson.GetBytes(body, "task.decision"); !jsonEqual([]byte(got.Raw), []byte(`{"decision":"approved","user":"alice"}`)) {
			t.Errorf("answer task.decision = %s", got.Raw)
		}
	})

	t.Run("4. read the notification and the saga's output", func(t *testing.T) {
		n := out.waitFor(t, notificationTopic, "product-1", nil)
		checkNotification(t, n, map[string]any{"taskId": "product-1", "domain": "workflow", "status": "COMPLETED",
			"saga": "job_post_approval", "stepId": "approve", "requestId": "r-1", "taskName": "Job Post Approval",
			"closedBy": "", "data": map[string]any{"decision": "approved", "user": "alice"}}, 60000)
		approved := out.waitFor(t, "job-posts-approved", "r-1", nil)
		if !jsonEqual(approved.Value, []byte(`{"by":"alice","id":"product-1"}`)) {
			t.Errorf("job-posts-approved: %s", approved.Value)
		}
	})

	t.Run("the answers the README promises", func(t *testing.T) {
		tests := []struct {
			name     string
			body     string
			wantCode int
		}{
			{"proceeding the same task again", `{"taskId":"product-1","data":{"decision":"approved","user":"alice"}}`, http.StatusConflict},
			{"an unknown task", `{"taskId":"product-404","data":{}}`, http.StatusNotFound},
			{"a body without taskId", `{"data":{"decision":"approved"}}`, http.StatusBadRequest},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if st, body := curlPost(t, p.base+"/ProceedTask", tt.body); st != tt.wantCode {
					t.Errorf("status %d, want %d: %s", st, tt.wantCode, body)
				}
			})
		}
		t.Run("a record that is not JSON", func(t *testing.T) {
			produce(t, kcat, &kgo.Record{Topic: "job-posts", Key: []byte("r-bad"), Value: []byte("summer vibes")})
			dl := out.waitFor(t, deadLetterTopic, "r-bad", nil)
			if gjson.GetBytes(dl.Value, "error").String() == "" {
				t.Errorf("dead letter without a reason: %s", dl.Value)
			}
		})
	})

	t.Run("proceed over Kafka on sagarunner-requests", func(t *testing.T) {
		// Running the example again with the same key is a replay of r-1:
		// it must leave product-1 as it was.
		produce(t, kcat, &kgo.Record{Topic: "job-posts", Key: []byte("r-1"), Value: []byte(`{"productId":"product-1","brief":"summer vibes"}`)})
		produce(t, kcat, &kgo.Record{Topic: "job-posts", Key: []byte("r-3"), Value: []byte(`{"productId":"product-3","brief":"winter"}`)})
		waitTask(t, p.base, "", "workflow", "product-3", "WAITING")
		produce(t, kcat, &kgo.Record{Topic: requestTopic, Key: []byte("p-3"), Value: []byte(kafkaProceed)})
		approved := out.waitFor(t, "job-posts-approved", "r-3", nil)
		if !jsonEqual(approved.Value, []byte(`{"by":"bob","id":"product-3"}`)) {
			t.Errorf("job-posts-approved: %s", approved.Value)
		}
		n := out.waitFor(t, notificationTopic, "product-3", nil)
		checkNotification(t, n, map[string]any{"taskId": "product-3", "status": "COMPLETED", "requestId": "r-3",
			"data": map[string]any{"decision": "approved", "user": "bob"}}, 60000)
		// The r-1 replay was produced before r-3's round trip (a start, a
		// proceed, a continuation), which gives it that long to do
		// something wrong: an absence can only be checked after a wait.
		st, body := do(t, "GET", p.base+"/tasks/workflow/product-1", "", "")
		if st != http.StatusOK || gjson.GetBytes(body, "status").String() != "COMPLETED" {
			t.Errorf("after publishing r-1 again, product-1: %d %s, want it still COMPLETED", st, body)
		}
		if st, body := do(t, "GET", p.base+"/tasks?domain=workflow", "", ""); st == http.StatusOK {
			for _, tk := range gjson.ParseBytes(body).Array() {
				if tk.Get("requestId").String() == "r-1" {
					t.Errorf("publishing r-1 again started a task: %s", tk.Raw)
				}
			}
		}
	})

	t.Run("time a task out by hand", func(t *testing.T) {
		produce(t, kcat, &kgo.Record{Topic: "job-posts", Key: []byte("r-2"), Value: []byte(`{"productId":"product-2","brief":"autumn"}`)})
		waitTask(t, p.base, "", "workflow", "product-2", "WAITING")
		if st, body := curlPost(t, p.base+"/TimeoutTask", `{"taskId":"product-2"}`); st != http.StatusOK {
			t.Fatalf("POST /TimeoutTask: %d %s", st, body)
		}
		n := out.waitFor(t, notificationTopic, "product-2", nil)
		checkNotification(t, n, map[string]any{"taskId": "product-2", "status": "TIMEOUT", "stepId": "approve"}, 60000)
		// What the README warns of after 60 s: the task is closed.
		st, body := curlPost(t, p.base+"/ProceedTask", `{"taskId":"product-2","data":{"decision":"approved","user":"alice"}}`)
		if st != http.StatusConflict || gjson.GetBytes(body, "code").String() != "TASK_CLOSED" {
			t.Errorf("POST /ProceedTask of a timed-out task: %d %s, want 409 TASK_CLOSED", st, body)
		}
		// The TIMEOUT route escalates to a director.
		testutil.Eventually(t, waitLong, poll, func() error {
			st, body := do(t, "GET", p.base+"/tasks?domain=workflow&role=director", "", "")
			for _, tk := range gjson.ParseBytes(body).Array() {
				if tk.Get("requestId").String() == "r-2" && tk.Get("stepId").String() == "escalate" &&
					strings.HasPrefix(tk.Get("taskId").String(), "r-2:escalate:") {
					return nil
				}
			}
			return fmt.Errorf("no escalation task for r-2: %d %s", st, body)
		})
	})
}
