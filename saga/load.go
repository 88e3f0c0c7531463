package saga

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/sagarunner/sagarunner/actions"
	"github.com/sagarunner/sagarunner/saga/envelope"
)

// FileError is one problem in one saga file. Line and Col are 1-based; 0
// means the problem is about the whole file.
type FileError struct {
	File   string
	Line   int
	Col    int
	Reason string
}

// Error formats the problem as file:line:col: reason, the shape editors and
// CI logs link to; the column is left out when it is not known (problems
// about a whole step or saga, YAML syntax errors), and the line too when
// the problem is about the whole file.
func (e FileError) Error() string {
	switch {
	case e.Line <= 0:
		return fmt.Sprintf("%s: %s", e.File, e.Reason)
	case e.Col <= 0:
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Reason)
	}
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Reason)
}

// LoadError holds every problem found while loading sagas. Loading never stops
// at the first problem: a saga author fixes a whole file in one round.
type LoadError struct {
	Errors []FileError
}

// Error lists the problems one per line, ordered by file and line.
func (e *LoadError) Error() string {
	lines := make([]string, len(e.Errors))
	for i, fe := range e.Errors {
		lines[i] = fe.Error()
	}
	return strings.Join(lines, "\n")
}

// Load reads saga definitions from files and folders (every *.yaml and *.yml
// below a folder, in name order) and validates them as one set, so duplicate
// names and trigger paths across files are caught. reg defaults to
// actions.Default. Any problem yields a *LoadError listing all of them.
func Load(reg *actions.Registry, paths ...string) (*Set, error) {
	l := newLoader(reg)
	for _, p := range paths {
		l.addPath(p)
	}
	return l.finish()
}

// BuiltInPrefix starts the file name of a built-in saga in messages, so a
// problem or a duplicate is never mistaken for one in the user's folder.
const BuiltInPrefix = "<built-in>/"

// Shadowed is a built-in saga left out because a user's saga replaces it.
type Shadowed struct {
	// BuiltIn is the saga left out; By is the user's saga served instead,
	// which has the same name or the same trigger path.
	BuiltIn, By *Saga
	// Same reports that By's file is a byte-for-byte copy of the built-in
	// file, as in the folder shipped with the sources: nothing is replaced
	// in effect, so there is nothing to warn about.
	Same bool
}

// LoadWithBuiltIns loads paths as Load does, then adds the sagas of
// builtIn (file name → YAML) that no loaded saga replaces: a user's saga
// with the same name or the same trigger path wins, and is reported in
// shadowed. A built-in therefore never makes a duplicate, and the user's
// folder can always override one. Built-in files are named BuiltInPrefix
// plus their file name in messages.
func LoadWithBuiltIns(reg *actions.Registry, builtIn map[string][]byte, paths ...string) (set *Set, shadowed []Shadowed, err error) {
	l := newLoader(reg)
	for _, p := range paths {
		l.addPath(p)
	}
	b := newLoader(reg)
	names := make([]string, 0, len(builtIn))
	for name := range builtIn {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		b.parseFile(BuiltInPrefix+name, builtIn[name])
	}
	l.errs = append(l.errs, b.errs...)
	for _, g := range b.sagas {
		by := replacing(l.sagas, g)
		if by == nil {
			l.sagas = append(l.sagas, g)
			continue
		}
		same := l.files[by.File] != nil && bytes.Equal(l.files[by.File], b.files[g.File])
		shadowed = append(shadowed, Shadowed{BuiltIn: g, By: by, Same: same})
	}
	set, err = l.finish()
	if err != nil {
		return nil, nil, err
	}
	return set, shadowed, nil
}

// replacing returns the saga of user that takes the place of the built-in
// g: the first with its name, or the first current version (the highest of
// its name) with its trigger path. An older version's path serves nothing,
// so it replaces nothing.
func replacing(user []*Saga, g *Saga) *Saga {
	for _, u := range user {
		if u.Name == g.Name {
			return u
		}
	}
	if g.Trigger.Path == "" {
		return nil
	}
	for _, u := range user {
		if u.Trigger.Path == g.Trigger.Path && !superseded(user, u) {
			return u
		}
	}
	return nil
}

// superseded reports whether sagas hold a higher version of u's saga.
func superseded(sagas []*Saga, u *Saga) bool {
	for _, o := range sagas {
		if o.Name == u.Name && o.Version > u.Version {
			return true
		}
	}
	return false
}

// LoadBytes loads the sagas of one YAML document stream; name is used as the
// file name in messages.
func LoadBytes(reg *actions.Registry, name string, data []byte) (*Set, error) {
	l := newLoader(reg)
	l.parseFile(name, data)
	return l.finish()
}

