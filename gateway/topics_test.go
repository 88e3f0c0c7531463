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
	brokers := newCluster(t, requestTopic, replyTopic, eventsTopic)
	open := serve(t, brokers, Config{}, Deps{})
	secured := serve(t, brokers, Config{
		PublishRoles: []string{"publisher"},
		Auth: auth.Config{Tokens: map[string]auth.Identity{
			"svc":   {User: "svc", Roles: []string{"publisher"}},
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
			wantStatus: 202, wantKey: "k1", wantValue: map[string]string{"a": "1", "requestMeta": ""}},
		{name: "envelope keyed by its requestId, identity removed without auth", base: open.base, path: "/topics/" + eventsTopic,
			body:       `{"requestMeta": {"requestId": "r-9", "user": "root", "roles": ["director"]}, "eventMeta": {"action": "ProceedTask"}}`,
			wantStatus: 202, wantKey: "r-9", wantValue: map[string]string{"requestMeta.user": "", "requestMeta.roles": "", "eventMeta.action": "ProceedTask"}},
		{name: "envelope identity overwritten under auth", base: secured.base, token: "svc", path: "/topics/" + eventsTopic,
			body:       `{"requestMeta": {"requestId": "r-10", "user": "root", "roles": ["director"]}, "payload": {}}`,
			wantStatus: 202, wantKey: "r-10", wantValue: map[string]string{"requestMeta.user": "svc", "requestMeta.roles.0": "publisher", "requestMeta.roles.1": ""}},
		{name: "bare object wrapped under auth", base: secured.base, token: "svc", path: "/topics/" + eventsTopic, body: `{"taskId": "t"}`,
			wantStatus: 202, wantKey: "fixed-id", wantValue: map[string]string{"requestMeta.user": "svc", "requestMeta.requestId": "fixed-id", "payload.parameters.taskId": "t"}},
		{name: "role required to publish", base: secured.base, token: "alice", path: "/topics/" + eventsTopic, body: `{}`, wantStatus: 403, wantCode: "FORBIDDEN"},
		{name: "token required to publish", base: secured.base, path: "/topics/" + eventsTopic, body: `{}`, wantStatus: 401, wantCode: "MISSING_TOKEN"},
		{name: "not JSON", base: open.base, path: "/topics/" + eventsTopic, body: `hello`, wantStatus: 400, wantCode: "BAD_INPUT"},
		{name: "not an object", base: open.base, path: "/topics/" + eventsTopic, body: `"hello"`, wantStatus: 400, wantCode: "BAD_INPUT"},
		{name: "empty body", base: open.base, path: "/topics/" + eventsTopic, wantStatus: 400, wantCode: "BAD_INPUT"},
		{name: "requestMeta not an object", base: open.base, path: "/topics/" + eventsTopic, body: `{"requestMeta": 1}`, wantStatus: 400, wantCode: "BAD_INPUT"},
		{name: "bad topic name", base: open.base, path: "/topics/a%20b", body: `{}`, wantStatus: 400, wantCode: "BAD_INPUT"},
		{name: "internal topic", base: open.base, path: "/topics/__consumer_offsets", body: `{}`, wantStatus: 403, wantCode: "FORBIDDEN"},
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
			if r.body["topic"] != eventsTopic || r.body["key"] != tt.wantKey {
				t.Fatalf("answer %s", r.raw)
			}
			rec := readRecord(t, brokers, eventsTopic, int32(r.body["partition"].(float64)), int64(r.body["offset"].(float64)))
			if string(rec.Key) != tt.wantKey {
				t.Errorf("record key %q, want %q", rec.Key, tt.wantKey)
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
