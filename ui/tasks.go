package ui

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/sagarunner/sagarunner/statemanager"
)

// defaultDomain is the domain the inbox shows unless the URL names
// another; it is the API's default too.
const defaultDomain = "workflow"

// pageSize is how many tasks or instances one page lists.
const pageSize = 50

// inboxView is the data of My tasks and Group tasks.
type inboxView struct {
	Which      string // "mine" or "group"
	Domain     string
	Sort       string
	Sorts      []string
	Tasks      []*statemanager.Task
	Approvals  []*statemanager.Task // group: IN_APPROVAL tasks the caller may approve
	MineCount  string
	GroupCount string
	Next       string // the next page's query, "" on the last page
	Error      string
}

func (v inboxView) PageTitle() string {
	if v.Which == "mine" {
		return "My tasks"
	}
	return "Group tasks"
}

func (v inboxView) NavItem() string { return v.Which }

func (u *UI) myTasks(w http.ResponseWriter, r *http.Request, s *session) {
	u.inbox(w, r, s, "mine")
}

func (u *UI) groupTasks(w http.ResponseWriter, r *http.Request, s *session) {
	u.inbox(w, r, s, "group")
}

// inboxFilter is the API query of one inbox list: mine are the open tasks
// the caller claimed, group the ones it may take up (candidate=me). A
// trusted caller (auth off) has no name to hold tasks under and may take
// up every task, so its group list is every open task.
func inboxFilter(s *session, which, domain, status, sort string) url.Values {
	q := url.Values{"domain": {domain}, "status": {status}}
	if sort != "" {
		q.Set("sort", sort)
	}
	switch {
	case which == "mine":
		q.Set("claimedBy", "me")
	case !s.trusted():
		q.Set("candidate", "me")
	}
	return q
}

func (u *UI) inbox(w http.ResponseWriter, r *http.Request, s *session, which string) {
	in := r.URL.Query()
	v := inboxView{Which: which, Domain: in.Get("domain"), Sort: in.Get("sort"), Sorts: statemanager.Sorts}
	if v.Domain == "" {
		v.Domain = defaultDomain
	}
	if v.Sort == "" {
		v.Sort = statemanager.SortDeadline
	}
	q := inboxFilter(s, which, v.Domain, statemanager.StatusWaiting, v.Sort)
	q.Set("limit", strconv.Itoa(pageSize))
	if c := in.Get("cursor"); c != "" {
		q.Set("cursor", c)
	}
	status := http.StatusOK
	var res apiResult
	if which == "mine" && s.trusted() {
		res = apiResult{Status: http.StatusOK}
		v.Error = "Authentication is off: nobody holds tasks by name. Group tasks lists every open task."
	} else {
		res = u.getJSON(r.Context(), s, "/tasks", q, &v.Tasks)
	}
	if !res.OK() {
		v.Error, status = res.Err(), res.Status
	} else if next := res.Header.Get("X-Next-Cursor"); next != "" {
		nq := url.Values{"domain": {v.Domain}, "sort": {v.Sort}, "cursor": {next}}
		v.Next = nq.Encode()
	}
	if which == "group" && in.Get("cursor") == "" {
		aq := inboxFilter(s, which, v.Domain, statemanager.StatusInApproval, v.Sort)
		aq.Set("limit", strconv.Itoa(pageSize))
		if res := u.getJSON(r.Context(), s, "/tasks", aq, &v.Approvals); !res.OK() && v.Error == "" {
			v.Error, status = res.Err(), res.Status
		}
	}
	rememberTasks(s, v.Tasks, v.Approvals)
	v.MineCount, v.GroupCount = "0", "?"
	if !s.trusted() {
		v.MineCount = u.count(r, s, inboxFilter(s, "mine", v.Domain, statemanager.StatusWaiting, ""))
	}
	v.GroupCount = u.count(r, s, inboxFilter(s, "group", v.Domain, statemanager.StatusWaiting, ""))
	u.render(w, r, s, status, "inbox", v)
}

