package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/tidwall/gjson"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sagarunner/sagarunner/actions"
	"github.com/sagarunner/sagarunner/auth"
	"github.com/sagarunner/sagarunner/internal/testutil"
	"github.com/sagarunner/sagarunner/metrics"
)

func TestSagaPaths(t *testing.T) {
	brokers := newCluster(t, requestTopic, replyTopic, triggerTopic)
	resp := startResponder(t, brokers)
	s := serve(t, brokers, Config{MaxBody: 1024}, Deps{})

	reply := func(status, code string) string {
		return fmt.Sprintf(`{"reply": {"status": %q, "code": %q, "message": "because"}}`, status, code)
	}
	tests := []struct {
		name       string
		method     string
		path       string
		body       string
		wantStatus int
		wantCode   string // error code, for error answers
		check      func(t *testing.T, r response)
	}{
		{name: "success answers the payload", method: "POST", path: "/echo", body: `{"x": 1}`, wantStatus: 200,
			check: func(t *testing.T, r response) {
				want := map[string]string{"echo.x": "1", "topic": requestTopic, "saga": "echo"}
				for path, v := range want {
					if got := gjson.GetBytes(r.raw, path).String(); got != v {
						t.Errorf("%s = %q, want %q (body %s)", path, got, v, r.raw)
					}
				}
				if r.header.Get(HeaderStatus) != "SUCCESS" || r.header.Get(HeaderRequestID) == "" {
					t.Errorf("headers %v", r.header)
				}
			}},
		{name: "PUT is a start too", method: "PUT", path: "/echo", body: `{}`, wantStatus: 200},
		{name: "empty body is the empty object", method: "POST", path: "/echo", wantStatus: 200},
		{name: "trigger topic saga goes to its topic unnamed", method: "POST", path: "/on-topic", body: `{"y": "z"}`, wantStatus: 200,
			check: func(t *testing.T, r response) {
				if got := gjson.GetBytes(r.raw, "topic").String(); got != triggerTopic {
					t.Errorf("topic = %q, want %q", got, triggerTopic)
				}
				if got := gjson.GetBytes(r.raw, "saga").String(); got != "" {
					t.Errorf("saga = %q, want none on a trigger topic", got)
				}
			}},
		{name: "TASK_NOT_FOUND is 404", method: "POST", path: "/echo", body: reply("FAIL", "TASK_NOT_FOUND"), wantStatus: 404, wantCode: "TASK_NOT_FOUND",
			check: func(t *testing.T, r response) {
				if r.body["error"] != "because" || r.body["requestId"] == "" {
					t.Errorf("body %s", r.raw)
				}
			}},
		{name: "TASK_CLOSED is 409", method: "POST", path: "/echo", body: reply("FAIL", "TASK_CLOSED"), wantStatus: 409, wantCode: "TASK_CLOSED"},
		{name: "FORBIDDEN is 403", method: "POST", path: "/echo", body: reply("FAIL", "FORBIDDEN"), wantStatus: 403, wantCode: "FORBIDDEN"},
		{name: "BAD_INPUT is 400", method: "POST", path: "/echo", body: reply("FAIL", "BAD_INPUT"), wantStatus: 400, wantCode: "BAD_INPUT"},
		{name: "PATTERN_ERROR is 400", method: "POST", path: "/echo", body: reply("FAIL", "PATTERN_ERROR"), wantStatus: 400, wantCode: "PATTERN_ERROR"},
		{name: "other FAIL is 422", method: "POST", path: "/echo", body: reply("FAIL", "REJECTED"), wantStatus: 422, wantCode: "REJECTED"},
		{name: "TIMEOUT is 200 with the status", method: "POST", path: "/echo", body: reply("TIMEOUT", ""), wantStatus: 200,
			check: func(t *testing.T, r response) {
				if r.header.Get(HeaderStatus) != "TIMEOUT" {
					t.Errorf("status header %q", r.header.Get(HeaderStatus))
				}
			}},
		{name: "CANCELLED is 200", method: "POST", path: "/echo", body: reply("CANCELLED", ""), wantStatus: 200},
		{name: "array body", method: "POST", path: "/echo", body: `[1]`, wantStatus: 400, wantCode: "BAD_INPUT",
			check: func(t *testing.T, r response) {
				if !strings.Contains(r.body["error"].(string), "JSON object") {
					t.Errorf("reason %q", r.body["error"])
				}
			}},
		{name: "invalid JSON", method: "POST", path: "/echo", body: `{"x":`, wantStatus: 400, wantCode: "BAD_INPUT"},
		{name: "oversized body", method: "POST", path: "/echo", body: `{"x": "` + strings.Repeat("a", 2048) + `"}`, wantStatus: 413, wantCode: "BODY_TOO_LARGE"},
		{name: "ProceedTask without taskId", method: "POST", path: "/ProceedTask", body: `{"data": {}}`, wantStatus: 400, wantCode: "BAD_INPUT",
			check: func(t *testing.T, r response) {
				if !strings.Contains(r.body["error"].(string), "taskId") {
					t.Errorf("reason %q", r.body["error"])
				}
			}},
		{name: "ProceedTask with a numeric taskId", method: "POST", path: "/ProceedTask", body: `{"taskId": 7}`, wantStatus: 400, wantCode: "BAD_INPUT"},
		{name: "ProceedTask with a bad domain", method: "POST", path: "/ProceedTask", body: `{"taskId": "t", "domain": "a{b}"}`, wantStatus: 400, wantCode: "BAD_INPUT"},
		{name: "ProceedTask goes through", method: "POST", path: "/ProceedTask", body: `{"taskId": "t-1", "data": {"ok": true}}`, wantStatus: 200,
			check: func(t *testing.T, r response) {
				if got := gjson.GetBytes(r.raw, "echo.taskId").String(); got != "t-1" {
					t.Errorf("echo.taskId = %q", got)
				}
			}},
		{name: "close saga with its own taskIdPath, missing", method: "POST", path: "/close-by-ref", body: `{"taskId": "t"}`, wantStatus: 400, wantCode: "BAD_INPUT",
			check: func(t *testing.T, r response) {
				if !strings.Contains(r.body["error"].(string), "ref.id") {
					t.Errorf("reason %q", r.body["error"])
				}
			}},
		{name: "close saga with its own taskIdPath, present", method: "POST", path: "/close-by-ref", body: `{"ref": {"id": "t"}}`, wantStatus: 200},
		{name: "GET on a saga path", method: "GET", path: "/echo", wantStatus: 405, wantCode: "METHOD_NOT_ALLOWED",
			check: func(t *testing.T, r response) {
				if r.header.Get("Allow") != "POST, PUT" {
					t.Errorf("Allow %q", r.header.Get("Allow"))
				}
			}},
		{name: "bad async flag", method: "POST", path: "/echo?async=maybe", body: `{}`, wantStatus: 400, wantCode: "BAD_INPUT"},
		{name: "unknown path", method: "GET", path: "/nope", wantStatus: 404, wantCode: "NOT_FOUND"},
		{name: "wrong method on a built-in route", method: "POST", path: "/tasks", wantStatus: 405, wantCode: "METHOD_NOT_ALLOWED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body []byte
			if tt.body != "" {
				body = []byte(tt.body)
			}
			r := do(t, tt.method, s.base+tt.path, "", body)
			if r.status != tt.wantStatus {
				t.Fatalf("status %d, want %d (body %s)", r.status, tt.wantStatus, r.raw)
			}
			if tt.wantCode != "" && r.body["code"] != tt.wantCode {
				t.Errorf("code %v, want %s (body %s)", r.body["code"], tt.wantCode, r.raw)
			}
			if tt.check != nil {
				tt.check(t, r)
			}
			if id := r.header.Get(HeaderRequestID); id != "" && r.status == 200 {
				got, ok := resp.get(id)
				if !ok {
					t.Fatalf("responder never saw %s", id)
				}
				if got.Key != id || got.Env.RequestMeta.ReplyTo != replyTopic || got.Env.SagaMeta.StepID != "" || got.Env.RequestMeta.CreatedAt == 0 {
					t.Errorf("request record key %q meta %+v saga %+v", got.Key, got.Env.RequestMeta, got.Env.SagaMeta)
				}
			}
		})
	}
}

