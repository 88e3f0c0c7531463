package test

import (
	"bufio"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/sagarunner/sagarunner/internal/redistest"
)

// TestAttackHTTP throws malformed, oversized and slow requests at the
// gateway of a process with authentication on. Every one is answered with
// the status the README promises (never a 5xx the caller did not cause),
// and none holds a connection past the configured timeouts.
func TestAttackHTTP(t *testing.T) {
	p, store := startAttackProcess(t)
	startAttackTask(t, p, store, "http-1")
	addr := strings.TrimPrefix(p.base, "http://")

	t.Run("a body under http.maxBody but over the producer's record limit is 413", func(t *testing.T) {
		// 1 MiB is the gateway's default limit; a Kafka record is at most
		// about 1 MB, so a body in between used to be answered 502
		// PRODUCE_FAILED (and logged as a server fault) instead of 413.
		big := `{"id":"http-big","pad":"` + strings.Repeat("x", 1_010_000) + `"}`
		for _, path := range []string{"/attack-task", "/topics/attack-sweep-ticks"} {
			st, b := do(t, "POST", p.base+path, tokRoot, big)
			if st != http.StatusRequestEntityTooLarge || gjson.GetBytes(b, "code").String() != "BODY_TOO_LARGE" {
				t.Errorf("POST %s with %d bytes: %d %.200s, want 413 BODY_TOO_LARGE", path, len(big), st, b)
			}
		}
	})

	t.Run("task ids that are paths, hash tags or huge are just unknown", func(t *testing.T) {
		// (A literal ".." never gets here: the router redirects it to the
		// cleaned path.)
		for _, id := range []string{"%2E%2E", "a%2Fb", "%7Bhttp-1%7D", "http-1%7D", "%7B%7D", "a:b:c", "*", "http-1%00",
			strings.Repeat("x", 8000)} {
			st, b := do(t, "GET", p.base+"/tasks/attack/"+id, tokRoot, "")
			if st != http.StatusNotFound && st != http.StatusBadRequest {
				t.Errorf("GET task %.40q: %d %.200s, want 404 or 400", id, st, b)
			}
		}
		for _, domain := range []string{"%2E%2E", "a%2Fb", "%7Battack%7D", "attack%00", strings.Repeat("d", 65), "ATTACK%20"} {
			st, b := do(t, "GET", p.base+"/tasks/"+domain+"/http-1", tokRoot, "")
			if st != http.StatusBadRequest && st != http.StatusNotFound {
				t.Errorf("GET domain %.40q: %d %.200s, want 400 or 404", domain, st, b)
			}
			// ".." is a valid domain name (no path means anything to
			// Redis): an empty one.
			if st, b := do(t, "GET", p.base+"/tasks?domain="+domain, tokRoot, ""); st != http.StatusBadRequest &&
				(st != http.StatusOK || len(gjson.ParseBytes(b).Array()) != 0) {
				t.Errorf("list domain %.40q: %d %.200s, want 400 or nothing", domain, st, b)
			}
		}
		// The one real task is still there, for its candidates.
		if st, b := do(t, "GET", p.base+"/tasks/attack/http-1", tokAlice, ""); st != http.StatusOK {
			t.Errorf("alice reads http-1: %d %s", st, b)
		}
	})

	t.Run("listing bounds", func(t *testing.T) {
		for _, q := range []string{"limit=0", "limit=-1", "limit=1001", "limit=99999999999999999999", "limit=1e3", "status=open", "full=maybe"} {
			if st, b := do(t, "GET", p.base+"/tasks?domain=attack&"+q, tokRoot, ""); st != http.StatusBadRequest {
				t.Errorf("GET /tasks?%s: %d %.200s, want 400", q, st, b)
			}
		}
		// A role filter the caller does not hold, or another user, shows
		// nothing rather than that inbox.
		for _, q := range []string{"role=manager", "user=alice", "user=alice&role=manager", "status=COMPLETED&user=alice"} {
			st, b := do(t, "GET", p.base+"/tasks?domain=attack&"+q, tokMallory, "")
			if st != http.StatusOK || len(gjson.ParseBytes(b).Array()) != 0 {
				t.Errorf("mallory lists %s: %d %.200s, want 200 []", q, st, b)
			}
		}
	})

	t.Run("a header block over the limit is refused", func(t *testing.T) {
		req, err := http.NewRequest("GET", p.base+"/tasks?domain=attack", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+tokRoot)
		req.Header.Set("X-Pad", strings.Repeat("p", 200<<10))
		res, err := http.DefaultClient.Do(req)
		if err == nil {
			res.Body.Close()
			if res.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
				t.Errorf("200 KB of headers: %d, want 431", res.StatusCode)
			}
		}
	})

	t.Run("request smuggling: Content-Length beside chunked", func(t *testing.T) {
		// Two requests hidden in one: a front proxy trusting
		// Content-Length would see one. Go's server lets chunked win
		// (RFC 9112 §6.3), so the hidden one is merely the next request
		// on the connection, and it is authenticated on its own: with no
		// token of its own it is refused.
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		smuggled := "GET /tasks?domain=attack HTTP/1.1\r\nHost: x\r\n\r\n"
		body := "0\r\n\r\n" + smuggled
		req := "POST /attack-task HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + tokMallory +
			"\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\nTransfer-Encoding: chunked\r\n\r\n" + body
		if _, err := conn.Write([]byte(req)); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(15 * time.Second))
		rd := bufio.NewReader(conn)
		res, err := http.ReadResponse(rd, nil)
		if err != nil {
			return // refused outright: fine
		}
		res.Body.Close()
		if second, err := http.ReadResponse(rd, nil); err == nil {
			second.Body.Close()
			if second.StatusCode != http.StatusUnauthorized {
				t.Errorf("the smuggled request without a token: %d, want 401", second.StatusCode)
			}
		}
	})
}

// TestAttackSlowClients: slow headers, slow bodies and idle keep-alives are
// cut at the configured timeouts instead of holding a connection each.
func TestAttackSlowClients(t *testing.T) {
	redisAddr, _ := redistest.Start(t)
	cluster := newCluster(t)
	brokers := cluster.ListenAddrs()
	cfg := newConfig(t, brokers, redisAddr, sagaDir(t))
	cfg.HTTP.Timeout = 500 * time.Millisecond
	cfg.HTTP.ReadTimeout = time.Second
	cfg.HTTP.WriteTimeout = time.Second
	cfg.HTTP.IdleTimeout = time.Second
	p := startProcess(t, "runner", cfg)
	addr := strings.TrimPrefix(p.base, "http://")

	cases := map[string]string{
		"slow headers": "POST /ProceedTask HTTP/1.1\r\nHost: x\r\n",
		"slow body":    "POST /ProceedTask HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"taskId\":",
		"idle":         "",
	}
	conns := map[string]net.Conn{}
	for name, prefix := range cases {
		for i := 0; i < 20; i++ {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			if _, err := c.Write([]byte(prefix)); err != nil {
				t.Fatal(err)
			}
			conns[name+strconv.Itoa(i)] = c
		}
	}
	// Each is closed by the server within its timeout (plus slack for a
	// loaded machine): a read sees EOF or a timeout answer, never our own
	// deadline.
	for name, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 4096)
		for {
			_, err := c.Read(buf)
			if err == nil {
				continue
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Errorf("%s: the server kept the connection open for 10s", name)
			}
			break
		}
	}
}