// count asks GET /tasks/count; an answer it cannot read shows as "?"
// rather than failing the page.
func (u *UI) count(r *http.Request, s *session, q url.Values) string {
	res := u.call(r.Context(), s, http.MethodGet, "/tasks/count", q, nil)
	if !res.OK() {
		return "?"
	}
	var n int64
	if json.Unmarshal(res.Body, &n) == nil {
		return strconv.FormatInt(n, 10)
	}
	var obj struct {
		Count *int64 `json:"count"`
		Exact *bool  `json:"exact"`
	}
	if json.Unmarshal(res.Body, &obj) == nil && obj.Count != nil {
		c := strconv.FormatInt(*obj.Count, 10)
		if obj.Exact != nil && !*obj.Exact {
			c = "≤" + c
		}
		return c
	}
	return "?"
}

// taskView is the task page's data.
type taskView struct {
	Task    *statemanager.Task
	History []statemanager.Event
	Fields  []field
	RawData string
	Mine    bool // claimed by the caller
	// MineToApprove: the caller completed it, so others approve it.
	MineToApprove bool
	Flash         string
	Error         string
	// Form echoes what was typed into a refused form, so nothing typed is
	// lost.
	Form url.Values
}

func (v taskView) PageTitle() string {
	if v.Task == nil {
		return "Task"
	}
	if v.Task.Name != "" {
		return v.Task.Name
	}
	return "Task " + v.Task.ID
}

func (v taskView) NavItem() string { return "task" }

// Open reports whether the task can still be acted on.
func (v taskView) Open() bool { return v.Task != nil && statemanager.Open(v.Task.Status) }

// InApproval reports whether the task waits for approvals.
func (v taskView) InApproval() bool {
	return v.Task != nil && v.Task.Status == statemanager.StatusInApproval
}

func (u *UI) taskPage(w http.ResponseWriter, r *http.Request, s *session) {
	u.showTask(w, r, s, http.StatusOK, r.URL.Query().Get("done"), "", nil)
}

// flashes are the confirmations shown after an action; the URL names one
// by key, never free text, so a crafted link cannot put words on the page.
var flashes = map[string]string{
	"claim":    "You claimed this task.",
	"unclaim":  "You released this task to its group.",
	"assign":   "The task was reassigned.",
	"complete": "Completed.",
	"approve":  "Approved.",
	"reject":   "Rejected: the task went back to whoever completed it.",
	"cancel":   "The task was cancelled.",
	"deadline": "The deadline was moved.",
	"comments": "Comment added.",
}

// showTask renders the task page; errMsg and form are a refused action's.
func (u *UI) showTask(w http.ResponseWriter, r *http.Request, s *session, status int, done, errMsg string, form url.Values) {
	domain, id := r.PathValue("domain"), r.PathValue("id")
	v := taskView{Flash: flashes[done], Error: errMsg, Form: form}
	res := u.getJSON(r.Context(), s, apiPath("tasks", domain, id), nil, &v.Task)
	if !res.OK() {
		u.render(w, r, s, res.Status, "error", errorPage{Title: "Task not available", Message: res.Err(), Back: "/ui/tasks/mine"})
		return
	}
	if h := u.getJSON(r.Context(), s, apiPath("tasks", domain, id, "history"), nil, &v.History); !h.OK() && v.Error == "" {
		v.Error = "History: " + h.Err()
	}
	rememberTasks(s, []*statemanager.Task{v.Task})
	slices.Reverse(v.History) // newest first: what just happened is on top
	v.Mine = s.identity.User != "" && v.Task.ClaimedBy == s.identity.User
	v.MineToApprove = s.identity.User != "" && v.Task.CompletedBy == s.identity.User
	v.Fields, v.RawData = formFields(v.Task.Data)
	if raw := form.Get("dataJSON"); raw != "" {
		v.RawData = raw
	}
	u.render(w, r, s, status, "task", v)
}

// taskAction turns a task page's form into the API's operation and, when
// the API accepts it, goes back to the task page (303, so a reload does
// not post again); a refusal shows the page with the API's reason.
func (u *UI) taskAction(w http.ResponseWriter, r *http.Request, s *session) {
	domain, id, op := r.PathValue("domain"), r.PathValue("id"), r.PathValue("op")
	if _, ok := flashes[op]; !ok {
		u.render(w, r, s, http.StatusNotFound, "error", errorPage{Title: "Not found", Message: "There is no such task action."})
		return
	}
	body, err := opBody(op, r.PostForm)
	if err != "" {
		u.showTask(w, r, s, http.StatusBadRequest, "", err, r.PostForm)
		return
	}
	res := u.call(r.Context(), s, http.MethodPost, apiPath("tasks", domain, id, op), nil, body)
	if !res.OK() {
		u.showTask(w, r, s, res.Status, "", res.Err(), r.PostForm)
		return
	}
	back := "/ui/tasks/" + url.PathEscape(domain) + "/" + url.PathEscape(id) + "?done=" + op
	if to := r.PostForm.Get("back"); to == "instance" {
		if inst := r.PostForm.Get("instance"); inst != "" {
			back = "/ui/instances/" + url.PathEscape(inst) + "?done=" + op
		}
	}
	http.Redirect(w, r, back, http.StatusSeeOther)
}