// loader collects sagas and problems across files.
type loader struct {
	reg   *actions.Registry
	errs  []FileError
	sagas []*Saga
	// files keeps each file's bytes, so a user's copy of a built-in file
	// can be told from a real replacement.
	files map[string][]byte
}

func newLoader(reg *actions.Registry) *loader {
	if reg == nil {
		reg = actions.Default
	}
	return &loader{reg: reg, files: map[string][]byte{}}
}

func (l *loader) errorf(file string, line, col int, format string, args ...any) {
	l.errs = append(l.errs, FileError{File: file, Line: line, Col: col, Reason: fmt.Sprintf(format, args...)})
}

// nodeErrorf reports a problem at a YAML node.
func (l *loader) nodeErrorf(file string, n *yaml.Node, format string, args ...any) {
	l.errorf(file, n.Line, n.Column, format, args...)
}

func isSagaFile(name string) bool {
	ext := strings.ToLower(filepath.Ext(name))
	return ext == ".yaml" || ext == ".yml"
}

func (l *loader) addPath(path string) {
	info, err := os.Stat(path)
	if err != nil {
		l.errorf(path, 0, 0, "%v", unwrapPathError(err))
		return
	}
	if !info.IsDir() {
		l.readFile(path)
		return
	}
	var files []string
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			l.errorf(p, 0, 0, "%v", unwrapPathError(err))
			return nil
		}
		if !d.IsDir() && isSagaFile(d.Name()) {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		l.errorf(path, 0, 0, "%v", err)
	}
	sort.Strings(files)
	for _, f := range files {
		l.readFile(f)
	}
}

// unwrapPathError drops the path from an *fs.PathError, which the message
// already starts with.
func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func (l *loader) readFile(path string) {
	data, err := os.ReadFile(path)
	if err != nil {
		l.errorf(path, 0, 0, "%v", unwrapPathError(err))
		return
	}
	l.parseFile(path, data)
}

// yamlLine finds the line yaml.v3 puts in its syntax errors ("yaml: line 3: ...").
var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

func (l *loader) yamlError(file string, err error) {
	var te *yaml.TypeError
	msgs := []string{err.Error()}
	if errors.As(err, &te) {
		msgs = te.Errors
	}
	for _, m := range msgs {
		if sub := yamlLine.FindStringSubmatch(m); sub != nil {
			line, _ := strconv.Atoi(sub[1])
			l.errorf(file, line, 0, "invalid YAML: %s", sub[2])
			continue
		}
		l.errorf(file, 0, 0, "invalid YAML: %s", strings.TrimPrefix(m, "yaml: "))
	}
}

// parseFile reads every YAML document of a file; each document is one saga.
func (l *loader) parseFile(file string, data []byte) {
	l.files[file] = data
	dec := yaml.NewDecoder(bytes.NewReader(data))
	found := 0
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			l.yamlError(file, err)
			return
		}
		if len(doc.Content) == 0 {
			continue
		}
		root := resolve(doc.Content[0])
		if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
			continue // an empty document between separators
		}
		found++
		if g := l.parseSaga(file, root); g != nil {
			l.sagas = append(l.sagas, g)
		}
	}
	if found == 0 {
		l.errorf(file, 0, 0, "no saga definition in file")
	}
}

// resolve follows YAML aliases to the node they name.
func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// mapping walks the key/value pairs of a mapping node, reporting a node that
// is not a mapping, duplicate keys and keys outside known. what names the
// mapping in messages ("saga", "step \"approve\"").
func (l *loader) mapping(file string, n *yaml.Node, what string, known []string, fn func(key string, k, v *yaml.Node)) bool {
	n = resolve(n)
	if n.Kind != yaml.MappingNode {
		l.nodeErrorf(file, n, "%s must be a mapping with keys %s", what, strings.Join(known, ", "))
		return false
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), resolve(n.Content[i+1])
		key := k.Value
		if first, dup := seen[key]; dup {
			l.nodeErrorf(file, k, "%s: duplicate key %q (first at line %d)", what, key, first)
			continue
		}
		seen[key] = k.Line
		if !contains(known, key) {
			l.nodeErrorf(file, k, "%s: unknown key %q (known: %s)", what, key, strings.Join(known, ", "))
			continue
		}
		fn(key, k, v)
	}
	return true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// str reads a scalar as written. Numbers and booleans are accepted as their
