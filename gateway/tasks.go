package gateway

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/sagarunner/sagarunner/actions"
	"github.com/sagarunner/sagarunner/statemanager"
)

// Task listing bounds.
const (
	defaultTaskLimit = 100
	maxTaskLimit     = 1000
)

var taskStatuses = []string{statemanager.StatusWaiting, statemanager.StatusCompleted, statemanager.StatusTimeout, statemanager.StatusCancelled}

// listTasks serves GET /tasks?domain=&user=&role=&status=&limit=&full=, a
// task inbox. The suspended envelope is left out unless full=true: it is
// the heaviest field and an inbox rarely needs it.
func (g *Gateway) listTasks(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	domain := q.Get("domain")
	if domain == "" {
		domain = actions.DefaultDomain
	}
	f := statemanager.Filter{User: q.Get("user"), Role: q.Get("role"), Status: strings.ToUpper(q.Get("status")), Limit: defaultTaskLimit}
	if f.Status != "" && !contains(taskStatuses, f.Status) {
		writeError(w, http.StatusBadRequest, actions.CodeBadInput, fmt.Sprintf("status %q is not one of %s", f.Status, strings.Join(taskStatuses, ", ")))
		return
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || n > maxTaskLimit {
			writeError(w, http.StatusBadRequest, actions.CodeBadInput, fmt.Sprintf("limit %q must be an integer in [1, %d]", v, maxTaskLimit))
			return
		}
		f.Limit = n
	}
	full, err := boolParam(r, "full")
	if err != nil {
		writeError(w, http.StatusBadRequest, actions.CodeBadInput, err.Error())
		return
	}
	store, ok := g.store(w, domain)
	if !ok {
		return
	}
	tasks, err := store.List(r.Context(), f)
	if err != nil {
		g.storeFailed(w, domain, err)
		return
	}
	out := make([]*statemanager.Task, 0, len(tasks))
	for _, t := range tasks {
		out = append(out, view(t, full))
	}
	writeJSON(w, http.StatusOK, out)
}

// getTask serves GET /tasks/{domain}/{id}, waiting or closed.
func (g *Gateway) getTask(w http.ResponseWriter, r *http.Request) {
	domain, id := r.PathValue("domain"), r.PathValue("id")
	full, err := boolParam(r, "full")
	if err != nil {
		writeError(w, http.StatusBadRequest, actions.CodeBadInput, err.Error())
		return
	}
	store, ok := g.store(w, domain)
	if !ok {
		return
	}
	t, err := store.Get(r.Context(), id)
	if errors.Is(err, statemanager.ErrNotFound) {
		writeError(w, http.StatusNotFound, actions.CodeTaskNotFound, fmt.Sprintf("no task %q in domain %q", id, domain))
		return
	}
	if err != nil {
		g.storeFailed(w, domain, err)
		return
	}
	writeJSON(w, http.StatusOK, view(t, full))
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

func checkDomain(d string) error {
	if d == "" || len(d) > 64 {
		return fmt.Errorf("domain %q must be 1 to 64 characters", d)
	}
	for _, r := range d {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("domain %q may only hold letters, digits, '.', '_' and '-'", d)
		}
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
