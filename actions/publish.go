package actions

import (
	"context"
	"fmt"
	"strconv"

	"github.com/jmespath/go-jmespath"
	"github.com/tidwall/gjson"

	"github.com/sagarunner/sagarunner/saga/envelope"
)

func init() {
	Default.Register(&Spec{
		Name: "Publish",
		Doc: "Sends the event to a topic: the whole envelope, or the payload shaped by a JMESPath " +
			"pattern. The record is produced after the step, with the step's other effects.",
		Params: []Param{
			{Name: "topic", Type: String, Required: true, Doc: "Topic to publish to", Example: "job-posts-approved"},
			{Name: "pattern", Type: Pattern, Doc: "JMESPath pattern applied to the payload; its result is the record value. Without it the whole envelope is published", Example: "{id: parameters.productId, by: decision.user}"},
			{Name: "key", Type: Path, Doc: "Path of the record key in the payload (\"$.\" for the envelope root); default: the requestId", Example: "parameters.productId"},
		},
		New: func(c Config) (Action, error) {
			topic := c.String("topic")
			if err := ValidTopic(topic); err != nil {
				return nil, fmt.Errorf("parameter \"topic\": %w", err)
			}
			return &publish{topic: topic, pattern: c.Pattern("pattern"), raw: c.Raw["pattern"], key: c.String("key")}, nil
		},
	})
	Default.Register(&Spec{
		Name:          "Transform",
		Doc:           "Writes the result of a JMESPath pattern on the input at outputElement of the payload.",
		InputElement:  Optional,
		OutputElement: Required,
		Params: []Param{
			{Name: "pattern", Type: Pattern, Required: true, Doc: "JMESPath pattern applied to the input (the value at inputElement, or the whole payload)", Example: "{id: productId, summary: brief}"},
		},
		New: func(c Config) (Action, error) {
			return &transform{input: c.InputElement, output: c.OutputElement, pattern: c.Pattern("pattern"), raw: c.Raw["pattern"]}, nil
		},
	})
}

// CodeReservedTopic fails a step that would produce to a topic of the
// runner's own (its request, notification or dead-letter topic): a record
// there would be taken for the runner's own, or loop.
const CodeReservedTopic = "RESERVED_TOPIC"

// HopsHeader carries the hop count of a published record or a reply, so a
// Publish whose pattern drops the envelope still counts towards the
// runner's maxHops when its record comes back.
const HopsHeader = "sagarunner-hops"

// TopicWriter is implemented by built actions that produce to topics their
// configuration names, so the engine can refuse one aimed at the runner's
// own topics when a saga loads or a direct action is built, before any
// record runs it.
type TopicWriter interface {
	// WritesTo returns the topics the action may produce to.
	WritesTo() []string
}

var _ TopicWriter = (*publish)(nil)

// ValidTopic checks a Kafka topic name: 1 to 249 characters of
// [A-Za-z0-9._-], neither "." nor "..". A record aimed at any other name
// can never be produced, and would be retried for ever.
func ValidTopic(name string) error {
	if name == "" || name == "." || name == ".." || len(name) > 249 {
		return fmt.Errorf("%q is not a valid topic name", name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("topic name %q: only letters, digits, '.', '_' and '-' are allowed", name)
		}
	}
	return nil
}

type publish struct {
	topic   string
	pattern *jmespath.JMESPath
	raw     string
	key     string
}

func (a *publish) WritesTo() []string { return []string{a.topic} }

// Execute returns the record instead of producing it, so it becomes durable
// with the step's other effects before the offset is committed. The record
// is one hop further than the event: whole envelopes say so in
// requestMeta.hops, every record in HopsHeader.
func (a *publish) Execute(_ context.Context, x *Exec, env *envelope.Envelope) (Outcome, error) {
	// The engine refuses these when the action is built; this holds for
	// callers that build actions themselves.
	if x != nil && (a.topic == x.Topics.Continuations || a.topic == x.Topics.Notifications) {
		env.Fail(CodeReservedTopic, "Publish to %q: the runner's own topic", a.topic)
		return Outcome{Env: env}, nil
	}
	key := env.RequestMeta.RequestID
	if a.key != "" {
		k, ok, err := scalarString(env.Get(a.key))
		if err != nil || !ok {
			reason := "it resolves to nothing"
			if err != nil {
				reason = err.Error()
			}
			env.Fail(CodeBadInput, "key %q: %s", a.key, reason)
			return Outcome{Env: env}, nil
		}
		key = k
	}
	// The event goes out as it arrived at this step, previous result
	// included, so consumers see the outcome that led here. It is encoded
	// only when it is what goes out.
	var value []byte
	if a.pattern != nil {
		var ok bool
		if value, ok = shape(env, a.pattern, "pattern", a.raw, env.Payload); !ok {
			return Outcome{Env: env}, nil
		}
		if value, ok = ownIdentity(env, value); !ok {
			return Outcome{Env: env}, nil
		}
	} else {
		env.RequestMeta.Hops++
		value = env.Encode()
		env.RequestMeta.Hops--
	}
	env.Succeed()
	hops := []envelope.Header{{Key: HopsHeader, Value: strconv.AppendInt(nil, int64(env.RequestMeta.Hops+1), 10)}}
	return Outcome{Env: env, Records: []envelope.Record{{Topic: a.topic, Key: []byte(key), Value: value, Headers: hops}}}, nil
}

// ownIdentity keeps a pattern's result from carrying an identity: the data
// it shapes may come from a caller (an HTTP body is data), but a record the
// decoder reads as an envelope would hand the next saga whatever requestMeta
// that data spells. Such a result is re-stamped with the instance's own
// requestMeta, one hop further; one the decoder refuses fails the step.
func ownIdentity(env *envelope.Envelope, value []byte) ([]byte, bool) {
	if !envelopeShaped(value) {
		return value, true
	}
	out, err := envelope.Decode(value, nil)
	if err != nil {
		env.Fail(CodeBadInput, "Publish pattern result: %v", err)
		return nil, false
	}
	out.RequestMeta = env.RequestMeta
	out.RequestMeta.Roles = append([]string(nil), env.RequestMeta.Roles...)
	out.RequestMeta.Hops++
	return out.Encode(), true
}

// envelopeShaped reports whether value is an object with a top-level key
// that makes the decoder read it as an envelope (matched after unescaping,
// exactly, as the decoder matches them).
func envelopeShaped(value []byte) bool {
	v := gjson.ParseBytes(value)
	if !v.IsObject() {
		return false
	}
	shaped := false
	v.ForEach(func(k, _ gjson.Result) bool {
		switch k.String() {
		case "requestMeta", "sagaMeta", "eventMeta", "payload", "result":
			shaped = true
			return false
		}
		return true
	})
	return shaped
}

type transform struct {
	input   string
	output  string
	pattern *jmespath.JMESPath
	raw     string
}

func (a *transform) Execute(_ context.Context, _ *Exec, env *envelope.Envelope) (Outcome, error) {
	in, ok := input(env, a.input)
	if !ok {
		return Outcome{Env: env}, nil
	}
	out, ok := shape(env, a.pattern, "pattern", a.raw, in)
	if !ok {
		return Outcome{Env: env}, nil
	}
	if err := env.Set(a.output, out); err != nil {
		env.Fail(CodeBadInput, "output element %q: %v", a.output, err)
		return Outcome{Env: env}, nil
	}
	env.Succeed()
	return Outcome{Env: env}, nil
}
