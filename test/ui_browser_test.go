package test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sagarunner/sagarunner/internal/redistest"
	"github.com/sagarunner/sagarunner/internal/testutil"
)

// uiReviewSaga is the flow the browser test walks through: a review task
// for the clerks with two outcomes and one approval by legal, routed on
// the outcome.
const uiReviewSaga = `saga: ui_review
version: 1
description: A contract review walked through in the web inbox.
trigger:
  topic: ui-reviews
  businessKeyPath: parameters.contractId
steps:
  - id: review
    action: StartTask
    domain: workflow
    inputElement: parameters
    parameters:
      inputPattern: "{title: title, amount: amount, urgent: urgent}"
      taskIdPath: contractId
      taskName: Contract review
      taskRoles: clerk
      possibleOutcomes: approve,reject
      requiredApprovals: 1
      approverRoles: legal
      timeout: 3600000
    next: {approve: publish, reject: rework}
  - id: publish
    action: Publish
    parameters: {topic: ui-approved, pattern: "{id: parameters.contractId}"}
  - id: rework
    action: Publish
    parameters: {topic: ui-rework, pattern: "{id: parameters.contractId}"}
`

// uiConfig gives the runner static tokens for two tenants: alice (clerk)
// and bob (legal) of acme, who work the task, an intake service of acme
// that starts it, root, an admin of acme, and eve, a clerk of another
// tenant, who must see none of it.
const uiConfig = `auth:
  tokens:
    - {token: tok-intake, user: intake, roles: [service], tenant: acme}
    - {token: tok-alice, user: alice, roles: [clerk], tenant: acme}
    - {token: tok-bob, user: bob, roles: [legal], tenant: acme}
    - {token: tok-eve, user: eve, roles: [clerk, legal], tenant: globex}
    - {token: tok-root, user: root, roles: [ops], tenant: acme}
    - {token: tok-carl, user: carl, roles: [clerk], tenant: acme}
  adminRoles: [ops]
http:
  publishTopics: [ui-reviews]
`

// chromium finds the browser: skipped without one, except in CI, which
// installs it (.ci/run).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "/usr/bin/chromium"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed; CI installs the Debian packages chromium and chromium-driver")
	}
	t.Skip("chromium is not installed (apt-get install chromium chromium-driver)")
	return ""
}

// browser starts headless Chromium with a fresh profile and returns its
// allocator context; each person of the test gets a browser context of
// their own in it (separate cookies, like separate machines).
func browser(t *testing.T, ctx context.Context) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium(t)),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	alloc, cancel := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(cancel)
	root, cancelRoot := chromedp.NewContext(alloc)
	t.Cleanup(cancelRoot)
	if err := chromedp.Do(root); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return root
}

// person opens a browser context of its own (an incognito-like profile).
func person(t *testing.T, root context.Context) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(root, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	// The first run makes the tab, which lives as long as the context of
	// that run: it must not be a step's, which ends with the step.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 900)); err != nil {
		t.Fatalf("open a browser context: %v", err)
	}
	return ctx
}

// step runs browser actions with a deadline, naming the step on failure.
func step(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	get(t, ctx, what, chromedp.Steps(actions...))
}

// get runs one browser action with a deadline and returns its value; on
// failure it shows where the page was and what it held.
func get[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, waitLong)
	defer cancel()
	v, err := chromedp.Run(sctx, a)
	if err != nil {
		lctx, lcancel := context.WithTimeout(ctx, 5*time.Second)
		loc, _ := chromedp.Run(lctx, chromedp.Location())
		html, _ := chromedp.Run(lctx, chromedp.OuterHTML(chromedp.CSS("main")))
		lcancel()
		t.Fatalf("%s: %v\nat %s\n%s", what, err, loc, html)
	}
	return v
}

// css selects the first element matching a CSS selector.
func css(sel string) chromedp.CSS { return chromedp.CSS(sel) }

// signIn types the person's token on the sign-in page.
func signIn(t *testing.T, ctx context.Context, base, token, next string) {
	t.Helper()
	step(t, ctx, "sign in",
		chromedp.Navigate(base+"/ui/signin?next="+next),
		chromedp.WaitVisible(css("#token")),
		chromedp.SendKeys(css("#token"), token),
		chromedp.Submit(css("#token")),
		chromedp.WaitVisible(css(".who .user")),
	)
}

// screenshot writes a PNG of the page to docs/screenshots when
// SAGARUNNER_SCREENSHOTS is set, for the README.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	if os.Getenv("SAGARUNNER_SCREENSHOTS") == "" {
		return
	}
	png := get(t, ctx, "screenshot "+name, chromedp.FullScreenshot(100))
	path := filepath.Join("..", "docs", "screenshots", name+".png")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// startUIRunner runs the real binary with the test's sagas and tokens
