package envelope_test

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/sagarunner/sagarunner/saga/envelope"
)

// referenceDecode is Decode written with encoding/json alone, as it was
// before the envelope had its own codec: the semantics Decode must keep.
func referenceDecode(value []byte, newID func() string) (*envelope.Envelope, error) {
	if !json.Valid(value) || bytes.TrimLeft(value, " \t\r\n")[0] != '{' {
		return nil, envelope.ErrNotEnvelope
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(value, &top); err != nil {
		return nil, err
	}
	isEnvelope := false
	for _, k := range []string{"requestMeta", "sagaMeta", "eventMeta", "payload", "result"} {
		if _, ok := top[k]; ok {
			isEnvelope = true
		}
	}
	e := &envelope.Envelope{}
	if !isEnvelope {
		p, _ := sjson.SetRawBytes([]byte(`{}`), "parameters", value)
		e.Payload = p
	} else if err := json.Unmarshal(value, (*plainEnvelope)(e)); err != nil {
		return nil, err
	}
	if e.RequestMeta.RequestID == "" && newID != nil {
		e.RequestMeta.RequestID = newID()
	}
	if len(e.Payload) == 0 || string(e.Payload) == "null" {
		e.Payload = json.RawMessage(`{}`)
	}
	return e, nil
}

var fuzzSeeds = []string{
	full,
	`{"productId": "p1"}`,
	`{}`,
	`[]`,
	`"x"`,
	`null`,
	`{"payload": null}`,
	`{"payload": 7, "result": {"status": "FAIL", "code": "X", "message": "m"}}`,
	`{"requestMeta": {"requestId": "r\"1\u00e9\ud83d\ude00\ud800", "roles": ["a", null, ""], "createdAt": -0}}`,
	`{"requestMeta": {"roles": []}, "REQUESTMETA": {"User": "u"}, "requestMeta": {"roles": ["x"]}}`,
	`{"sagaMeta": {"version": 1.0, "runnerPartition": 2147483647, "seq": 1e1}}`,
	`{"sagaMeta": {"runnerPartition": -2147483649}}`,
	`{"eventMeta": {"parameters": [1, {"a": "b"}], "action": "\u0041"}, "payload": {"a": "<&>"}}`,
	"{\"requestMeta\": {\"requestId\": \"\xff\xfe\"}, \"payload\": {}}",
	`{"\u0070ayload": {}, "sagaMeta": null, "eventMeta": {}, "result": null}`,
	`{"payload": {} } `,
	`{"payload": {}}}`,
	`{"requestMeta": {"requestId": "a", "requestId": "b"}, "\u017fagaMeta": {"\u017ftepId": "s"}}`,
	`{"requestMeta": {"requestİd": "a", "\u212aey": 1}, "payload": {}}`,
	`{"requestMeta": {"roles": ["a", "b", "c"]}, "requestMeta": {"roles": ["x"]}, "requestMeta": {"roles": [null, null, null, null, "e"]}}`,
	`{"requestMeta": {"roles": ["a"], "roles": null, "roles": [null]}}`,
}

func FuzzDecode(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, value []byte) {
		in := append([]byte(nil), value...)
		got, err := envelope.Decode(value, fixedID)
		if !bytes.Equal(in, value) {
			t.Fatalf("Decode changed its input")
		}
		want, werr := referenceDecode(value, fixedID)
		if (err == nil) != (werr == nil) {
			t.Fatalf("Decode(%q): err %v, encoding/json: %v", value, err, werr)
		}
		if err != nil {
			return
		}
		if !samePayload(got.Payload, want.Payload) {
			t.Fatalf("Decode(%q): payload %s, encoding/json %s", value, got.Payload, want.Payload)
		}
		got.Payload = want.Payload
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("Decode(%q) =\n %#v\nencoding/json\n %#v", value, got, want)
		}

		// What Decode accepted, Encode writes back: valid JSON that decodes
		// to the same envelope, with either codec.
		enc := got.Encode()
		if !json.Valid(enc) && envelope.Valid(got.Payload) && json.Valid(got.Payload) {
			t.Fatalf("Encode of %q = %s: not valid JSON", value, enc)
		}
		back, err := envelope.Decode(enc, fixedID)
		if err != nil {
			t.Fatalf("Decode(Encode(%q)) = %v; encoded %s", value, err, enc)
		}
		if len(got.RequestMeta.Roles) == 0 {
			got.RequestMeta.Roles = nil // omitted when empty
		}
		if !sameEnvelope(back, got) {
			t.Fatalf("Decode(Encode(%q)) =\n %#v\nwant\n %#v", value, back, got)
		}
		var viaJSON envelope.Envelope
		if json.Valid(enc) {
			if err := json.Unmarshal(enc, (*plainEnvelope)(&viaJSON)); err != nil {
				t.Fatalf("encoding/json rejects Encode(%q) = %s: %v", value, enc, err)
			}
			if !sameEnvelope(&viaJSON, got) {
				t.Fatalf("encoding/json reads Encode(%q) as\n %#v\nwant\n %#v", value, &viaJSON, got)
			}
		}
	})
}

// sameEnvelope compares envelopes with their raw fields compared as JSON:
// the encoding may drop insignificant whitespace or escape differently.
func sameEnvelope(a, b *envelope.Envelope) bool {
	if !samePayload(a.Payload, b.Payload) || !samePayload(a.EventMeta.Parameters, b.EventMeta.Parameters) {
		return false
	}
	ac, bc := *a, *b
	ac.Payload, ac.EventMeta.Parameters = nil, nil
	bc.Payload, bc.EventMeta.Parameters = nil, nil
	return reflect.DeepEqual(ac, bc)
}

// samePayload compares payloads as JSON, or as bytes where encoding/json
// cannot read them (a bare object at the nesting limit grows one level).
func samePayload(got, want []byte) bool {
	if bytes.Equal(got, want) {
		return true
	}
	var g, w any
	if json.Unmarshal(got, &g) == nil && json.Unmarshal(want, &w) == nil {
		return reflect.DeepEqual(g, w)
	}
	return gjson.GetBytes(got, "parameters").Raw == gjson.GetBytes(want, "parameters").Raw
}
