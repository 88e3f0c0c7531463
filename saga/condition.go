package saga

import (
	"fmt"
	"strings"

	"github.com/jmespath/go-jmespath"
	"gopkg.in/yaml.v3"

	"github.com/sagarunner/sagarunner/saga/envelope"
)

// conditionTypes lists the condition types with what each needs.
var conditionTypes = []string{CondEventStatus, CondElementValue, CondHasElement, CondJMESPath}

// parseCondition reads a condition step. A condition runs on the runner and
// touches no state manager, so the action-only keys are rejected rather than
// silently ignored.
func (l *loader) parseCondition(file, what string, st *Step, n *yaml.Node) {
	for _, f := range []struct {
		key string
		set bool
	}{{"domain", st.Domain != ""}, {"inputElement", st.InputElement != ""},
		{"outputElement", st.OutputElement != ""}, {"parameters", st.lines.params > 0}} {
		if f.set {
			l.errorf(file, st.Line, 0, "%s: %s is not used by a condition step", what, f.key)
		}
	}
	c := &Condition{}
	var typeNode, elemNode, patNode *yaml.Node
	if !l.mapping(file, n, what+": condition", conditionKeys, func(key string, k, v *yaml.Node) {
		switch key {
		case "type":
			typeNode, c.Type = v, l.str(file, v, what+": condition type")
		case "element":
			elemNode, c.Element = v, l.str(file, v, what+": condition element")
		case "pattern":
			patNode, c.Pattern = v, l.str(file, v, what+": condition pattern")
		}
	}) {
		return
	}
	if typeNode == nil {
		l.nodeErrorf(file, n, "%s: condition has no type (known: %s)", what, strings.Join(conditionTypes, ", "))
		return
	}
	unused := func(node *yaml.Node, key string) {
		if node != nil {
			l.nodeErrorf(file, node, "%s: condition %s does not use %s", what, c.Type, key)
		}
	}
	switch c.Type {
	case CondEventStatus:
		unused(elemNode, "element")
		unused(patNode, "pattern")
		for value, line := range st.lines.route {
			if value != "" && !contains(statusRoutes, value) {
				l.errorf(file, line, 0, "%s: next: %q is not a status (known: %s)", what, value, strings.Join(statusRoutes, ", "))
			}
		}
	case CondElementValue, CondHasElement:
		unused(patNode, "pattern")
		if c.Element == "" {
			l.nodeErrorf(file, n, "%s: condition %s needs an element", what, c.Type)
		}
		if c.Type == CondHasElement {
			for value, line := range st.lines.route {
				if value != "" && value != "true" && value != "false" && value != "*" {
					l.errorf(file, line, 0, "%s: next: %q is not a value hasElement returns (known: true, false, *)", what, value)
				}
			}
		}
	case CondJMESPath:
		if c.Pattern == "" {
			l.nodeErrorf(file, n, "%s: condition jmespath needs a pattern", what)
			break
		}
		p, err := jmespath.Compile(c.Pattern)
		if err != nil {
			l.nodeErrorf(file, patNode, "%s: pattern %q does not compile: %v", what, c.Pattern, err)
			break
		}
		c.compiled = p
	default:
		l.nodeErrorf(file, typeNode, "%s: unknown condition type %q (known: %s)", what, c.Type, strings.Join(conditionTypes, ", "))
		return
	}
	st.Condition = c
}

// Evaluate returns the value a condition step routes on:
//   - eventStatus: the last step's result.status;
//   - elementValue: the value at Element as a string (strings unquoted, other
//     values as their JSON text, "" when absent or null);
//   - hasElement: "true" or "false";
//   - jmespath: Pattern applied to the value at Element (the whole payload
//     when Element is empty), strings unquoted, other values as JSON, ""
//     for null.
//
// An error means the data could not be read or the pattern failed on it.
func (c *Condition) Evaluate(env *envelope.Envelope) (value string, err error) {
	defer func() {
		// go-jmespath panics on some shapes it does not expect; a pattern
		// is user input and must fail the step, not the runner.
		if r := recover(); r != nil {
			value, err = "", fmt.Errorf("pattern %q panicked: %v", c.Pattern, r)
		}
	}()
	switch c.Type {
	case CondEventStatus:
		return env.Result.Status, nil
	case CondElementValue:
		return env.Get(c.Element).String(), nil
	case CondHasElement:
		if env.Get(c.Element).Exists() {
			return "true", nil
		}
		return "false", nil
	case CondJMESPath:
		p := c.compiled
		if p == nil {
			var err error
			if p, err = jmespath.Compile(c.Pattern); err != nil {
				return "", fmt.Errorf("pattern %q: %w", c.Pattern, err)
			}
		}
		raw := env.Get(c.Element)
		var data any
		if raw.Exists() {
			var err error
			if data, err = envelope.ParseValue([]byte(raw.Raw)); err != nil {
				return "", fmt.Errorf("element %q: %w", c.Element, err)
			}
		}
		v, err := p.Search(data)
		if err != nil {
			return "", fmt.Errorf("pattern %q: %w", c.Pattern, err)
		}
		switch v := v.(type) {
		case nil:
			return "", nil
		case string:
			return v, nil
		}
		b, err := envelope.AppendValue(nil, v)
		if err != nil {
			return "", fmt.Errorf("pattern %q: result: %w", c.Pattern, err)
		}
		return string(b), nil
	}
	return "", fmt.Errorf("unknown condition type %q", c.Type)
}
