package actions

import (
	"bytes"
	"fmt"

	"github.com/jmespath/go-jmespath"
	"github.com/tidwall/gjson"

	"github.com/sagarunner/sagarunner/saga/envelope"
)

// applyPattern runs a compiled JMESPath pattern on a JSON document and returns
// the result as JSON. go-jmespath walks plain Go values, so the document is
// decoded into interface{} (numbers become float64: integers up to 2^53, which
// covers epoch milliseconds, survive the round trip exactly). An empty document
// is searched as null. A pattern that fails, or panics inside the library on
// a shape it does not expect, comes back as an error: patterns are user input
// and must never take the runner down.
//
// The conversions are envelope.ParseValue and AppendValue rather than
// encoding/json: the same values and bytes, without reflection, on a path
// every shaped step takes.
func applyPattern(p *jmespath.JMESPath, doc []byte) (out []byte, err error) {
	var data any
	if len(bytes.TrimSpace(doc)) > 0 {
		if data, err = envelope.ParseValue(doc); err != nil {
			return nil, fmt.Errorf("decode pattern input: %w", err)
		}
	}
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("pattern panicked: %v", r)
		}
	}()
	res, err := p.Search(data)
	if err != nil {
		return nil, err
	}
	return marshalJSON(res)
}

// marshalJSON encodes v without HTML escaping, so "<" or "&" in user data
// reach the consumer as written rather than as \u003c.
func marshalJSON(v any) ([]byte, error) {
	b, err := envelope.AppendValue(nil, v)
	if err != nil {
		return nil, fmt.Errorf("encode pattern result: %w", err)
	}
	return b, nil
}

// shape applies the optional pattern p (its source in raw, for messages) to
// doc. Without a pattern doc comes back unchanged. A failing pattern sets FAIL
// with CodePattern on env and reports ok=false.
func shape(env *envelope.Envelope, p *jmespath.JMESPath, name, raw string, doc []byte) ([]byte, bool) {
	if p == nil {
		return doc, true
	}
	out, err := applyPattern(p, doc)
	if err != nil {
		env.Fail(CodePattern, "%s %q: %v", name, raw, err)
		return nil, false
	}
	return out, true
}

// input returns the action's input: the value at inputElement, or the whole
// payload when there is none. A configured element that is absent sets FAIL
// with CodeBadInput and reports ok=false: an action that was told where its
// data sits should not silently run on nothing.
func input(env *envelope.Envelope, element string) ([]byte, bool) {
	if element == "" {
		if len(env.Payload) == 0 {
			return []byte(`{}`), true
		}
		return env.Payload, true
	}
	v := env.Get(element)
	if !v.Exists() {
		env.Fail(CodeBadInput, "input element %q is missing", element)
		return nil, false
	}
	return []byte(v.Raw), true
}

// lookup reads path relative to an action's input, or against the envelope
// root when it starts with "$." (SPEC §3).
func lookup(env *envelope.Envelope, in []byte, path string) gjson.Result {
	if envelope.IsRoot(path) {
		return env.Get(path)
	}
	return envelope.GetIn(in, path)
}

// scalarString turns a resolved id or key into a string: strings as they are,
// numbers and booleans as written. Null, absent and empty values report
// ok=false; objects and arrays are not ids and report an error.
func scalarString(v gjson.Result) (s string, ok bool, err error) {
	switch v.Type {
	case gjson.Null:
		return "", false, nil
	case gjson.String:
		return v.Str, v.Str != "", nil
	case gjson.Number, gjson.True, gjson.False:
		return v.Raw, true, nil
	}
	return "", false, fmt.Errorf("want a string or number, got %s", kind(v))
}

// kind names a JSON value's type for messages.
func kind(v gjson.Result) string {
	switch {
	case !v.Exists():
		return "nothing"
	case v.IsObject():
		return "an object"
	case v.IsArray():
		return "an array"
	}
	return v.Type.String()
}
