// Package envelope is the JSON event envelope every Kafka record carries
// (SPEC §3) and the element-path rules that actions and the engine share. It
// sits below both the saga engine and the actions so neither imports the other
// to read an event.
package envelope

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"
)

// Result statuses (SPEC §3).
const (
	StatusSuccess   = "SUCCESS"
	StatusFail      = "FAIL"
	StatusTimeout   = "TIMEOUT"
	StatusCancelled = "CANCELLED"
)

// Envelope is one event. Payload and Parameters stay raw JSON so a step only
// decodes the element it needs.
type Envelope struct {
	RequestMeta RequestMeta     `json:"requestMeta"`
	SagaMeta    SagaMeta        `json:"sagaMeta"`
	EventMeta   EventMeta       `json:"eventMeta"`
	Payload     json.RawMessage `json:"payload,omitempty"`
	Result      Result          `json:"result"`
}

// RequestMeta identifies the request and its caller.
type RequestMeta struct {
	RequestID string   `json:"requestId"`
	User      string   `json:"user,omitempty"`
	Roles     []string `json:"roles,omitempty"`
	ReplyTo   string   `json:"replyTo,omitempty"`
	CreatedAt int64    `json:"createdAt,omitempty"`
	// Tenant scopes everything the request starts or touches; it comes
	// from authentication, like User and Roles.
	Tenant string `json:"tenant,omitempty"`
	// Hops counts the replies and published records between the record
	// that started this chain and this one, so a chain that feeds itself
	// (a reply into a topic that answers back) is cut off at maxHops.
	Hops int `json:"hops,omitempty"`
}

// SagaMeta places the event in a saga instance. An empty Saga means the event
// belongs to no saga (a direct action record).
type SagaMeta struct {
	Saga            string `json:"saga,omitempty"`
	Version         int    `json:"version,omitempty"`
	StepID          string `json:"stepId,omitempty"`
	RunnerPartition int32  `json:"runnerPartition"`
	// Seq counts the steps the instance has taken. A replayed record
	// repeats the same numbers while a step entered again by a loop gets a
	// new one, which is how a task step tells a replay from a re-entry.
	Seq int `json:"seq,omitempty"`
}

// EventMeta says which action the event asks for and how.
type EventMeta struct {
	Action        string          `json:"action,omitempty"`
	Domain        string          `json:"domain,omitempty"`
	InputElement  string          `json:"inputElement,omitempty"`
	OutputElement string          `json:"outputElement,omitempty"`
	Parameters    json.RawMessage `json:"parameters,omitempty"`
}

// Result is the outcome of the last step.
type Result struct {
	Status  string `json:"status,omitempty"`
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
	// Outcome is the outcome a task was completed with (SPEC §12), carried
	// by the continuation of its saga so a StartTask step can route on it.
	Outcome string `json:"outcome,omitempty"`
}

// Record is one Kafka record to produce. The engine returns records instead of
// producing them so the runner can make them durable before committing.
type Record struct {
	Topic   string
	Key     []byte
	Value   []byte
	Headers []Header
}

// Header is a Kafka record header.
type Header struct {
	Key   string
	Value []byte
}

// ErrNotEnvelope is returned by Decode for a value it does not take: not a
// JSON object, or an envelope the strict rules refuse. It is permanent: the
// record goes to the dead-letter topic.
var ErrNotEnvelope = errors.New("envelope: record value is not a valid envelope")

// envelopeKeys are the top-level keys that make an object an envelope rather
// than a bare payload. They are matched exactly: a business object with a
// "Payload" field is still bare.
var envelopeKeys = [...]string{"requestMeta", "sagaMeta", "eventMeta", "payload", "result"}

