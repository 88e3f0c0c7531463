package ui_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sagarunner/sagarunner/auth"
	"github.com/sagarunner/sagarunner/gateway"
	"github.com/sagarunner/sagarunner/internal/redistest"
	"github.com/sagarunner/sagarunner/statemanager"
	"github.com/sagarunner/sagarunner/ui"
)

// domains resolves a fixed set of real Redis stores.
type domains map[string]statemanager.Store

func (d domains) Store(domain string) (statemanager.Store, error) {
	s, ok := d[domain]
	if !ok {
		return nil, fmt.Errorf("no state manager %q", domain)
	}
	return s, nil
}

// tokens of the tests: two clerks of two tenants and an admin.
var tokens = map[string]auth.Identity{
	"tok-alice": {User: "alice", Roles: []string{"clerk"}, Tenant: "acme"},
	"tok-eve":   {User: "eve", Roles: []string{"clerk"}, Tenant: "globex"},
	"tok-boss":  {User: "boss", Roles: []string{"ops"}, Tenant: "acme"},
}

// env is a real gateway (real Redis store, in-process Kafka broker) with
// the UI mounted, served over HTTP, and a store to put tasks in.
type env struct {
	srv   *httptest.Server
	store statemanager.Store
}

func newEnv(t *testing.T, uiCfg ui.Config) *env {
	t.Helper()
	_, rdb := redistest.Start(t)
	store, err := statemanager.NewRedisStore(rdb, "workflow", statemanager.RedisConfig{Shards: 4})
	if err != nil {
		t.Fatal(err)
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	g, err := gateway.New(gateway.Config{
		Auth: auth.Config{Tokens: tokens, AdminRoles: []string{"ops"}},
		UI:   uiCfg,
	}, gateway.Deps{Stores: domains{"workflow": store}, Client: cl})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g.Handler())
	t.Cleanup(srv.Close)
	return &env{srv: srv, store: store}
}

func (e *env) start(t *testing.T, task statemanager.Task) {
	t.Helper()
	task.Domain = "workflow"
	task.Envelope = json.RawMessage(`{"requestMeta": {"requestId": "r-` + task.ID + `"}}`)
	if _, _, err := e.store.Start(context.Background(), &task); err != nil {
		t.Fatal(err)
	}
}

// browser is a client with its own cookie jar that does not follow
// redirects, so tests see them.
type browser struct {
	t    *testing.T
	base string
	c    *http.Client
}

func (e *env) browser(t *testing.T) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, base: e.srv.URL, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
}

type page struct {
	status int
	header http.Header
	body   string
}

func (b *browser) do(method, path string, form url.Values, header map[string]string) page {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, b.base+path, body)
	if err != nil {
		b.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", b.base)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	return page{status: res.StatusCode, header: res.Header, body: string(raw)}
}

func (b *browser) get(path string) page { return b.do(http.MethodGet, path, nil, nil) }

func (b *browser) post(path string, form url.Values) page {
	return b.do(http.MethodPost, path, form, nil)
}

