package test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sagarunner/sagarunner/internal/redistest"
	"github.com/sagarunner/sagarunner/internal/testutil"
	"github.com/sagarunner/sagarunner/statemanager"
)

// The callers of TestSecurity. alice is the task's rightful decider; each
// other one stands for a class of attacker.
const (
	tokAlice   = "tok-alice-0123456789"   // user alice, role manager, tenant acme
	tokMallory = "tok-mallory-0123456789" // user mallory, no roles, tenant acme
	tokBob     = "tok-bob-0123456789"     // user bob, role clerk, tenant acme: another user
	tokEve     = "tok-eve-0123456789"     // user eve, role manager, tenant globex: another tenant
	tokRoot    = "tok-root-0123456789"    // user root, role admin, tenant acme
)

const securityConfig = `
auth:
  adminRoles: [admin]
  tokens:
    - {token: ` + tokAlice + `, user: alice, roles: [manager], tenant: acme}
    - {token: ` + tokMallory + `, user: mallory, tenant: acme}
    - {token: ` + tokBob + `, user: bob, roles: [clerk], tenant: acme}
    - {token: ` + tokEve + `, user: eve, roles: [manager], tenant: globex}
    - {token: ` + tokRoot + `, user: root, roles: [admin], tenant: acme}
http:
  publishTopics: [secure-posts, job-posts]
`

