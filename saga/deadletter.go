package saga

import (
	"encoding/json"
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/sagarunner/sagarunner/saga/envelope"
)

// Dead-letter codes, in DeadLetter.Code, besides the result codes of a failed
// instance (actions.CodeBadInput, actions.CodePattern,
// actions.CodeReservedTopic).
const (
	DeadUndecodable   = "UNDECODABLE"         // the value is not a JSON object
	DeadUnknownSaga   = "UNKNOWN_SAGA"        // sagaMeta.saga names no loaded saga
	DeadUnknownStep   = "UNKNOWN_STEP"        // sagaMeta.stepId names no step of the saga
	DeadUnknownAction = "UNKNOWN_ACTION"      // eventMeta.action names no registered action
	DeadBadConfig     = "BAD_ACTION_CONFIG"   // a direct action's eventMeta does not check
	DeadNoKind        = "NOT_ROUTABLE"        // neither a start, a continuation nor an action
	DeadStepBudget    = "STEP_BUDGET"         // too many steps for one record
	DeadPanic         = "PANIC"               // an action or condition panicked (the runner's recovery)
	DeadForged        = "FORGED_CONTINUATION" // resumes an instance without a runner's signature
	DeadMaxHops       = "MAX_HOPS"            // requestMeta.hops reached Config.MaxHops
	DeadBadReplyTo    = "BAD_REPLY_TO"        // requestMeta.replyTo is no topic a reply may go to
	DeadTooLarge      = "RECORD_TOO_LARGE"    // an output exceeds Config.MaxRecordBytes; Target names it
	DeadCorruptTask   = "CORRUPT_TASK"        // a closed task's effects cannot be built from its stored state
	deadReasonMissing = "no reason recorded"  // never empty, so a reader always sees why
)

// DeadUnknownVersion: a continuation's sagaMeta.version is not loaded while
// other versions of its saga are; it is never run on one of those.
const DeadUnknownVersion = "UNKNOWN_SAGA_VERSION"

// DeadLetter is the JSON value of a dead-letter record: why a record could
// not be processed and where it came from, with the original value so an
// operator can fix and replay it.
//
// The coordinates (Topic, Partition, Offset; Domain and TaskID for a task
// whose effects could not be built at a deadline, where Topic is empty) are
// kept whatever the size. Value is the original as JSON when it is valid
// UTF-8 JSON, else as a JSON string; when the whole dead letter would exceed
// the size limit, Value is a JSON string holding a prefix of the original,
// Truncated is true and Size is the original's length in bytes.
type DeadLetter struct {
	Error     string `json:"error"`
	Code      string `json:"code"`
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
	Saga      string `json:"saga,omitempty"`
	StepID    string `json:"stepId,omitempty"`
	RequestID string `json:"requestId,omitempty"`
	// Target is the topic an output was meant for, when producing that
	// output is what failed (too large, no such topic).
	Target string `json:"target,omitempty"`
	// Domain and TaskID name a task whose effects failed at firing.
	Domain    string          `json:"domain,omitempty"`
	TaskID    string          `json:"taskId,omitempty"`
	Value     json.RawMessage `json:"value"`
	Truncated bool            `json:"truncated,omitempty"`
	Size      int             `json:"size,omitempty"`

	key, original []byte
}

// NewDeadLetter describes why src is dead-lettered: its coordinates, the
// instance env places it in (nil when the value did not decode), a code
// (the Dead* constants or a result code) and a reason. Set Target, when an
// output of src is what failed, then call Record. The runner's middleware
// dead-letters through it too, so every dead letter has one shape.
func NewDeadLetter(src Record, env *envelope.Envelope, code, reason string) *DeadLetter {
	d := &DeadLetter{Error: reason, Code: code, Topic: src.Topic, Partition: src.Partition, Offset: src.Offset,
		key: src.Key, original: src.Value}
	if env != nil {
		d.Saga, d.StepID, d.RequestID = env.SagaMeta.Saga, env.SagaMeta.StepID, env.RequestMeta.RequestID
	}
	return d
}

// deadFieldMax bounds each descriptive string of a dead letter that must be
// cut: a reason may quote a hostile 300 KB domain, and the coordinates must
// fit beside it.
const deadFieldMax = 1024