// text, so `id: 1` is the step "1".
func (l *loader) str(file string, n *yaml.Node, what string) string {
	if n.Kind != yaml.ScalarNode {
		l.nodeErrorf(file, n, "%s must be a string", what)
		return ""
	}
	if n.Tag == "!!null" {
		return ""
	}
	return n.Value
}

func (l *loader) integer(file string, n *yaml.Node, what string) (int, bool) {
	var v int
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || n.Decode(&v) != nil {
		l.nodeErrorf(file, n, "%s must be an integer, got %q", what, n.Value)
		return 0, false
	}
	return v, true
}

func (l *loader) boolean(file string, n *yaml.Node, what string) (bool, bool) {
	var v bool
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" || n.Decode(&v) != nil {
		l.nodeErrorf(file, n, "%s must be true or false, got %q", what, n.Value)
		return false, false
	}
	return v, true
}

var (
	sagaKeys      = []string{"saga", "description", "version", "trigger", "autoFail", "onCancel", "steps"}
	triggerKeys   = []string{"topic", "path", "businessKeyPath"}
	stepKeys      = []string{"id", "action", "domain", "inputElement", "outputElement", "parameters", "condition", "next"}
	conditionKeys = []string{"type", "element", "pattern"}
)

// parseSaga reads one saga document and validates it on its own; problems
// across sagas are checked by finish.
func (l *loader) parseSaga(file string, n *yaml.Node) *Saga {
	g := &Saga{Version: 1, AutoFail: true, File: file, Line: n.Line, steps: map[string]*Step{}}
	var stepsNode, triggerNode, onCancelNode *yaml.Node
	nErrs := len(l.errs)
	ok := l.mapping(file, n, "saga", sagaKeys, func(key string, k, v *yaml.Node) {
		switch key {
		case "saga":
			g.Name = l.str(file, v, "saga")
			if g.Name == "" && v.Kind == yaml.ScalarNode {
				l.nodeErrorf(file, v, "saga: the name must not be empty")
			}
		case "description":
			g.Description = l.str(file, v, "description")
		case "version":
			if ver, ok := l.integer(file, v, "version"); ok {
				if ver < 1 {
					l.nodeErrorf(file, v, "version must be 1 or more, got %d", ver)
				}
				g.Version = ver
			}
		case "autoFail":
			if b, ok := l.boolean(file, v, "autoFail"); ok {
				g.AutoFail = b
			}
		case "onCancel":
			onCancelNode = v
			g.OnCancel = l.str(file, v, "onCancel")
			if g.OnCancel == "" && v.Kind == yaml.ScalarNode {
				l.nodeErrorf(file, v, "onCancel must name a step")
			}
		case "trigger":
			triggerNode = v
			l.mapping(file, v, "trigger", triggerKeys, func(key string, k, v *yaml.Node) {
				s := l.str(file, v, "trigger "+key)
				switch key {
				case "topic":
					g.Trigger.Topic = s
				case "businessKeyPath":
					if reason := badBusinessKeyPath(s); reason != "" && v.Kind == yaml.ScalarNode {
						l.nodeErrorf(file, v, "trigger businessKeyPath %s", reason)
						return
					}
					g.BusinessKeyPath = s
				default:
					g.Trigger.Path = s
					if s != "" && !strings.HasPrefix(s, "/") {
						l.nodeErrorf(file, v, "trigger path %q must start with /", s)
					}
				}
			})
		case "steps":
			stepsNode = v
		}
	})
	if !ok {
		return nil
	}
	name := g.Name
	if name == "" {
		if _, given := findKey(n, "saga"); !given {
			l.nodeErrorf(file, n, "saga has no name: add the key saga")
		}
		name = "(unnamed)"
	}
	if g.Trigger.Topic == "" && g.Trigger.Path == "" {
		at := n
		if triggerNode != nil {
			at = triggerNode
		}
		l.nodeErrorf(file, at, "saga %q has no trigger: set trigger.topic and/or trigger.path", name)
	}
	if stepsNode == nil {
		l.nodeErrorf(file, n, "saga %q has no steps", name)
		return nil
	}
	if stepsNode.Kind != yaml.SequenceNode {
		l.nodeErrorf(file, stepsNode, "saga %q: steps must be a list", name)
		return nil
	}
	if len(stepsNode.Content) == 0 {
		l.nodeErrorf(file, stepsNode, "saga %q has no steps", name)
		return nil
	}
	for _, sn := range stepsNode.Content {
		st := l.parseStep(file, resolve(sn))
		if st == nil {
			continue
		}
		if st.ID == "" {
			continue // reported by parseStep
		}
		if first, dup := g.steps[st.ID]; dup {
			l.errorf(file, st.Line, 0, "saga %q: duplicate step id %q (first at line %d)", name, st.ID, first.Line)
			continue
		}
		g.steps[st.ID] = st
		g.Steps = append(g.Steps, st)
	}
	if onCancelNode != nil && g.OnCancel != "" {
		if _, ok := g.steps[g.OnCancel]; !ok {
			l.nodeErrorf(file, onCancelNode, "saga %q: onCancel names unknown step %q (steps: %s)", name, g.OnCancel, strings.Join(stepIDs(g), ", "))
			g.OnCancel = ""
		}
	}
	l.validateGraph(file, g, name)
	if len(l.errs) > nErrs {
		return nil
	}
	return g
}

