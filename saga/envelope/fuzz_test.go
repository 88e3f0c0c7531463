package envelope_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/sagarunner/sagarunner/saga/envelope"
)

// referenceDecode is Decode written with encoding/json alone, as it was
// before the envelope had its own codec and its strict rules: what Decode
// reads where it accepts a value.
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
	`{"requestMeta": {"requestId": "r1", "tenant": "t\u00e9", "hops": 3}, "payload": {}}`,
	`{"requestMeta": {"hops": -1, "tenant": null}, "p\u0061yload": 1}`,
	`{"requestMeta": {"hops": 1.5}}`,
	`{"payload": {}, "result": {"status": "SUCCESS", "outcome": "appr\u006fve"}}`,
	`{"result": {"outcome": "a", "Outcome": "b"}}`,
	`{"result": {"outcome": 1}}`,

	// Each spelling the strict rules refuse.
	`{"RequestMeta": {"user": "x"}, "payload": {}}`,
	`{"REQUESTMETA": {}, "requestMeta": {}}`,
	`{"requestMeta": {"USER": "x"}}`,
	`{"requestMeta": {"requestid": "x"}}`,
	`{"requestMeta": {"Tenant": "x", "HOPS": 1}}`,
	`{"sagaMeta": {"StepId": "s"}}`,
	`{"eventMeta": {"Parameters": {}}}`,
	`{"result": {"Status": "SUCCESS"}}`,
	`{"payload": {}, "\u017fagaMeta": {}}`,
	`{"payload": 1, "payload": 2}`,
	`{"Payload": 1, "payload": 2}`,
	`{"payload": 1, "p\u0061yload": 2}`,
	`{"requestMeta": {"user": "a", "user": "b"}}`,
	`{"requestMeta": {"user": "a", "User": "b"}}`,
	`{"requestMeta":{"user":"a","us\u0065r":"b"}}`,
	`{"requestMeta": {"note": 1, "NOTE": 2}}`,
	`{"payload": {}, "x": 1, "x": 2}`,
	`{"payload": {}, "\u212a": 1, "k": 2}`,
	"{\"requestMeta\": {\"user\": \"\xff\"}}",
	"{\"requestMeta\": {\"us\xffer\": \"a\"}}",
	"{\"payload\": {\"a\": [\"ok\", \"\xc3\"]}}",
	"{\"eventMeta\": {\"parameters\": {\"taskId\": \"t\xed\xa0\x80\"}}}",
	"{\"taskId\": \"\xfe\"}",
	`{"taskId": "\udc00"}`,
	`{"payload": {"taskId": "\ud800\u0041"}}`,
	`{"payload": "\ud83d"}`,

	// Bare objects stay data whatever their keys.
	`{"Payload": 1, "user": "x"}`,
	`{"RequestMeta": {"USER": "a", "user": "b"}, "k": 1, "k": 2}`,
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
		// Decode accepts exactly what encoding/json accepts and the strict
		// rules allow, and reads it as encoding/json does.
		want, werr := referenceDecode(value, fixedID)
		refused := werr != nil
		if !refused {
			if why := strictViolation(value); why != "" {
				refused = true
				werr = errors.New(why)
			}
		}
		if (err != nil) != refused {
			t.Fatalf("Decode(%q): err %v, want %v", value, err, werr)
		}
		if err != nil {
			if !errors.Is(err, envelope.ErrNotEnvelope) {
				t.Fatalf("Decode(%q): %v does not wrap ErrNotEnvelope", value, err)
			}
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

// strictViolation says which strict rule valid JSON value breaks, or ""
// if none: the rules written again apart from the codec, with encoding/json
// reading the keys.
func strictViolation(value []byte) string {
	if !utf8.Valid(value) {
		return "invalid UTF-8"
	}
	if loneSurrogate(value) {
		return "lone surrogate"
	}
	keys, vals := members(value)
	fields := map[string][]string{
		"requestMeta": {"requestId", "user", "roles", "replyTo", "createdAt", "tenant", "hops"},
		"sagaMeta":    {"saga", "version", "stepId", "runnerPartition", "seq"},
		"eventMeta":   {"action", "domain", "inputElement", "outputElement", "parameters"},
		"payload":     nil,
		"result":      {"status", "code", "message", "outcome"},
	}
	top := []string{"requestMeta", "sagaMeta", "eventMeta", "payload", "result"}
	if !slices.ContainsFunc(keys, func(k string) bool { return slices.Contains(top, k) }) {
		return "" // bare
	}
	if why := ambiguous(keys, top); why != "" {
		return why
	}
	for i, k := range keys {
		if names, ok := fields[k]; ok && names != nil && bytes.HasPrefix(vals[i], []byte("{")) {
			inner, _ := members(vals[i])
			if why := ambiguous(inner, names); why != "" {
				return k + ": " + why
			}
		}
	}
	return ""
}

// ambiguous reports two keys equal but for case, or a key that is a name
// in another case.
func ambiguous(keys, names []string) string {
	for i, k := range keys {
		for _, other := range keys[i+1:] {
			if strings.EqualFold(k, other) {
				return "duplicate " + strconv.Quote(k)
			}
		}
		for _, n := range names {
			if k != n && strings.EqualFold(k, n) {
				return "case variant " + strconv.Quote(k)
			}
		}
	}
	return ""
}

// members lists the keys, unescaped, and raw values of a JSON object.
func members(obj []byte) (keys []string, vals []json.RawMessage) {
	dec := json.NewDecoder(bytes.NewReader(obj))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, nil
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return keys, vals
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return keys, vals
		}
		keys, vals = append(keys, tok.(string)), append(vals, v)
	}
	return keys, vals
}

// loneSurrogate reports a \u escape of a surrogate that is not a high one
// followed by a low one, in valid JSON.
func loneSurrogate(v []byte) bool {
	hex := func(i int) rune {
		if i+4 > len(v) {
			return -1
		}
		n, err := strconv.ParseUint(string(v[i:i+4]), 16, 16)
		if err != nil {
			return -1
		}
		return rune(n)
	}
	inString := false
	for i := 0; i < len(v); i++ {
		switch {
		case v[i] == '"':
			inString = !inString
		case inString && v[i] == '\\':
			i++
			if v[i] != 'u' {
				continue
			}
			r := hex(i + 1)
			i += 4
			switch {
			case r >= 0xdc00 && r < 0xe000:
				return true
			case r >= 0xd800 && r < 0xdc00:
				if i+2 >= len(v) || v[i+1] != '\\' || v[i+2] != 'u' {
					return true
				}
				if low := hex(i + 3); low < 0xdc00 || low >= 0xe000 {
					return true
				}
				i += 6
			}
		}
	}
	return false
}
