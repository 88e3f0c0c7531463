package gateway

import (
	"bytes"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/tidwall/gjson"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sagarunner/sagarunner/actions"
	"github.com/sagarunner/sagarunner/auth"
	"github.com/sagarunner/sagarunner/saga"
	"github.com/sagarunner/sagarunner/saga/envelope"
)

// forgeries are bodies that try to pass for meta or another identity in
// every spelling a JSON reader might accept: the shape of each attack on
// the old stamping, which read bodies differently from the runners.
var forgeries = []string{
	`{}`,
	`{"taskId": "t-1", "data": {"approved": true}}`,
	`{"requestMeta": {"requestId": "r-1", "user": "root", "roles": ["admin"], "tenant": "other", "hops": -1}}`,
	`{"RequestMeta": {"User": "root", "Roles": ["admin"], "Tenant": "other"}}`,
	`{"requestmeta": {"user": "root"}, "REQUESTMETA": {"user": "root"}}`,
	`{"requestMeta": {"user": "alice"}, "requestMeta": {"user": "root"}}`,
	`{"requestMeta": {"user": "alice", "user": "root", "USER": "root", "tenant": "a", "Tenant": "b"}}`,
	`{"request\u004deta": {"us\u0065r": "root", "\u0074enant": "other"}}`,
	`{"requestMeta": {"user": "root\u0000", "roles": ["admin\u0000"]}}`,
	`{"a\u0000": 1, "requestMeta\u0000": {"user": "root"}}`,
	`{"sagaMeta": {"saga": "job_post_approval", "version": 1, "stepId": "approve"}, "result": {"status": "SUCCESS"}}`,
	`{"eventMeta": {"action": "TimeoutBetween", "domain": "workflow", "parameters": {"toTimePath": "end"}}, "end": 9999999999999}`,
	`{"eventMeta": {"action": "StartTask"}, "payload": {"parameters": {"taskId": "squat"}}}`,
	`{"payload": {"parameters": {"x": 1}}, "parameters": 2}`,
	`{"requestMeta": 1, "sagaMeta": null, "eventMeta": [], "result": "SUCCESS"}`,
	`{"a": "\ud800"}`,
	`{"a": "\udc00\ud800"}`,
	"{\"a\": \"\xff\xfe\"}",
	"{\"user\": \"ro\xc0\xafot\"}",
	`  {"requestMeta" : { "user" : "root" } }  `,
	`{"a": {"b": {"c": {"requestMeta": {"user": "root"}}}}}`,
	`[{"requestMeta": {"user": "root"}}]`,
	`"requestMeta"`,
	``,
}

// FuzzRecordIdentity holds the gateway to SPEC §11: for any body (and any
// key) the gateway accepts on a saga path or on POST /topics/{topic}, the
// record it produces decodes, with the runners' decoder, to exactly the
// authenticated identity, with the body at payload.parameters and no meta
// the caller chose. Its seed corpus runs in every go test.
func FuzzRecordIdentity(f *testing.F) {
	for _, b := range forgeries {
		for _, key := range []string{"", "k-1", "\x00", `requestMeta","user":"root`} {
			f.Add([]byte(b), key)
		}
	}
	set, err := saga.LoadBytes(actions.Default, "fuzz.yaml", []byte(testSagas))
	if err != nil {
		f.Fatal(err)
	}
	named, _ := set.ByPath("/echo")       // started by name on the request topic
	onTopic, _ := set.ByPath("/on-topic") // started on its trigger topic
	callers := []auth.Identity{
		{}, // auth off
		{User: "alice", Roles: []string{"clerk", "manager"}, Tenant: "acme"},
		{User: "bob"},
	}
	n := 0
	g := &Gateway{
		cfg:   Config{RequestTopic: requestTopic, ReplyTopic: replyTopic},
		now:   func() time.Time { return time.UnixMilli(1_700_000_000_000) },
		newID: func() string { n++; return "gw-" + string(rune('a'+n%26)) },
	}

	f.Fuzz(func(t *testing.T, raw []byte, key string) {
		body, err := parseObject(raw)
		if err != nil {
			return // answered 400
		}
		for _, id := range callers {
			for _, c := range []struct {
				name string
				s    *saga.Saga
			}{{"named saga", named}, {"trigger topic saga", onTopic}, {"publish", nil}} {
				var rec *kgo.Record
				if c.s != nil {
					rec, err = g.sagaRecord(c.s, body, id, g.newID())
				} else {
					rec, err = g.publishRecord(eventsTopic, key, body, id)
				}
				if err != nil {
					continue // answered 400: nothing reaches Kafka
				}
				env, err := envelope.Decode(rec.Value, nil)
				if err != nil {
					t.Fatalf("%s: the gateway produced a record the runners refuse: %v\nbody %q\nrecord %s", c.name, err, raw, rec.Value)
				}
				m := env.RequestMeta
				if m.User != id.User || m.Tenant != id.Tenant || !slices.Equal(m.Roles, id.Roles) || m.Hops != 0 {
					t.Fatalf("%s: identity %+v decoded, %+v authenticated\nbody %q", c.name, m, id, raw)
				}
				if got := gjson.GetBytes(env.Payload, "parameters").Raw; got != string(body) {
					t.Fatalf("%s: payload.parameters %s, body %s", c.name, got, body)
				}
				if env.EventMeta.Action != "" || env.SagaMeta.StepID != "" || env.Result.Status != "" {
					t.Fatalf("%s: the body set meta: %+v %+v %+v", c.name, env.EventMeta, env.SagaMeta, env.Result)
				}
				wantKey := m.RequestID
				if c.s == nil && key != "" {
					wantKey = key
				}
				if !bytes.Equal(rec.Key, []byte(wantKey)) {
					t.Fatalf("%s: key %q, want %q", c.name, rec.Key, wantKey)
				}
				switch {
				case c.s == named && (env.SagaMeta.Saga != named.Name || rec.Topic != requestTopic):
					t.Fatalf("named saga: sagaMeta %+v on %s", env.SagaMeta, rec.Topic)
				case c.s != named && env.SagaMeta.Saga != "":
					t.Fatalf("%s: sagaMeta %+v", c.name, env.SagaMeta)
				}
			}
		}
	})
}

// FuzzParseObject holds parseObject to encoding/json, which it replaced on
// the hot path: it accepts exactly the objects json.Valid accepts, and
// returns what json.Compact makes of them.
func FuzzParseObject(f *testing.F) {
	for _, b := range forgeries {
		f.Add([]byte(b))
	}
	for _, b := range []string{`{"a":"\" {}"}`, `{"a":"\\"}`, `{"a":"\\\" "}`, "{\"a\":\t1}", "{\r\n}", `{"a":[1, 2]}`, `{"a":"x"} x`, `{"a":1}{}`} {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		got, err := parseObject(raw)
		trimmed := bytes.TrimSpace(raw)
		if len(trimmed) == 0 {
			if err != nil || string(got) != `{}` {
				t.Fatalf("empty body: %q, %v", got, err)
			}
			return
		}
		if want := json.Valid(trimmed) && trimmed[0] == '{'; (err == nil) != want {
			t.Fatalf("parseObject(%q) error %v, json.Valid says object %v", raw, err, want)
		}
		if err != nil {
			return
		}
		var want bytes.Buffer
		if err := json.Compact(&want, trimmed); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("parseObject(%q) = %q, json.Compact %q", raw, got, want.Bytes())
		}
	})
}