// maxBusinessKeyPathLen bounds trigger.businessKeyPath; a real path is a few
// names long.
const maxBusinessKeyPathLen = 256

// badBusinessKeyPath says why s cannot be a trigger.businessKeyPath, or "".
// It is an element path as every *Path parameter is (SPEC §3), but it must
// name a value inside the record: the whole payload or envelope is no key,
// and gjson's @modifiers and | pipes compute values instead of reading one.
func badBusinessKeyPath(s string) string {
	bare := strings.TrimPrefix(strings.TrimPrefix(s, "$"), ".")
	switch {
	case bare == "":
		return fmt.Sprintf("%q names the whole record, not a value in it: give the path of the key, e.g. parameters.applicationId", s)
	case len(s) > maxBusinessKeyPathLen:
		return fmt.Sprintf("is %d bytes long, the limit is %d", len(s), maxBusinessKeyPathLen)
	case strings.HasPrefix(bare, "@") || strings.Contains(bare, ".@") || strings.Contains(s, "|"):
		return fmt.Sprintf("%q: modifiers (@) and pipes (|) are not allowed, only a path to one value", s)
	case strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f }):
		return fmt.Sprintf("%q contains control characters", s)
	case strings.HasSuffix(bare, ".") || strings.Contains(bare, ".."):
		return fmt.Sprintf("%q has an empty path element", s)
	}
	return ""
}

// stepIDs lists a saga's step ids in file order, for messages.
func stepIDs(g *Saga) []string {
	ids := make([]string, len(g.Steps))
	for i, st := range g.Steps {
		ids[i] = st.ID
	}
	return ids
}

// findKey returns the value node of key in a mapping.
func findKey(n *yaml.Node, key string) (*yaml.Node, bool) {
	n = resolve(n)
	if n.Kind != yaml.MappingNode {
		return nil, false
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return resolve(n.Content[i+1]), true
		}
	}
	return nil, false
}

// parseStep reads one step and builds its action or condition. It returns
// nil only when the step is not a mapping at all.
func (l *loader) parseStep(file string, n *yaml.Node) *Step {
	st := &Step{Line: n.Line}
	st.lines.param = map[string]int{}
	st.lines.route = map[string]int{}
	what := "step"
	if idNode, ok := findKey(n, "id"); ok && idNode.Kind == yaml.ScalarNode && idNode.Value != "" {
		what = fmt.Sprintf("step %q", idNode.Value)
	}
	var paramsNode, condNode *yaml.Node
	ok := l.mapping(file, n, what, stepKeys, func(key string, k, v *yaml.Node) {
		switch key {
		case "id":
			st.ID = l.str(file, v, what+": id")
		case "action":
			st.ActionName = l.str(file, v, what+": action")
			st.lines.action = k.Line
		case "domain":
			st.Domain = l.str(file, v, what+": domain")
		case "inputElement":
			st.InputElement = l.str(file, v, what+": inputElement")
		case "outputElement":
			st.OutputElement = l.str(file, v, what+": outputElement")
		case "parameters":
			paramsNode = v
			st.lines.params = k.Line
		case "condition":
			condNode = v
			st.lines.condition = k.Line
		case "next":
			st.lines.next = k.Line
			l.parseNext(file, what, st, v)
		}
	})
	if !ok {
		return nil
	}
	if st.ID == "" {
		l.nodeErrorf(file, n, "step has no id")
	}
	if paramsNode != nil {
		st.Params = l.parseParams(file, what, st, paramsNode)
	}
	switch {
	case st.ActionName != "" && condNode != nil:
		l.errorf(file, st.lines.condition, 0, "%s has both an action and a condition: a step is one or the other", what)
	case st.ActionName == "" && condNode == nil:
		l.nodeErrorf(file, n, "%s has neither an action nor a condition", what)
	case condNode != nil:
		l.parseCondition(file, what, st, condNode)
	default:
		l.buildAction(file, what, st)
	}
	return st
}

