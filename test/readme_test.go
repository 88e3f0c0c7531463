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
	"curl -X POST localhost:8080/TimeoutTask -d '{\"taskId\":\"product-2\"}'",
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
	for _, cmd := range readmeCommands {
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

	t.Run("time a task out by hand", func(t *testing.T) {
		produce(t, kcat, &kgo.Record{Topic: "job-posts", Key: []byte("r-2"), Value: []byte(`{"productId":"product-2","brief":"autumn"}`)})
		waitTask(t, p.base, "", "workflow", "product-2", "WAITING")
		if st, body := curlPost(t, p.base+"/TimeoutTask", `{"taskId":"product-2"}`); st != http.StatusOK {
			t.Fatalf("POST /TimeoutTask: %d %s", st, body)
		}
		n := out.waitFor(t, notificationTopic, "product-2", nil)
		checkNotification(t, n, map[string]any{"taskId": "product-2", "status": "TIMEOUT", "stepId": "approve"}, 60000)
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
