package config

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Error is one configuration problem, located where the offending value
// came from: a position in the file, or the flag or environment variable
// that set it.
type Error struct {
	// File, Line and Col locate the value in the configuration file (Line
	// and Col are 1-based; 0 when the problem is about the whole file or
	// the value did not come from it).
	File      string
	Line, Col int
	// Source names the flag (--redis) or environment variable
	// (SAGARUNNER_REDIS_ADDR) that set the value, when one did.
	Source string
	// Key is the configuration key, as written in messages
	// (auth.tokens[1].user); "" for problems about the whole file.
	Key    string
	Reason string
}

// Error formats the problem as file:line:col: key: reason (the shape
// editors and CI logs link to), source: key: reason for flags and
// environment variables, or key: reason for a default.
func (e Error) Error() string {
	var b strings.Builder
	switch {
	case e.Source != "":
		b.WriteString(e.Source + ": ")
	case e.File != "" && e.Line > 0 && e.Col > 0:
		fmt.Fprintf(&b, "%s:%d:%d: ", e.File, e.Line, e.Col)
	case e.File != "" && e.Line > 0:
		// YAML syntax errors come with a line only.
		fmt.Fprintf(&b, "%s:%d: ", e.File, e.Line)
	case e.File != "":
		b.WriteString(e.File + ": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Reason)
	return b.String()
}

// Errors is every problem of one configuration, in a stable order: those
// in the file by position, then those set by flags and environment
// variables, then the rest, each by key. Load and Validate return it, so a
// configuration is fixed in one round.
type Errors []Error

// rank orders the kinds of origin.
func (e Error) rank() int {
	switch {
	case e.File != "":
		return 0
	case e.Source != "":
		return 1
	}
	return 2
}

// Error lists the problems one per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

func (es Errors) sort() {
	slices.SortStableFunc(es, func(a, b Error) int {
		return cmp.Or(cmp.Compare(a.rank(), b.rank()), cmp.Compare(a.File, b.File), cmp.Compare(a.Source, b.Source), cmp.Compare(a.Line, b.Line),
			cmp.Compare(a.Col, b.Col), cmp.Compare(a.Key, b.Key), cmp.Compare(a.Reason, b.Reason))
	})
}

// orNil returns nil for no problems, so callers can test err != nil.
func (es Errors) orNil() error {
	if len(es) == 0 {
		return nil
	}
	es.sort()
	return es
}

// position is where a key and its value sit in the file.
type position struct{ line, col int }

// filePositions maps each key of a configuration file, lowercased as
// viper folds it and with list items as key[i], to the position of its
// value; yaml.v3 keeps positions where viper does not.
type filePositions map[string]position

// yamlLine finds the line yaml.v3 puts in its syntax errors.
var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// parseFile reads the file's YAML nodes, returning the position of every
// key, the problems of unknown keys, and syntax errors as file:line.
func parseFile(file string, data []byte) (filePositions, Errors) {
	pos := filePositions{}
	var errs Errors
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		if sub := yamlLine.FindStringSubmatch(err.Error()); sub != nil {
			line, _ := strconv.Atoi(sub[1])
			return nil, Errors{{File: file, Line: line, Reason: "invalid YAML: " + sub[2]}}
		}
		return nil, Errors{{File: file, Reason: "invalid YAML: " + msg}}
	}
	if len(doc.Content) == 0 {
		return pos, nil
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return pos, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, Errors{{File: file, Line: root.Line, Col: root.Column, Reason: "the configuration must be a mapping of keys"}}
	}
	walk(file, root, "", pos, &errs)
	return pos, errs
}

// walk records the positions below n, a mapping at path prefix, and
// reports every key that is not a known key, section or list.
func walk(file string, n *yaml.Node, prefix string, pos filePositions, errs *Errors) {
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		path := strings.ToLower(k.Value)
		if prefix != "" {
			path = prefix + "." + path
		}
		pos[path] = position{v.Line, v.Column}
		switch {
		case known[path]:
		case listItems[path] != nil:
			walkList(file, v, path, pos, errs)
		case isSection(path) && v.Kind == yaml.MappingNode:
			walk(file, v, path, pos, errs)
		case isSection(path):
			*errs = append(*errs, Error{File: file, Line: v.Line, Col: v.Column, Key: path, Reason: "must be a mapping"})
		default:
			*errs = append(*errs, Error{File: file, Line: k.Line, Col: k.Column, Reason: fmt.Sprintf("unknown key %q", path)})
		}
	}
}

// walkList checks a list of mappings whose keys are listItems[path].
func walkList(file string, n *yaml.Node, path string, pos filePositions, errs *Errors) {
	allowed := listItems[path]
	if n.Kind != yaml.SequenceNode {
		*errs = append(*errs, Error{File: file, Line: n.Line, Col: n.Column, Key: path, Reason: "must be a list"})
		return
	}
	for i, it := range n.Content {
		item := fmt.Sprintf("%s[%d]", path, i)
		pos[item] = position{it.Line, it.Column}
		if it.Kind != yaml.MappingNode {
			*errs = append(*errs, Error{File: file, Line: it.Line, Col: it.Column, Key: item, Reason: "must be a mapping"})
			continue
		}
		for j := 0; j+1 < len(it.Content); j += 2 {
			k, v := it.Content[j], it.Content[j+1]
			key := strings.ToLower(k.Value)
			if !slices.ContainsFunc(allowed, func(a string) bool { return strings.EqualFold(a, key) }) {
				*errs = append(*errs, Error{File: file, Line: k.Line, Col: k.Column,
					Reason: fmt.Sprintf("unknown key %q in %s (known: %s)", k.Value, item, strings.Join(allowed, ", "))})
				continue
			}
			pos[item+"."+key] = position{v.Line, v.Column}
		}
	}
}

// isSection reports whether path names a mapping of known keys (redis,
// auth.jwt).
func isSection(path string) bool {
	for k := range known {
		if strings.HasPrefix(k, path+".") {
			return true
		}
	}
	return false
}

// lookup returns the position of key's value, or of the nearest enclosing
// key or list item written in the file.
func (p filePositions) lookup(key string) (position, bool) {
	key = strings.ToLower(key)
	for key != "" {
		if at, ok := p[key]; ok {
			return at, true
		}
		cut := max(strings.LastIndexByte(key, '.'), strings.LastIndexByte(key, '['))
		if cut < 0 {
			break
		}
		key = key[:cut]
	}
	return position{}, false
}
