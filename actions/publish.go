package actions

import (
	"context"

	"github.com/jmespath/go-jmespath"

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
			return &publish{topic: c.String("topic"), pattern: c.Pattern("pattern"), raw: c.Raw["pattern"], key: c.String("key")}, nil
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

type publish struct {
	topic   string
	pattern *jmespath.JMESPath
	raw     string
	key     string
}

// Execute returns the record instead of producing it, so it becomes durable
// with the step's other effects before the offset is committed.
func (a *publish) Execute(_ context.Context, _ *Exec, env *envelope.Envelope) (Outcome, error) {
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
	} else {
		value = env.Encode()
	}
	env.Succeed()
	return Outcome{Env: env, Records: []envelope.Record{{Topic: a.topic, Key: []byte(key), Value: value}}}, nil
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