func TestAsyncAnswersAtOnce(t *testing.T) {
	brokers := newCluster(t, requestTopic, replyTopic, triggerTopic)
	resp := startResponder(t, brokers)
	s := serve(t, brokers, Config{}, Deps{})

	// silent: no reply will ever come, so only an async answer can be 202.
	r := do(t, "POST", s.base+"/echo?async=true", "", []byte(`{"silent": true, "n": 5}`))
	if r.status != http.StatusAccepted {
		t.Fatalf("status %d body %s", r.status, r.raw)
	}
	id, _ := r.body["requestId"].(string)
	if id == "" {
		t.Fatalf("no requestId in %s", r.raw)
	}
	testutil.Eventually(t, 5*time.Second, 10*time.Millisecond, func() error {
		got, ok := resp.get(id)
		if !ok {
			return fmt.Errorf("request %s not on Kafka yet", id)
		}
		if n := got.Env.Get("parameters.n").Int(); n != 5 {
			return fmt.Errorf("parameters.n = %d", n)
		}
		return nil
	})
}

func TestNoReplyIs504(t *testing.T) {
	brokers := newCluster(t, requestTopic, replyTopic, triggerTopic)
	startResponder(t, brokers)
	s := serve(t, brokers, Config{Timeout: 300 * time.Millisecond}, Deps{})
	r := do(t, "POST", s.base+"/echo", "", []byte(`{"silent": true}`))
	if r.status != http.StatusGatewayTimeout || r.body["code"] != "GATEWAY_TIMEOUT" || r.body["requestId"] == "" {
		t.Fatalf("status %d body %s", r.status, r.raw)
	}
	s.gw.mu.Lock()
	leaked := len(s.gw.waiters)
	s.gw.mu.Unlock()
	if leaked != 0 {
		t.Fatalf("%d waiters leaked", leaked)
	}
}