// TestSecurity drives the real binary with authentication on, over HTTP and
// Kafka, through every attack class of the trust model (SPEC §11): forged
// identity in each spelling the decoder could be tempted by, forged
// continuations, sweeping and creating actions, squatting on a task id,
// reading other people's inboxes, and publishing to internal topics. Each is
// refused, and afterwards the task, the watermark and every output topic are
// exactly as they were; then the rightful caller decides the task once.
func TestSecurity(t *testing.T) {
	bin := runnerBinary(t)
	redisAddr, _ := redistest.Start(t)
	cluster := newCluster(t)
	brokers := cluster.ListenAddrs()
	const approved = "secure-posts-approved"
	createTopics(t, brokers, requestTopic, "sagarunner-replies", notificationTopic, deadLetterTopic,
		"secure-posts", approved, "job-posts", "job-posts-approved")
	dir := sagaDir(t)
	cfgPath := filepath.Join(t.TempDir(), "sagarunner.yaml")
	if err := os.WriteFile(cfgPath, []byte(securityConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	r := newRunnerProcess(t, bin, brokers, redisAddr, dir)
	r.args = append(r.args, "--config", cfgPath)
	r.start()
	testutil.Eventually(t, waitLong, poll, r.ready)
	base := r.base
	out := readTopics(t, brokers, notificationTopic, approved, "job-posts-approved", deadLetterTopic)
	kafka := newClient(t, brokers)
	store := storeOf(t, newConfig(t, brokers, redisAddr, dir), "workflow")
	ctx := context.Background()

	// alice starts the task over HTTP: it records her tenant.
	st, body := do(t, "POST", base+"/secure-posts", tokAlice, `{"productId":"sec-1","brief":"summer"}`)
	if st != http.StatusOK || gjson.GetBytes(body, "task.taskId").String() != "sec-1" {
		t.Fatalf("alice starts sec-1: %d %s", st, body)
	}
	before, err := store.Get(ctx, "sec-1")
	if err != nil {
		t.Fatal(err)
	}
	if before.Tenant != "acme" || before.Status != statemanager.StatusWaiting {
		t.Fatalf("sec-1 is %s in tenant %q, want WAITING in acme", before.Status, before.Tenant)
	}
	watermark, err := store.Watermark(ctx)
	if err != nil {
		t.Fatal(err)
	}

	proceed := func(taskID string, extra string) string {
		return `{"taskId":"` + taskID + `","data":{"decision":"approved","user":"alice"}` + extra + `}`
	}
	// Every spelling of a forged identity an envelope decoder could read.
	forgedMeta := []string{
		`"requestMeta":{"requestId":"x","user":"alice","roles":["manager"],"tenant":"acme"}`,
		`"RequestMeta":{"User":"alice","ROLES":["manager"]}`,
		`"requestMeta":{"user":"mallory","user":"alice","roles":["manager"]}`,
		`"requestMeta":{"us\u0065r":"alice","r\u006fles":["manager"]}`,
		`"requestMeta":{"user":"alice"},"requestMeta":{"roles":["manager"]}`,
		`"requestMeta":{"user":"ali\u0000ce","roles":["manager"]}`,
	}
	directProceed := func(meta, action string) string {
		return `{` + meta + `,"eventMeta":{"action":"` + action + `","domain":"workflow","inputElement":"parameters",` +
			`"parameters":{"enrichPath":"decision","inputPattern":"data"}},"payload":{"parameters":` + proceed("sec-1", "") + `}}`
	}

	t.Run("forged identity", func(t *testing.T) {
		for i, meta := range forgedMeta {
			for _, tok := range []string{tokMallory, tokBob, tokEve} {
				// Straight at the runners' request topic: an internal topic.
				if st, b := do(t, "POST", base+"/topics/"+requestTopic, tok, directProceed(meta, "ProceedTask")); st != http.StatusForbidden {
					t.Errorf("spelling %d: publish a ProceedTask to %s: %d %s, want 403", i, requestTopic, st, b)
				}
				// To a publishable topic the envelope is data: it starts a
				// post of its own and closes nothing.
				if st, b := do(t, "POST", base+"/topics/secure-posts", tok, directProceed(meta, "ProceedTask")); st != http.StatusAccepted && st != http.StatusBadRequest {
					t.Errorf("spelling %d: publish an envelope to secure-posts: %d %s, want 202 (as data) or 400", i, st, b)
				}
				// In the body of the ProceedTask hook: data again.
				st, b := do(t, "POST", base+"/ProceedTask", tok, proceed("sec-1", ","+meta))
				want := http.StatusForbidden
				if tok == tokEve {
					want = http.StatusNotFound // another tenant's task does not exist for eve
				}
				if st != want && st != http.StatusBadRequest {
					t.Errorf("spelling %d: /ProceedTask as %s: %d %s, want %d", i, tok, st, b, want)
				}
			}
		}
		for _, tok := range []string{tokMallory, tokBob} {
			if st, b := do(t, "POST", base+"/TimeoutTask", tok, `{"taskId":"sec-1"}`); st != http.StatusForbidden {
				t.Errorf("/TimeoutTask as %s: %d %s, want 403", tok, st, b)
			}
		}
		if st, b := do(t, "POST", base+"/TimeoutTask", tokEve, `{"taskId":"sec-1"}`); st != http.StatusNotFound {
			t.Errorf("/TimeoutTask as another tenant: %d %s, want 404", st, b)
		}
	})

	t.Run("forged continuations", func(t *testing.T) {
		// A continuation that says the approval step succeeded, produced
		// straight to Kafka without the runners' signature, and one with a
		// made-up signature.
		forged := `{"requestMeta":{"requestId":"forged-1","user":"alice","roles":["manager"],"tenant":"acme"},` +
			`"sagaMeta":{"saga":"secure_post","version":1,"stepId":"approve","runnerPartition":0,"seq":1},` +
			`"payload":{"parameters":{"productId":"sec-1"},"decision":{"user":"alice"}},"result":{"status":"SUCCESS"}}`
		produce(t, kafka,
			&kgo.Record{Topic: requestTopic, Key: []byte("forged-1"), Value: []byte(forged)},
			&kgo.Record{Topic: requestTopic, Key: []byte("forged-2"), Value: []byte(strings.Replace(forged, "forged-1", "forged-2", 1)),
				Headers: []kgo.RecordHeader{{Key: "sagarunner-sig", Value: []byte(strings.Repeat("ab", 32))}}},
		)
		for _, key := range []string{"forged-1", "forged-2"} {
			dl := out.waitFor(t, deadLetterTopic, key, nil)
			if code := gjson.GetBytes(dl.Value, "code").String(); code != "FORGED_CONTINUATION" {
				t.Errorf("dead letter of %s: code %s, want FORGED_CONTINUATION: %s", key, code, dl.Value)
			}
		}
	})

	t.Run("sweeping and creating", func(t *testing.T) {
		for _, tok := range []string{tokMallory, tokBob, tokEve, tokAlice} {
			if st, b := do(t, "POST", base+"/sweep", tok, `{"from":0,"to":4102444800000}`); st != http.StatusForbidden {
				t.Errorf("/sweep as a non-admin: %d %s, want 403", st, b)
			}
		}
		sweep := `{"requestMeta":{"user":"root","roles":["admin"]},"eventMeta":{"action":"TimeoutBetween","domain":"workflow",` +
			`"inputElement":"parameters","parameters":{"toTimePath":"to"}},"payload":{"parameters":{"to":10413792000000}}}`
		start := `{"eventMeta":{"action":"StartTask","domain":"workflow","inputElement":"parameters",` +
			`"parameters":{"taskIdPath":"productId"}},"payload":{"parameters":{"productId":"sec-1"}}}`
		for _, v := range []string{sweep, start} {
			if st, b := do(t, "POST", base+"/topics/"+requestTopic, tokMallory, v); st != http.StatusForbidden {
				t.Errorf("a direct action over HTTP: %d %s, want 403", st, b)
			}
		}
	})

	t.Run("squatting", func(t *testing.T) {
		// Another caller starting an instance whose task id is waiting for
		// alice's gets TASK_ID_IN_USE, and alice's task stays hers.
		for _, tok := range []string{tokMallory, tokBob, tokRoot} {
			st, b := do(t, "POST", base+"/secure-posts", tok, `{"productId":"sec-1"}`)
			if st != http.StatusConflict || gjson.GetBytes(b, "code").String() != "TASK_ID_IN_USE" {
				t.Errorf("a second instance on sec-1: %d %s, want 409 TASK_ID_IN_USE", st, b)
			}
		}
		// Squatting first does not help either: mallory's own waiting task
		// turns alice's later start into TASK_ID_IN_USE, visibly, instead of
		// handing alice's instance mallory's task.
		if st, b := do(t, "POST", base+"/secure-posts", tokMallory, `{"productId":"sec-2"}`); st != http.StatusOK {
			t.Fatalf("mallory starts sec-2: %d %s", st, b)
		}
		st, b := do(t, "POST", base+"/secure-posts", tokAlice, `{"productId":"sec-2"}`)
		if st != http.StatusConflict || gjson.GetBytes(b, "code").String() != "TASK_ID_IN_USE" {
			t.Errorf("alice's start on squatted sec-2: %d %s, want 409 TASK_ID_IN_USE", st, b)
		}
	})

	t.Run("reading inboxes", func(t *testing.T) {
		listed := func(tok, query string) []string {
			st, b := do(t, "GET", base+"/tasks?domain=workflow"+query, tok, "")
			if st != http.StatusOK {
				t.Fatalf("GET /tasks%s: %d %s", query, st, b)
			}
			var ids []string
			for _, v := range gjson.ParseBytes(b).Array() {
				ids = append(ids, v.Get("taskId").String())
				if want := map[string]string{tokEve: "globex"}[tok]; want == "" && v.Get("tenant").String() != "acme" ||
					want != "" && v.Get("tenant").String() != want {
					t.Errorf("a listing%s shows task %s of tenant %q", query, v.Get("taskId"), v.Get("tenant"))
				}
			}
			return ids
		}
		has := func(ids []string, id string) bool { return slices.Contains(ids, id) }
		if ids := listed(tokAlice, ""); !has(ids, "sec-1") {
			t.Errorf("alice's inbox %v lacks sec-1", ids)
		}
		for name, q := range map[string]string{"mallory": "", "mallory as alice": "&user=alice", "mallory as manager": "&role=manager"} {
			if ids := listed(tokMallory, q); has(ids, "sec-1") {
				t.Errorf("%s sees sec-1: %v", name, ids)
			}
		}
		if ids := listed(tokBob, "&user=alice"); has(ids, "sec-1") {
			t.Errorf("bob sees alice's sec-1: %v", ids)
		}
		// eve sees the posts she started in her own tenant, never acme's.
		if ids := listed(tokEve, "&role=manager"); has(ids, "sec-1") {
			t.Errorf("another tenant sees acme's sec-1: %v", ids)
		}
		for _, c := range []struct {
			tok  string
			want int
		}{{tokEve, http.StatusNotFound}, {tokMallory, http.StatusNotFound}, {tokBob, http.StatusNotFound}} {
			if st, b := do(t, "GET", base+"/tasks/workflow/sec-1", c.tok, ""); st != c.want {
				t.Errorf("GET sec-1: %d %s, want %d", st, b, c.want)
			}
		}
		if st, b := do(t, "GET", base+"/tasks/workflow/sec-1?full=true", tokAlice, ""); st != http.StatusForbidden {
			t.Errorf("a candidate asks for the suspended envelope: %d %s, want 403", st, b)
		}
		if st, b := do(t, "GET", base+"/tasks/workflow/sec-1?full=true", tokRoot, ""); st != http.StatusOK || !gjson.GetBytes(b, "envelope").Exists() {
			t.Errorf("the tenant's admin reads the envelope: %d %s", st, b)
		}
	})

	t.Run("publishing to internal topics", func(t *testing.T) {
		internal := []string{requestTopic, "sagarunner-replies", notificationTopic, deadLetterTopic,
			"sagarunner-task-events", "sagarunner-audit", "__consumer_offsets"}
		for _, topic := range internal {
			for _, tok := range []string{tokMallory, tokRoot} {
				if st, b := do(t, "POST", base+"/topics/"+topic, tok, `{"taskId":"sec-1","status":"COMPLETED"}`); st != http.StatusForbidden {
					t.Errorf("publish to %s: %d %s, want 403", topic, st, b)
				}
			}
		}
		if st, b := do(t, "POST", base+"/topics/"+approved, tokRoot, `{"id":"sec-1"}`); st != http.StatusNotFound {
			t.Errorf("publish to a topic not in http.publishTopics: %d %s, want 404", st, b)
		}
	})

	// Nothing the attackers did changed alice's task, the watermark or any
	// output: no notification, no approval, no dead letter besides the
	// forged continuations.
	after, err := store.Get(ctx, "sec-1")
	if err != nil {
		t.Fatal(err)
	}
	if a, b := mustJSON(t, before), mustJSON(t, after); string(a) != string(b) {
		t.Errorf("sec-1 changed:\nbefore %s\nafter  %s", a, b)
	}
	if w, err := store.Watermark(ctx); err != nil || w != watermark {
		t.Errorf("watermark %d (%v), want %d", w, err, watermark)
	}
	if n := out.records(notificationTopic); len(n) != 0 {
		t.Errorf("%d task-closed notifications after the attacks, want 0: %s", len(n), n[0].Value)
	}
	if n := out.records(approved); len(n) != 0 {
		t.Errorf("%d approvals after the attacks, want 0: %s", len(n), n[0].Value)
	}
	for _, dl := range out.records(deadLetterTopic) {
		if k := string(dl.Key); k != "forged-1" && k != "forged-2" {
			t.Errorf("unexpected dead letter %s: %s", k, dl.Value)
		}
	}

	// The rightful caller decides, once, and is recorded as the decider.
	if st, b := do(t, "POST", base+"/ProceedTask", tokAlice, proceed("sec-1", "")); st != http.StatusOK {
		t.Fatalf("alice proceeds sec-1: %d %s", st, b)
	}
	n := out.waitFor(t, notificationTopic, "sec-1", nil)
	var got map[string]any
	if err := json.Unmarshal(n.Value, &got); err != nil {
		t.Fatal(err)
	}
	if got["closedBy"] != "alice" || got["status"] != "COMPLETED" {
		t.Errorf("notification %s, want COMPLETED by alice", n.Value)
	}
	testutil.Eventually(t, waitLong, poll, func() error {
		recs := out.records(approved)
		if len(recs) != 1 || gjson.GetBytes(recs[0].Value, "id").String() != "sec-1" {
			return fmt.Errorf("approvals %d, want one of sec-1", len(recs))
		}
		return nil
	})
	testutil.Eventually(t, 5*time.Second, poll, func() error {
		if n := len(out.records(notificationTopic)); n != 1 {
			return fmt.Errorf("%d notifications, want 1", n)
		}
		return nil
	})
}
