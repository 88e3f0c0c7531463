package gateway

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sagarunner/sagarunner/auth"
)

// readRecord reads the record at partition/offset of topic.
func readRecord(t *testing.T, brokers []string, topic string, partition int32, offset int64) *kgo.Record {
	t.Helper()
	cl := newClient(t, brokers, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{
		topic: {partition: kgo.NewOffset().At(offset)},
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("record %s/%d@%d not read: %v", topic, partition, offset, err)
		}
		var got *kgo.Record
		fs.EachRecord(func(r *kgo.Record) {
			if got == nil && r.Offset == offset {
				got = r
			}
		})
		if got != nil {
			return got
		}
	}
}

func TestPublish(t *testing.T) {
	const deadLetters = "gw-dead"
	brokers := newCluster(t, requestTopic, replyTopic, eventsTopic, "gw-unlisted")
	open := serve(t, brokers, Config{PublishTopics: []string{eventsTopic}}, Deps{})
	secured := serve(t, brokers, Config{
		PublishRoles:   []string{"publisher"},
		PublishTopics:  []string{eventsTopic},
		InternalTopics: []string{deadLetters},
		Auth: auth.Config{Tokens: map[string]auth.Identity{
			"svc":   {User: "svc", Roles: []string{"publisher"}, Tenant: "acme"},
			"alice": {User: "alice", Roles: []string{"manager"}},
		}},
	}, Deps{NewID: func() string { return "fixed-id" }})

	tests := []struct {
		name       string
		base       string
		token      string
		path       string
		body       string
		wantStatus int
		wantCode   string
		wantKey    string
		wantValue  map[string]string // gjson path -> value ("" means absent)
	}{
		{name: "bare object with a key", base: open.base, path: "/topics/" + eventsTopic + "?key=k1", body: `{"a": 1}`,
			wantStatus: 202, wantKey: "k1", wantValue: map[string]string{"payload.parameters.a": "1", "requestMeta.user": "", "a": ""}},
		{name: "identity from the token, keyed by the new requestId", base: secured.base, token: "svc", path: "/topics/" + eventsTopic, body: `{"taskId": "t"}`,
			wantStatus: 202, wantKey: "fixed-id", wantValue: map[string]string{"requestMeta.user": "svc", "requestMeta.roles.0": "publisher",
				"requestMeta.tenant": "acme", "requestMeta.requestId": "fixed-id", "payload.parameters.taskId": "t"}},
		{name: "an envelope body is data", base: secured.base, token: "svc", path: "/topics/" + eventsTopic + "?key=r-9",
			body: `{"requestMeta": {"requestId": "r-9", "user": "root", "roles": ["director"], "tenant": "other"}, "sagaMeta": {"saga": "s", "stepId": "x"},
				"eventMeta": {"action": "ProceedTask"}, "result": {"status": "SUCCESS"}}`,
			wantStatus: 202, wantKey: "r-9", wantValue: map[string]string{"requestMeta.user": "svc", "requestMeta.roles.0": "publisher",
				"requestMeta.roles.1": "", "requestMeta.tenant": "acme", "requestMeta.requestId": "fixed-id", "eventMeta.action": "", "sagaMeta.saga": "", "sagaMeta.stepId": "", "result.status": "",
				"payload.parameters.requestMeta.user": "root", "payload.parameters.eventMeta.action": "ProceedTask"}},
		{name: "an envelope body is data without auth too", base: open.base, path: "/topics/" + eventsTopic,
			body:       `{"requestMeta": {"user": "root"}, "eventMeta": {"action": "TimeoutBetween"}}`,
			wantStatus: 202, wantValue: map[string]string{"requestMeta.user": "", "eventMeta.action": "", "payload.parameters.requestMeta.user": "root"}},
		{name: "requestMeta of any type is data", base: open.base, path: "/topics/" + eventsTopic, body: `{"requestMeta": 1}`,
			wantStatus: 202, wantValue: map[string]string{"payload.parameters.requestMeta": "1"}},
		{name: "role required to publish", base: secured.base, token: "alice", path: "/topics/" + eventsTopic, body: `{}`, wantStatus: 403, wantCode: "FORBIDDEN"},
		{name: "token required to publish", base: secured.base, path: "/topics/" + eventsTopic, body: `{}`, wantStatus: 401, wantCode: "MISSING_TOKEN"},
		{name: "the request topic is internal", base: secured.base, token: "svc", path: "/topics/" + requestTopic, body: `{}`, wantStatus: 403, wantCode: "FORBIDDEN"},
		{name: "the reply topic is internal", base: secured.base, token: "svc", path: "/topics/" + replyTopic, body: `{}`, wantStatus: 403, wantCode: "FORBIDDEN"},
		{name: "the dead-letter topic is internal", base: secured.base, token: "svc", path: "/topics/" + deadLetters, body: `{}`, wantStatus: 403, wantCode: "FORBIDDEN"},
		{name: "broker-internal topic", base: secured.base, token: "svc", path: "/topics/__consumer_offsets", body: `{}`, wantStatus: 403, wantCode: "FORBIDDEN"},
		{name: "internal topics refused without auth too", base: open.base, path: "/topics/" + requestTopic, body: `{}`, wantStatus: 403, wantCode: "FORBIDDEN"},
		{name: "unlisted topic", base: secured.base, token: "svc", path: "/topics/gw-unlisted", body: `{}`, wantStatus: 404, wantCode: "TOPIC_NOT_PUBLISHABLE"},
		{name: "not JSON", base: open.base, path: "/topics/" + eventsTopic, body: `hello`, wantStatus: 400, wantCode: "BAD_INPUT"},
		{name: "not an object", base: open.base, path: "/topics/" + eventsTopic, body: `"hello"`, wantStatus: 400, wantCode: "BAD_INPUT"},
		{name: "not valid Unicode", base: open.base, path: "/topics/" + eventsTopic, body: `{"a": "\ud800"}`, wantStatus: 400, wantCode: "BAD_INPUT"},
		{name: "empty body", base: open.base, path: "/topics/" + eventsTopic, wantStatus: 400, wantCode: "BAD_INPUT"},
		{name: "bad topic name", base: open.base, path: "/topics/a%20b", body: `{}`, wantStatus: 400, wantCode: "BAD_INPUT"},
		{name: "GET is not allowed", base: open.base, path: "/topics/" + eventsTopic, wantStatus: 405, wantCode: "METHOD_NOT_ALLOWED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method := "POST"
			if strings.HasPrefix(tt.name, "GET") {
				method = "GET"
			}
			var body []byte
			if tt.body != "" {
				body = []byte(tt.body)
			}
			r := do(t, method, tt.base+tt.path, tt.token, body)
			if r.status != tt.wantStatus {
				t.Fatalf("status %d, want %d (body %s)", r.status, tt.wantStatus, r.raw)
			}
			if tt.wantCode != "" {
				if r.body["code"] != tt.wantCode {
					t.Errorf("code %v, want %s", r.body["code"], tt.wantCode)
				}
				return
			}
			if r.body["topic"] != eventsTopic || (tt.wantKey != "" && r.body["key"] != tt.wantKey) {
				t.Fatalf("answer %s", r.raw)
			}
			rec := readRecord(t, brokers, eventsTopic, int32(r.body["partition"].(float64)), int64(r.body["offset"].(float64)))
			if string(rec.Key) != r.body["key"] {
				t.Errorf("record key %q, answered %q", rec.Key, r.body["key"])
			}
			if tt.wantKey == "" && string(rec.Key) != gjson.GetBytes(rec.Value, "requestMeta.requestId").String() {
				t.Errorf("record key %q is not the requestId: %s", rec.Key, rec.Value)
			}
			for path, want := range tt.wantValue {
				v := gjson.GetBytes(rec.Value, path)
				if want == "" && v.Exists() {
					t.Errorf("%s present: %s", path, rec.Value)
				}
				if want != "" && v.String() != want {
					t.Errorf("%s = %q, want %q (value %s)", path, v.String(), want, rec.Value)
				}
			}
		})
	}
}

func TestPublishTopicsConfig(t *testing.T) {
	cl := newClient(t, newCluster(t))
	for _, tc := range []struct {
		name   string
		topics []string
		want   string
	}{
		{"request topic", []string{DefaultRequestTopic}, "is the request topic"},
		{"reply topic", []string{DefaultReplyTopic}, "is the reply topic"},
		{"runners' topic", []string{"audit"}, "one of the runners' topics"},
		{"broker-internal", []string{"__consumer_offsets"}, "broker-internal"},
		{"bad name", []string{"a b"}, "invalid topic name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(Config{PublishTopics: tc.topics, InternalTopics: []string{"audit"}}, Deps{Client: cl})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}