// against the test's broker and Redis.
func startUIRunner(t *testing.T) string {
	t.Helper()
	bin := runnerBinary(t)
	c := newCluster(t)
	redisAddr, _ := redistest.Start(t)
	dir := t.TempDir()
	sagas := filepath.Join(dir, "sagas")
	if err := os.MkdirAll(sagas, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sagas, "ui_review.yaml"), []byte(uiReviewSaga), 0o644); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "sagarunner.yaml")
	if err := os.WriteFile(cfgPath, []byte(uiConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	logPath := filepath.Join(dir, "sagarunner.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "--config", cfgPath, "--brokers", strings.Join(c.ListenAddrs(), ","),
		"--redis", redisAddr, "--sagas", sagas, "--group", "ui", "--http", addr)
	cmd.Env = append(os.Environ(), fmt.Sprintf("SAGARUNNER_TOPICS_PARTITIONS=%d", partitions),
		fmt.Sprintf("SAGARUNNER_REDIS_SHARDS=%d", partitions), "SAGARUNNER_LOG_LEVEL=info")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("sagarunner log:\n%s", b)
		}
	})
	base := "http://" + addr
	testutil.Eventually(t, waitLong, poll, func() error {
		res, err := http.Get(base + "/readyz")
		if err != nil {
			return err
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz: %d", res.StatusCode)
		}
		return nil
	})
	return base
}

