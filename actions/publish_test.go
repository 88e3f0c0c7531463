package actions_test

import (
	"strings"
	"testing"

	"github.com/sagarunner/sagarunner/actions"
	"github.com/sagarunner/sagarunner/saga/envelope"
)

const publishEvent = `{
  "requestMeta": {"requestId": "r-42", "user": "alice"},
  "sagaMeta": {"saga": "job_post_approval", "stepId": "publish"},
  "payload": {"parameters": {"productId": "product-1", "brief": "summer <vibes> & sun", "count": 3},
              "decision": {"user": "alice"}},
  "result": {"status": "TIMEOUT"}
}`

func TestPublish(t *testing.T) {
	tests := []struct {
		name      string
		params    map[string]any
		wantKey   string
		wantValue string // JSON content; "" means the whole input envelope
		wantCode  string
	}{
		{"whole envelope keyed by requestId", map[string]any{"topic": "out"}, "r-42", "", ""},
		{"shaped payload", map[string]any{"topic": "out", "pattern": "{id: parameters.productId, by: decision.user, brief: parameters.brief}"},
			"r-42", `{"id": "product-1", "by": "alice", "brief": "summer <vibes> & sun"}`, ""},
		{"key from the payload", map[string]any{"topic": "out", "key": "parameters.productId"}, "product-1", "", ""},
		{"numeric key", map[string]any{"topic": "out", "key": "parameters.count"}, "3", "", ""},
		{"key from the envelope root", map[string]any{"topic": "out", "key": "$.requestMeta.user"}, "alice", "", ""},
		{"missing key", map[string]any{"topic": "out", "key": "parameters.nothing"}, "", "", actions.CodeBadInput},
		{"object key", map[string]any{"topic": "out", "key": "decision"}, "", "", actions.CodeBadInput},
		{"pattern failing at run time", map[string]any{"topic": "out", "pattern": "abs(parameters.brief)"}, "", "", actions.CodePattern},
		{"to the runner's request topic", map[string]any{"topic": topics.Continuations}, "", "", actions.CodeReservedTopic},
		{"to the notification topic", map[string]any{"topic": topics.Notifications}, "", "", actions.CodeReservedTopic},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := decode(t, publishEvent)
			a := build(t, "Publish", actions.Input{Params: tc.params})
			out := run(t, a, &actions.Exec{Topics: topics}, env)
			if tc.wantCode != "" {
				wantResult(t, out, envelope.StatusFail, tc.wantCode)
				if len(out.Records) != 0 {
					t.Fatalf("a failed publish produced %d records", len(out.Records))
				}
				return
			}
			wantResult(t, out, envelope.StatusSuccess, "")
			if len(out.Records) != 1 {
				t.Fatalf("got %d records, want 1", len(out.Records))
			}
			rec := out.Records[0]
			if rec.Topic != "out" || string(rec.Key) != tc.wantKey {
				t.Fatalf("record %s/%s, want out/%s", rec.Topic, rec.Key, tc.wantKey)
			}
			// One hop further than the event, whatever the value's shape.
			if len(rec.Headers) != 1 || rec.Headers[0].Key != actions.HopsHeader || string(rec.Headers[0].Value) != "1" {
				t.Fatalf("headers %+v, want %s: 1", rec.Headers, actions.HopsHeader)
			}
			if tc.wantValue == "" {
				// Published as it arrived, previous result included, one
				// hop further.
				in := decode(t, publishEvent)
				in.RequestMeta.Hops++
				if string(rec.Value) != string(in.Encode()) {
					t.Fatalf("value %s, want the input envelope %s", rec.Value, in.Encode())
				}
				return
			}
			jsonEq(t, "value", rec.Value, tc.wantValue)
			if string(rec.Value) != compact(t, `{"brief":"summer <vibes> & sun","by":"alice","id":"product-1"}`) {
				t.Fatalf("value %s: HTML characters must not be escaped", rec.Value)
			}
		})
	}
}

