package saga

import (
	"github.com/jmespath/go-jmespath"

	"github.com/sagarunner/sagarunner/actions"
	"github.com/sagarunner/sagarunner/saga/envelope"
)

// Set is the loaded sagas, indexed for the runner and the gateway.
type Set struct {
	Sagas   []*Saga
	byName  map[string]*Saga
	byTopic map[string][]*Saga
	byPath  map[string]*Saga
}

// Saga is one loaded, validated saga definition (SPEC §4).
type Saga struct {
	Name    string
	Version int
	// Description is free text for people reading the definition.
	Description string
	Trigger     Trigger
	// AutoFail: a FAIL with no route fails the instance (default true).
	AutoFail bool
	// Steps in file order; the first step is where an instance starts.
	Steps []*Step
	steps map[string]*Step
	// File and Line locate the definition, for messages.
	File string
	Line int
}

// Trigger says what starts an instance.
type Trigger struct {
	Topic string
	Path  string
}

// Step is either an action step (Action set) or a condition step
// (Condition set).
type Step struct {
	ID            string
	ActionName    string
	Domain        string
	InputElement  string
	OutputElement string
	// Params are the raw YAML parameters; Action is built from them.
	Params    map[string]any
	Action    actions.Action
	Condition *Condition
	// Next maps a status or condition value to a step id; "*" is the else
	// route. Always, when set, is taken whatever the status.
	Next   map[string]string
	Always string
	Line   int

	// meta is the eventMeta an action step stamps on the envelope, built
	// once at load time so a step costs no marshalling of its parameters.
	meta envelope.EventMeta
	// lines locates the step's parts, for validation messages.
	lines stepLines
}

// stepLines are the YAML lines of a step's parts (0 when absent).
type stepLines struct {
	action, params, condition, next int
	param                           map[string]int
	route                           map[string]int
}

// Condition types.
const (
	CondEventStatus  = "eventStatus"
	CondElementValue = "elementValue"
	CondHasElement   = "hasElement"
	CondJMESPath     = "jmespath"
)

// Condition computes a string to route on.
type Condition struct {
	Type    string
	Element string
	Pattern string
	// compiled is Pattern compiled at load time.
	compiled *jmespath.JMESPath
}

// ByName returns a saga by name.
func (s *Set) ByName(name string) (*Saga, bool) { g, ok := s.byName[name]; return g, ok }

// ByTopic returns the sagas a trigger topic starts.
func (s *Set) ByTopic(topic string) []*Saga { return s.byTopic[topic] }

// ByPath returns the saga served on an HTTP path.
func (s *Set) ByPath(path string) (*Saga, bool) { g, ok := s.byPath[path]; return g, ok }

// Topics returns every trigger topic, sorted.
func (s *Set) Topics() []string {
	out := make([]string, 0, len(s.byTopic))
	for t := range s.byTopic {
		out = append(out, t)
	}
	sortStrings(out)
	return out
}

// Paths returns every trigger path, sorted.
func (s *Set) Paths() []string {
	out := make([]string, 0, len(s.byPath))
	for p := range s.byPath {
		out = append(out, p)
	}
	sortStrings(out)
	return out
}

// Step returns a step by id.
func (g *Saga) Step(id string) (*Step, bool) { st, ok := g.steps[id]; return st, ok }