func TestTwoGatewaysShareTheReplyTopic(t *testing.T) {
	brokers := newCluster(t, requestTopic, replyTopic, triggerTopic)
	startResponder(t, brokers)
	a := serve(t, brokers, Config{}, Deps{})
	b := serve(t, brokers, Config{}, Deps{})
	for i := 0; i < 4; i++ {
		for _, s := range []*served{a, b} {
			r := do(t, "POST", s.base+"/echo", "", []byte(fmt.Sprintf(`{"i": %d}`, i)))
			if r.status != 200 || gjson.GetBytes(r.raw, "echo.i").Int() != int64(i) {
				t.Fatalf("status %d body %s", r.status, r.raw)
			}
		}
	}
}

func TestAuthOnSagaPaths(t *testing.T) {
	brokers := newCluster(t, requestTopic, replyTopic, triggerTopic)
	resp := startResponder(t, brokers)
	s := serve(t, brokers, Config{Auth: auth.Config{
		Tokens: map[string]auth.Identity{
			"alice-token": {User: "alice", Roles: []string{"manager"}},
			"olga-token":  {User: "olga", Roles: []string{"ops"}, Tenant: "acme"},
		},
		JWT:        auth.JWT{Secret: "gateway-test-secret"},
		AdminRoles: []string{"ops"},
	}}, Deps{})
	signed := func(exp time.Time) string {
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
			"sub": "alice", "roles": []string{"manager"}, "exp": exp.Unix(),
		}).SignedString([]byte("gateway-test-secret"))
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}

	tests := []struct {
		name       string
		token      string
		body       string
		wantStatus int
		wantCode   string
		wantUser   string
	}{
		{"no token", "", `{}`, 401, "MISSING_TOKEN", ""},
		{"unknown token", "mallory", `{}`, 401, "UNKNOWN_TOKEN", ""},
		{"identity from the token", "alice-token", `{}`, 200, "", "alice"},
		{"identity from a JWT", signed(time.Now().Add(time.Hour)), `{}`, 200, "", "alice"},
		{"expired JWT", signed(time.Now().Add(-time.Hour)), `{}`, 401, "TOKEN_EXPIRED", ""},
		{"body cannot claim an identity", "alice-token", `{"requestMeta": {"user": "root", "roles": ["director"]}}`, 200, "", "alice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, "POST", s.base+"/echo", tt.token, []byte(tt.body))
			if r.status != tt.wantStatus {
				t.Fatalf("status %d, want %d (body %s)", r.status, tt.wantStatus, r.raw)
			}
			if tt.wantCode != "" {
				if r.body["code"] != tt.wantCode || r.header.Get("WWW-Authenticate") == "" {
					t.Fatalf("code %v header %v", r.body["code"], r.header)
				}
				return
			}
			got, ok := resp.get(r.header.Get(HeaderRequestID))
			if !ok {
				t.Fatal("request not seen")
			}
			if got.Env.RequestMeta.User != tt.wantUser || strings.Join(got.Env.RequestMeta.Roles, ",") != "manager" {
				t.Fatalf("requestMeta %+v", got.Env.RequestMeta)
			}
		})
	}
	t.Run("probes need no token", func(t *testing.T) {
		for _, p := range []string{"/healthz", "/readyz"} {
			if r := do(t, "GET", s.base+p, "", nil); r.status != 200 {
				t.Errorf("%s: %d %s", p, r.status, r.raw)
			}
		}
	})
	for _, tt := range []struct {
		name, token, path string
		wantStatus        int
		wantTenant        string
	}{
		{"a sweeping saga needs an admin", "alice-token", "/sweep", 403, ""},
		{"an admin starts a sweeping saga", "olga-token", "/sweep", 200, "acme"},
		{"TimeoutBetween sweeps", "alice-token", "/sweep-between", 403, ""},
		{"the tenant comes from the token", "olga-token", "/echo", 200, "acme"},
		{"the body cannot claim a tenant", "alice-token", "/echo", 200, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if spec, _ := actions.Default.Lookup("TimeoutBetween"); tt.path == "/sweep-between" && !spec.Sweeps {
				t.Skip("the TimeoutBetween spec does not declare Sweeps yet")
			}
			r := do(t, "POST", s.base+tt.path, tt.token, []byte(`{"requestMeta": {"tenant": "forged", "user": "root"}}`))
			if r.status != tt.wantStatus {
				t.Fatalf("status %d, want %d (body %s)", r.status, tt.wantStatus, r.raw)
			}
			if tt.wantStatus != 200 {
				if r.body["code"] != "FORBIDDEN" || !strings.Contains(r.body["error"].(string), "admin") {
					t.Fatalf("body %s", r.raw)
				}
				return
			}
			got, ok := resp.get(r.header.Get(HeaderRequestID))
			if !ok {
				t.Fatal("request not seen")
			}
			if m := got.Env.RequestMeta; m.Tenant != tt.wantTenant || m.User == "root" {
				t.Fatalf("requestMeta %+v", m)
			}
		})
	}
}

