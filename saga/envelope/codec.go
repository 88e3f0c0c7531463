package envelope

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"

	"github.com/tidwall/gjson"
)

// The envelope is read and written on every step of every instance, so it
// has its own codec instead of encoding/json's reflection: one pass over the
// value validates it and picks out the meta fields, Payload and Parameters
// stay the raw bytes they arrived as, and Encode appends to one buffer sized
// up front.
//
// Decoding is strict (SPEC §11): in an envelope, a key repeated in one
// object, even spelled with escapes or in another letter case, and a key
// that names a field in the wrong letter case are errors, and so is text
// that is not valid Unicode anywhere in the value. encoding/json would take
// the last of two keys, match a field in any case and turn bad bytes into
// U+FFFD, while gjson and sjson, which the gateway and the actions use, take
// the first key, match exactly and keep the bytes: two readers of one record
// could see two identities or two task ids. The strict rules leave a subset
// of what encoding/json accepts on which every such reader agrees, and where
// the decoder accepts a value it reads exactly what encoding/json reads;
// FuzzDecode holds the two together.

// maxNesting is encoding/json's nesting limit. Deeper values are rejected as
// encoding/json rejects them, so whether a record is accepted never depends
// on which codec read it.
const maxNesting = 10000

var errInvalid = errors.New("invalid JSON")

// Valid reports whether b is exactly one JSON value, as json.Valid does, in
// a fraction of its time. Unlike Decode it accepts invalid UTF-8, as
// json.Valid does.
func Valid(b []byte) bool {
	s := scanner{data: b}
	s.ws()
	if !s.value() {
		return false
	}
	s.ws()
	return s.i == len(b)
}

// Unmarshal reads data into e with the strict rules of Decode, applied to
// every object whatever its keys: a duplicate key, a field name in the
// wrong letter case or invalid Unicode is an error. What it accepts it
// reads as json.Unmarshal(data, e) would: null leaves a field as it was,
// and a value of the wrong type is an error after the rest has been read.
// One difference: a refused value may leave e written in part, where
// encoding/json validates first, so pass a fresh envelope. Unlike Decode it
// neither takes bare objects nor fills defaults, so it suits envelopes this
// package wrote itself, such as a stored task's.
func Unmarshal(data []byte, e *Envelope) error {
	if _, err := decodeObject(data, e); err != nil {
		return fmt.Errorf("envelope: %w", err)
	}
	return nil
}

// The fields of each object the envelope reads, spelled exactly as the
// struct tags spell them, in the order of the constants below.
var (
	topFields     = envelopeKeys
	requestFields = [...]string{"requestId", "user", "roles", "replyTo", "createdAt", "tenant", "hops"}
	sagaFields    = [...]string{"saga", "version", "stepId", "runnerPartition", "seq"}
	eventFields   = [...]string{"action", "domain", "inputElement", "outputElement", "parameters"}
	resultFields  = [...]string{"status", "code", "message", "outcome"}
)

// The fields met in one object are bits of a uint16; more fields than 16
// in one object need a wider one, and this fails to compile.
const _ = uint(16-len(topFields)) + uint(16-len(requestFields)) + uint(16-len(sagaFields)) +
	uint(16-len(eventFields)) + uint(16-len(resultFields))

const (
	fRequestMeta = iota
	fSagaMeta
	fEventMeta
	fPayload
	fResult
)

const (
	fRequestID = iota
	fUser
	fRoles
	fReplyTo
	fCreatedAt
	fTenant
	fHops
)

const (
	fSaga = iota
	fVersion
	fStepID
	fRunnerPartition
	fSeq
)

const (
	fAction = iota
	fDomain
	fInputElement
	fOutputElement
	fParameters
)

const (
	fStatus = iota
	fCode
	fMessage
	fOutcome
)

// scope is one object whose keys the strict rules check.
type scope uint8

const (
	scopeTop scope = iota
	scopeRequest
	scopeSaga
	scopeEvent
	scopeResult
)

func (s scope) String() string {
	return [...]string{"at the top level", "in requestMeta", "in sagaMeta", "in eventMeta", "in result"}[s]
}

