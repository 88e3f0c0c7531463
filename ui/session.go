package ui

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sagarunner/sagarunner/auth"
)

// cookieName names the session cookie. It holds a random session id only:
// the token it stands for stays in the server's memory, so it can never be
// read from the browser, a URL or a log.
const cookieName = "sagarunner_session"

// csrfField is the form field, csrfHeader the header of a fetch, that carry
// the session's CSRF token.
const (
	csrfField  = "csrf"
	csrfHeader = "X-CSRF-Token"
)

// maxTokenLen bounds a token typed at sign-in; JWTs of real identity
// providers stay far below it.
const maxTokenLen = 8192

// session is one signed-in browser.
type session struct {
	key      [sha256.Size]byte
	token    string // "" when auth is off: the API trusts every caller
	identity auth.Identity
	csrf     string
	created  time.Time
	lastSeen time.Time
	streams  int // live streams open, guarded by hub.mu

	// known holds what the session's pages showed (task and instance
	// keys), so a change that hides one of them from the caller, such as
	// another's claim, still reaches its pages and takes it off them.
	knownMu sync.Mutex
	known   map[string]struct{}
}

// maxKnown bounds a session's known set; past it the set starts afresh.
const maxKnown = 4096

func (s *session) remember(keys ...string) {
	s.knownMu.Lock()
	defer s.knownMu.Unlock()
	if s.known == nil || len(s.known)+len(keys) > maxKnown {
		s.known = make(map[string]struct{}, len(keys))
	}
	for _, k := range keys {
		s.known[k] = struct{}{}
	}
}

func (s *session) knows(key string) bool {
	s.knownMu.Lock()
	defer s.knownMu.Unlock()
	_, ok := s.known[key]
	return ok
}

// trusted reports a caller without identity: auth is off and the API
// trusts it with everything, but it has no name to claim or approve under.
func (s *session) trusted() bool { return s.identity.User == "" && len(s.identity.Roles) == 0 }

// User is the signed-in user's name, "" for a trusted caller.
func (s *session) User() string { return s.identity.User }

// Trusted is trusted for templates.
func (s *session) Trusted() bool { return s.trusted() }

// Who names the signed-in caller for the page header.
func (s *session) Who() string {
	switch {
	case s.identity.User == "":
		return "trusted caller (auth off)"
	case s.identity.Tenant != "":
		return s.identity.User + " @ " + s.identity.Tenant
	}
	return s.identity.User
}

// sessions keeps sessions in memory, keyed by the SHA-256 of the cookie's
// id, so a lookup's timing says nothing about a guessed id. A restart signs
// everyone out; gateways behind a load balancer need sticky sessions.
type sessions struct {
	cfg Config
	now func() time.Time
	mu  sync.Mutex
	m   map[[sha256.Size]byte]*session
	// signedIn wakes the live feed, stopped while nobody was signed in.
	signedIn chan struct{}
}

func newSessions(cfg Config, now func() time.Time) *sessions {
	return &sessions{cfg: cfg, now: now, m: map[[sha256.Size]byte]*session{}, signedIn: make(chan struct{}, 1)}
}

// count is how many sessions are kept.
func (ss *sessions) count() int {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return len(ss.m)
}

// create starts a session for the token and returns the cookie's value.
func (ss *sessions) create(token string, id auth.Identity) (string, *session) {
	raw := randomString()
	now := ss.now()
	s := &session{key: sha256.Sum256([]byte(raw)), token: token, identity: id, csrf: randomString(), created: now, lastSeen: now}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if len(ss.m) >= ss.cfg.MaxSessions {
		ss.evictLocked(now)
	}
	ss.m[s.key] = s
	select {
	case ss.signedIn <- struct{}{}:
	default:
	}
	return raw, s
}

// evictLocked drops the expired sessions and, if none were, the least
// recently used one.
func (ss *sessions) evictLocked(now time.Time) {
	var oldest *session
	for k, s := range ss.m {
		if ss.expired(s, now) {
			delete(ss.m, k)
			continue
		}
		if oldest == nil || s.lastSeen.Before(oldest.lastSeen) {
			oldest = s
		}
	}
	if len(ss.m) >= ss.cfg.MaxSessions && oldest != nil {
		delete(ss.m, oldest.key)
	}
}

func (ss *sessions) expired(s *session, now time.Time) bool {
	return now.Sub(s.lastSeen) > ss.cfg.SessionIdle || now.Sub(s.created) > ss.cfg.SessionMax
}

// get returns the live session of the cookie value, touching it.
func (ss *sessions) get(raw string) (*session, bool) {
	if raw == "" || len(raw) > 128 {
		return nil, false
	}
	key := sha256.Sum256([]byte(raw))
	now := ss.now()
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s, ok := ss.m[key]
	if !ok {
		return nil, false
	}
	if ss.expired(s, now) {
		delete(ss.m, key)
		return nil, false
	}
	s.lastSeen = now
	return s, true
}

func (ss *sessions) remove(s *session) {
	ss.mu.Lock()
	delete(ss.m, s.key)
	ss.mu.Unlock()
}

// alive reports whether s is still signed in (a stream checks it, so
// signing out ends the session's streams).
func (ss *sessions) alive(s *session) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	cur, ok := ss.m[s.key]
	return ok && cur == s && !ss.expired(s, ss.now())
}

func randomString() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand documents it)
	return base64.RawURLEncoding.EncodeToString(b)
}

// sessionKey carries the session in a request's context.
type sessionKey struct{}