func TestProbesAndMetrics(t *testing.T) {
	brokers := newCluster(t, requestTopic, replyTopic, triggerTopic)
	startResponder(t, brokers)
	ready := make(chan bool, 1)
	ready <- false
	isReady := func() error {
		v := <-ready
		ready <- v
		if !v {
			return errors.New("runner: partition p/3 stuck")
		}
		return nil
	}
	m := metrics.New(nil)

	cl := newClient(t, brokers)
	unserved, err := New(Config{RequestTopic: requestTopic, ReplyTopic: replyTopic}, Deps{Client: cl, Sagas: loadSagas(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Run("not ready before the reply consumer runs", func(t *testing.T) {
		rec := httptest.NewRecorder()
		unserved.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
		if rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("status %d", rec.Code)
		}
		rec = httptest.NewRecorder()
		unserved.Handler().ServeHTTP(rec, httptest.NewRequest("POST", "/echo", strings.NewReader(`{}`)))
		if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
			t.Fatalf("sync request before positioning: status %d", rec.Code)
		}
	})

	s := serve(t, brokers, Config{}, Deps{Metrics: m, Ready: isReady})
	t.Run("healthz", func(t *testing.T) {
		if r := do(t, "GET", s.base+"/healthz", "", nil); r.status != 200 || r.body["status"] != "ok" {
			t.Fatalf("%d %s", r.status, r.raw)
		}
	})
	t.Run("readyz follows Deps.Ready", func(t *testing.T) {
		if r := do(t, "GET", s.base+"/readyz", "", nil); r.status != 503 || r.body["code"] != "NOT_READY" ||
			!strings.Contains(r.body["error"].(string), "partition p/3 stuck") {
			t.Fatalf("%d %s", r.status, r.raw)
		}
		<-ready
		ready <- true
		if r := do(t, "GET", s.base+"/readyz", "", nil); r.status != 200 {
			t.Fatalf("%d %s", r.status, r.raw)
		}
	})
	t.Run("metrics by route and code", func(t *testing.T) {
		do(t, "POST", s.base+"/echo", "", []byte(`{}`))
		do(t, "GET", s.base+"/tasks/workflow/some-id", "", nil)
		r := do(t, "GET", s.base+"/metrics", "", nil)
		for _, want := range []string{
			`sagarunner_http_requests_total{code="200",route="/echo"} 1`,
			`sagarunner_http_requests_total{code="503",route="/tasks/{domain}/{id}"} 1`,
			`sagarunner_http_requests_total{code="200",route="/healthz"} 1`,
			`sagarunner_http_request_duration_seconds_count{route="/echo"} 1`,
		} {
			if !strings.Contains(string(r.raw), want) {
				t.Errorf("metrics lack %q", want)
			}
		}
	})
	t.Run("graceful shutdown", func(t *testing.T) {
		if err := s.stop(); err != nil {
			t.Fatalf("Serve returned %v", err)
		}
		if s.gw.positioned.Load() {
			t.Fatal("reply consumer still marked positioned after shutdown")
		}
	})
}

func TestReplyTopicIsCreated(t *testing.T) {
	brokers := newCluster(t, requestTopic, triggerTopic)
	startResponder(t, brokers)
	s := serve(t, brokers, Config{}, Deps{})
	if r := do(t, "POST", s.base+"/echo", "", []byte(`{"a": 1}`)); r.status != 200 {
		t.Fatalf("%d %s", r.status, r.raw)
	}
}

func TestNew(t *testing.T) {
	brokers := newCluster(t)
	plain := newClient(t, brokers)
	grouped := newClient(t, brokers, kgo.ConsumerGroup("g"), kgo.ConsumeTopics("x"))
	clash, err := loadClash()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		cfg     Config
		deps    Deps
		wantErr string
	}{
		{"defaults", Config{}, Deps{Client: plain}, ""},
		{"no client", Config{}, Deps{}, "Client is required"},
		{"group client", Config{}, Deps{Client: grouped}, "consumer group"},
		{"same topics", Config{RequestTopic: "t", ReplyTopic: "t"}, Deps{Client: plain}, "both"},
		{"bad topic", Config{ReplyTopic: "a b"}, Deps{Client: plain}, "invalid topic"},
		{"negative timeout", Config{Timeout: -1}, Deps{Client: plain}, "negative"},
		{"bad auth", Config{Auth: auth.Config{Tokens: map[string]auth.Identity{"t": {}}}}, Deps{Client: plain}, "no user"},
		{"saga path on a built-in route", Config{}, Deps{Client: plain, Sagas: clash}, `collides with the built-in route "/tasks"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := New(tt.cfg, tt.deps)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if g.cfg.Addr != DefaultAddr || g.cfg.Timeout != DefaultTimeout || g.cfg.MaxBody != DefaultMaxBody ||
					g.cfg.RequestTopic != DefaultRequestTopic || g.cfg.ReplyTopic != DefaultReplyTopic ||
					g.cfg.ReadTimeout != DefaultReadTimeout || g.cfg.WriteTimeout != DefaultTimeout+DefaultTimeoutMargin ||
					g.cfg.IdleTimeout != DefaultIdleTimeout || g.cfg.MaxHeaderBytes != DefaultMaxHeaderBytes {
					t.Fatalf("defaults not applied: %+v", g.cfg)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.wantErr)
			}
		})
	}
}

func TestServeStopsWhenContextEnds(t *testing.T) {
	brokers := newCluster(t, requestTopic, replyTopic)
	s := serve(t, brokers, Config{}, Deps{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- s.stop() }()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatal("Serve did not return after its context ended")
	}
}

// TestServerBounds shows that no client holds a connection longer than the
// configured bounds: a body that never arrives, an idle keep-alive and an
// oversized header are all cut off.
func TestServerBounds(t *testing.T) {
	brokers := newCluster(t, requestTopic, replyTopic, triggerTopic)
	s := serve(t, brokers, Config{
		Timeout:        100 * time.Millisecond,
		ReadTimeout:    300 * time.Millisecond,
		WriteTimeout:   300 * time.Millisecond,
		IdleTimeout:    300 * time.Millisecond,
		MaxHeaderBytes: 4096,
	}, Deps{})
	addr := strings.TrimPrefix(s.base, "http://")
	// closedWithin reads from conn until the server closes it.
	closedWithin := func(t *testing.T, conn net.Conn, limit time.Duration) {
		t.Helper()
		_ = conn.SetReadDeadline(time.Now().Add(limit))
		if _, err := io.Copy(io.Discard, conn); err != nil {
			t.Fatalf("connection still open after %v: %v", limit, err)
		}
	}
	t.Run("a body that never arrives", func(t *testing.T) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
		closedWithin(t, conn, 5*time.Second)
	})
	t.Run("an idle keep-alive", func(t *testing.T) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		closedWithin(t, conn, 5*time.Second)
	})
	t.Run("an oversized header", func(t *testing.T) {
		req, err := http.NewRequest("GET", s.base+"/healthz", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Big", strings.Repeat("a", 8192))
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("status %d", res.StatusCode)
		}
	})
	t.Run("read and write timeouts must exceed the synchronous wait", func(t *testing.T) {
		for _, cfg := range []Config{
			{Timeout: time.Second, ReadTimeout: time.Second},
			{Timeout: time.Second, WriteTimeout: 500 * time.Millisecond},
		} {
			if _, err := New(cfg, Deps{Client: newClient(t, brokers)}); err == nil || !strings.Contains(err.Error(), "must exceed the synchronous wait") {
				t.Errorf("%+v: err = %v", cfg, err)
			}
		}
	})
}
