package envelope_test

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/sagarunner/sagarunner/saga/envelope"
)

var valueSeeds = []string{
	`{"b": [1, 2.5, -0, 1e21, 1e-7, 123456789012345678, 0.000001], "a": {"x": null, "y": true, "z": false}}`,
	`"esc \" \\ \n \u00e9 \ud83d\ude00 \ud800 <&> \u2028"`,
	`[]`, `{}`, `null`, `1e400`, `-1e-400`, `[1,]`, `{"a" 1}`, "\"\xff\"",
	`{"a": 1, "a": 2, "A": 3}`,
	`[[[[{"deep": [1, {"k": "v"}]}]]]]`,
}

// FuzzValue holds ParseValue and AppendValue to encoding/json: the same
// values read, the same bytes written.
func FuzzValue(f *testing.F) {
	for _, s := range valueSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := envelope.ParseValue(data)
		var want any
		werr := json.Unmarshal(data, &want)
		if (err == nil) != (werr == nil) {
			t.Fatalf("ParseValue(%q): err %v, encoding/json %v", data, err, werr)
		}
		if err != nil {
			return
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("ParseValue(%q) = %#v, encoding/json %#v", data, got, want)
		}
		enc, err := envelope.AppendValue(nil, got)
		var ref bytes.Buffer
		e := json.NewEncoder(&ref)
		e.SetEscapeHTML(false)
		if rerr := e.Encode(want); (err == nil) != (rerr == nil) {
			t.Fatalf("AppendValue(%#v): err %v, encoding/json %v", got, err, rerr)
		}
		if err == nil && string(enc) != string(bytes.TrimSuffix(ref.Bytes(), []byte("\n"))) {
			t.Fatalf("AppendValue(%#v) = %s, encoding/json %s", got, enc, ref.Bytes())
		}
	})
}

func TestAppendValueOtherTypes(t *testing.T) {
	for _, v := range []any{[]string{"a"}, map[string]int{"b": 1, "a": 2}, json.Number("12"), 3, float32(0.1), []any(nil), map[string]any(nil)} {
		got, err := envelope.AppendValue(nil, v)
		var ref bytes.Buffer
		e := json.NewEncoder(&ref)
		e.SetEscapeHTML(false)
		if rerr := e.Encode(v); err != nil || rerr != nil || string(got) != string(bytes.TrimSuffix(ref.Bytes(), []byte("\n"))) {
			t.Errorf("AppendValue(%#v) = %s, %v; encoding/json %s, %v", v, got, err, ref.Bytes(), rerr)
		}
	}
}
