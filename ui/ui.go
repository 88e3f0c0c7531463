package ui

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sagarunner/sagarunner/auth"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Prefix is where the gateway mounts the UI.
const Prefix = "/ui/"

// Defaults of Config.
const (
	DefaultSessionIdle       = 8 * time.Hour
	DefaultSessionMax        = 24 * time.Hour
	DefaultMaxSessions       = 10000
	DefaultMaxStreams        = 1000
	DefaultStreamsPerSession = 8
	DefaultStreamBuffer      = 64
	DefaultHeartbeat         = 15 * time.Second
)

// Config configures the UI. Zero fields take their defaults in Validate.
type Config struct {
	// TaskEventTopic and AuditTopic are read for live updates (the
	// runners' topics.taskEvents and topics.audit); with both empty pages
	// do not update live.
	TaskEventTopic string
	AuditTopic     string
	// DevUsers, when set, turns the sign-in page into a picker of these
	// users: one click signs in with the user's token, which never reaches
	// the browser. Only `sagarunner dev` sets it; a real deployment signs
	// in with a token.
	DevUsers []DevUser
	// SessionIdle ends a session unused this long (default 8h); SessionMax
	// ends any session this long after sign-in (default 24h).
	SessionIdle time.Duration
	SessionMax  time.Duration
	// MaxSessions bounds the sessions kept in memory (default 10000); past
	// it the least recently used one is ended, so signing in repeatedly
	// cannot exhaust memory.
	MaxSessions int
	// MaxStreams bounds the live-update streams open at once (default
	// 1000), StreamsPerSession those of one session (default 8): a tab is
	// one stream, and a client opening more is refused with 503.
	MaxStreams        int
	StreamsPerSession int
	// StreamBuffer is how many events wait for one slow stream before it
	// is dropped (default 64); the browser reconnects and reloads.
	StreamBuffer int
	// Heartbeat is how often an idle stream gets a comment line, so
	// proxies and browsers keep it open (default 15s).
	Heartbeat time.Duration
	// SecureCookies marks the session cookie Secure even on plain HTTP
	// requests, for a gateway behind a proxy that terminates TLS. Requests
	// that arrive over TLS always get Secure cookies.
	SecureCookies bool
}

// DevUser is one user of the development picker.
type DevUser struct {
	User   string
	Token  string
	Roles  []string
	Tenant string
}

// Validate fills defaults and reports every problem at once.
func (c *Config) Validate() error {
	var errs []error
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{{"session idle", &c.SessionIdle, DefaultSessionIdle}, {"session max", &c.SessionMax, DefaultSessionMax}, {"heartbeat", &c.Heartbeat, DefaultHeartbeat}} {
		switch {
		case *d.v < 0:
			errs = append(errs, fmt.Errorf("ui: %s %v is negative", d.name, *d.v))
		case *d.v == 0:
			*d.v = d.def
		}
	}
	for _, n := range []struct {
		name string
		v    *int
		def  int
	}{{"max sessions", &c.MaxSessions, DefaultMaxSessions}, {"max streams", &c.MaxStreams, DefaultMaxStreams},
		{"streams per session", &c.StreamsPerSession, DefaultStreamsPerSession}, {"stream buffer", &c.StreamBuffer, DefaultStreamBuffer}} {
		switch {
		case *n.v < 0:
			errs = append(errs, fmt.Errorf("ui: %s %d is negative", n.name, *n.v))
		case *n.v == 0:
			*n.v = n.def
		}
	}
	for i, u := range c.DevUsers {
		if u.User == "" || u.Token == "" {
			errs = append(errs, fmt.Errorf("ui: dev user %d needs a user and a token", i))
		}
	}
	return errors.Join(errs...)
}

// Deps are the UI's collaborators.
type Deps struct {
	// API serves the gateway's HTTP API; every read and action of the UI
	// is a request to it carrying the session's bearer token. Required.
	API http.Handler
	// Authenticate resolves a token typed at sign-in, exactly as the API
	// will resolve it on every request. Required.
	Authenticate func(token string) (auth.Identity, error)
	// AuthEnabled reports whether the API authenticates callers. When it
	// does not, signing in needs no token: every caller is trusted.
	AuthEnabled bool
	// AdminRoles says which callers are shown admin actions; the API
	// decides whether they may take them.
	AdminRoles []string
	// NewFeedClient makes the Kafka client of the live-update feed, a
	// client of its own outside any consumer group; nil turns live
	// updates off.
	NewFeedClient func(opts ...kgo.Opt) (*kgo.Client, error)
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Now defaults to time.Now.
	Now func() time.Time
}

