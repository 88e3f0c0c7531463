package envelope_test

import (
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/sagarunner/sagarunner/saga/envelope"
)

// full is the SPEC §3 example envelope.
const full = `{
  "requestMeta": {"requestId": "r-42", "user": "alice", "roles": ["manager"], "replyTo": "responses", "createdAt": 1763800000000},
  "sagaMeta":    {"saga": "job_post_approval", "version": 1, "stepId": "approve", "runnerPartition": 3, "seq": 2},
  "eventMeta":   {"action": "StartTask", "domain": "workflow", "inputElement": "parameters",
                  "outputElement": "process", "parameters": {"timeout": 60000}},
  "payload":     {"parameters": {"productId": "product-1", "brief": "summer vibes"}},
  "result":      {"status": "SUCCESS", "code": "", "message": ""}
}`

func fixedID() string { return "gen-1" }

func TestDecode(t *testing.T) {
	tests := []struct {
		name  string
		value string
		newID func() string
		want  *envelope.Envelope
		// payload is compared as JSON, so the test does not pin whitespace.
		payload string
	}{
		{
			name: "full envelope", value: full, newID: fixedID,
			want: &envelope.Envelope{
				RequestMeta: envelope.RequestMeta{RequestID: "r-42", User: "alice", Roles: []string{"manager"}, ReplyTo: "responses", CreatedAt: 1763800000000},
				SagaMeta:    envelope.SagaMeta{Saga: "job_post_approval", Version: 1, StepID: "approve", RunnerPartition: 3, Seq: 2},
				EventMeta: envelope.EventMeta{Action: "StartTask", Domain: "workflow", InputElement: "parameters", OutputElement: "process",
					Parameters: json.RawMessage(`{"timeout": 60000}`)},
				Result: envelope.Result{Status: envelope.StatusSuccess},
			},
			payload: `{"parameters": {"productId": "product-1", "brief": "summer vibes"}}`,
		},
		{
			name: "bare object becomes payload.parameters with a new id", value: `{"productId": "p1", "n": [1, 2]}`, newID: fixedID,
			want:    &envelope.Envelope{RequestMeta: envelope.RequestMeta{RequestID: "gen-1"}},
			payload: `{"parameters": {"productId": "p1", "n": [1, 2]}}`,
		},
		{
			name: "bare object without an id source", value: `{"productId": "p1"}`,
			want:    &envelope.Envelope{},
			payload: `{"parameters": {"productId": "p1"}}`,
		},
		{
			name: "empty object is bare", value: ` {} `, newID: fixedID,
			want:    &envelope.Envelope{RequestMeta: envelope.RequestMeta{RequestID: "gen-1"}},
			payload: `{"parameters": {}}`,
		},
		{
			// Envelope keys are recognised by their exact name only, so a
			// business object that happens to carry "Payload" stays whole.
			name: "other-case envelope key is bare", value: `{"Payload": 1}`, newID: fixedID,
			want:    &envelope.Envelope{RequestMeta: envelope.RequestMeta{RequestID: "gen-1"}},
			payload: `{"parameters": {"Payload": 1}}`,
		},
		{
			name: "missing payload becomes an empty object", value: `{"requestMeta": {"requestId": "r1"}}`, newID: fixedID,
			want:    &envelope.Envelope{RequestMeta: envelope.RequestMeta{RequestID: "r1"}},
			payload: `{}`,
		},
		{
			name: "null payload becomes an empty object", value: `{"payload": null}`, newID: fixedID,
			want:    &envelope.Envelope{RequestMeta: envelope.RequestMeta{RequestID: "gen-1"}},
			payload: `{}`,
		},
		{
			name: "a scalar payload is kept", value: `{"payload": 7, "result": {"status": "FAIL"}}`,
			want:    &envelope.Envelope{Result: envelope.Result{Status: envelope.StatusFail}},
			payload: `7`,
		},
		{
			name: "a result with an outcome", value: `{"payload": {}, "result": {"status": "SUCCESS", "outcome": "approve"}}`,
			want:    &envelope.Envelope{Result: envelope.Result{Status: envelope.StatusSuccess, Outcome: "approve"}},
			payload: `{}`,
		},
		{
			name:    "tenant and hops",
			value:   `{"requestMeta": {"requestId": "r1", "user": "alice", "tenant": "acme", "hops": 3}, "payload": {}}`,
			want:    &envelope.Envelope{RequestMeta: envelope.RequestMeta{RequestID: "r1", User: "alice", Tenant: "acme", Hops: 3}},
			payload: `{}`,
		},
		{
			// A key spelled with escapes is the key it spells; alone it
			// is no ambiguity.
			name:    "escaped exact keys",
			value:   `{"requestMeta": {"us\u0065r": "bob"}, "p\u0061yload": {"a": 1}}`,
			newID:   fixedID,
			want:    &envelope.Envelope{RequestMeta: envelope.RequestMeta{RequestID: "gen-1", User: "bob"}},
			payload: `{"a": 1}`,
		},
		{
			name:    "unknown keys are ignored",
			value:   `{"payload": {}, "extra": [1], "requestMeta": {"requestId": "r1", "note": "x", "nöte": "y"}, "result": {"why": 1}}`,
			want:    &envelope.Envelope{RequestMeta: envelope.RequestMeta{RequestID: "r1"}},
			payload: `{}`,
		},
		{
			name:    "nulls change nothing",
			value:   `{"requestMeta": {"requestId": "r1", "user": null, "roles": null, "hops": null}, "sagaMeta": null, "payload": {}, "result": null}`,
			want:    &envelope.Envelope{RequestMeta: envelope.RequestMeta{RequestID: "r1"}},
			payload: `{}`,
		},
		{
			// Without an exact envelope key the object is data, so its
			// keys are nobody's identity and may be spelled any way.
			name: "bare object with envelope-like keys", value: `{"Payload": 1, "user": "x"}`, newID: fixedID,
			want:    &envelope.Envelope{RequestMeta: envelope.RequestMeta{RequestID: "gen-1"}},
			payload: `{"parameters": {"Payload": 1, "user": "x"}}`,
		},
		{
			name:    "bare object with repeated and case-variant keys",
			value:   `{"RequestMeta": {"USER": "a", "user": "b"}, "k": 1, "k": 2, "K": 3}`,
			newID:   fixedID,
			want:    &envelope.Envelope{RequestMeta: envelope.RequestMeta{RequestID: "gen-1"}},
			payload: `{"parameters": {"RequestMeta": {"USER": "a", "user": "b"}, "k": 1, "k": 2, "K": 3}}`,
		},
		{
			name:  "escaped and non-ASCII strings",
			value: `{"requestMeta": {"requestId": "r\"1\u00e9\ud83d\ude00", "user": "Zoë", "roles": ["a\nb", null, "\u2028"]}, "payload": {}}`,
			want: &envelope.Envelope{RequestMeta: envelope.RequestMeta{RequestID: "r\"1é😀", User: "Zoë",
				Roles: []string{"a\nb", "", "\u2028"}}},
			payload: `{}`,
		},
		{
			name:    "empty roles stay an empty list",
			value:   `{"requestMeta": {"requestId": "r1", "roles": []}}`,
			want:    &envelope.Envelope{RequestMeta: envelope.RequestMeta{RequestID: "r1", Roles: []string{}}},
			payload: `{}`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := envelope.Decode([]byte(tc.value), tc.newID)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			jsonEq(t, "payload", string(got.Payload), tc.payload)
			if tc.want.EventMeta.Parameters != nil {
				jsonEq(t, "parameters", string(got.EventMeta.Parameters), string(tc.want.EventMeta.Parameters))
				tc.want.EventMeta.Parameters = got.EventMeta.Parameters
			}
			tc.want.Payload = got.Payload
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Decode =\n %#v\nwant\n %#v", got, tc.want)
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	tests := []struct {
		name, value string
	}{
		{"empty", ``},
		{"blank", `   `},
		{"array", `[{"payload": {}}]`},
		{"string", `"payload"`},
		{"number", `42`},
		{"null", `null`},
		{"truncated", `{"payload": {`},
		{"trailing garbage", `{"payload": {}} x`},
		{"two values", `{} {}`},
		{"unquoted key", `{payload: {}}`},
		{"trailing comma", `{"payload": {},}`},
		{"bad escape", `{"payload": "\x"}`},
		{"control character in a string", "{\"payload\": \"a\tb\"}"},
		{"leading zero", `{"payload": 01}`},
		{"too deep", `{"payload": ` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + `}`},
		{"requestMeta is a string", `{"requestMeta": "r1"}`},
		{"requestId is a number", `{"requestMeta": {"requestId": 1}}`},
		{"roles is a string", `{"requestMeta": {"roles": "admin"}}`},
		{"a role is a number", `{"requestMeta": {"roles": ["admin", 1]}}`},
		{"createdAt is a string", `{"requestMeta": {"createdAt": "1"}}`},
		{"version is a fraction", `{"sagaMeta": {"version": 1.5}}`},
		{"version has an exponent", `{"sagaMeta": {"version": 1e2}}`},
		{"runnerPartition overflows int32", `{"sagaMeta": {"runnerPartition": 2147483648}}`},
		{"seq overflows int64", `{"sagaMeta": {"seq": 9223372036854775808}}`},
		{"eventMeta is an array", `{"eventMeta": []}`},
		{"status is true", `{"result": {"status": true}}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := envelope.Decode([]byte(tc.value), fixedID)
			if !errors.Is(err, envelope.ErrNotEnvelope) {
				t.Fatalf("Decode(%.60q) = %+v, %v; want an error wrapping ErrNotEnvelope", tc.value, got, err)
			}
			if got != nil {
				t.Errorf("Decode returned an envelope with its error: %+v", got)
			}
		})
	}
}

// TestDecodeRefusesAmbiguous checks the strict rules: every spelling
// another reader could take differently is refused, with a reason that
// names the key.
func TestDecodeRefusesAmbiguous(t *testing.T) {
	manyKeys := `{"payload": {}`
	for i := range 40 {
		manyKeys += `, "k` + strconv.Itoa(i) + `": 1`
	}
	manyKeys += `, "K39": 2}`
	tests := []struct {
		name, value, reason string
	}{
		{"top-level key in another case", `{"payload": {}, "RequestMeta": {"user": "x"}}`,
			`at the top level: key "RequestMeta" must be spelled "requestMeta"`},
		{"case variant beside the exact key", `{"REQUESTMETA": {"user": "x"}, "requestMeta": {}}`,
			`at the top level: key "REQUESTMETA" must be spelled "requestMeta"`},
		{"case variant after the exact key", `{"payload": 1, "Payload": 2}`,
			`at the top level: duplicate key "Payload" (same as "payload")`},
		{"key folding by Unicode rules", `{"payload": {}, "\u017fagaMeta": {}}`,
			`at the top level: key "ſagaMeta" must be spelled "sagaMeta"`},
		{"user in capitals", `{"requestMeta": {"USER": "x"}}`, `in requestMeta: key "USER" must be spelled "user"`},
		{"requestid in lower case", `{"requestMeta": {"requestid": "x"}}`, `in requestMeta: key "requestid" must be spelled "requestId"`},
		{"tenant in another case", `{"requestMeta": {"Tenant": "x"}}`, `in requestMeta: key "Tenant" must be spelled "tenant"`},
		{"hops in another case", `{"requestMeta": {"HOPS": 1}}`, `in requestMeta: key "HOPS" must be spelled "hops"`},
		{"sagaMeta field in another case", `{"sagaMeta": {"StepId": "s"}}`, `in sagaMeta: key "StepId" must be spelled "stepId"`},
		{"eventMeta field in another case", `{"eventMeta": {"Parameters": {}}}`, `in eventMeta: key "Parameters" must be spelled "parameters"`},
		{"result field in another case", `{"result": {"STATUS": "SUCCESS"}}`, `in result: key "STATUS" must be spelled "status"`},
		{"duplicate top-level key", `{"payload": {}, "payload": {}}`, `at the top level: duplicate key "payload"`},
		{"duplicate meta object", `{"requestMeta": {"user": "a"}, "requestMeta": {"user": "b"}}`, `at the top level: duplicate key "requestMeta"`},
		{"escaped duplicate top-level key", `{"payload": 1, "p\u0061yload": 2}`, `at the top level: duplicate key "payload"`},
		{"duplicate user", `{"requestMeta": {"user": "a", "user": "b"}}`, `in requestMeta: duplicate key "user"`},
		{"duplicate user in another case", `{"requestMeta": {"user": "a", "User": "b"}}`, `in requestMeta: duplicate key "User" (same as "user")`},
		{"escaped duplicate user", `{"requestMeta":{"user":"a","us\u0065r":"b"}}`, `in requestMeta: duplicate key "user"`},
		{"duplicate roles", `{"requestMeta": {"roles": ["a"], "roles": ["admin"]}}`, `in requestMeta: duplicate key "roles"`},
		{"duplicate status", `{"result": {"status": "FAIL", "status": "SUCCESS"}}`, `in result: duplicate key "status"`},
		{"duplicate unknown key", `{"payload": {}, "x": 1, "x": 2}`, `at the top level: duplicate key "x"`},
		{"duplicate unknown key in another case", `{"requestMeta": {"note": 1, "NOTE": 2}}`, `in requestMeta: duplicate key "NOTE" (same as "note")`},
		{"duplicate among many unknown keys", manyKeys, `at the top level: duplicate key "K39" (same as "k39")`},
		{"invalid UTF-8 in user", "{\"requestMeta\": {\"user\": \"al\xffice\"}}", `invalid UTF-8 in requestMeta.user (byte 25)`},
		{"invalid UTF-8 in a key", "{\"requestMeta\": {\"us\xffer\": \"a\"}}", `invalid UTF-8 in the key "us\xffer" in requestMeta (byte 17)`},
		{"invalid UTF-8 in the payload", "{\"payload\": {\"a\": [\"ok\", \"\xc3\"]}}", `invalid UTF-8 in payload.a[1]`},
		{"invalid UTF-8 in parameters", "{\"eventMeta\": {\"parameters\": {\"taskId\": \"t\xed\xa0\x80\"}}}",
			`invalid UTF-8 in eventMeta.parameters.taskId`},
		{"invalid UTF-8 in a bare object", "{\"taskId\": \"\xfe\"}", `invalid UTF-8 in taskId`},
		{"invalid UTF-8 in a bare object's key", "{\"task\xfe\": 1}", `invalid UTF-8 in the key "task\xfe" (byte 1)`},
		{"lone low surrogate", `{"taskId": "\udc00"}`, `invalid UTF-8 in taskId`},
		{"high surrogate before a letter", `{"payload": {"taskId": "\ud800\u0041"}}`, `invalid UTF-8 in payload.taskId`},
		{"high surrogate at the end", `{"payload": "x\ud83d"}`, `invalid UTF-8 in payload`},
		{"two high surrogates", `{"payload": "\ud83d\ud83d\ude00"}`, `invalid UTF-8 in payload`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := envelope.Decode([]byte(tc.value), fixedID)
			if !errors.Is(err, envelope.ErrNotEnvelope) {
				t.Fatalf("Decode(%.60q) = %+v, %v; want an error wrapping ErrNotEnvelope", tc.value, got, err)
			}
			if !strings.Contains(err.Error(), tc.reason) {
				t.Errorf("Decode error %q does not say %q", err, tc.reason)
			}
			if got != nil {
				t.Errorf("Decode returned an envelope with its error: %+v", got)
			}
			// Unmarshal holds every object to the same rules.
			var e envelope.Envelope
			if err := envelope.Unmarshal([]byte(tc.value), &e); err == nil || !strings.Contains(err.Error(), tc.reason) {
				t.Errorf("Unmarshal = %v, want an error saying %q", err, tc.reason)
			}
		})
	}
}

// TestUnmarshalRefusesCaseVariantsWithoutEnvelopeKeys: Unmarshal reads only
// envelopes, so no object of its is bare data.
func TestUnmarshalRefusesCaseVariantsWithoutEnvelopeKeys(t *testing.T) {
	var e envelope.Envelope
	err := envelope.Unmarshal([]byte(`{"RequestMeta": {"user": "x"}}`), &e)
	if err == nil || !strings.Contains(err.Error(), `key "RequestMeta" must be spelled "requestMeta"`) {
		t.Errorf("Unmarshal = %v", err)
	}
	if e.RequestMeta.User != "" {
		t.Errorf("Unmarshal read a refused key: %+v", e.RequestMeta)
	}
}

func TestDecodeAcceptsDepthLimit(t *testing.T) {
	// encoding/json accepts exactly 10000 levels; the envelope is one.
	v := `{"payload": ` + strings.Repeat("[", 9999) + strings.Repeat("]", 9999) + `}`
	if _, err := envelope.Decode([]byte(v), fixedID); err != nil {
		t.Fatalf("Decode at the depth limit: %v", err)
	}
}

func TestDecodeDoesNotAliasValue(t *testing.T) {
	value := []byte(`{"requestMeta": {"requestId": "r1", "roles": ["admin"]}, "eventMeta": {"action": "A", "parameters": {"p": 1}}, "payload": {"x": "y"}}`)
	e, err := envelope.Decode(value, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range value {
		value[i] = 'z'
	}
	if e.RequestMeta.RequestID != "r1" || e.RequestMeta.Roles[0] != "admin" || e.EventMeta.Action != "A" ||
		string(e.EventMeta.Parameters) != `{"p": 1}` || string(e.Payload) != `{"x": "y"}` {
		t.Errorf("envelope changed with the record value: %+v", e)
	}
}

// TestEncode checks the encoding against encoding/json, which defined it
// before: the same fields omitted, the same values after decoding.
func TestEncode(t *testing.T) {
	tests := []struct {
		name string
		env  envelope.Envelope
		want string
	}{
		{
			name: "zero envelope keeps the fields without omitempty",
			want: `{"requestMeta": {"requestId": ""}, "sagaMeta": {"runnerPartition": 0}, "eventMeta": {}, "result": {}}`,
		},
		{
			name: "every field",
			env: envelope.Envelope{
				RequestMeta: envelope.RequestMeta{RequestID: "r-42", User: "alice", Roles: []string{"manager", "admin"}, ReplyTo: "responses", CreatedAt: 1763800000000,
					Tenant: "acme", Hops: 2},
				SagaMeta:  envelope.SagaMeta{Saga: "s", Version: 2, StepID: "approve", RunnerPartition: -3, Seq: 9},
				EventMeta: envelope.EventMeta{Action: "StartTask", Domain: "workflow", InputElement: "parameters", OutputElement: "process", Parameters: json.RawMessage(`{"timeout": 60000}`)},
				Payload:   json.RawMessage(`{"parameters": {"id": 1}}`),
				Result:    envelope.Result{Status: "FAIL", Code: "BAD_INPUT", Message: "no", Outcome: "approve"},
			},
			want: `{"requestMeta": {"requestId": "r-42", "user": "alice", "roles": ["manager", "admin"], "replyTo": "responses", "createdAt": 1763800000000, "tenant": "acme", "hops": 2},
				"sagaMeta": {"saga": "s", "version": 2, "stepId": "approve", "runnerPartition": -3, "seq": 9},
				"eventMeta": {"action": "StartTask", "domain": "workflow", "inputElement": "parameters", "outputElement": "process", "parameters": {"timeout": 60000}},
				"payload": {"parameters": {"id": 1}}, "result": {"status": "FAIL", "code": "BAD_INPUT", "message": "no", "outcome": "approve"}}`,
		},
		{
			name: "strings that need escaping",
			env: envelope.Envelope{
				RequestMeta: envelope.RequestMeta{RequestID: "a\"b\\c\n\t\r\b\f\x01\x1f<>&\u2028\u2029é😀", User: "bad \xff utf-8"},
				Result:      envelope.Result{Message: "\x7f done"},
			},
			want: `{"requestMeta": {"requestId": "a\"b\\c\n\t\r\b\f\u0001\u001f<>&\u2028\u2029é😀", "user": "bad \ufffd utf-8"},
				"sagaMeta": {"runnerPartition": 0}, "eventMeta": {}, "result": {"message": "\u007f done"}}`,
		},
		{
			name: "null raw values are kept, empty ones omitted",
			env:  envelope.Envelope{EventMeta: envelope.EventMeta{Parameters: json.RawMessage(`null`)}, Payload: json.RawMessage{}},
			want: `{"requestMeta": {"requestId": ""}, "sagaMeta": {"runnerPartition": 0}, "eventMeta": {"parameters": null}, "result": {}}`,
		},
		{
			name: "empty roles are omitted",
			env:  envelope.Envelope{RequestMeta: envelope.RequestMeta{Roles: []string{}}},
			want: `{"requestMeta": {"requestId": ""}, "sagaMeta": {"runnerPartition": 0}, "eventMeta": {}, "result": {}}`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.env.Encode()
			if !json.Valid(got) {
				t.Fatalf("Encode = %s: not valid JSON", got)
			}
			jsonEq(t, "Encode", string(got), tc.want)
			ref, err := json.Marshal((*plainEnvelope)(&tc.env))
			if err != nil {
				t.Fatal(err)
			}
			jsonEq(t, "Encode against encoding/json", string(got), string(ref))
			assertKeyOrder(t, got, ref)
		})
	}
}

// TestEncodeAllocatesOnce checks that encodedSize counts every field, the
// new ones included: a short count would grow the buffer.
func TestEncodeAllocatesOnce(t *testing.T) {
	long := strings.Repeat("x", 4096)
	e := envelope.Envelope{
		RequestMeta: envelope.RequestMeta{RequestID: long, User: long, Roles: []string{long}, ReplyTo: long, CreatedAt: math.MinInt64, Tenant: long, Hops: math.MinInt},
		SagaMeta:    envelope.SagaMeta{Saga: long, Version: math.MinInt, StepID: long, RunnerPartition: math.MinInt32, Seq: math.MinInt},
		EventMeta:   envelope.EventMeta{Action: long, Domain: long, InputElement: long, OutputElement: long, Parameters: json.RawMessage(`"` + long + `"`)},
		Payload:     json.RawMessage(`"` + long + `"`),
		Result:      envelope.Result{Status: long, Code: long, Message: long, Outcome: long},
	}
	if n := testing.AllocsPerRun(10, func() { e.Encode() }); n != 1 {
		t.Errorf("Encode allocates %v times, want 1", n)
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	e, err := envelope.Decode([]byte(full), nil)
	if err != nil {
		t.Fatal(err)
	}
	e.RequestMeta.User = "Zoë \"the\" <admin>\n\xfe"
	e.RequestMeta.Tenant, e.RequestMeta.Hops = "acme", 4
	e.EventMeta.Parameters = json.RawMessage(`{"pattern": "{id: id}"}`)
	back, err := envelope.Decode(e.Encode(), nil)
	if err != nil {
		t.Fatalf("Decode(Encode()) = %v", err)
	}
	e.RequestMeta.User = "Zoë \"the\" <admin>\n\ufffd" // invalid UTF-8 is replaced, as encoding/json does
	jsonEq(t, "payload", string(back.Payload), string(e.Payload))
	jsonEq(t, "parameters", string(back.EventMeta.Parameters), string(e.EventMeta.Parameters))
	back.Payload, back.EventMeta.Parameters = e.Payload, e.EventMeta.Parameters
	if !reflect.DeepEqual(back, e) {
		t.Errorf("round trip =\n %#v\nwant\n %#v", back, e)
	}
}

func TestUnmarshalMatchesEncodingJSON(t *testing.T) {
	var got envelope.Envelope
	if err := envelope.Unmarshal([]byte(full), &got); err != nil {
		t.Fatal(err)
	}
	var want envelope.Envelope
	if err := json.Unmarshal([]byte(full), (*plainEnvelope)(&want)); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Unmarshal =\n %#v\nencoding/json\n %#v", got, want)
	}
	// Unlike Decode it keeps a null payload and names no request.
	var n envelope.Envelope
	if err := envelope.Unmarshal([]byte(`{"payload": null}`), &n); err != nil || string(n.Payload) != "null" || n.RequestMeta.RequestID != "" {
		t.Errorf("Unmarshal of a null payload = %+v, %v", n, err)
	}
	if err := envelope.Unmarshal([]byte(`[]`), &n); err == nil {
		t.Error("Unmarshal of an array succeeded")
	}
}

func TestGetSet(t *testing.T) {
	e, err := envelope.Decode([]byte(full), nil)
	if err != nil {
		t.Fatal(err)
	}
	gets := []struct {
		path, want string
	}{
		{"parameters.productId", `"product-1"`},
		{"parameters", `{"productId": "product-1", "brief": "summer vibes"}`},
		{"", string(e.Payload)},
		{"$.requestMeta.user", `"alice"`},
		{"$.sagaMeta.runnerPartition", `3`},
		{"$.payload.parameters.brief", `"summer vibes"`},
		{"$.eventMeta.parameters.timeout", `60000`},
	}
	for _, g := range gets {
		t.Run("get "+g.path, func(t *testing.T) {
			v := e.Get(g.path)
			if !v.Exists() {
				t.Fatalf("Get(%q) is missing", g.path)
			}
			jsonEq(t, "Get", v.Raw, g.want)
		})
	}
	for _, missing := range []string{"nothing", "parameters.nothing", "$.nothing", "$.requestMeta.nothing"} {
		if v := e.Get(missing); v.Exists() {
			t.Errorf("Get(%q) = %s, want nothing", missing, v.Raw)
		}
	}

	t.Run("set in the payload", func(t *testing.T) {
		c := e.Clone()
		if err := c.Set("decision", []byte(`{"user": "bob"}`)); err != nil {
			t.Fatal(err)
		}
		if err := c.Set("parameters.productId", []byte(`"p2"`)); err != nil {
			t.Fatal(err)
		}
		jsonEq(t, "payload", string(c.Payload), `{"parameters": {"productId": "p2", "brief": "summer vibes"}, "decision": {"user": "bob"}}`)
	})
	t.Run("set the whole payload", func(t *testing.T) {
		c := e.Clone()
		if err := c.Set("", []byte(`{"a": 1}`)); err != nil {
			t.Fatal(err)
		}
		jsonEq(t, "payload", string(c.Payload), `{"a": 1}`)
	})
	t.Run("set at the root", func(t *testing.T) {
		c := e.Clone()
		if err := c.Set("$.requestMeta.replyTo", []byte(`"elsewhere"`)); err != nil {
			t.Fatal(err)
		}
		if err := c.Set("$.payload.parameters.brief", []byte(`"winter"`)); err != nil {
			t.Fatal(err)
		}
		if err := c.Set("$.sagaMeta.seq", []byte(`7`)); err != nil {
			t.Fatal(err)
		}
		if c.RequestMeta.ReplyTo != "elsewhere" || c.SagaMeta.Seq != 7 || c.RequestMeta.RequestID != "r-42" {
			t.Errorf("meta after root sets = %+v %+v", c.RequestMeta, c.SagaMeta)
		}
		jsonEq(t, "payload", string(c.Payload), `{"parameters": {"productId": "product-1", "brief": "winter"}}`)
	})
	t.Run("set at the root with a wrong type fails and changes nothing", func(t *testing.T) {
		c := e.Clone()
		if err := c.Set("$.sagaMeta.seq", []byte(`"seven"`)); err == nil {
			t.Fatal("Set of a string into seq succeeded")
		}
		if !reflect.DeepEqual(c, e) {
			t.Errorf("failed Set changed the envelope: %+v", c)
		}
	})
}

func TestClone(t *testing.T) {
	e, err := envelope.Decode([]byte(full), nil)
	if err != nil {
		t.Fatal(err)
	}
	orig := e.Encode()
	c := e.Clone()
	c.RequestMeta.Roles[0] = "changed"
	c.RequestMeta.Roles = append(c.RequestMeta.Roles, "more")
	c.Payload[2] = 'X'
	c.EventMeta.Parameters[2] = 'X'
	c.SagaMeta.StepID = "other"
	if err := c.Set("parameters.productId", []byte(`"p9"`)); err != nil {
		t.Fatal(err)
	}
	if got := e.Encode(); string(got) != string(orig) {
		t.Errorf("changing the clone changed the original:\n got %s\nwant %s", got, orig)
	}
}

func TestValid(t *testing.T) {
	for _, v := range []string{`{}`, ` [1, "a", null, true, -0.5e+3] `, `"x"`, strings.Repeat("[", 10000) + strings.Repeat("]", 10000)} {
		if !envelope.Valid([]byte(v)) {
			t.Errorf("Valid(%.40q) = false", v)
		}
	}
	for _, v := range []string{``, `{`, `[1,]`, `01`, `"\u12"`, strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
		`["` + strings.Repeat("[", 10001) + `"`} {
		if envelope.Valid([]byte(v)) != json.Valid([]byte(v)) {
			t.Errorf("Valid(%.40q) = %v, encoding/json says %v", v, envelope.Valid([]byte(v)), json.Valid([]byte(v)))
		}
	}
}

func TestAppendString(t *testing.T) {
	for _, s := range []string{"", "plain", "q\"b\\", "\x00\x07\b\f\n\r\t\x1f\x7f", "<a href='x'>&amp;</a>", "\u2028\u2029", "é😀", "\xff\xfe bad", "\xe2\x80"} {
		for _, html := range []bool{false, true} {
			var ref strings.Builder
			enc := json.NewEncoder(&ref)
			enc.SetEscapeHTML(html)
			if err := enc.Encode(s); err != nil {
				t.Fatal(err)
			}
			want := strings.TrimSuffix(ref.String(), "\n")
			if got := string(envelope.AppendString([]byte("x"), s, html)); got != "x"+want {
				t.Errorf("AppendString(%q, html=%v) = %s, want x%s", s, html, got, want)
			}
		}
	}
}

// plainEnvelope decodes and encodes with encoding/json's reflection, the
// reference the envelope codec must agree with.
type plainEnvelope envelope.Envelope

// jsonEq compares two JSON texts structurally.
func jsonEq(t *testing.T, what, got, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Fatalf("%s: got invalid JSON %q: %v", what, got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("%s: want invalid JSON %q: %v", what, want, err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("%s:\n got %s\nwant %s", what, got, want)
	}
}

// assertKeyOrder checks that got has the token stream of want: the same
// keys in the same order at every level, with the same values, so consumers
// reading the envelope see the shape encoding/json gave it.
func assertKeyOrder(t *testing.T, got, want []byte) {
	t.Helper()
	if g, w := tokens(t, got), tokens(t, want); !reflect.DeepEqual(g, w) {
		t.Errorf("tokens:\n got %v\nwant %v", g, w)
	}
}

func tokens(t *testing.T, doc []byte) []json.Token {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(string(doc)))
	var out []json.Token
	for {
		tok, err := dec.Token()
		if err != nil {
			return out
		}
		out = append(out, tok)
	}
}

// BenchmarkCodec compares the envelope codec with encoding/json on the SPEC
// §3 example.
func BenchmarkCodec(b *testing.B) {
	value := []byte(full)
	e, err := envelope.Decode(value, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("Decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := envelope.Decode(value, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Decode encoding/json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var e envelope.Envelope
			if err := json.Unmarshal(value, (*plainEnvelope)(&e)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Encode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			e.Encode()
		}
	})
	b.Run("Encode encoding/json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal((*plainEnvelope)(e)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
