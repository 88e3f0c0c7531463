package envelope

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
	"unsafe"

	"github.com/tidwall/gjson"
)

// The envelope is read and written on every step of every instance, so it
// has its own codec instead of encoding/json's reflection: one pass over the
// value validates it and picks out the meta fields, Payload and Parameters
// stay the raw bytes they arrived as, and Encode appends to one buffer sized
// up front. What it accepts and how it reads it are encoding/json's rules;
// FuzzDecode holds the two together.

// maxNesting is encoding/json's nesting limit. Deeper values are rejected as
// encoding/json rejects them, so whether a record is accepted never depends
// on which codec read it.
const maxNesting = 10000

var errInvalid = errors.New("invalid JSON")

// Valid reports whether b is exactly one JSON value, as json.Valid does, in
// a fraction of its time.
func Valid(b []byte) bool {
	s := scanner{data: b}
	s.ws()
	if !s.value() {
		return false
	}
	s.ws()
	return s.i == len(b)
}

// Unmarshal reads data into e exactly as json.Unmarshal(data, e) would:
// field names match case-insensitively, later keys win, null leaves a field
// as it was, and a value of the wrong type is an error after the rest has
// been read. One difference: invalid JSON may leave e written in part, where
// encoding/json validates first, so pass a fresh envelope. Unlike Decode it
// neither takes bare objects nor fills defaults, so it suits envelopes this
// package wrote itself, such as a stored task's.
func Unmarshal(data []byte, e *Envelope) error {
	if _, err := decodeObject(data, e); err != nil {
		return fmt.Errorf("envelope: %w", err)
	}
	return nil
}

// decodeObject reads a JSON object into e in one pass. isEnvelope reports
// whether one of its keys is exactly an envelope key. Invalid JSON is
// errInvalid, with e possibly written in part; a valid value that is not an
// object is a *notObject; a field of the wrong type is any other error.
func decodeObject(data []byte, e *Envelope) (isEnvelope bool, err error) {
	s := scanner{data: data}
	s.ws()
	if s.peek() != '{' {
		if !Valid(data) {
			return false, errInvalid
		}
		return false, &notObject{gjson.ParseBytes(data).Type}
	}
	d := decoders.Get().(*decoder)
	defer d.release()
	d.scanner, d.ok, d.err = s, true, nil
	d.object(func(key string) {
		if slices.Contains(envelopeKeys[:], key) {
			isEnvelope = true
		}
		switch {
		case strings.EqualFold(key, "requestMeta"):
			d.meta("requestMeta", func(key string) {
				m := &e.RequestMeta
				switch {
				case strings.EqualFold(key, "requestId"):
					d.str(&m.RequestID, "requestMeta.requestId")
				case strings.EqualFold(key, "user"):
					d.str(&m.User, "requestMeta.user")
				case strings.EqualFold(key, "roles"):
					d.strs(&m.Roles, "requestMeta.roles")
				case strings.EqualFold(key, "replyTo"):
					d.str(&m.ReplyTo, "requestMeta.replyTo")
				case strings.EqualFold(key, "createdAt"):
					if n, ok := d.int(64, "requestMeta.createdAt"); ok {
						m.CreatedAt = n
					}
				default:
					d.skip()
				}
			})
		case strings.EqualFold(key, "sagaMeta"):
			d.meta("sagaMeta", func(key string) {
				m := &e.SagaMeta
				switch {
				case strings.EqualFold(key, "saga"):
					d.str(&m.Saga, "sagaMeta.saga")
				case strings.EqualFold(key, "version"):
					if n, ok := d.int(strconv.IntSize, "sagaMeta.version"); ok {
						m.Version = int(n)
					}
				case strings.EqualFold(key, "stepId"):
					d.str(&m.StepID, "sagaMeta.stepId")
				case strings.EqualFold(key, "runnerPartition"):
					if n, ok := d.int(32, "sagaMeta.runnerPartition"); ok {
						m.RunnerPartition = int32(n)
					}
				case strings.EqualFold(key, "seq"):
					if n, ok := d.int(strconv.IntSize, "sagaMeta.seq"); ok {
						m.Seq = int(n)
					}
				default:
					d.skip()
				}
			})
		case strings.EqualFold(key, "eventMeta"):
			d.meta("eventMeta", func(key string) {
				m := &e.EventMeta
				switch {
				case strings.EqualFold(key, "action"):
					d.str(&m.Action, "eventMeta.action")
				case strings.EqualFold(key, "domain"):
					d.str(&m.Domain, "eventMeta.domain")
				case strings.EqualFold(key, "inputElement"):
					d.str(&m.InputElement, "eventMeta.inputElement")
				case strings.EqualFold(key, "outputElement"):
					d.str(&m.OutputElement, "eventMeta.outputElement")
				case strings.EqualFold(key, "parameters"):
					m.Parameters = d.raw()
				default:
					d.skip()
				}
			})
		case strings.EqualFold(key, "payload"):
			e.Payload = d.raw()
		case strings.EqualFold(key, "result"):
			d.meta("result", func(key string) {
				r := &e.Result
				switch {
				case strings.EqualFold(key, "status"):
					d.str(&r.Status, "result.status")
				case strings.EqualFold(key, "code"):
					d.str(&r.Code, "result.code")
				case strings.EqualFold(key, "message"):
					d.str(&r.Message, "result.message")
				default:
					d.skip()
				}
			})
		default:
			d.skip()
		}
	})
	d.ws()
	if !d.ok || d.i != len(data) {
		return false, errInvalid
	}
	d.finish()
	return isEnvelope, d.err
}

