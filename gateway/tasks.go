package gateway

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/sagarunner/sagarunner/actions"
	"github.com/sagarunner/sagarunner/auth"
	"github.com/sagarunner/sagarunner/statemanager"
)

// Task listing bounds.
const (
	defaultTaskLimit = 100
	maxTaskLimit     = 1000
	// maxCursorLen bounds cursor=: a cursor holds a position, not data.
	maxCursorLen = 2048
)

var taskStatuses = []string{statemanager.StatusWaiting, statemanager.StatusInApproval, statemanager.StatusCompleted, statemanager.StatusTimeout, statemanager.StatusCancelled}

// listTasks serves GET /tasks, a task inbox (see taskFilter for its
// query), one page at a time: the cursor of the next page is in the
// X-Next-Cursor header, absent on the last page. The suspended envelope is
// left out unless full=true: it is the heaviest field and an inbox rarely
// needs it.
func (g *Gateway) listTasks(w http.ResponseWriter, r *http.Request) {
	full, ok := g.fullParam(w, r)
	if !ok {
		return
	}
	f, store, domain, ok := g.taskFilter(w, r)
	if !ok {
		return
	}
	if store == nil {
		writeJSON(w, http.StatusOK, []*statemanager.Task{})
		return
	}
	page, err := statemanager.ListPage(r.Context(), store, f)
	if err != nil {
		g.storeFailed(w, domain, err)
		return
	}
	out := make([]*statemanager.Task, 0, len(page.Tasks))
	for _, t := range page.Tasks {
		// The store filters by viewer already; asking again costs nothing
		// and keeps a store that ignores the viewer from leaking.
		if t.VisibleTo(f.Tenant, f.Viewer) {
			out = append(out, view(t, full))
		}
	}
	if page.Next != "" {
		w.Header().Set("X-Next-Cursor", page.Next)
	}
	writeJSON(w, http.StatusOK, out)
}

// countTasks serves GET /tasks/count with GET /tasks's filters: {"count":
// n}, and "exact": false when n is an upper bound (a store answers exactly
// what one index holds; see statemanager.RedisStore.Count).
func (g *Gateway) countTasks(w http.ResponseWriter, r *http.Request) {
	f, store, domain, ok := g.taskFilter(w, r)
	if !ok {
		return
	}
	if store == nil {
		writeJSON(w, http.StatusOK, map[string]any{"count": 0})
		return
	}
	tc, ok := store.(statemanager.TaskCounter)
	if !ok {
		writeError(w, http.StatusNotImplemented, "NOT_SUPPORTED", fmt.Sprintf("the state manager of %q does not count tasks", domain))
		return
	}
	n, exact, err := tc.Count(r.Context(), f)
	if err != nil {
		g.storeFailed(w, domain, err)
		return
	}
	body := map[string]any{"count": n}
	if !exact {
		body["exact"] = false
	}
	writeJSON(w, http.StatusOK, body)
}

// taskFilter reads the query of GET /tasks and /tasks/count, answering
// the error itself: domain=, user=, role=, status=, claimedBy= (me is the
// caller), candidate=me (open tasks the caller may claim, or with
// status=IN_APPROVAL approve), sort=startedAt|deadline|priority, limit=
// and cursor=. With auth on a caller sees only tasks of its tenant that
// it may act on or has acted on; a non-admin's user and role filters are
// narrowed to itself (it cannot read another user's inbox, or a role's it
// does not hold), and it may ask only for the tasks it claimed itself
// (403 otherwise). A nil store with ok means nothing can match: the
// answer is empty.
func (g *Gateway) taskFilter(w http.ResponseWriter, r *http.Request) (f statemanager.Filter, store statemanager.Store, domain string, ok bool) {
	q := r.URL.Query()
	domain = q.Get("domain")
	if domain == "" {
		domain = actions.DefaultDomain
	}
	bad := func(msg string) (statemanager.Filter, statemanager.Store, string, bool) {
		writeError(w, http.StatusBadRequest, actions.CodeBadInput, msg)
		return f, nil, domain, false
	}
	f = statemanager.Filter{User: q.Get("user"), Role: q.Get("role"), Status: strings.ToUpper(q.Get("status")),
		Sort: q.Get("sort"), Cursor: q.Get("cursor"), Limit: defaultTaskLimit}
	if f.Status != "" && !contains(taskStatuses, f.Status) {
		return bad(fmt.Sprintf("status %q is not one of %s", f.Status, strings.Join(taskStatuses, ", ")))
	}
	if f.Sort != "" && !contains(statemanager.Sorts, f.Sort) {
		return bad(fmt.Sprintf("sort %.64q is not one of %s", f.Sort, strings.Join(statemanager.Sorts, ", ")))
	}
	if len(f.Cursor) > maxCursorLen {
		return bad(fmt.Sprintf("cursor longer than %d characters: pass X-Next-Cursor as it came", maxCursorLen))
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || n > maxTaskLimit {
			return bad(fmt.Sprintf("limit %.32q must be an integer in [1, %d]", v, maxTaskLimit))
		}
		f.Limit = n
	}
	caller := identityOf(r.Context())
	if c := q.Get("candidate"); c != "" {
		if c != "me" {
			return bad(fmt.Sprintf("candidate %.64q: only candidate=me (the caller) is supported", c))
		}
		if caller.User == "" && len(caller.Roles) == 0 {
			return bad("candidate=me needs an authenticated caller with a user or roles")
		}
		f.Candidate = &statemanager.Viewer{User: caller.User, Roles: caller.Roles}
	}
	v := g.viewer(caller)
	if c := q.Get("claimedBy"); c != "" {
		if c == "me" {
			if caller.User == "" {
				return bad("claimedBy=me needs an authenticated caller with a user")
			}
			c = caller.User
		}
		if v != nil && !v.Admin && c != caller.User {
			writeError(w, http.StatusForbidden, actions.CodeForbidden, "claimedBy: a caller that is not an admin may only ask for its own claims (claimedBy=me)")
			return f, nil, domain, false
		}
		f.ClaimedBy = c
	}
	store, ok = g.store(w, domain)
	if !ok {
		return f, nil, domain, false
	}
	if v != nil {
		f.Tenant, f.Viewer = caller.Tenant, v
		if !v.Admin {
			if f.User != "" {
				f.User = caller.User
			}
			if f.Role != "" && !contains(caller.Roles, f.Role) {
				return f, nil, domain, true
			}
		}
	}
	return f, store, domain, true
}