// signIn signs in with a token and returns the session's CSRF token, read
// from a page as a browser would.
func (b *browser) signIn(token string) string {
	b.t.Helper()
	p := b.post("/ui/signin", url.Values{"token": {token}, "next": {"/ui/tasks/group"}})
	if p.status != http.StatusSeeOther || p.header.Get("Location") != "/ui/tasks/group" {
		b.t.Fatalf("sign in: %d %v\n%s", p.status, p.header, p.body)
	}
	return b.csrf("/ui/tasks/group")
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func (b *browser) csrf(path string) string {
	b.t.Helper()
	p := b.get(path)
	m := csrfRE.FindStringSubmatch(p.body)
	if m == nil {
		b.t.Fatalf("no CSRF token on %s: %d\n%s", path, p.status, p.body)
	}
	return m[1]
}

func TestSignIn(t *testing.T) {
	e := newEnv(t, ui.Config{})
	b := e.browser(t)

	// Pages need a session: a page redirects to sign-in, keeping where
	// it was going; the stream answers 401.
	p := b.get("/ui/tasks/mine?sort=priority")
	if p.status != http.StatusSeeOther || p.header.Get("Location") != "/ui/signin?next="+url.QueryEscape("/ui/tasks/mine?sort=priority") {
		t.Fatalf("signed out page: %d %v", p.status, p.header)
	}
	if p := b.do(http.MethodGet, "/ui/events", nil, map[string]string{"Accept": "text/event-stream"}); p.status != http.StatusUnauthorized {
		t.Fatalf("signed out stream: %d", p.status)
	}

	// A wrong token says why, never echoes the token, and sets no
	// cookie.
	p = b.post("/ui/signin", url.Values{"token": {"not-a-token-xyz"}})
	if p.status != http.StatusUnauthorized || !strings.Contains(p.body, "UNKNOWN_TOKEN") || strings.Contains(p.body, "not-a-token-xyz") || p.header.Get("Set-Cookie") != "" {
		t.Fatalf("bad token: %d %v\n%s", p.status, p.header, p.body)
	}
	// A sign-in from another site is refused, token or not.
	p = b.do(http.MethodPost, "/ui/signin", url.Values{"token": {"tok-alice"}}, map[string]string{"Origin": "http://evil.example"})
	if p.status != http.StatusForbidden || p.header.Get("Set-Cookie") != "" {
		t.Fatalf("cross-site sign-in: %d %v", p.status, p.header)
	}

	// A good one sets an HttpOnly, SameSite=Strict cookie that is not
	// the token, and goes where it was asked, on this site only.
	p = b.post("/ui/signin", url.Values{"token": {"tok-alice"}, "next": {"//evil.example/x"}})
	cookie := p.header.Get("Set-Cookie")
	if p.status != http.StatusSeeOther || p.header.Get("Location") != "/ui/" {
		t.Fatalf("sign in: %d %v", p.status, p.header)
	}
	for _, want := range []string{"HttpOnly", "SameSite=Strict", "Path=/ui/"} {
		if !strings.Contains(cookie, want) {
			t.Errorf("cookie %q lacks %s", cookie, want)
		}
	}
	if strings.Contains(cookie, "tok-alice") || strings.Contains(cookie, "Secure") {
		t.Errorf("cookie %q holds the token, or is Secure over plain HTTP", cookie)
	}
	if p := b.get("/ui/tasks/mine"); p.status != http.StatusOK || !strings.Contains(p.body, "alice @ acme") || strings.Contains(p.body, "tok-alice") {
		t.Fatalf("signed in page: %d\n%s", p.status, p.body)
	}

	// Signing out ends the session on the server, not only the cookie.
	csrf := b.csrf("/ui/tasks/mine")
	jarCookies := b.c.Jar.Cookies(mustURL(t, b.base+"/ui/"))
	if p := b.post("/ui/signout", url.Values{"csrf": {csrf}}); p.status != http.StatusSeeOther {
		t.Fatalf("sign out: %d", p.status)
	}
	replay := e.browser(t)
	replay.c.Jar.SetCookies(mustURL(t, b.base+"/ui/"), jarCookies)
	if p := replay.get("/ui/tasks/mine"); p.status != http.StatusSeeOther {
		t.Fatalf("a signed-out session's cookie still works: %d", p.status)
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestSecurityHeaders(t *testing.T) {
	e := newEnv(t, ui.Config{})
	for _, path := range []string{"/ui/signin", "/ui/static/app.js", "/ui/nowhere"} {
		p := e.browser(t).get(path)
		csp := p.header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") || p.header.Get("X-Frame-Options") != "DENY" {
			t.Errorf("%s: CSP %q, X-Frame-Options %q", path, csp, p.header.Get("X-Frame-Options"))
		}
	}
	// Assets are served, their folder is not listed.
	if p := e.browser(t).get("/ui/static/app.css"); p.status != http.StatusOK || !strings.Contains(p.body, "--accent") {
		t.Errorf("app.css: %d", p.status)
	}
	if p := e.browser(t).get("/ui/static/"); p.status != http.StatusNotFound {
		t.Errorf("the static folder is listed: %d\n%s", p.status, p.body)
	}
	// No inline script or handler anywhere: the CSP would block them.
	p := e.browser(t).get("/ui/signin")
	if regexp.MustCompile(`(?i)<script>|\son[a-z]+=`).MatchString(p.body) {
		t.Errorf("inline script in the sign-in page:\n%s", p.body)
	}
}

func TestCSRF(t *testing.T) {
	e := newEnv(t, ui.Config{})
	e.start(t, statemanager.Task{ID: "t1", Name: "Check", Roles: []string{"clerk"}, Tenant: "acme", StartedAt: 1000})
	b := e.browser(t)
	csrf := b.signIn("tok-alice")
	tests := []struct {
		name   string
		form   url.Values
		header map[string]string
	}{
		{"no token", url.Values{}, nil},
		{"a wrong token", url.Values{"csrf": {"x" + csrf}}, nil},
		{"another site's Origin", url.Values{"csrf": {csrf}}, map[string]string{"Origin": "http://evil.example"}},
		{"a cross-site fetch", url.Values{"csrf": {csrf}}, map[string]string{"Sec-Fetch-Site": "cross-site"}},
		{"an opaque Origin", url.Values{"csrf": {csrf}}, map[string]string{"Origin": "null"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, path := range []string{"/ui/tasks/workflow/t1/claim", "/ui/signout", "/ui/instances/r-t1/cancel"} {
				if p := b.do(http.MethodPost, path, tc.form, tc.header); p.status != http.StatusForbidden {
					t.Errorf("%s: %d, want 403", path, p.status)
				}
			}
		})
	}
	// The session survived the refused sign-outs, and nothing was
	// claimed: the refused posts never reached the API.
	got, err := e.store.Get(context.Background(), "t1")
	if err != nil || got.ClaimedBy != "" {
		t.Fatalf("task after refused posts: %+v %v", got, err)
	}
	if p := b.get("/ui/tasks/mine"); p.status != http.StatusOK {
		t.Fatalf("session after refused posts: %d", p.status)
	}
}

func TestTenantScoping(t *testing.T) {
	e := newEnv(t, ui.Config{})
	e.start(t, statemanager.Task{ID: "acme-1", Name: "Acme invoice", Roles: []string{"clerk"}, Tenant: "acme", StartedAt: 1000,
		Data: json.RawMessage(`{"amount": 10}`)})
	e.start(t, statemanager.Task{ID: "globex-1", Name: "Globex invoice", Roles: []string{"clerk"}, Tenant: "globex", StartedAt: 2000})

	alice, eve := e.browser(t), e.browser(t)
	alice.signIn("tok-alice")
	eveCSRF := eve.signIn("tok-eve")

	if p := alice.get("/ui/tasks/group"); !strings.Contains(p.body, "Acme invoice") || strings.Contains(p.body, "Globex invoice") {
		t.Fatalf("alice's group inbox:\n%s", p.body)
	}
	if p := eve.get("/ui/tasks/group"); strings.Contains(p.body, "Acme invoice") || !strings.Contains(p.body, "Globex invoice") {
		t.Fatalf("eve's group inbox:\n%s", p.body)
	}
	// By address, another tenant's task is not found, exactly as the
	// API answers, and its data never shows.
	p := eve.get("/ui/tasks/workflow/acme-1")
	if p.status != http.StatusNotFound || strings.Contains(p.body, "Acme invoice") || strings.Contains(p.body, "amount") {
		t.Fatalf("eve opens acme's task: %d\n%s", p.status, p.body)
	}
	// Nor can she act on it: the API refuses, and the task is unchanged.
	if p := eve.post("/ui/tasks/workflow/acme-1/claim", url.Values{"csrf": {eveCSRF}}); p.status != http.StatusNotFound {
		t.Fatalf("eve claims acme's task: %d\n%s", p.status, p.body)
	}
	got, err := e.store.Get(context.Background(), "acme-1")
	if err != nil || got.ClaimedBy != "" {
		t.Fatalf("acme's task after eve's claim: %+v %v", got, err)
	}
	// alice sees it, with its data as a form field.
	p = alice.get("/ui/tasks/workflow/acme-1")
	if p.status != http.StatusOK || !strings.Contains(p.body, `name="field.amount"`) {
		t.Fatalf("alice opens her tenant's task: %d\n%s", p.status, p.body)
	}
}

func TestEscaping(t *testing.T) {
	e := newEnv(t, ui.Config{})
	evil := `<script>alert(1)</script>"><img src=x onerror=alert(2)>`
	e.start(t, statemanager.Task{ID: "x/../y?z", Name: evil, Roles: []string{"clerk"}, Tenant: "acme", StartedAt: 1000,
		Data: json.RawMessage(`{"note": "` + strings.ReplaceAll(evil, `"`, `\"`) + `"}`)})
	b := e.browser(t)
	b.signIn("tok-alice")
	p := b.get("/ui/tasks/group")
	if strings.Contains(p.body, "<script>alert") || strings.Contains(p.body, "<img src=x") {
		t.Fatalf("unescaped task name in the inbox:\n%s", p.body)
	}
	// The id is one path segment, escaped, and opens the task.
	if !strings.Contains(p.body, `href="/ui/tasks/workflow/x%2F..%2Fy%3Fz"`) {
		t.Fatalf("task link not escaped as one segment:\n%s", p.body)
	}
	p = b.get("/ui/tasks/workflow/x%2F..%2Fy%3Fz")
	if p.status != http.StatusOK || strings.Contains(p.body, "<script>alert") || strings.Contains(p.body, "<img src=x") {
		t.Fatalf("task page: %d\n%s", p.status, p.body)
	}
}

func TestSessionsAreBounded(t *testing.T) {
	e := newEnv(t, ui.Config{MaxSessions: 2})
	first := e.browser(t)
	first.signIn("tok-alice")
	for i := 0; i < 2; i++ {
		e.browser(t).signIn("tok-alice")
	}
	if p := first.get("/ui/tasks/mine"); p.status != http.StatusSeeOther {
		t.Fatalf("the least recently used session survived past MaxSessions: %d", p.status)
	}
}

func TestDevPicker(t *testing.T) {
	e := newEnv(t, ui.Config{DevUsers: []ui.DevUser{{User: "alice", Token: "tok-alice", Roles: []string{"clerk"}, Tenant: "acme"}}})
	b := e.browser(t)
	p := b.get("/ui/signin")
	if !strings.Contains(p.body, `data-user="alice"`) || strings.Contains(p.body, "tok-alice") {
		t.Fatalf("picker: %s", p.body)
	}
	if p := b.post("/ui/signin", url.Values{"devUser": {"7"}}); p.status != http.StatusBadRequest {
		t.Fatalf("unknown pick: %d", p.status)
	}
	if p := b.post("/ui/signin", url.Values{"devUser": {"0"}}); p.status != http.StatusSeeOther {
		t.Fatalf("pick: %d %s", p.status, p.body)
	}
	if p := b.get("/ui/tasks/mine"); !strings.Contains(p.body, "alice @ acme") {
		t.Fatalf("picked user's page:\n%s", p.body)
	}
}

// TestInboxAtAGlance shows what a person reads off the inbox: what is
// theirs, what is late (in words, not colour alone), and the counts.
func TestInboxAtAGlance(t *testing.T) {
	e := newEnv(t, ui.Config{})
	now := time.Now().UnixMilli()
	e.start(t, statemanager.Task{ID: "late", Name: "Late one", Roles: []string{"clerk"}, Tenant: "acme", StartedAt: 1, Deadline: now - 5*60_000})
	e.start(t, statemanager.Task{ID: "later", Name: "Later one", Roles: []string{"clerk"}, Tenant: "acme", StartedAt: 2, Deadline: now + 3*3600_000})
	e.start(t, statemanager.Task{ID: "held", Name: "Held one", Roles: []string{"clerk"}, Tenant: "acme", StartedAt: 3})
	lc := e.store.(statemanager.Lifecycle)
	alice := "alice"
	if _, _, err := lc.Apply(context.Background(), statemanager.Change{ID: "held", Version: 1, Key: "k", ClaimedBy: &alice,
		Event: statemanager.Event{Type: statemanager.EventClaimed, At: 4, Actor: alice}}); err != nil {
		t.Fatal(err)
	}
	b := e.browser(t)
	b.signIn("tok-alice")

	group := b.get("/ui/tasks/group")
	row := func(body, id string) string {
		i := strings.Index(body, `data-task="workflow/`+id+`"`)
		if i < 0 {
			t.Fatalf("no row for %s:\n%s", id, body)
		}
		j := strings.Index(body[i:], "</tr>")
		return body[i : i+j]
	}
	if r := row(group.body, "late"); !strings.Contains(r, "Overdue") || !strings.Contains(r, "overdue by 5m") {
		t.Errorf("late row does not say so:\n%s", r)
	}
	if r := row(group.body, "later"); !strings.Contains(r, "2h 5") || strings.Contains(r, "Overdue") {
		t.Errorf("later row:\n%s", r)
	}
	if !strings.Contains(group.body, `id="count-mine">1<`) || !strings.Contains(group.body, `id="count-group">`) {
		t.Errorf("counts missing:\n%s", group.body)
	}
	mine := b.get("/ui/tasks/mine")
	if r := row(mine.body, "held"); !strings.Contains(r, "yours") {
		t.Errorf("the held task does not say it is alice's:\n%s", r)
	}
	if strings.Contains(mine.body, `data-task="workflow/late"`) {
		t.Errorf("My tasks lists a task alice does not hold:\n%s", mine.body)
	}
}