// TestUIBrowser walks one review through the web inbox in headless
// Chromium against the real binary: alice, a clerk, sees the new task
// arrive live in Group tasks, claims it and completes it with an outcome;
// bob, of legal, approves it; the instance page's timeline shows every
// step; eve, of another tenant, sees none of it.
func TestUIBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("the browser test builds the binary and drives Chromium; skipped under -short")
	}
	chromium(t)
	base := startUIRunner(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	chrome := browser(t, ctx)
	alice, bob, eve := person(t, chrome), person(t, chrome), person(t, chrome)

	if os.Getenv("SAGARUNNER_SCREENSHOTS") != "" {
		// A fuller inbox for the picture: two reviews already waiting,
		// one of them alice's.
		for _, c := range []string{`{"contractId":"k-0901","title":"Office lease","amount":400}`, `{"contractId":"k-0902","title":"Software licence","amount":90}`} {
			if st, body := do(t, "POST", base+"/topics/ui-reviews", "tok-intake", c); st >= 300 {
				t.Fatalf("start a review: %d %s", st, body)
			}
		}
		waitTask(t, base, "tok-alice", "workflow", "k-0901", "WAITING")
		waitTask(t, base, "tok-alice", "workflow", "k-0902", "WAITING")
		if st, body := do(t, "POST", base+"/tasks/workflow/k-0902/claim", "tok-alice", `{}`); st != http.StatusOK {
			t.Fatalf("claim: %d %s", st, body)
		}
	}

	// alice waits on her group inbox, live.
	signIn(t, alice, base, "tok-alice", "/ui/tasks/group")
	step(t, alice, "alice's inbox goes live", chromedp.WaitVisible(css(`body[data-live="on"]`)))

	// A contract arrives from the intake service; the task appears in
	// alice's open page without a reload.
	const id = "k-1001"
	st, body := do(t, "POST", base+"/topics/ui-reviews", "tok-intake",
		fmt.Sprintf(`{"contractId":%q,"title":"Supply agreement","amount":12000,"urgent":true}`, id))
	if st != http.StatusOK && st != http.StatusAccepted {
		t.Fatalf("start the review: %d %s", st, body)
	}
	waitTask(t, base, "tok-alice", "workflow", id, "WAITING")
	row := fmt.Sprintf(`tr[data-task="workflow/%s"]`, id)
	step(t, alice, "the task appears live", chromedp.WaitVisible(css(row)))
	if refreshed := get(t, alice, "read the refresh mark", chromedp.AttributeValue(css("body"), "data-refreshed")); !refreshed.Exists {
		t.Fatal("the task is on the page but the page was not refreshed live: was it reloaded?")
	}
	screenshot(t, alice, "inbox")

	// She opens it, claims it and completes it with an outcome and data.
	step(t, alice, "open the task", chromedp.Click(css(row+" a")), chromedp.WaitVisible(css("#claim")))
	step(t, alice, "claim", chromedp.Click(css("#claim")), chromedp.WaitVisible(css("#unclaim")))
	step(t, alice, "claimed by alice", chromedp.WaitVisible(css(`#task-claimer[data-claimer="alice"]`)))
	step(t, alice, "complete with an outcome",
		chromedp.Click(css("#outcome-approve")),
		chromedp.SetValue(css("#field-amount"), "11500"),
		chromedp.SendKeys(css("#complete-note"), "terms checked"),
		chromedp.Click(css("#complete")),
		chromedp.WaitVisible(css(`.flash`)),
	)
	// The page may be swapped live under the test: wait for states
	// rather than read nodes that can go away.
	step(t, alice, "in approval", chromedp.WaitVisible(css(`#task-status.status-in_approval`)))
	screenshot(t, alice, "task")
	if os.Getenv("SAGARUNNER_SCREENSHOTS") != "" {
		// The instance while its task waits: timeline, the open task's
		// variables and the quick actions.
		href := get(t, alice, "the instance link", chromedp.AttributeValue(css(`a[href^="/ui/instances/"]`), "href")).Value
		step(t, alice, "open the waiting instance", chromedp.Navigate(base+href),
			chromedp.WaitVisible(css(`#timeline li[data-event^="task:completed"]`)))
		screenshot(t, alice, "instance")
		step(t, alice, "back to the task", chromedp.NavigateBack(), chromedp.WaitVisible(css("#task-status")))
	}

	step(t, alice, "alice's task page is live", chromedp.WaitVisible(css(`body[data-live="on"]`)))

	// bob finds it among his approvals and approves it; alice's open
	// task page follows live.
	signIn(t, bob, base, "tok-bob", "/ui/tasks/group")
	step(t, bob, "bob sees the approval", chromedp.WaitVisible(css(row+" a")),
		chromedp.Click(css(row+" a")), chromedp.WaitVisible(css("#approve")))
	step(t, bob, "approve", chromedp.SendKeys(css("#approve-note"), "ok for legal"),
		chromedp.Click(css("#approve")), chromedp.WaitVisible(css(".flash")))
	step(t, alice, "alice's page shows the approval live",
		chromedp.WaitVisible(css(`#task-status.status-completed`)))

	// The instance page shows every step, ending finished.
	href := get(t, bob, "the instance link", chromedp.AttributeValue(css(`a[href^="/ui/instances/"]`), "href")).Value
	step(t, bob, "open the instance", chromedp.Navigate(base+href), chromedp.WaitVisible(css("#timeline")))
	for _, ev := range []string{"started", "step:review", "task:claimed", "task:completed", "task:approved", "step:publish", "finished"} {
		sel := fmt.Sprintf(`#timeline li[data-event^=%q]`, ev)
		step(t, bob, "timeline shows "+ev, chromedp.WaitVisible(css(sel)))
	}
	step(t, bob, "instance completed", chromedp.WaitVisible(css(`#instance-status.status-completed`)))
	instancePath := href

	// The dashboard lists it for bob, found by its business key.
	step(t, bob, "dashboard search", chromedp.Navigate(base+"/ui/instances?businessKey="+id),
		chromedp.WaitVisible(css(`tr[data-instance]`)))
	screenshot(t, bob, "instances")

	// eve, a clerk and approver of another tenant, sees none of it: not
	// in her inbox, not by its address, not in the dashboard.
	signIn(t, eve, base, "tok-eve", "/ui/tasks/group")
	html := get(t, eve, "eve's inbox", chromedp.OuterHTML(css("#inbox")))
	if strings.Contains(html, id) {
		t.Fatalf("eve's inbox shows the other tenant's task:\n%s", html)
	}
	for _, p := range []string{"/ui/tasks/workflow/" + id, instancePath, "/ui/instances?businessKey=" + id} {
		step(t, eve, "eve opens "+p, chromedp.Navigate(base+p))
		html = get(t, eve, "eve's page "+p, chromedp.OuterHTML(css("main")))
		if strings.Contains(html, "Supply agreement") || strings.Contains(html, `data-instance=`) || strings.Contains(html, "task-status") {
			t.Fatalf("eve sees %s:\n%s", p, html)
		}
	}

	// A second review: root, an admin, finds it on the dashboard,
	// reassigns its task to alice from the instance page and then cancels
	// the instance; alice's My tasks shows the task while she holds it.
	st, body = do(t, "POST", base+"/topics/ui-reviews", "tok-intake", `{"contractId":"k-1002","title":"Lease renewal","amount":800,"urgent":false}`)
	if st != http.StatusOK && st != http.StatusAccepted {
		t.Fatalf("start a second review: %d %s", st, body)
	}
	waitTask(t, base, "tok-alice", "workflow", "k-1002", "WAITING")
	root := person(t, chrome)
	signIn(t, root, base, "tok-root", "/ui/instances?q=k-1002")
	step(t, root, "the dashboard lists the second review", chromedp.WaitVisible(css(`tr[data-instance] a`)),
		chromedp.Click(css(`tr[data-instance] a`)), chromedp.WaitVisible(css(`#instance-tasks form input[name="user"]`)))
	step(t, root, "an admin sees the payload", chromedp.WaitVisible(css(`#payload`)))
	step(t, root, "reassign to alice", chromedp.SendKeys(css(`#instance-tasks form input[name="user"]`), "alice"),
		chromedp.Click(css(`#instance-tasks form button`)), chromedp.WaitVisible(css(".flash")))
	// On a phone-sized screen the inbox stacks its rows.
	step(t, alice, "alice holds the reassigned task", chromedp.EmulateViewport(390, 844), chromedp.Navigate(base+"/ui/tasks/mine"),
		chromedp.WaitVisible(css(`tr[data-task="workflow/k-1002"]`)), chromedp.WaitVisible(css(`body[data-live="on"]`)))
	screenshot(t, alice, "inbox-phone")
	step(t, root, "cancel the instance", chromedp.SendKeys(css("#inst-reason"), "withdrawn"),
		chromedp.Click(css("#cancel-instance")), chromedp.WaitVisible(css(`#instance-status.status-cancelled`)),
		chromedp.WaitVisible(css(`#timeline li[data-event^="cancelled"]`)))
	step(t, alice, "the cancelled task leaves alice's list live", chromedp.WaitNotPresent(css(`tr[data-task="workflow/k-1002"]`)))
}