// UI serves the web inbox and monitor. Create it with New.
type UI struct {
	cfg       Config
	api       http.Handler
	authn     func(string) (auth.Identity, error)
	authOn    bool
	admins    []string
	log       *slog.Logger
	now       func() time.Time
	pages     *pages
	sessions  *sessions
	hub       *hub
	handler   http.Handler
	closeOnce sync.Once
}

// New validates cfg and deps and builds the UI's routes. The live feed,
// when configured, starts with the first stream and stops at Shutdown.
func New(cfg Config, deps Deps) (*UI, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.API == nil || deps.Authenticate == nil {
		return nil, errors.New("ui: Deps.API and Deps.Authenticate are required")
	}
	p, err := parsePages()
	if err != nil {
		return nil, err
	}
	u := &UI{cfg: cfg, api: deps.API, authn: deps.Authenticate, authOn: deps.AuthEnabled, admins: deps.AdminRoles,
		log: deps.Logger, now: deps.Now, pages: p}
	if u.log == nil {
		u.log = slog.Default()
	}
	if u.now == nil {
		u.now = time.Now
	}
	u.sessions = newSessions(cfg, u.now)
	var topics []string
	for _, t := range []string{cfg.TaskEventTopic, cfg.AuditTopic} {
		if t != "" {
			topics = append(topics, t)
		}
	}
	if deps.NewFeedClient == nil {
		topics = nil
	}
	u.hub = newHub(u, topics, deps.NewFeedClient)
	u.handler = u.routes()
	return u, nil
}

// Handler serves every path under Prefix.
func (u *UI) Handler() http.Handler { return u.handler }

// Shutdown ends every live stream and stops the feed, so a server's
// graceful shutdown does not wait on streams that never end by themselves.
// Register it with http.Server.RegisterOnShutdown.
func (u *UI) Shutdown() {
	u.closeOnce.Do(u.hub.close)
}

func (u *UI) routes() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	mux.Handle("GET /ui/static/", http.StripPrefix("/ui/static/", staticFiles(static)))
	mux.HandleFunc("GET /ui/{$}", u.home)
	mux.HandleFunc("GET /ui/signin", u.signinPage)
	mux.HandleFunc("POST /ui/signin", u.signin)
	mux.HandleFunc("POST /ui/signout", u.signed(u.signout))
	mux.HandleFunc("GET /ui/tasks/mine", u.signed(u.myTasks))
	mux.HandleFunc("GET /ui/tasks/group", u.signed(u.groupTasks))
	mux.HandleFunc("GET /ui/tasks/{domain}/{id}", u.signed(u.taskPage))
	mux.HandleFunc("POST /ui/tasks/{domain}/{id}/{op}", u.signed(u.taskAction))
	mux.HandleFunc("GET /ui/instances", u.signed(u.instanceList))
	mux.HandleFunc("GET /ui/instances/{id}", u.signed(u.instancePage))
	mux.HandleFunc("POST /ui/instances/{id}/cancel", u.signed(u.cancelInstance))
	mux.HandleFunc("GET /ui/events", u.signed(u.events))
	mux.HandleFunc("/ui/", func(w http.ResponseWriter, r *http.Request) {
		u.render(w, r, nil, http.StatusNotFound, "error", errorPage{Title: "Not found", Message: "There is no page at this address."})
	})
	return secure(mux)
}

// secure sets the headers every UI response carries: a Content-Security-
// Policy allowing only the UI's own script and style files (no inline
// script, no eval, nothing from elsewhere), no framing, no sniffing, no
// referrer leaving the site (same-origin, not no-referrer: with no-referrer
// browsers send "Origin: null" on the UI's own posts, which the Origin
// check refuses), and no caching of pages that hold task data.
func secure(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		if h.Get("Cache-Control") == "" {
			h.Set("Cache-Control", "no-store")
		}
		next.ServeHTTP(w, r)
	})
}

// staticFiles serves the embedded assets; they change only with the
// binary, so a browser may keep them for a while.
func staticFiles(fsys fs.FS) http.Handler {
	files := http.FileServerFS(fsys)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "" || strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r) // no directory listings
			return
		}
		w.Header().Set("Cache-Control", "public, max-age=300")
		files.ServeHTTP(w, r)
	})
}

// isAdmin says whether the caller is shown admin actions.
func (u *UI) isAdmin(s *session) bool {
	return u.authOn && s.identity.IsAdmin(u.admins)
}