// notObject is a valid JSON value that is not an object; it names the type
// as gjson does ("JSON" for an array), which dead letters have always shown.
type notObject struct{ typ gjson.Type }

func (n *notObject) Error() string { return "got " + n.typ.String() }

// scanner walks JSON text. Its methods validate what they pass over with
// RFC 8259's grammar and encoding/json's nesting limit and report false at
// the first syntax error, so reading and validating are one pass.
type scanner struct {
	data  []byte
	i     int
	depth int
}

func (s *scanner) peek() byte {
	if s.i < len(s.data) {
		return s.data[s.i]
	}
	return 0
}

func (s *scanner) ws() {
	for s.i < len(s.data) {
		switch s.data[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// value passes over one value at s.i.
func (s *scanner) value() bool {
	switch c := s.peek(); c {
	case '{':
		return s.object(func(string) bool { return s.value() })
	case '[':
		return s.array(s.value)
	case '"':
		_, ok := s.str()
		return ok
	case 't':
		return s.literal("true")
	case 'f':
		return s.literal("false")
	case 'n':
		return s.literal("null")
	default:
		if c == '-' || c >= '0' && c <= '9' {
			return s.number()
		}
		return false
	}
}

// object passes over an object at s.i, calling fn after each key with s.i
// at the key's value; fn must pass over the value.
func (s *scanner) object(fn func(key string) bool) bool {
	if s.depth++; s.depth > maxNesting {
		return false
	}
	s.i++
	s.ws()
	if s.peek() == '}' {
		s.i++
		s.depth--
		return true
	}
	for {
		if s.peek() != '"' {
			return false
		}
		start := s.i
		plain, ok := s.str()
		if !ok {
			return false
		}
		key := unsafeString(s.data[start+1 : s.i-1])
		if !plain {
			key = unquote(s.data[start:s.i])
		}
		s.ws()
		if s.peek() != ':' {
			return false
		}
		s.i++
		s.ws()
		if !fn(key) {
			return false
		}
		s.ws()
		switch s.peek() {
		case ',':
			s.i++
			s.ws()
		case '}':
			s.i++
			s.depth--
			return true
		default:
			return false
		}
	}
}

// array passes over an array at s.i, calling elem at each element.
func (s *scanner) array(elem func() bool) bool {
	if s.depth++; s.depth > maxNesting {
		return false
	}
	s.i++
	s.ws()
	if s.peek() == ']' {
		s.i++
		s.depth--
		return true
	}
	for {
		if !elem() {
			return false
		}
		s.ws()
		switch s.peek() {
		case ',':
			s.i++
			s.ws()
		case ']':
			s.i++
			s.depth--
			return true
		default:
			return false
		}
	}
}

// str passes over a string at s.i. plain reports that its inside is its
// own value: no escapes and valid UTF-8 (encoding/json replaces bad bytes).
func (s *scanner) str() (plain, ok bool) {
	s.i++
	start := s.i
	plain = true
	ascii := true
	for s.i < len(s.data) {
		c := s.data[s.i]
		switch {
		case c == '"':
			if !ascii && plain {
				plain = utf8.Valid(s.data[start:s.i])
			}
			s.i++
			return plain, true
		case c < ' ':
			return false, false
		case c == '\\':
			plain = false
			s.i++
			switch s.peek() {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.i++
			case 'u':
				s.i++
				for range 4 {
					if !isHex(s.peek()) {
						return false, false
					}
					s.i++
				}
			default:
				return false, false
			}
		default:
			if c >= utf8.RuneSelf {
				ascii = false
			}
			s.i++
		}
	}
	return false, false
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

// number passes over a number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *scanner) number() bool {
	if s.peek() == '-' {
		s.i++
	}
	switch c := s.peek(); {
	case c == '0':
		s.i++
	case c >= '1' && c <= '9':
		s.digits()
	default:
		return false
	}
	if s.peek() == '.' {
		s.i++
		if !s.digits() {
			return false
		}
	}
	if c := s.peek(); c == 'e' || c == 'E' {
		s.i++
		if c := s.peek(); c == '+' || c == '-' {
			s.i++
		}
		if !s.digits() {
			return false
		}
	}
	return true
}

// digits passes over one or more digits.
func (s *scanner) digits() bool {
	start := s.i
	for s.i < len(s.data) && s.data[s.i] >= '0' && s.data[s.i] <= '9' {
		s.i++
	}
	return s.i > start
}

func (s *scanner) literal(lit string) bool {
	if len(s.data)-s.i >= len(lit) && string(s.data[s.i:s.i+len(lit)]) == lit {
		s.i += len(lit)
		return true
	}
	return false
}

// unsafeString views b as a string without copying it, for comparing keys.
// Nothing kept from a decode points into the record value.
func unsafeString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// decoder reads envelope fields from validated JSON. It collects the
// strings of one envelope into a single allocation: the unescaped bytes go
// to buf and each field remembers its span, filled in by finish.
type decoder struct {
	scanner
	// ok turns false at the first syntax error; every read stops there.
	ok   bool
	err  error
	buf  []byte
	refs []strRef
}

// decoders recycles decoders and their buffers: every record is decoded
// at least once, and a fresh pair of buffers per decode is most of what a
// decode would allocate.
var decoders = sync.Pool{New: func() any {
	return &decoder{buf: make([]byte, 0, 256), refs: make([]strRef, 0, 16)}
}}

// maxPooledBuf bounds the string buffer kept for reuse, so one record with
// huge meta strings does not pin that memory for good.
const maxPooledBuf = 64 << 10

func (d *decoder) release() {
	clear(d.refs) // drop the pointers into the decoded envelope
	d.refs = d.refs[:0]
	if cap(d.buf) > maxPooledBuf {
		d.buf = make([]byte, 0, 256)
	}
	d.buf = d.buf[:0]
	d.scanner, d.err = scanner{}, nil
	decoders.Put(d)
}

type strRef struct {
	dst        *string
	start, end int
}

// object calls fn at each key of the object at d.i; fn passes over the
// value with the decoder's methods.
func (d *decoder) object(fn func(key string)) {
	d.check(d.scanner.object(func(key string) bool {
		fn(key)
		return d.ok
	}))
}

func (d *decoder) check(ok bool) {
	if !ok {
		d.ok = false
	}
}

// skip passes over a value the envelope does not read.
func (d *decoder) skip() { d.check(d.value()) }

// meta reads a nested meta object; null is no value.
func (d *decoder) meta(field string, fn func(key string)) {
	switch d.peek() {
	case '{':
		d.object(fn)
	case 'n':
		d.skip()
	default:
		d.mismatch(field, "an object")
	}
}

// mismatch keeps the first type error, as encoding/json reports the first
// one after reading everything else, and passes over the value.
func (d *decoder) mismatch(field, want string) {
	start := d.i
	d.skip()
	if d.ok && d.err == nil {
		d.err = fmt.Errorf("%s: want %s, got %s", field, want, kind(d.data[start:d.i]))
	}
}

// raw copies the value at d.i.
func (d *decoder) raw() json.RawMessage {
	start := d.i
	if d.skip(); !d.ok {
		return nil
	}
	return append(json.RawMessage(nil), d.data[start:d.i]...)
}

// str sets *dst from a string value, once finish runs; null leaves it.
func (d *decoder) str(dst *string, field string) {
	switch d.peek() {
	case '"':
		start := d.i
		plain, ok := d.scanner.str()
		if d.check(ok); !ok {
			return
		}
		bufStart := len(d.buf)
		if plain {
			d.buf = append(d.buf, d.data[start+1:d.i-1]...)
		} else {
			d.buf = append(d.buf, unquote(d.data[start:d.i])...)
		}
		d.refs = append(d.refs, strRef{dst: dst, start: bufStart, end: len(d.buf)})
	case 'n':
		d.skip()
	default:
		d.mismatch(field, "a string")
	}
}

// strs reads an array of strings the way encoding/json fills a slice: the
// existing backing array is reused, a null element leaves what is there,
// and [] is an empty, non-nil slice. Its strings are allocated at once, not
// in the shared buffer, because a later key may grow the slice.
func (d *decoder) strs(dst *[]string, field string) {
	switch d.peek() {
	case '[':
		s := *dst
		i := 0
		d.check(d.array(func() bool {
			if i >= cap(s) {
				s = slices.Grow(s[:i], 1)
			}
			s = s[:max(len(s), i+1)]
			switch d.peek() {
			case '"':
				start := d.i
				plain, ok := d.scanner.str()
				if !ok {
					return false
				}
				if plain {
					s[i] = string(d.data[start+1 : d.i-1])
				} else {
					s[i] = unquote(d.data[start:d.i])
				}
			case 'n':
				d.skip()
			default:
				d.mismatch(field, "strings")
			}
			i++
			return d.ok
		}))
		if !d.ok {
			return
		}
		if i == 0 {
			s = []string{}
		}
		*dst = s[:i]
	case 'n':
		d.skip()
		*dst = nil
	default:
		d.mismatch(field, "an array of strings")
	}
}

// int reads an integer of bitSize bits; null reports ok=false and no error.
func (d *decoder) int(bitSize int, field string) (int64, bool) {
	switch c := d.peek(); {
	case c == 'n':
		d.skip()
		return 0, false
	case c == '-' || c >= '0' && c <= '9':
		start := d.i
		if d.check(d.number()); !d.ok {
			return 0, false
		}
		if n, err := strconv.ParseInt(unsafeString(d.data[start:d.i]), 10, bitSize); err == nil {
			return n, true
		}
		if d.err == nil {
			d.err = fmt.Errorf("%s: want an integer of %d bits, got %s", field, bitSize, d.data[start:d.i])
		}
		return 0, false
	}
	d.mismatch(field, "a number")
	return 0, false
}

// finish makes one string of all the collected bytes and points each field
// at its part.
func (d *decoder) finish() {
	if len(d.refs) == 0 {
		return
	}
	s := string(d.buf)
	for _, r := range d.refs {
		*r.dst = s[r.start:r.end]
	}
}

// unquote decodes a JSON string with escapes or non-UTF-8 bytes the way
// encoding/json does (lone surrogates and bad bytes become U+FFFD). It is
// the rare path, so it borrows encoding/json itself.
func unquote(quoted []byte) string {
	var s string
	if err := json.Unmarshal(quoted, &s); err != nil {
		// Unreachable for validated input; keep the raw text rather than
		// lose the value.
		return string(quoted)
	}
	return s
}

// kind names a JSON value's type for messages.
func kind(raw []byte) string {
	switch raw[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

// encodedSize is Encode's buffer size: exact unless strings need escaping.
func (e *Envelope) encodedSize() int {
	const fixed = len(`{"requestMeta":{"requestId":"","user":"","roles":[],"replyTo":"","createdAt":-9223372036854775808},` +
		`"sagaMeta":{"saga":"","version":-9223372036854775808,"stepId":"","runnerPartition":-2147483648,"seq":-9223372036854775808},` +
		`"eventMeta":{"action":"","domain":"","inputElement":"","outputElement":"","parameters":},` +
		`"payload":,"result":{"status":"","code":"","message":""}}`)
	rm, sm, em, r := &e.RequestMeta, &e.SagaMeta, &e.EventMeta, &e.Result
	n := fixed + len(rm.RequestID) + len(rm.User) + len(rm.ReplyTo) +
		len(sm.Saga) + len(sm.StepID) +
		len(em.Action) + len(em.Domain) + len(em.InputElement) + len(em.OutputElement) + len(em.Parameters) +
		len(e.Payload) + len(r.Status) + len(r.Code) + len(r.Message)
	for _, role := range rm.Roles {
		n += len(role) + 3
	}
	return n
}

// appendJSON appends the envelope's JSON to b; see Encode.
func (e *Envelope) appendJSON(b []byte) []byte {
	rm := &e.RequestMeta
	b = append(b, `{"requestMeta":{"requestId":`...)
	b = AppendString(b, rm.RequestID, false)
	b = appendStringField(b, "user", rm.User)
	if len(rm.Roles) > 0 {
		b = append(b, `,"roles":[`...)
		for i, role := range rm.Roles {
			if i > 0 {
				b = append(b, ',')
			}
			b = AppendString(b, role, false)
		}
		b = append(b, ']')
	}
	b = appendStringField(b, "replyTo", rm.ReplyTo)
	b = appendIntField(b, "createdAt", rm.CreatedAt)

	sm := &e.SagaMeta
	b = append(b, `},"sagaMeta":{`...)
	b = appendStringField(b, "saga", sm.Saga)
	b = appendIntField(b, "version", int64(sm.Version))
	b = appendStringField(b, "stepId", sm.StepID)
	b = appendKey(b, "runnerPartition")
	b = strconv.AppendInt(b, int64(sm.RunnerPartition), 10)
	b = appendIntField(b, "seq", int64(sm.Seq))

	em := &e.EventMeta
	b = append(b, `},"eventMeta":{`...)
	b = appendStringField(b, "action", em.Action)
	b = appendStringField(b, "domain", em.Domain)
	b = appendStringField(b, "inputElement", em.InputElement)
	b = appendStringField(b, "outputElement", em.OutputElement)
	if len(em.Parameters) > 0 {
		b = append(appendKey(b, "parameters"), em.Parameters...)
	}
	b = append(b, '}')
	if len(e.Payload) > 0 {
		b = append(append(b, `,"payload":`...), e.Payload...)
	}

	r := &e.Result
	b = append(b, `,"result":{`...)
	b = appendStringField(b, "status", r.Status)
	b = appendStringField(b, "code", r.Code)
	b = appendStringField(b, "message", r.Message)
	return append(b, "}}"...)
}

// appendKey appends "key": after a comma unless it is the object's first.
func appendKey(b []byte, key string) []byte {
	if b[len(b)-1] != '{' {
		b = append(b, ',')
	}
	b = append(b, '"')
	b = append(b, key...)
	return append(b, '"', ':')
}

// appendStringField appends a string field tagged omitempty.
func appendStringField(b []byte, key, s string) []byte {
	if s == "" {
		return b
	}
	return AppendString(appendKey(b, key), s, false)
}

// appendIntField appends an integer field tagged omitempty.
func appendIntField(b []byte, key string, n int64) []byte {
	if n == 0 {
		return b
	}
	return strconv.AppendInt(appendKey(b, key), n, 10)
}

const hex = "0123456789abcdef"

// AppendString appends s as a JSON string exactly as encoding/json writes
// it: control characters, quotes and backslashes escaped, invalid UTF-8 as
// \ufffd, U+2028 and U+2029 escaped, and <, > and & escaped only when
// escapeHTML is set (json.Marshal sets it, an Encoder may not).
func AppendString(b []byte, s string, escapeHTML bool) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= ' ' && c != '"' && c != '\\' && (!escapeHTML || c != '<' && c != '>' && c != '&') {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		// U+2028 and U+2029 are valid JSON but end a line in JavaScript.
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