// uiSession is a signed-in browser without a browser: a cookie jar, for
// tests of what pages answer.
type uiSession struct {
	t    *testing.T
	base string
	c    *http.Client
}

func newUISession(t *testing.T, base, token string) *uiSession {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	s := &uiSession{t: t, base: base, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
	if st, _ := s.post("/ui/signin", url.Values{"token": {token}}); st != http.StatusSeeOther {
		t.Fatalf("sign in: %d", st)
	}
	return s
}

func (s *uiSession) get(path string) (int, string) {
	s.t.Helper()
	res, err := s.c.Get(s.base + path)
	if err != nil {
		s.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func (s *uiSession) post(path string, form url.Values) (int, string) {
	s.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", s.base)
	res, err := s.c.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// action posts a task page's form the way its button does.
func (s *uiSession) action(task, op string, form url.Values) (int, string) {
	s.t.Helper()
	_, page := s.get("/ui/tasks/workflow/" + task)
	m := csrfField.FindStringSubmatch(page)
	if m == nil {
		s.t.Fatalf("no form on the task page:\n%s", page)
	}
	form.Set("csrf", m[1])
	return s.post("/ui/tasks/workflow/"+task+"/"+op, form)
}

// TestUIRefusals shows that what the API refuses, the UI refuses with the
// API's status and reason, keeps what was typed, and changes nothing.
func TestUIRefusals(t *testing.T) {
	base := startUIRunner(t)
	const id = "k-2001"
	if st, body := do(t, "POST", base+"/topics/ui-reviews", "tok-intake", fmt.Sprintf(`{"contractId":%q,"title":"Loan","amount":5}`, id)); st >= 300 {
		t.Fatalf("start: %d %s", st, body)
	}
	waitTask(t, base, "tok-alice", "workflow", id, "WAITING")
	alice, carl := newUISession(t, base, "tok-alice"), newUISession(t, base, "tok-carl")
	if st, body := alice.action(id, "claim", url.Values{}); st != http.StatusSeeOther {
		t.Fatalf("alice claims: %d\n%s", st, body)
	}
	// carl, a clerk too, loses the race: 409 with who holds it.
	st, body := carl.action(id, "claim", url.Values{})
	if st != http.StatusConflict || !strings.Contains(body, "TASK_CLAIMED") || !strings.Contains(body, `data-claimer="alice"`) {
		t.Fatalf("carl claims a held task: %d\n%s", st, body)
	}
	// An outcome the task does not declare is the API's 400; the note
	// typed stays in the form.
	st, body = alice.action(id, "complete", url.Values{"outcome": {"maybe"}, "note": {"my long note"}})
	if st != http.StatusBadRequest || !strings.Contains(body, "maybe") || !strings.Contains(body, `value="my long note"`) {
		t.Fatalf("a bad outcome: %d\n%s", st, body)
	}
	task := waitTask(t, base, "tok-alice", "workflow", id, "WAITING")
	if task["claimedBy"] != "alice" || task["outcome"] != nil {
		t.Fatalf("the refusals changed the task: %v", task)
	}
	// The instance's payload (the suspended envelope) is for admins only,
	// as in the API; alice sees her task's data.
	inst, _ := task["requestId"].(string)
	if st, body := alice.get("/ui/instances/" + inst); st != http.StatusOK || strings.Contains(body, `id="payload"`) || !strings.Contains(body, "Loan") {
		t.Fatalf("alice's instance page: %d\n%s", st, body)
	}
}