func TestTransform(t *testing.T) {
	tests := []struct {
		name     string
		in       actions.Input
		path     string
		want     string
		wantCode string
	}{
		{"whole payload into a path",
			actions.Input{OutputElement: "summary", Params: map[string]any{"pattern": "{id: parameters.productId, n: parameters.count}"}},
			"summary", `{"id": "product-1", "n": 3}`, ""},
		{"from an element",
			actions.Input{InputElement: "parameters", OutputElement: "id", Params: map[string]any{"pattern": "productId"}},
			"id", `"product-1"`, ""},
		{"into the envelope root",
			actions.Input{InputElement: "parameters", OutputElement: "$.requestMeta.user", Params: map[string]any{"pattern": "productId"}},
			"$.requestMeta.user", `"product-1"`, ""},
		{"large integers survive",
			actions.Input{OutputElement: "t", Params: map[string]any{"pattern": "`1763800060000`"}},
			"t", `1763800060000`, ""},
		{"missing input element",
			actions.Input{InputElement: "nothing", OutputElement: "x", Params: map[string]any{"pattern": "@"}},
			"", "", actions.CodeBadInput},
		{"pattern failing at run time",
			actions.Input{OutputElement: "x", Params: map[string]any{"pattern": "length(parameters.count)"}},
			"", "", actions.CodePattern},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := decode(t, publishEvent)
			out := run(t, build(t, "Transform", tc.in), &actions.Exec{}, env)
			if tc.wantCode != "" {
				wantResult(t, out, envelope.StatusFail, tc.wantCode)
				return
			}
			wantResult(t, out, envelope.StatusSuccess, "")
			if got := out.Env.Get(tc.path).Raw; got != compact(t, tc.want) {
				t.Fatalf("%s = %s, want %s", tc.path, got, tc.want)
			}
			if got := out.Env.Get("parameters.productId").Str; got != "product-1" {
				t.Fatalf("the rest of the payload changed: %s", out.Env.Payload)
			}
		})
	}
}

func TestFailAndFinish(t *testing.T) {
	tests := []struct {
		name   string
		action string
		params map[string]any
		want   envelope.Result
	}{
		{"Fail defaults", "Fail", nil, envelope.Result{Status: envelope.StatusFail, Code: actions.CodeFailed, Message: `failed at step "publish"`}},
		{"Fail with code and message", "Fail", map[string]any{"code": "REJECTED", "message": "job post rejected"},
			envelope.Result{Status: envelope.StatusFail, Code: "REJECTED", Message: "job post rejected"}},
		{"Finish", "Finish", nil, envelope.Result{Status: envelope.StatusSuccess}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := run(t, build(t, tc.action, actions.Input{Params: tc.params}), &actions.Exec{}, decode(t, publishEvent))
			if out.Env.Result != tc.want {
				t.Fatalf("result %+v, want %+v", out.Env.Result, tc.want)
			}
			if !out.Finish || out.Suspend {
				t.Fatalf("outcome Finish=%v Suspend=%v, want the instance to end", out.Finish, out.Suspend)
			}
		})
	}
}

func TestPublishTopicChecked(t *testing.T) {
	tests := []struct {
		name, topic, reason string
	}{
		{"empty", "", "required"},
		{"a space", "job posts", "only letters, digits"},
		{"dot", ".", "not a valid topic name"},
		{"too long", strings.Repeat("t", 250), "not a valid topic name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spec, _ := actions.Default.Lookup("Publish")
			params := map[string]any{"topic": tc.topic}
			if tc.topic == "" {
				params = nil
			}
			_, errs := spec.Build(actions.Input{Params: params})
			if len(errs) != 1 || !strings.Contains(errs[0].Error(), tc.reason) {
				t.Fatalf("errors %v, want one saying %q", errs, tc.reason)
			}
		})
	}
	a := build(t, "Publish", actions.Input{Params: map[string]any{"topic": "job-posts.v2_x"}})
	if w, ok := a.(actions.TopicWriter); !ok || len(w.WritesTo()) != 1 || w.WritesTo()[0] != "job-posts.v2_x" {
		t.Fatalf("Publish does not declare the topic it writes to")
	}
}