// Record encodes the dead letter for topic, keyed like the original, so
// that key and value together stay within maxBytes (DefaultMaxRecordBytes
// when maxBytes <= 0): a producer refusing the dead letter would hold the
// partition as surely as the poison itself. Should even the coordinates
// not fit a tiny maxBytes, they are produced anyway.
func (d *DeadLetter) Record(topic string, maxBytes int) envelope.Record {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxRecordBytes
	}
	original := d.original
	if original == nil {
		original = d.Value
	}
	c := *d
	if c.Error == "" {
		c.Error = deadReasonMissing
	}
	c.Truncated, c.Size = false, 0
	// Invalid UTF-8 inside JSON would pass json.Valid and reach consumers
	// as bytes no JSON reader keeps; as a string it is escaped.
	if envelope.Valid(original) && utf8.Valid(original) {
		c.Value = original
	} else {
		c.Value = appendJSONString(nil, original)
	}
	key := d.key
	budget := maxBytes - len(key)
	if b := c.encode(); len(b) <= budget {
		return envelope.Record{Topic: topic, Key: key, Value: b}
	}
	// Too large: keep the coordinates and as much of the original as fits.
	if len(key) > deadFieldMax {
		key = key[:runeCut(key, deadFieldMax)]
		budget = maxBytes - len(key)
	}
	c.Truncated, c.Size = true, len(original)
	c.Value = json.RawMessage(`""`)
	frame := c.encode()
	if len(frame) > budget {
		for _, s := range []*string{&c.Error, &c.Saga, &c.StepID, &c.RequestID, &c.Target, &c.Domain, &c.TaskID} {
			if len(*s) > deadFieldMax {
				*s = (*s)[:runeCut([]byte(*s), deadFieldMax)] + "…"
			}
		}
		frame = c.encode()
	}
	room := budget - len(frame)
	for {
		c.Value = appendJSONString(nil, original[:prefixFitting(original, room)])
		b := c.encode()
		if len(b) <= budget || room <= 0 {
			return envelope.Record{Topic: topic, Key: key, Value: b}
		}
		// json.Marshal escaped more than estimated (it never should):
		// give back the excess and cut again.
		room -= len(b) - budget
	}
}

func (d *DeadLetter) encode() []byte {
	b, err := json.Marshal(d)
	if err != nil {
		// Only Value could fail, and it is checked or quoted by Record.
		panic(fmt.Sprintf("saga: dead letter: %v", err))
	}
	return b
}

// appendJSONString appends b as a JSON string the way json.Marshal writes a
// string: invalid UTF-8 becomes U+FFFD, HTML characters are escaped.
func appendJSONString(dst, b []byte) json.RawMessage {
	return envelope.AppendString(dst, string(b), true)
}

// prefixFitting returns the length of the longest prefix of b, cut on a
// rune boundary, whose quoted form (appendJSONString, quotes excluded)
// takes at most room bytes.
func prefixFitting(b []byte, room int) int {
	used := 0
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		n := escapedLen(r, size)
		if used+n > room {
			return i
		}
		used += n
		i += size
	}
	return len(b)
}

// escapedLen is how many bytes json.Marshal writes for one decoded rune.
func escapedLen(r rune, size int) int {
	switch {
	case r == utf8.RuneError && size == 1:
		return len(`\ufffd`)
	case r == '"' || r == '\\' || r == '\n' || r == '\r' || r == '\t':
		return 2
	case r == '\b' || r == '\f':
		return 2
	case r < 0x20 || r == '<' || r == '>' || r == '&' || r == '\u2028' || r == '\u2029':
		return 6
	}
	return size
}

// runeCut returns the largest n <= max such that b[:n] ends on a rune
// boundary.
func runeCut(b []byte, max int) int {
	if len(b) <= max {
		return len(b)
	}
	n := max
	for n > 0 && !utf8.RuneStart(b[n]) {
		n--
	}
	return n
}

// deadLetter builds the dead letter of rec under this engine's topic and
// size limit.
func (e *Engine) deadLetter(rec Record, env *envelope.Envelope, code, reason string) envelope.Record {
	return NewDeadLetter(rec, env, code, reason).Record(e.cfg.DeadLetter, e.cfg.MaxRecordBytes)
}

func (e *Engine) deadOutput(rec Record, env *envelope.Envelope, code, reason string) Output {
	return Output{Records: []envelope.Record{e.deadLetter(rec, env, code, reason)}}
}

// quoteCut quotes s for a reason, cut so a hostile value cannot make the
// reason itself the largest part of a dead letter.
func quoteCut(s string) string {
	if len(s) <= 80 {
		return strconv.Quote(s)
	}
	return strconv.Quote(s[:runeCut([]byte(s), 80)]) + "…"
}