// decodeObject reads a JSON object into e in one pass. isEnvelope reports
// whether one of its keys is exactly an envelope key. Invalid JSON is
// errInvalid and invalid Unicode a *badText, both with e possibly written
// in part; a valid value that is not an object is a *notObject. Any other
// error, a field of the wrong type or a key the strict rules refuse, is the
// first one met; Decode ignores it for a bare object.
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
	s.strict, s.bad = true, -1
	d.scanner, d.ok, d.err = s, true, nil
	var seenTop uint16
	d.object(func(key string) {
		switch d.field(scopeTop, topFields[:], &seenTop, key) {
		case fRequestMeta:
			var seen uint16
			d.meta("requestMeta", func(key string) {
				m := &e.RequestMeta
				switch d.field(scopeRequest, requestFields[:], &seen, key) {
				case fRequestID:
					d.str(&m.RequestID, "requestMeta.requestId")
				case fUser:
					d.str(&m.User, "requestMeta.user")
				case fRoles:
					d.strs(&m.Roles, "requestMeta.roles")
				case fReplyTo:
					d.str(&m.ReplyTo, "requestMeta.replyTo")
				case fCreatedAt:
					if n, ok := d.int(64, "requestMeta.createdAt"); ok {
						m.CreatedAt = n
					}
				case fTenant:
					d.str(&m.Tenant, "requestMeta.tenant")
				case fHops:
					if n, ok := d.int(strconv.IntSize, "requestMeta.hops"); ok {
						m.Hops = int(n)
					}
				default:
					d.skip()
				}
			})
		case fSagaMeta:
			var seen uint16
			d.meta("sagaMeta", func(key string) {
				m := &e.SagaMeta
				switch d.field(scopeSaga, sagaFields[:], &seen, key) {
				case fSaga:
					d.str(&m.Saga, "sagaMeta.saga")
				case fVersion:
					if n, ok := d.int(strconv.IntSize, "sagaMeta.version"); ok {
						m.Version = int(n)
					}
				case fStepID:
					d.str(&m.StepID, "sagaMeta.stepId")
				case fRunnerPartition:
					if n, ok := d.int(32, "sagaMeta.runnerPartition"); ok {
						m.RunnerPartition = int32(n)
					}
				case fSeq:
					if n, ok := d.int(strconv.IntSize, "sagaMeta.seq"); ok {
						m.Seq = int(n)
					}
				default:
					d.skip()
				}
			})
		case fEventMeta:
			var seen uint16
			d.meta("eventMeta", func(key string) {
				m := &e.EventMeta
				switch d.field(scopeEvent, eventFields[:], &seen, key) {
				case fAction:
					d.str(&m.Action, "eventMeta.action")
				case fDomain:
					d.str(&m.Domain, "eventMeta.domain")
				case fInputElement:
					d.str(&m.InputElement, "eventMeta.inputElement")
				case fOutputElement:
					d.str(&m.OutputElement, "eventMeta.outputElement")
				case fParameters:
					m.Parameters = d.raw()
				default:
					d.skip()
				}
			})
		case fPayload:
			e.Payload = d.raw()
		case fResult:
			var seen uint16
			d.meta("result", func(key string) {
				r := &e.Result
				switch d.field(scopeResult, resultFields[:], &seen, key) {
				case fStatus:
					d.str(&r.Status, "result.status")
				case fCode:
					d.str(&r.Code, "result.code")
				case fMessage:
					d.str(&r.Message, "result.message")
				case fOutcome:
					d.str(&r.Outcome, "result.outcome")
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
		if d.bad >= 0 {
			return false, &badText{where: locate(data, d.bad)}
		}
		return false, errInvalid
	}
	isEnvelope = seenTop != 0
	if d.err == nil && len(d.unknown) > 1 {
		d.err = d.unknownDuplicate()
	}
	d.finish()
	return isEnvelope, d.err
}

// field matches the key of a member of an object the strict rules check
// against names, the object's fields. It returns the field's index for the
// first exact occurrence of a field, and -1 for a key to pass over: one the
// envelope does not read, or one refused, whose error it keeps. Keys arrive
// unescaped, so "us\u0065r" is "user" here. A case-insensitive match is
// what encoding/json would take for the field, and is refused.
func (d *decoder) field(sc scope, names []string, seen *uint16, key string) int {
	for i, name := range names {
		if key == name {
			if *seen&(1<<i) != 0 {
				d.refuse(fmt.Errorf("%v: duplicate key %q", sc, key))
				return -1
			}
			*seen |= 1 << i
			return i
		}
	}
	for i, name := range names {
		if strings.EqualFold(key, name) {
			if *seen&(1<<i) != 0 {
				d.refuse(fmt.Errorf("%v: duplicate key %q (same as %q)", sc, key, name))
			} else {
				d.refuse(fmt.Errorf("%v: key %q must be spelled %q", sc, key, name))
			}
			return -1
		}
	}
	d.unknown = append(d.unknown, unknownKey{sc, key})
	return -1
}

// refuse keeps the first error, as encoding/json reports the first type
// error after reading everything else.
func (d *decoder) refuse(err error) {
	if d.err == nil {
		d.err = err
	}
}

// unknownKey is a key the envelope does not read, kept so that repeats of
// it can be refused once the whole value has been read: it is only the
// rare envelope that has two, so the common one does no work for them.
type unknownKey struct {
	scope scope
	key   string
}

// unknownDuplicate reports two keys of d.unknown in one object that are
// equal but for letter case, as encoding/json folds them.
func (d *decoder) unknownDuplicate() error {
	dup := func(a, b unknownKey) error {
		if a.key == b.key {
			return fmt.Errorf("%v: duplicate key %q", a.scope, a.key)
		}
		return fmt.Errorf("%v: duplicate key %q (same as %q)", a.scope, b.key, a.key)
	}
	if len(d.unknown) <= 16 {
		for i, a := range d.unknown {
			for _, b := range d.unknown[i+1:] {
				if a.scope == b.scope && strings.EqualFold(a.key, b.key) {
					return dup(a, b)
				}
			}
		}
		return nil
	}
	// Many keys, so no quadratic comparison: one map of folded keys.
	seen := make(map[string]unknownKey, len(d.unknown))
	var buf []byte
	for _, k := range d.unknown {
		buf = appendFolded(append(buf[:0], byte(k.scope)), k.key)
		if first, ok := seen[string(buf)]; ok {
			return dup(first, k)
		}
		seen[string(buf)] = k
	}
	return nil
}

// appendFolded appends s with every rune replaced by the least rune of its
// case-folding orbit, so that two strings fold to the same bytes exactly
// when strings.EqualFold holds for them, as encoding/json's foldName does.
func appendFolded(b []byte, s string) []byte {
	for _, r := range s {
		if r < utf8.RuneSelf {
			if 'a' <= r && r <= 'z' {
				r -= 'a' - 'A'
			}
			b = append(b, byte(r))
			continue
		}
		for {
			f := unicode.SimpleFold(r)
			if f <= r {
				r = f
				break
			}
			r = f
		}
		b = utf8.AppendRune(b, r)
	}
	return b
}

// badText is a string that is not valid Unicode: invalid UTF-8 or an
// unpaired surrogate escape. encoding/json reads it as U+FFFD and gjson as
// the bytes themselves, so it is refused everywhere in a value.
type badText struct{ where string }

func (b *badText) Error() string { return "invalid UTF-8 in " + b.where }

// locate names the place in data of the string starting at byte off, for
// a message: a path such as requestMeta.user or payload.items[2], or the
// key it is. It walks data again, which only a refused value pays for.
func locate(data []byte, off int) string {
	s := scanner{data: data}
	found := ""
	var walk func(path string) bool
	walk = func(path string) bool {
		s.ws()
		switch s.peek() {
		case '{':
			done := false
			s.object(func(key string) bool {
				if off < s.i {
					// Everything before this key has been passed over. Its
					// raw text shows the bad bytes that key has replaced.
					k := scanner{data: data, i: off}
					k.str()
					found = fmt.Sprintf("the key %q", data[off+1:k.i-1])
					if path != "" {
						found += " in " + path
					}
					done = true
					return false
				}
				p := key
				if path != "" {
					p = path + "." + key
				}
				done = walk(p)
				return !done
			})
			return done
		case '[':
			done, i := false, 0
			s.array(func() bool {
				done = walk(path + "[" + strconv.Itoa(i) + "]")
				i++
				return !done
			})
			return done
		case '"':
			start := s.i
			s.str()
			if start == off {
				found = path
				if path == "" {
					found = "the value"
				}
				return true
			}
			return false
		default:
			s.value()
			return false
		}
	}
	walk("")
	if found == "" {
		return "a string at byte " + strconv.Itoa(off)
	}
	return found + " (byte " + strconv.Itoa(off) + ")"
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
	// strict refuses strings that are not valid Unicode, which JSON's
	// grammar allows; bad is then where the first such string starts.
	strict bool
	bad    int
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
// A strict scanner also fails at a string that is not valid Unicode, and
// notes where it starts in s.bad.
func (s *scanner) str() (plain, ok bool) {
	quote := s.i
	s.i++
	start := s.i
	plain = true
	ascii := true
	for s.i < len(s.data) {
		c := s.data[s.i]
		switch {
		case c == '"':
			// Escapes are ASCII, so the raw text is valid UTF-8 exactly
			// when the bytes it stands for are.
			if !ascii && (plain || s.strict) && !utf8.Valid(s.data[start:s.i]) {
				if s.strict {
					return s.badString(quote)
				}
				plain = false
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
				r, ok := s.hex4()
				if !ok {
					return false, false
				}
				// A surrogate stands for no character unless a high one
				// is followed by a low one; encoding/json reads a lone
				// one as U+FFFD.
				if s.strict && utf16.IsSurrogate(r) {
					if r >= 0xdc00 || !s.lowSurrogate() {
						return s.badString(quote)
					}
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

// hex4 passes over the u and four hex digits of a \u escape at s.i.
func (s *scanner) hex4() (rune, bool) {
	s.i++
	var r rune
	for range 4 {
		c := s.peek()
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
		s.i++
	}
	return r, true
}

// lowSurrogate passes over a \u escape of a low surrogate at s.i, if
// there is one.
func (s *scanner) lowSurrogate() bool {
	if s.i+1 >= len(s.data) || s.data[s.i] != '\\' || s.data[s.i+1] != 'u' {
		return false
	}
	s.i++
	r, ok := s.hex4()
	return ok && r >= 0xdc00 && r < 0xe000
}

func (s *scanner) badString(quote int) (plain, ok bool) {
	s.bad = quote
	return false, false
}

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
	// unknown holds the keys the envelope does not read, viewing the
	// value, until the end of the decode checks them for repeats.
	unknown []unknownKey
}

// decoders recycles decoders and their buffers: every record is decoded
// at least once, and a fresh pair of buffers per decode is most of what a
// decode would allocate.
var decoders = sync.Pool{New: func() any {
	return &decoder{buf: make([]byte, 0, 256), refs: make([]strRef, 0, 16), unknown: make([]unknownKey, 0, 16)}
}}

// maxPooledBuf bounds the string buffer kept for reuse, so one record with
// huge meta strings does not pin that memory for good.
const maxPooledBuf = 64 << 10

// maxPooledKeys bounds the unknown keys kept for reuse the same way: a
// bare object may have any number of them.
const maxPooledKeys = 1 << 10

func (d *decoder) release() {
	clear(d.refs) // drop the pointers into the decoded envelope
	d.refs = d.refs[:0]
	if cap(d.buf) > maxPooledBuf {
		d.buf = make([]byte, 0, 256)
	}
	d.buf = d.buf[:0]
	clear(d.unknown) // drop the views of the value
	if cap(d.unknown) > maxPooledKeys {
		d.unknown = make([]unknownKey, 0, 16)
	}
	d.unknown = d.unknown[:0]
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
	const fixed = len(`{"requestMeta":{"requestId":"","user":"","roles":[],"replyTo":"","createdAt":-9223372036854775808,"tenant":"","hops":-9223372036854775808},` +
		`"sagaMeta":{"saga":"","version":-9223372036854775808,"stepId":"","runnerPartition":-2147483648,"seq":-9223372036854775808},` +
		`"eventMeta":{"action":"","domain":"","inputElement":"","outputElement":"","parameters":},` +
		`"payload":,"result":{"status":"","code":"","message":"","outcome":""}}`)
	rm, sm, em, r := &e.RequestMeta, &e.SagaMeta, &e.EventMeta, &e.Result
	n := fixed + len(rm.RequestID) + len(rm.User) + len(rm.ReplyTo) + len(rm.Tenant) +
		len(sm.Saga) + len(sm.StepID) +
		len(em.Action) + len(em.Domain) + len(em.InputElement) + len(em.OutputElement) + len(em.Parameters) +
		len(e.Payload) + len(r.Status) + len(r.Code) + len(r.Message) + len(r.Outcome)
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
	b = appendStringField(b, "tenant", rm.Tenant)
	b = appendIntField(b, "hops", int64(rm.Hops))

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
	b = appendStringField(b, "outcome", r.Outcome)
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
