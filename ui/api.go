package ui

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// maxAPIAnswer bounds an API answer the UI reads (a page of tasks with
// their data); a larger one is an error rather than a memory spike.
const maxAPIAnswer = 16 << 20

// apiResult is one answer of the API.
type apiResult struct {
	Status int
	Header http.Header
	Body   []byte
}

// OK reports a 2xx answer.
func (a apiResult) OK() bool { return a.Status >= 200 && a.Status < 300 }

// apiError is the API's error body.
type apiError struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

// Err describes a refusal for a person: the API's own message and code.
func (a apiResult) Err() string {
	var e apiError
	if json.Unmarshal(a.Body, &e) == nil && e.Error != "" {
		if e.Code != "" {
			return fmt.Sprintf("%s (%s)", e.Error, e.Code)
		}
		return e.Error
	}
	if a.Status == 0 {
		return "no answer"
	}
	return http.StatusText(a.Status)
}

// recorder is the ResponseWriter of an in-process API call.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
	over   bool
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	if r.body.Len()+len(b) > maxAPIAnswer {
		r.over = true
		return 0, fmt.Errorf("ui: API answer over %d bytes", maxAPIAnswer)
	}
	return r.body.Write(b)
}

// call sends one request to the API as the session's caller: the same
// handler, authentication and rules an HTTP client gets. path is escaped
// already (apiPath); body, when not nil, is sent as JSON.
func (u *UI) call(ctx context.Context, s *session, method, path string, query url.Values, body any) apiResult {
	var rd *bytes.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return apiResult{Status: http.StatusBadRequest, Body: errorJSON("the form could not be encoded: " + err.Error())}
		}
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	target := path
	if len(query) > 0 {
		target += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return apiResult{Status: http.StatusBadRequest, Body: errorJSON(err.Error())}
	}
	req.Host = "ui.internal"
	req.RemoteAddr = "ui"
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if s != nil && s.token != "" {
		req.Header.Set("Authorization", "Bearer "+s.token)
	}
	rec := &recorder{header: http.Header{}}
	u.api.ServeHTTP(rec, req)
	if rec.over {
		return apiResult{Status: http.StatusBadGateway, Body: errorJSON("the answer was too large to show")}
	}
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	return apiResult{Status: rec.status, Header: rec.header, Body: rec.body.Bytes()}
}

// getJSON calls GET path and decodes a 2xx answer into dst.
func (u *UI) getJSON(ctx context.Context, s *session, path string, query url.Values, dst any) apiResult {
	res := u.call(ctx, s, http.MethodGet, path, query, nil)
	if res.OK() && dst != nil {
		if err := json.Unmarshal(res.Body, dst); err != nil {
			return apiResult{Status: http.StatusBadGateway, Body: errorJSON("unreadable answer from the API: " + err.Error())}
		}
	}
	return res
}

func errorJSON(msg string) []byte {
	b, _ := json.Marshal(apiError{Error: msg, Code: "UI"})
	return b
}

// apiPath joins path segments, each escaped, so an id holding '/', '?' or
// '%' names exactly that id in the API's URL.
func apiPath(segments ...string) string {
	var b strings.Builder
	for _, seg := range segments {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(seg))
	}
	return b.String()
}