// parseParams decodes the parameters mapping into plain values, remembering
// the line of each so a parameter problem points at its line.
func (l *loader) parseParams(file, what string, st *Step, n *yaml.Node) map[string]any {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		l.nodeErrorf(file, n, "%s: parameters must be a mapping", what)
		return nil
	}
	params := map[string]any{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), resolve(n.Content[i+1])
		if first, dup := st.lines.param[k.Value]; dup {
			l.nodeErrorf(file, k, "%s: duplicate parameter %q (first at line %d)", what, k.Value, first)
			continue
		}
		st.lines.param[k.Value] = k.Line
		var val any
		if err := v.Decode(&val); err != nil {
			l.nodeErrorf(file, v, "%s: parameter %q: %v", what, k.Value, err)
			continue
		}
		params[k.Value] = val
	}
	return params
}

// parseNext reads next: a mapping of status or value to step id, or a
// single step id meaning "always".
func (l *loader) parseNext(file, what string, st *Step, n *yaml.Node) {
	switch n.Kind {
	case yaml.ScalarNode:
		st.Always = l.str(file, n, what+": next")
		if st.Always == "" {
			l.nodeErrorf(file, n, "%s: next must name a step", what)
		}
		st.lines.route[""] = n.Line
	case yaml.MappingNode:
		st.Next = map[string]string{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := resolve(n.Content[i]), resolve(n.Content[i+1])
			if _, dup := st.Next[k.Value]; dup {
				l.nodeErrorf(file, k, "%s: next: duplicate route %q (first at line %d)", what, k.Value, st.lines.route[k.Value])
				continue
			}
			target := l.str(file, v, fmt.Sprintf("%s: next %q", what, k.Value))
			if target == "" && v.Kind == yaml.ScalarNode {
				l.nodeErrorf(file, v, "%s: next %q must name a step", what, k.Value)
			}
			st.Next[k.Value] = target
			st.lines.route[k.Value] = k.Line
		}
	default:
		l.nodeErrorf(file, n, "%s: next must be a step id or a mapping of status or value to step id", what)
	}
}

// Statuses an action step can route on.
var statusRoutes = []string{envelope.StatusSuccess, envelope.StatusFail, envelope.StatusTimeout, envelope.StatusCancelled, "*"}

// buildAction builds the step's action through the registry, so every
// parameter is type-checked and every pattern compiled before any record
// arrives.
func (l *loader) buildAction(file, what string, st *Step) {
	spec, ok := l.reg.Lookup(st.ActionName)
	if !ok {
		l.errorf(file, st.lines.action, 0, "%s: unknown action %q (known: %s)", what, st.ActionName, strings.Join(l.reg.Names(), ", "))
		return
	}
	a, perrs := spec.Build(actions.Input{Domain: st.Domain, InputElement: st.InputElement, OutputElement: st.OutputElement, Params: st.Params})
	// A task step may also route on the outcomes it declares; they are
	// known once the action is built, and a step that failed to build has
	// its error already, so its routes are checked against statuses only.
	known := statusRoutes
	if o, ok := a.(actions.Outcomer); ok && len(perrs) == 0 && len(o.Outcomes()) > 0 {
		known = append(append([]string(nil), o.Outcomes()...), statusRoutes...)
	}
	for value, line := range st.lines.route {
		if value == "" || contains(known, value) {
			continue
		}
		if len(known) > len(statusRoutes) {
			l.errorf(file, line, 0, "%s: next: %q is neither a declared outcome nor a status an action returns (known: %s)", what, value, strings.Join(known, ", "))
		} else {
			l.errorf(file, line, 0, "%s: next: %q is not a status an action returns (known: %s)", what, value, strings.Join(statusRoutes, ", "))
		}
	}
	for _, pe := range perrs {
		line := st.lines.action
		if pe.Param != "" {
			if pl, ok := st.lines.param[pe.Param]; ok {
				line = pl
			} else if st.lines.params > 0 {
				line = st.lines.params
			}
		}
		l.errorf(file, line, 0, "%s: %s", what, pe.Error())
	}
	if len(perrs) > 0 {
		return
	}
	st.Action = a
	st.meta = envelope.EventMeta{Action: st.ActionName, Domain: st.Domain, InputElement: st.InputElement, OutputElement: st.OutputElement}
	if len(st.Params) > 0 {
		raw, err := json.Marshal(st.Params)
		if err != nil {
			l.errorf(file, st.lines.params, 0, "%s: parameters cannot be carried as JSON: %v", what, err)
			return
		}
		st.meta.Parameters = raw
	}
}