// getTask serves GET /tasks/{domain}/{id}, waiting or closed. A task the
// caller may not see answers 404 exactly like an unknown one, so ids of
// other tenants and users cannot be probed.
func (g *Gateway) getTask(w http.ResponseWriter, r *http.Request) {
	domain, id := r.PathValue("domain"), r.PathValue("id")
	full, ok := g.fullParam(w, r)
	if !ok {
		return
	}
	store, ok := g.store(w, domain)
	if !ok {
		return
	}
	t, ok := g.visibleTask(w, r, store, domain, id)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, view(t, full))
}

// visibleTask reads a task for the caller, answering the error itself: a
// task the caller may not see is 404 exactly like an unknown one, so ids of
// other tenants and users cannot be probed.
func (g *Gateway) visibleTask(w http.ResponseWriter, r *http.Request, store statemanager.Store, domain, id string) (*statemanager.Task, bool) {
	caller := identityOf(r.Context())
	t, err := store.Get(r.Context(), id)
	if err == nil && !t.VisibleTo(caller.Tenant, g.viewer(caller)) {
		err = statemanager.ErrNotFound
	}
	if errors.Is(err, statemanager.ErrNotFound) {
		writeError(w, http.StatusNotFound, actions.CodeTaskNotFound, fmt.Sprintf("no task %q in domain %q", id, domain))
		return nil, false
	}
	if err != nil {
		g.storeFailed(w, domain, err)
		return nil, false
	}
	return t, true
}

// fullParam reads full=; with auth on, the suspended envelope it asks for
// is for admins only (403 otherwise): it holds the whole request of
// another caller.
func (g *Gateway) fullParam(w http.ResponseWriter, r *http.Request) (full, ok bool) {
	full, err := boolParam(r, "full")
	if err != nil {
		writeError(w, http.StatusBadRequest, actions.CodeBadInput, err.Error())
		return false, false
	}
	if full && g.auth.Enabled() && !g.isAdmin(identityOf(r.Context())) {
		writeError(w, http.StatusForbidden, actions.CodeForbidden, "full=true shows suspended envelopes: it needs an admin role")
		return false, false
	}
	return full, true
}

// viewer is who reads tasks: nil with auth off, where every caller is
// trusted and sees everything.
func (g *Gateway) viewer(id auth.Identity) *statemanager.Viewer {
	if !g.auth.Enabled() {
		return nil
	}
	return &statemanager.Viewer{User: id.User, Roles: id.Roles, Admin: g.isAdmin(id)}
}

// store resolves a domain's state manager, answering the error itself.
// The domain comes from the URL and names a Redis key prefix, so it is
// restricted to a safe alphabet.
func (g *Gateway) store(w http.ResponseWriter, domain string) (statemanager.Store, bool) {
	if err := checkDomain(domain); err != nil {
		writeError(w, http.StatusBadRequest, actions.CodeBadInput, err.Error())
		return nil, false
	}
	if g.stores == nil {
		writeError(w, http.StatusServiceUnavailable, "NO_STATE_MANAGER", "this gateway has no state managers configured")
		return nil, false
	}
	s, err := g.stores.Store(domain)
	if err != nil {
		writeError(w, http.StatusNotFound, "UNKNOWN_DOMAIN", fmt.Sprintf("no state manager for domain %q: %v", domain, err))
		return nil, false
	}
	return s, true
}

func (g *Gateway) storeFailed(w http.ResponseWriter, domain string, err error) {
	if errors.Is(err, statemanager.ErrInvalidFilter) {
		writeError(w, http.StatusBadRequest, actions.CodeBadInput, err.Error())
		return
	}
	g.log.Warn("gateway: state manager failed", "domain", domain, "err", err)
	writeError(w, http.StatusServiceUnavailable, "STORE_UNAVAILABLE", fmt.Sprintf("state manager %q: %v", domain, err))
}

// view returns t without its suspended envelope unless full is set.
func view(t *statemanager.Task, full bool) *statemanager.Task {
	if full {
		return t
	}
	c := *t
	c.Envelope = nil
	return &c
}

// checkDomain applies the store's one domain rule, with the reason.
func checkDomain(d string) error {
	if !statemanager.ValidDomain(d) {
		return fmt.Errorf("domain %.64q must be 1 to 64 letters, digits, '.', '_' or '-'", d)
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
