package ui

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sagarunner/sagarunner/instances"
	"github.com/sagarunner/sagarunner/statemanager"
)

// instanceFilters are the dashboard's filters as the form names them.
type instanceFilters struct {
	Saga, Status, BusinessKey, From, To, Assignee, Search, Sort string
}

// instancesView is the instance dashboard's data.
type instancesView struct {
	F         instanceFilters
	Statuses  []string
	Instances []*instances.Instance
	Next      string
	Note      string
	Error     string
}

func (instancesView) PageTitle() string { return "Instances" }
func (instancesView) NavItem() string   { return "instances" }

// dayMillis reads a date input (YYYY-MM-DD, UTC) as epoch milliseconds,
// plus a day for an inclusive "to".
func dayMillis(v string, endOfDay bool) (int64, bool) {
	if v == "" {
		return 0, true
	}
	t, err := time.Parse("2006-01-02", v)
	if err != nil {
		return 0, false
	}
	if endOfDay {
		t = t.Add(24 * time.Hour)
	}
	return t.UnixMilli(), true
}

func (u *UI) instanceList(w http.ResponseWriter, r *http.Request, s *session) {
	in := r.URL.Query()
	v := instancesView{Statuses: instances.Statuses, F: instanceFilters{
		Saga: in.Get("saga"), Status: in.Get("status"), BusinessKey: in.Get("businessKey"), From: in.Get("from"),
		To: in.Get("to"), Assignee: in.Get("assignee"), Search: strings.TrimSpace(in.Get("q")), Sort: in.Get("sort")}}
	if v.F.Search != "" {
		// A search is an instance id or a business key: an exact id
		// opens the instance, anything else filters by business key.
		if res := u.getJSON(r.Context(), s, apiPath("instances", v.F.Search), nil, nil); res.OK() {
			http.Redirect(w, r, "/ui/instances/"+url.PathEscape(v.F.Search), http.StatusSeeOther)
			return
		}
		v.F.BusinessKey = v.F.Search
	}
	if v.F.Assignee != "" {
		u.instancesByAssignee(w, r, s, v)
		return
	}
	q := url.Values{"limit": {strconv.Itoa(pageSize)}}
	for k, val := range map[string]string{"saga": v.F.Saga, "status": v.F.Status, "businessKey": v.F.BusinessKey, "sort": v.F.Sort, "cursor": in.Get("cursor")} {
		if val != "" {
			q.Set(k, val)
		}
	}
	from, ok1 := dayMillis(v.F.From, false)
	to, ok2 := dayMillis(v.F.To, true)
	if !ok1 || !ok2 {
		v.Error = "Dates are YYYY-MM-DD."
		u.render(w, r, s, http.StatusBadRequest, "instances", v)
		return
	}
	if from > 0 {
		q.Set("startedAfter", strconv.FormatInt(from, 10))
	}
	if to > 0 {
		q.Set("startedBefore", strconv.FormatInt(to, 10))
	}
	status := http.StatusOK
	res := u.getJSON(r.Context(), s, "/instances", q, &v.Instances)
	if !res.OK() {
		v.Error, status = res.Err(), res.Status
	} else if next := res.Header.Get("X-Next-Cursor"); next != "" {
		nq := url.Values{}
		for k, val := range in {
			if k != "cursor" && k != "q" && len(val) > 0 && val[0] != "" {
				nq.Set(k, val[0])
			}
		}
		if v.F.Search != "" {
			nq.Set("businessKey", v.F.BusinessKey)
		}
		nq.Set("cursor", next)
		v.Next = nq.Encode()
	}
	for _, in := range v.Instances {
		s.remember(instanceKey(in.ID))
	}
	u.render(w, r, s, status, "instances", v)
}

// instancesByAssignee lists the instances whose open tasks the assignee
// holds: the API answers whose tasks a caller may list (a non-admin only
// its own), and each instance is then read as the caller, so nothing
// shows that the caller could not open itself.
func (u *UI) instancesByAssignee(w http.ResponseWriter, r *http.Request, s *session, v instancesView) {
	var tasks []*statemanager.Task
	q := url.Values{"claimedBy": {v.F.Assignee}, "limit": {strconv.Itoa(pageSize)}}
	if v.F.Assignee == "me" || v.F.Assignee == s.identity.User {
		q.Set("claimedBy", "me")
	}
	res := u.getJSON(r.Context(), s, "/tasks", q, &tasks)
	if !res.OK() {
		v.Error = res.Err()
		u.render(w, r, s, res.Status, "instances", v)
		return
	}
	seen := map[string]bool{}
	for _, t := range tasks {
		if t.RequestID == "" || t.Saga == "" || seen[t.RequestID] {
			continue
		}
		seen[t.RequestID] = true
		var in instances.Instance
		if res := u.getJSON(r.Context(), s, apiPath("instances", t.RequestID), nil, &in); res.OK() && u.matches(v.F, &in) {
			v.Instances = append(v.Instances, &in)
		}
	}
	v.Note = "Instances with an open task claimed by " + v.F.Assignee + "."
	u.render(w, r, s, http.StatusOK, "instances", v)
}

