package ui

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
)

// TestCompletionForm shows the completion form's round trip: fields built
// from the task's data, typed back into the data the API receives, the
// raw JSON box taking over only when asked, and a form that cannot be
// read refused with a reason before anything is sent.
func TestCompletionForm(t *testing.T) {
	fields, raw := formFields(json.RawMessage(`{"title":"NDA","amount":12.5,"urgent":true,"parties":["a","b"]}`))
	var kinds []string
	for _, f := range fields {
		kinds = append(kinds, f.Name+":"+f.Kind)
	}
	if got := strings.Join(kinds, " "); got != "amount:number parties:json title:text urgent:bool" {
		t.Fatalf("fields %s", got)
	}
	if !strings.Contains(raw, `"title": "NDA"`) {
		t.Fatalf("raw JSON %q", raw)
	}
	if f, _ := formFields(json.RawMessage(`[1,2]`)); f != nil {
		t.Fatalf("an array got fields: %+v", f)
	}

	form := func(kv ...string) url.Values {
		v := url.Values{}
		for i := 0; i+1 < len(kv); i += 2 {
			v.Add(kv[i], kv[i+1])
		}
		return v
	}
	tests := []struct {
		name    string
		op      string
		form    url.Values
		want    string // the body as JSON
		wantErr string
	}{
		{"typed fields", "complete", form("outcome", "approve", "note", " ok ",
			"kind.title", "text", "field.title", "NDA 2", "kind.amount", "number", "field.amount", "13",
			"kind.urgent", "bool", "kind.parties", "json", "field.parties", `["c"]`),
			`{"data":{"amount":13,"parties":["c"],"title":"NDA 2","urgent":false},"note":"ok","outcome":"approve"}`, ""},
		{"raw JSON when asked", "complete", form("useJSON", "on", "dataJSON", `{"x":1}`, "kind.title", "text", "field.title", "ignored"),
			`{"data":{"x":1}}`, ""},
		{"raw JSON box left alone", "complete", form("dataJSON", `{"x":1}`, "kind.title", "text", "field.title", "kept"),
			`{"data":{"title":"kept"}}`, ""},
		{"a number that is not", "complete", form("kind.amount", "number", "field.amount", "lots"), "", "must be a number"},
		{"bad raw JSON", "complete", form("useJSON", "on", "dataJSON", `{"x":`), "", "not valid JSON"},
		{"claim", "claim", form(), `{}`, ""},
		{"claim override", "claim", form("override", "on"), `{"override":true}`, ""},
		{"assign", "assign", form("user", "bob", "role", ""), `{"user":"bob"}`, ""},
		{"reject with a note", "reject", form("note", "no"), `{"note":"no"}`, ""},
		{"deadline in minutes", "deadline", form("minutes", "5"), `{"timeout":300000}`, ""},
		{"a negative deadline", "deadline", form("minutes", "-5"), "", "whole number of minutes"},
		{"a comment", "comments", form("text", "hello"), `{"text":"hello"}`, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body, err := opBody(tc.op, tc.form)
			if tc.wantErr != "" {
				if !strings.Contains(err, tc.wantErr) {
					t.Fatalf("error %q, want %q", err, tc.wantErr)
				}
				return
			}
			if err != "" {
				t.Fatal(err)
			}
			got, _ := json.Marshal(body)
			if string(got) != tc.want {
				t.Fatalf("body %s, want %s", got, tc.want)
			}
		})
	}
}

func TestLocalPath(t *testing.T) {
	for in, want := range map[string]string{
		"/ui/tasks/mine?sort=deadline": "/ui/tasks/mine?sort=deadline",
		"//evil.example/ui/":           "/ui/",
		"https://evil.example/ui/":     "/ui/",
		"/ui\\evil":                    "/ui/",
		"/metrics":                     "/ui/",
		"":                             "/ui/",
	} {
		if got := localPath(in); got != want {
			t.Errorf("localPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSummary(t *testing.T) {
	for data, want := range map[string]string{
		`{"title":"Lease","amount":400,"urgent":true,"z":"cut"}`: "amount: 400 · title: Lease · urgent: true",
		`{"nested":{"a":1},"list":[1],"ok":false}`:               "ok: false",
		`[1,2]`: "",
		``:      "",
		`{"t":"` + strings.Repeat("é", 200) + `"}`: "t: " + strings.Repeat("é", 96) + "…",
	} {
		if got := summary(json.RawMessage(data)); got != want {
			t.Errorf("summary(%.40s) = %q, want %q", data, got, want)
		}
	}
}