// Decode parses a record value. A bare JSON object, one without any exact
// envelope key, becomes payload.parameters of a new request whatever its
// keys; newID supplies its requestId. An envelope is read strictly (SPEC
// §11): a key repeated in the top-level object or in requestMeta, sagaMeta,
// eventMeta or result (compared unescaped and regardless of letter case),
// and a key there that names a field in the wrong letter case ("USER",
// "RequestMeta") are errors; so is invalid UTF-8 or an unpaired surrogate
// escape anywhere in the value, bare or not. What Decode accepts it reads
// exactly as encoding/json would. Decode never panics; every refusal is an
// error wrapping ErrNotEnvelope that says why, and the returned envelope
// shares no memory with value.
func Decode(value []byte, newID func() string) (*Envelope, error) {
	e := &Envelope{}
	isEnvelope, err := decodeObject(value, e)
	_, notObj := err.(*notObject)
	_, badText := err.(*badText)
	switch {
	case err == errInvalid:
		return nil, fmt.Errorf("%w: invalid JSON", ErrNotEnvelope)
	case notObj, badText:
		return nil, fmt.Errorf("%w: %v", ErrNotEnvelope, err)
	case !isEnvelope:
		// Keys that only fold to envelope names may have been refused;
		// the object is business data all the same.
		*e = Envelope{}
		v := bytes.TrimSpace(value)
		p := make(json.RawMessage, 0, len(v)+len(`{"parameters":}`))
		e.Payload = append(append(append(p, `{"parameters":`...), v...), '}')
	case err != nil:
		return nil, fmt.Errorf("%w: %v", ErrNotEnvelope, err)
	}
	if e.RequestMeta.RequestID == "" && newID != nil {
		e.RequestMeta.RequestID = newID()
	}
	if len(e.Payload) == 0 || string(e.Payload) == "null" {
		e.Payload = json.RawMessage(`{}`)
	}
	return e, nil
}

// Encode marshals the envelope: the fields of the struct tags in their
// order, empty ones omitted as the tags say. Strings are escaped as
// encoding/json escapes them, without HTML escaping; Payload and Parameters
// are written as they are, so they must hold valid JSON (every writer goes
// through Decode, sjson or an encoder).
func (e *Envelope) Encode() []byte {
	return e.appendJSON(make([]byte, 0, e.encodedSize()))
}

// Clone returns a deep copy, so a step can change its copy freely.
func (e *Envelope) Clone() *Envelope {
	c := *e
	c.RequestMeta.Roles = append([]string(nil), e.RequestMeta.Roles...)
	c.Payload = append(json.RawMessage(nil), e.Payload...)
	c.EventMeta.Parameters = append(json.RawMessage(nil), e.EventMeta.Parameters...)
	return &c
}

// Fail sets a FAIL result with a code and message.
func (e *Envelope) Fail(code, format string, args ...any) {
	e.Result = Result{Status: StatusFail, Code: code, Message: fmt.Sprintf(format, args...)}
}

// Succeed sets a SUCCESS result.
func (e *Envelope) Succeed() { e.Result = Result{Status: StatusSuccess} }

// IsRoot reports whether path resolves against the envelope root ("$." prefix).
func IsRoot(path string) bool { return strings.HasPrefix(path, "$.") || path == "$" }

// Get reads path from the payload, or from the envelope root when the path
// starts with "$.". An empty path returns the whole payload.
func (e *Envelope) Get(path string) gjson.Result {
	if IsRoot(path) {
		return GetIn(e.Encode(), path)
	}
	return GetIn(e.Payload, path)
}

// Set writes raw JSON at path in the payload, or in the envelope root when the
// path starts with "$.". An empty path replaces the whole payload.
func (e *Envelope) Set(path string, raw []byte) error {
	if IsRoot(path) {
		doc, err := SetIn(e.Encode(), path, raw)
		if err != nil {
			return err
		}
		var n Envelope
		if err := Unmarshal(doc, &n); err != nil {
			return fmt.Errorf("envelope: set %q: %w", path, err)
		}
		*e = n
		return nil
	}
	doc, err := SetIn(e.Payload, path, raw)
	if err != nil {
		return err
	}
	e.Payload = doc
	return nil
}

// GetIn reads a gjson path from doc; "$." or "$" prefixes are stripped and an
// empty path returns doc itself.
func GetIn(doc []byte, path string) gjson.Result {
	path = strings.TrimPrefix(strings.TrimPrefix(path, "$"), ".")
	if path == "" {
		return gjson.ParseBytes(doc)
	}
	return gjson.GetBytes(doc, path)
}

// SetIn writes raw JSON at an sjson path in doc; an empty path replaces doc.
func SetIn(doc []byte, path string, raw []byte) ([]byte, error) {
	path = strings.TrimPrefix(strings.TrimPrefix(path, "$"), ".")
	if path == "" {
		return append([]byte(nil), raw...), nil
	}
	if len(doc) == 0 {
		doc = []byte(`{}`)
	}
	out, err := sjson.SetRawBytes(doc, path, raw)
	if err != nil {
		return nil, fmt.Errorf("envelope: set %q: %w", path, err)
	}
	return out, nil
}