// matches applies the other filters to an instance read by id.
func (u *UI) matches(f instanceFilters, in *instances.Instance) bool {
	from, _ := dayMillis(f.From, false)
	to, _ := dayMillis(f.To, true)
	return (f.Saga == "" || in.Saga == f.Saga) && (f.Status == "" || strings.EqualFold(in.Status, f.Status)) &&
		(f.BusinessKey == "" || in.BusinessKey == f.BusinessKey) && (from == 0 || in.StartedAt >= from) && (to == 0 || in.StartedAt < to)
}

// instanceView is the instance page's data.
type instanceView struct {
	Instance *instances.Instance
	Timeline []instances.Event
	Tasks    []*statemanager.Task
	// Payload is the instance's payload while it waits on a task, shown
	// to admins.
	Payload json.RawMessage
	Flash   string
	Error   string
}

func (v instanceView) PageTitle() string {
	if v.Instance == nil {
		return "Instance"
	}
	return v.Instance.Saga + " " + v.Instance.ID
}

func (instanceView) NavItem() string { return "instances" }

// Open reports whether the instance can still be cancelled.
func (v instanceView) Open() bool { return v.Instance != nil && !instances.Ended(v.Instance.Status) }

func (u *UI) instancePage(w http.ResponseWriter, r *http.Request, s *session) {
	u.showInstance(w, r, s, http.StatusOK, flashes[r.URL.Query().Get("done")], "")
}

// maxInstanceTasks bounds the open tasks read for one instance page.
const maxInstanceTasks = 20

func (u *UI) showInstance(w http.ResponseWriter, r *http.Request, s *session, status int, flash, errMsg string) {
	id := r.PathValue("id")
	v := instanceView{Flash: flash, Error: errMsg}
	if r.URL.Query().Get("done") == "instanceCancel" {
		v.Flash = "The instance was cancelled."
	}
	res := u.getJSON(r.Context(), s, apiPath("instances", id), nil, &v.Instance)
	if !res.OK() {
		u.render(w, r, s, res.Status, "error", errorPage{Title: "Instance not available", Message: res.Err(), Back: "/ui/instances"})
		return
	}
	if t := u.getJSON(r.Context(), s, apiPath("instances", id, "timeline"), nil, &v.Timeline); !t.OK() && v.Error == "" {
		v.Error = "Timeline: " + t.Err()
	}
	slices.Reverse(v.Timeline)
	// An admin also sees the instance's payload as it waits, from the
	// suspended envelope (full=true, which the API gives admins only).
	var full url.Values
	if u.isAdmin(s) {
		full = url.Values{"full": {"true"}}
	}
	for i, ref := range v.Instance.OpenTasks {
		if i == maxInstanceTasks {
			break
		}
		var t statemanager.Task
		if res := u.getJSON(r.Context(), s, apiPath("tasks", ref.Domain, ref.ID), full, &t); res.OK() {
			if len(t.Envelope) > 0 && v.Payload == nil {
				var env struct {
					Payload json.RawMessage `json:"payload"`
				}
				if json.Unmarshal(t.Envelope, &env) == nil {
					v.Payload = env.Payload
				}
			}
			t.Envelope = nil
			v.Tasks = append(v.Tasks, &t)
		}
	}
	s.remember(instanceKey(v.Instance.ID))
	rememberTasks(s, v.Tasks)
	u.render(w, r, s, status, "instance", v)
}

// cancelInstance is the instance page's cancel button: POST
// /instances/{id}/cancel as the caller.
func (u *UI) cancelInstance(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	body := map[string]any{}
	if reason := strings.TrimSpace(r.PostForm.Get("reason")); reason != "" {
		body["reason"] = reason
	}
	res := u.call(r.Context(), s, http.MethodPost, apiPath("instances", id, "cancel"), nil, body)
	if !res.OK() {
		u.showInstance(w, r, s, res.Status, "", res.Err())
		return
	}
	http.Redirect(w, r, "/ui/instances/"+url.PathEscape(id)+"?done=instanceCancel", http.StatusSeeOther)
}
