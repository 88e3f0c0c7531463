package actions

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/jmespath/go-jmespath"
)

// ParamType is the declared type of an action parameter.
type ParamType int

const (
	// String accepts a YAML string (numbers and booleans are rejected).
	String ParamType = iota
	// Int accepts an integer.
	Int
	// Bool accepts true or false.
	Bool
	// Pattern is a JMESPath expression, compiled when the saga loads.
	Pattern
	// Path is a gjson/sjson element path.
	Path
)

func (t ParamType) String() string {
	return [...]string{"string", "integer", "boolean", "JMESPath pattern", "path"}[t]
}

// Param declares one parameter of an action.
type Param struct {
	Name     string
	Type     ParamType
	Required bool
	// Default applies when the parameter is absent (nil: no default).
	Default any
	Doc     string
	Example string
}

// Field says whether an action uses an event-meta field.
type Field int

const (
	Unused Field = iota
	Optional
	Required
)

// Spec declares an action: its name, the event-meta fields and parameters it
// takes, and how to build it. One Spec drives validation, building and docs.
type Spec struct {
	Name          string
	Doc           string
	Domain        Field
	InputElement  Field
	OutputElement Field
	Params        []Param
	// Sweeps says the action acts on many tasks at once (TimeoutBetween):
	// over HTTP only an admin may start a saga that runs it.
	Sweeps bool
	// Waits says the action parks the instance until a later record
	// resumes it (StartTask), which makes a loop through it legitimate.
	Waits bool
	// ClosesTask says the action closes one waiting task named in its
	// input (ProceedTask, TimeoutTask), so a request without a task id can
	// be refused before it travels.
	ClosesTask bool
	// New builds the action from checked, defaulted, compiled config.
	New func(c Config) (Action, error)
}

// Config is a step's action configuration after the Spec checked it.
type Config struct {
	Domain        string
	InputElement  string
	OutputElement string
	// Params holds every declared parameter that was given or has a
	// default: string, int64, bool, or *jmespath.JMESPath for patterns.
	Params map[string]any
	// Raw holds the pattern sources, for error messages.
	Raw map[string]string
}

// String returns a string or path parameter ("" when absent).
func (c Config) String(name string) string { s, _ := c.Params[name].(string); return s }

// Int returns an integer parameter (0 when absent).
func (c Config) Int(name string) int64 { n, _ := c.Params[name].(int64); return n }

// Bool returns a boolean parameter.
func (c Config) Bool(name string) bool { b, _ := c.Params[name].(bool); return b }

// Pattern returns a compiled pattern parameter (nil when absent).
func (c Config) Pattern(name string) *jmespath.JMESPath {
	p, _ := c.Params[name].(*jmespath.JMESPath)
	return p
}

// Has reports whether the parameter was given or defaulted.
func (c Config) Has(name string) bool { _, ok := c.Params[name]; return ok }

// Registry maps action names to Specs. Default holds the built-in actions.
type Registry struct {
	specs map[string]*Spec
}

// Default is the registry every built-in action registers in.
var Default = NewRegistry()

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{specs: map[string]*Spec{}} }

// Register adds a spec; a duplicate or malformed spec panics, at start-up.
func (r *Registry) Register(s *Spec) {
	if s.Name == "" || s.New == nil {
		panic("actions: Register: spec needs a Name and New")
	}
	if _, dup := r.specs[s.Name]; dup {
		panic("actions: Register: duplicate action " + s.Name)
	}
	r.specs[s.Name] = s
}

// Lookup returns the spec of an action.
func (r *Registry) Lookup(name string) (*Spec, bool) { s, ok := r.specs[name]; return s, ok }