// signed wraps a handler that needs a session: without one a page
// redirects to sign-in (a fetch or stream gets 401), and every request
// other than GET and HEAD must come from the UI's own pages (Origin) and
// carry the session's CSRF token.
func (u *UI) signed(h func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie(cookieName)
		var s *session
		ok := false
		if err == nil {
			s, ok = u.sessions.get(c.Value)
		}
		if !ok {
			if r.Method == http.MethodGet && r.Header.Get("Accept") != "text/event-stream" {
				http.Redirect(w, r, "/ui/signin?next="+url.QueryEscape(localPath(r.URL.RequestURI())), http.StatusSeeOther)
				return
			}
			u.render(w, r, nil, http.StatusUnauthorized, "error", errorPage{Title: "Signed out", Message: "Your session has ended. Sign in again."})
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if !sameOrigin(r) {
				u.render(w, r, s, http.StatusForbidden, "error", errorPage{Title: "Refused", Message: "This request did not come from this site's own pages (Origin check)."})
				return
			}
			got := r.Header.Get(csrfHeader)
			if got == "" {
				r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
				got = r.PostFormValue(csrfField)
			}
			if subtle.ConstantTimeCompare([]byte(got), []byte(s.csrf)) != 1 {
				u.render(w, r, s, http.StatusForbidden, "error", errorPage{Title: "Refused", Message: "The form's CSRF token is missing or stale. Reload the page and try again."})
				return
			}
		}
		h(w, r.WithContext(context.WithValue(r.Context(), startKey{}, u.now())), s)
	}
}

// startKey carries when a signed request began: its page's data is read
// after it, so a live stream catches up on changes from then on.
type startKey struct{}

func startOf(r *http.Request, now time.Time) time.Time {
	if t, ok := r.Context().Value(startKey{}).(time.Time); ok {
		return t
	}
	return now
}

// maxFormBytes bounds a form post: the largest is a completion with its
// data, which the API bounds again.
const maxFormBytes = 1 << 20

// sameOrigin refuses a state-changing request that a browser says came
// from another site. Browsers send Origin on every POST; Sec-Fetch-Site
// where Origin is withheld. A request with neither is not a browser's and
// cannot ride on a browser's cookie: the CSRF token still guards it.
func sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return false
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	o, err := url.Parse(origin)
	if err != nil || o.Host == "" {
		return false
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return strings.EqualFold(o.Host, r.Host) && (o.Scheme == scheme || o.Scheme == "https")
}

// localPath keeps a redirect target on this site's UI: anything else
// (another host, a scheme, "//evil") becomes the UI's home.
func localPath(p string) string {
	if !strings.HasPrefix(p, Prefix) || strings.HasPrefix(p, "//") || strings.ContainsAny(p, "\\\r\n") {
		return Prefix
	}
	return p
}

func (u *UI) setCookie(w http.ResponseWriter, r *http.Request, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name:     cookieName,
		Value:    value,
		Path:     Prefix,
		MaxAge:   maxAge,
		HttpOnly: true,
		Secure:   r.TLS != nil || u.cfg.SecureCookies,
		SameSite: http.SameSiteStrictMode,
	})
}

// signinView is the sign-in page's data.
type signinView struct {
	AuthOn   bool
	DevUsers []DevUser
	Next     string
	Error    string
}

func (u *UI) signinPage(w http.ResponseWriter, r *http.Request) {
	u.render(w, r, nil, http.StatusOK, "signin", signinView{AuthOn: u.authOn, DevUsers: u.cfg.DevUsers, Next: localPath(r.URL.Query().Get("next"))})
}

// signin starts a session from a typed token, a dev user picked, or, with
// auth off, nothing at all. The token is checked exactly as the API will
// check it on every request; a wrong one says why without echoing it.
func (u *UI) signin(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxTokenLen+4096)
	view := signinView{AuthOn: u.authOn, DevUsers: u.cfg.DevUsers, Next: localPath(r.PostFormValue("next"))}
	if !sameOrigin(r) {
		view.Error = "This sign-in did not come from this site's own page."
		u.render(w, r, nil, http.StatusForbidden, "signin", view)
		return
	}
	token := strings.TrimSpace(r.PostFormValue("token"))
	if v := r.PostFormValue("devUser"); v != "" && len(u.cfg.DevUsers) > 0 {
		i, err := strconv.Atoi(v)
		if err != nil || i < 0 || i >= len(u.cfg.DevUsers) {
			view.Error = "No such user."
			u.render(w, r, nil, http.StatusBadRequest, "signin", view)
			return
		}
		token = u.cfg.DevUsers[i].Token
	}
	var id auth.Identity
	if u.authOn {
		if token == "" || len(token) > maxTokenLen {
			view.Error = "Enter your access token."
			u.render(w, r, nil, http.StatusBadRequest, "signin", view)
			return
		}
		var err error
		if id, err = u.authn(token); err != nil {
			view.Error = "That token was not accepted (" + auth.Code(err) + ")."
			u.render(w, r, nil, http.StatusUnauthorized, "signin", view)
			return
		}
	} else {
		token = ""
	}
	raw, _ := u.sessions.create(token, id)
	u.setCookie(w, r, raw, int(u.cfg.SessionMax/time.Second))
	http.Redirect(w, r, view.Next, http.StatusSeeOther)
}

func (u *UI) signout(w http.ResponseWriter, r *http.Request, s *session) {
	u.sessions.remove(s)
	u.hub.signedOut(s)
	u.setCookie(w, r, "", -1)
	http.Redirect(w, r, "/ui/signin", http.StatusSeeOther)
}

func (u *UI) home(w http.ResponseWriter, r *http.Request) {
	http.Redirect(w, r, "/ui/tasks/mine", http.StatusSeeOther)
}