// opBody builds the API body of an operation from its form. It only
// shapes what was typed; whether it is allowed and valid is the API's to
// say. A refusal here is about the form itself (bad JSON, a bad number).
func opBody(op string, f url.Values) (map[string]any, string) {
	b := map[string]any{}
	set := func(key, field string) {
		if v := strings.TrimSpace(f.Get(field)); v != "" {
			b[key] = v
		}
	}
	switch op {
	case "claim":
		if f.Get("override") == "on" {
			b["override"] = true
		}
	case "assign":
		set("user", "user")
		set("role", "role")
	case "complete":
		set("outcome", "outcome")
		set("note", "note")
		data, err := formData(f)
		if err != "" {
			return nil, err
		}
		if data != nil {
			b["data"] = data
		}
	case "approve", "reject":
		set("note", "note")
	case "cancel":
		set("reason", "reason")
	case "comments":
		set("text", "text")
	case "deadline":
		v := strings.TrimSpace(f.Get("minutes"))
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 || n > 525600*10 {
			return nil, "The new deadline must be a whole number of minutes from now."
		}
		b["timeout"] = n * 60000
	}
	return b, ""
}

// field is one input of the completion form, built from a top-level key
// of the task's data.
type field struct {
	Name  string
	Kind  string // "text", "number", "bool" or "json"
	Value string
	On    bool
}

// formFields builds the completion form from the task's data: one input
// per key of a JSON object, typed by its value; other data (an array, a
// scalar) is edited as raw JSON only.
func formFields(data json.RawMessage) ([]field, string) {
	var obj map[string]json.RawMessage
	if len(data) == 0 || json.Unmarshal(data, &obj) != nil || obj == nil {
		return nil, pretty(data)
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if len(keys) > 100 {
		return nil, pretty(data)
	}
	out := make([]field, 0, len(keys))
	for _, k := range keys {
		raw := obj[k]
		var v any
		_ = json.Unmarshal(raw, &v)
		switch x := v.(type) {
		case string:
			out = append(out, field{Name: k, Kind: "text", Value: x})
		case float64:
			out = append(out, field{Name: k, Kind: "number", Value: string(raw)})
		case bool:
			out = append(out, field{Name: k, Kind: "bool", On: x})
		default:
			out = append(out, field{Name: k, Kind: "json", Value: string(raw)})
		}
	}
	return out, pretty(data)
}

// inputOf returns what a refused form held for a field, or the field's
// own value.
func inputOf(form url.Values, f field) string {
	if form != nil {
		if v, ok := form["field."+f.Name]; ok && len(v) > 0 {
			return v[0]
		}
	}
	return f.Value
}

// formData reads the completion data: the raw JSON box when it was
// changed, otherwise the typed fields, each converted back to its kind.
func formData(f url.Values) (any, string) {
	if raw := strings.TrimSpace(f.Get("dataJSON")); raw != "" && f.Get("useJSON") == "on" {
		var v any
		if err := json.Unmarshal([]byte(raw), &v); err != nil {
			return nil, "The data is not valid JSON: " + err.Error()
		}
		return v, ""
	}
	data := map[string]any{}
	for key, vals := range f {
		name, ok := strings.CutPrefix(key, "kind.")
		if !ok || len(vals) == 0 {
			continue
		}
		val := f.Get("field." + name)
		switch vals[0] {
		case "text":
			data[name] = val
		case "number":
			n, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
			if err != nil {
				return nil, "The field " + strconv.Quote(name) + " must be a number."
			}
			data[name] = n
		case "bool":
			data[name] = val == "on"
		case "json":
			var v any
			if err := json.Unmarshal([]byte(val), &v); err != nil {
				return nil, "The field " + strconv.Quote(name) + " must be JSON: " + err.Error()
			}
			data[name] = v
		}
	}
	if len(data) == 0 {
		return nil, ""
	}
	return data, ""
}