// Names returns the registered action names, sorted.
func (r *Registry) Names() []string {
	out := make([]string, 0, len(r.specs))
	for n := range r.specs {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Input is an action configuration as written in YAML or in an event's
// eventMeta, before checking.
type Input struct {
	Domain        string
	InputElement  string
	OutputElement string
	Params        map[string]any
}

// ParamError is one problem with one parameter; Param is empty for problems
// with the event-meta fields.
type ParamError struct {
	Param  string
	Reason string
}

func (e *ParamError) Error() string {
	if e.Param == "" {
		return e.Reason
	}
	return fmt.Sprintf("parameter %q: %s", e.Param, e.Reason)
}

// Check validates in against the spec and returns the typed config, or every
// problem found.
func (s *Spec) Check(in Input) (Config, []*ParamError) {
	var errs []*ParamError
	c := Config{Domain: in.Domain, InputElement: in.InputElement, OutputElement: in.OutputElement,
		Params: map[string]any{}, Raw: map[string]string{}}
	field := func(name string, f Field, v string) {
		switch {
		case f == Required && v == "":
			errs = append(errs, &ParamError{Reason: fmt.Sprintf("%s is required by %s", name, s.Name)})
		case f == Unused && v != "":
			errs = append(errs, &ParamError{Reason: fmt.Sprintf("%s is not used by %s", name, s.Name)})
		}
	}
	field("domain", s.Domain, in.Domain)
	field("inputElement", s.InputElement, in.InputElement)
	field("outputElement", s.OutputElement, in.OutputElement)

	declared := map[string]*Param{}
	for i := range s.Params {
		declared[s.Params[i].Name] = &s.Params[i]
	}
	var unknown []string
	for name := range in.Params {
		if _, ok := declared[name]; !ok {
			unknown = append(unknown, name)
		}
	}
	sort.Strings(unknown)
	for _, name := range unknown {
		errs = append(errs, &ParamError{Param: name, Reason: fmt.Sprintf("unknown parameter of %s (known: %s)", s.Name, s.paramNames())})
	}
	for i := range s.Params {
		p := &s.Params[i]
		v, given := in.Params[p.Name]
		if !given || v == nil {
			if p.Required {
				errs = append(errs, &ParamError{Param: p.Name, Reason: "required"})
				continue
			}
			if p.Default == nil {
				continue
			}
			v = p.Default
		}
		typed, err := convert(p.Type, v)
		if err != nil {
			errs = append(errs, &ParamError{Param: p.Name, Reason: err.Error()})
			continue
		}
		if p.Type == Pattern {
			c.Raw[p.Name] = v.(string)
		}
		c.Params[p.Name] = typed
	}
	return c, errs
}

// Build checks in and builds the action.
func (s *Spec) Build(in Input) (Action, []*ParamError) {
	c, errs := s.Check(in)
	if len(errs) > 0 {
		return nil, errs
	}
	a, err := s.New(c)
	if err != nil {
		return nil, []*ParamError{{Reason: err.Error()}}
	}
	return a, nil
}

func (s *Spec) paramNames() string {
	names := make([]string, len(s.Params))
	for i, p := range s.Params {
		names[i] = p.Name
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

func convert(t ParamType, v any) (any, error) {
	switch t {
	case String, Path:
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("want a %s, got %T", t, v)
		}
		return s, nil
	case Pattern:
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("want a JMESPath pattern string, got %T", v)
		}
		p, err := jmespath.Compile(s)
		if err != nil {
			return nil, fmt.Errorf("pattern %q does not compile: %v", s, err)
		}
		return p, nil
	case Int:
		switch n := v.(type) {
		case int:
			return int64(n), nil
		case int64:
			return n, nil
		case uint64:
			return int64(n), nil
		case float64:
			if n != float64(int64(n)) {
				return nil, fmt.Errorf("want an integer, got %v", n)
			}
			return int64(n), nil
		case json.Number:
			i, err := n.Int64()
			if err != nil {
				return nil, fmt.Errorf("want an integer, got %v", n)
			}
			return i, nil
		}
		return nil, fmt.Errorf("want an integer, got %T", v)
	case Bool:
		b, ok := v.(bool)
		if !ok {
			return nil, fmt.Errorf("want true or false, got %T", v)
		}
		return b, nil
	}
	return nil, fmt.Errorf("unknown parameter type %d", t)
}
