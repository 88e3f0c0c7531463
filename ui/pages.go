package ui

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/sagarunner/sagarunner/statemanager"
)

// pageNames are the templates rendered as whole pages, each with the
// layout around it.
var pageNames = []string{"signin", "inbox", "task", "instances", "instance", "error"}

// pages holds one parsed template set per page.
type pages struct {
	byName map[string]*template.Template
}

func parsePages() (*pages, error) {
	p := &pages{byName: map[string]*template.Template{}}
	for _, name := range pageNames {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("ui: template %s: %w", name, err)
		}
		p.byName[name] = t
	}
	return p, nil
}

// layout is what every page's frame needs beside the page's own data.
type layout struct {
	Title   string
	Nav     string
	Session *session
	CSRF    string
	Admin   bool
	Live    bool
	// Since is when the page's data began to be read (epoch ms): its
	// live stream catches up on changes from then.
	Since int64
	Page  any
}

// titled lets a page's data name the page.
type titled interface{ PageTitle() string }

// navigated lets a page's data say which navigation entry is current.
type navigated interface{ NavItem() string }

// errorPage is the data of the error page.
type errorPage struct {
	Title   string
	Message string
	Back    string
}

func (e errorPage) PageTitle() string { return e.Title }

// render writes a page. Rendering goes to a buffer first, so a template
// failure answers 500 instead of half a page.
func (u *UI) render(w http.ResponseWriter, r *http.Request, s *session, status int, name string, data any) {
	t := u.pages.byName[name]
	l := layout{Title: "sagarunner", Session: s, Page: data, Live: s != nil && u.hub.enabled(), Since: startOf(r, u.now()).UnixMilli()}
	if d, ok := data.(titled); ok {
		l.Title = d.PageTitle() + " · sagarunner"
	}
	if d, ok := data.(navigated); ok {
		l.Nav = d.NavItem()
	}
	if s != nil {
		l.CSRF, l.Admin = s.csrf, u.isAdmin(s)
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, l); err != nil {
		u.log.Error("ui: render", "page", name, "err", err)
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// funcs are the templates' helpers. Everything they return is text that
// html/template escapes in its context; none returns template.HTML.
var funcs = template.FuncMap{
	"when":    when,
	"left":    timeLeft,
	"pretty":  pretty,
	"join":    strings.Join,
	"seg":     url.PathEscape,
	"query":   func(v url.Values) string { return v.Encode() },
	"lower":   strings.ToLower,
	"now":     func() int64 { return time.Now().UnixMilli() },
	"inputOf": inputOf,
	"summary": summary,
	"list":    func(me string, tasks []*statemanager.Task) taskList { return taskList{Me: me, Tasks: tasks} },
}

// taskList is a list of tasks as one caller reads it, so what is theirs
// can say so.
type taskList struct {
	Me    string
	Tasks []*statemanager.Task
}

// when formats epoch milliseconds for people, in UTC so every reader of a
// shared screen sees the same time.
func when(ms int64) string {
	if ms == 0 {
		return "—"
	}
	return time.UnixMilli(ms).UTC().Format("2006-01-02 15:04:05 UTC")
}

// deadlineView says how long a task has left, in words, so a late task is
// marked in text as well as colour.
type deadlineView struct {
	None    bool
	Overdue bool
	Soon    bool
	Text    string
	At      string
}

func timeLeft(deadline int64) deadlineView {
	if deadline == 0 {
		return deadlineView{None: true, Text: "no deadline"}
	}
	d := time.Until(time.UnixMilli(deadline))
	v := deadlineView{At: when(deadline)}
	if d < 0 {
		v.Overdue, v.Text = true, "overdue by "+human(-d)
		return v
	}
	v.Soon, v.Text = d < time.Hour, human(d)+" left"
	return v
}

// human rounds a duration to its two largest units.
func human(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh %dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd %dh", int(d.Hours())/24, int(d.Hours())%24)
}

// pretty indents JSON for reading; what is not JSON is shown as it is.
func pretty(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		return string(raw)
	}
	return buf.String()
}

// summary shows a task's data at a glance: up to three of its top-level
// scalar fields, in key order, cut to a line.
func summary(data json.RawMessage) string {
	var obj map[string]json.RawMessage
	if len(data) == 0 || json.Unmarshal(data, &obj) != nil {
		return ""
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		var v any
		if json.Unmarshal(obj[k], &v) != nil {
			continue
		}
		switch v.(type) {
		case string, float64, bool:
			parts = append(parts, fmt.Sprintf("%s: %v", k, v))
		}
		if len(parts) == 3 {
			break
		}
	}
	out := strings.Join(parts, " · ")
	if r := []rune(out); len(r) > 100 {
		out = string(r[:99]) + "…"
	}
	return out
}
