package envelope

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// JMESPath patterns run on plain Go values, so every pattern step turns
// JSON into values and its result back into JSON. ParseValue and AppendValue
// do that without reflection, with encoding/json's results.

// ParseValue decodes JSON text into the values json.Unmarshal gives an
// interface{}: map[string]any, []any, float64, string, bool and nil. Like
// json.Unmarshal it rejects invalid JSON and numbers beyond float64.
func ParseValue(data []byte) (any, error) {
	p := valueParser{scanner: scanner{data: data}, ok: true}
	p.ws()
	v := p.value()
	p.ws()
	if !p.ok || p.i != len(data) {
		if p.err != nil {
			return nil, p.err
		}
		return nil, fmt.Errorf("envelope: %w", errInvalid)
	}
	return v, nil
}

type valueParser struct {
	scanner
	ok  bool
	err error
}

func (p *valueParser) value() any {
	if !p.ok {
		return nil
	}
	switch c := p.peek(); {
	case c == '{':
		m := map[string]any{}
		p.ok = p.object(func(key string) bool {
			// The key may view the input; the map keeps a copy.
			m[strings.Clone(key)] = p.value()
			return p.ok
		})
		return m
	case c == '[':
		a := []any{}
		p.ok = p.array(func() bool {
			a = append(a, p.value())
			return p.ok
		})
		return a
	case c == '"':
		start := p.i
		plain, ok := p.str()
		if p.ok = ok; !ok {
			return nil
		}
		if plain {
			return string(p.data[start+1 : p.i-1])
		}
		return unquote(p.data[start:p.i])
	case c == '-' || c >= '0' && c <= '9':
		start := p.i
		if p.ok = p.number(); !p.ok {
			return nil
		}
		f, err := strconv.ParseFloat(unsafeString(p.data[start:p.i]), 64)
		if err != nil {
			// The text is kept valid JSON; only the range can fail.
			p.ok = false
			p.err = fmt.Errorf("envelope: number %s does not fit a float64", p.data[start:p.i])
			return nil
		}
		return f
	case c == 't':
		p.ok = p.literal("true")
		return true
	case c == 'f':
		p.ok = p.literal("false")
		return false
	case c == 'n':
		p.ok = p.literal("null")
		return nil
	}
	p.ok = false
	return nil
}

// ErrUnsupportedValue is returned by AppendValue for NaN and infinities,
// which JSON cannot carry.
var ErrUnsupportedValue = errors.New("envelope: unsupported value")

// AppendValue appends v as JSON exactly as a json.Encoder with HTML
// escaping off writes it (without the newline): map keys sorted, numbers
// in the shortest form that reads back the same. Types other than those
// ParseValue returns go through encoding/json.
func AppendValue(b []byte, v any) ([]byte, error) {
	switch v := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case bool:
		return strconv.AppendBool(b, v), nil
	case string:
		return AppendString(b, v, false), nil
	case float64:
		return appendFloat(b, v)
	case []any:
		if v == nil {
			return append(b, "null"...), nil
		}
		b = append(b, '[')
		for i, el := range v {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = AppendValue(b, el); err != nil {
				return nil, err
			}
		}
		return append(b, ']'), nil
	case map[string]any:
		if v == nil {
			return append(b, "null"...), nil
		}
		var arr [16]string
		keys := arr[:0]
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(AppendString(b, k, false), ':')
			var err error
			if b, err = AppendValue(b, v[k]); err != nil {
				return nil, err
			}
		}
		return append(b, '}'), nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return append(b, bytes.TrimSuffix(buf.Bytes(), []byte("\n"))...), nil
}

// appendFloat writes f as encoding/json does: like ES6's number to string,
// exponents from 1e21 and below 1e-6, unpadded.
func appendFloat(b []byte, f float64) ([]byte, error) {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return nil, fmt.Errorf("%w: %s", ErrUnsupportedValue, strconv.FormatFloat(f, 'g', -1, 64))
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// e-09 becomes e-9
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b, nil
}
