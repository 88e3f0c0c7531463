package saga

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/jmespath/go-jmespath"
	"github.com/tidwall/gjson"

	"github.com/sagarunner/sagarunner/actions"
	"github.com/sagarunner/sagarunner/saga/envelope"
)

// Set is the loaded sagas, indexed for the runner and the gateway.
//
// Several versions of one saga may be loaded side by side (SPEC §13). The
// highest version of each name is its current one: only its trigger topic
// and path start instances, so a new instance always starts on it. Older
// versions stay loaded only so the instances started on them, which carry
// their version in sagaMeta, finish on the steps they started with.
type Set struct {
	// Sagas lists every loaded saga, every version, in load order.
	Sagas []*Saga
	// byName holds the current (highest) version of each name; versions
	// every loaded version of it, lowest first.
	byName   map[string]*Saga
	versions map[string][]*Saga
	byTopic  map[string][]*Saga
	byPath   map[string]*Saga
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
	// BusinessKeyPath (YAML trigger.businessKeyPath) is where the trigger
	// record names the instance's business key, read with the element-path
	// rules of SPEC §3 (against the payload, or the envelope root with
	// "$."); "" when the saga declares none. See BusinessKey.
	BusinessKeyPath string
	// OnCancel is the id of the step run when an instance is cancelled
	// ("" for none); the loader checks that it names a step.
	OnCancel string
	// Steps in file order; the first step is where an instance starts.
	Steps []*Step
	steps map[string]*Step
	// File and Line locate the definition, for messages.
	File string
	Line int
}

// Trigger says what starts an instance. Only the current version of a saga
// is started by its trigger (see Set).
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

// ByName returns the current version of a saga: the highest loaded, the
// one new instances start on.
func (s *Set) ByName(name string) (*Saga, bool) { g, ok := s.byName[name]; return g, ok }

// ByVersion returns exactly one version of a saga, the one an instance in
// flight continues on. There is no fallback to another version: an
// instance never moves to steps it did not start with.
func (s *Set) ByVersion(name string, version int) (*Saga, bool) {
	for _, g := range s.versions[name] {
		if g.Version == version {
			return g, true
		}
	}
	return nil, false
}

// Versions lists the loaded versions of a saga, lowest first (nil when no
// version of it is loaded).
func (s *Set) Versions(name string) []int {
	gs := s.versions[name]
	if len(gs) == 0 {
		return nil
	}
	out := make([]int, len(gs))
	for i, g := range gs {
		out[i] = g.Version
	}
	return out
}

// Current reports whether g is the current version of its saga, the one its
// trigger starts; an older version only finishes instances in flight.
func (s *Set) Current(g *Saga) bool { return s.byName[g.Name] == g }

// ByTopic returns the sagas a trigger topic starts: the current version of
// each saga triggered by it.
func (s *Set) ByTopic(topic string) []*Saga { return s.byTopic[topic] }

// ByPath returns the saga served on an HTTP path (a current version).
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

// MaxBusinessKeyLen bounds a business key: it is indexed and shown in
// listings, and the producer of a trigger record is not trusted to keep it
// short.
const MaxBusinessKeyLen = 256

// BusinessKey reads the instance's business key from a trigger envelope at
// BusinessKeyPath. A string is taken as it is, a number or boolean as
// written; anything else (absent, null, empty, an object or array, a value
// longer than MaxBusinessKeyLen bytes or with control characters) is no key
// and returns "": a trigger with a bad key still starts its instance, it is
// just not findable by one.
func (g *Saga) BusinessKey(env *envelope.Envelope) string {
	if g.BusinessKeyPath == "" || env == nil {
		return ""
	}
	v := env.Get(g.BusinessKeyPath)
	var key string
	switch v.Type {
	case gjson.String:
		key = v.Str
	case gjson.Number, gjson.True, gjson.False:
		key = v.Raw
	default:
		return ""
	}
	if len(key) > MaxBusinessKeyLen || !utf8.ValidString(key) {
		return ""
	}
	for _, r := range key {
		if unicode.IsControl(r) {
			return ""
		}
	}
	return key
}

// joinInts formats versions for messages: "1, 2".
func joinInts(vs []int) string {
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = strconv.Itoa(v)
	}
	return strings.Join(parts, ", ")
}
