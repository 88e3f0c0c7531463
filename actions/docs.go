package actions

import (
	"fmt"
	"strings"
)

// Markdown renders the reference of every registered action from the specs
// themselves, so the docs say exactly what validation enforces.
func (r *Registry) Markdown() string {
	var b strings.Builder
	b.WriteString("# Action reference\n\n")
	b.WriteString("Generated from the action registry by `sagarunner actions`; do not edit by hand.\n")
	b.WriteString("Paths use gjson syntax for reading and sjson for writing; a path starting with `$.` resolves\n")
	b.WriteString("against the envelope root. Patterns are JMESPath, compiled when the saga loads.\n")
	for _, name := range r.Names() {
		s := r.specs[name]
		fmt.Fprintf(&b, "\n## %s\n\n%s\n\n", s.Name, s.Doc)
		fields := []string{}
		for _, f := range []struct {
			name string
			use  Field
		}{{"domain", s.Domain}, {"inputElement", s.InputElement}, {"outputElement", s.OutputElement}} {
			switch f.use {
			case Required:
				fields = append(fields, "`"+f.name+"` (required)")
			case Optional:
				fields = append(fields, "`"+f.name+"`")
			}
		}
		if len(fields) > 0 {
			fmt.Fprintf(&b, "Event-meta fields: %s.\n\n", strings.Join(fields, ", "))
		}
		if len(s.Params) == 0 {
			b.WriteString("No parameters.\n")
			continue
		}
		b.WriteString("| Parameter | Type | Required | Default | Description | Example |\n")
		b.WriteString("| --- | --- | --- | --- | --- | --- |\n")
		for _, p := range s.Params {
			req, def := "", ""
			if p.Required {
				req = "yes"
			}
			if p.Default != nil {
				def = fmt.Sprintf("`%v`", p.Default)
			}
			ex := ""
			if p.Example != "" {
				ex = "`" + p.Example + "`"
			}
			fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s | %s |\n", p.Name, p.Type, req, def,
				strings.ReplaceAll(p.Doc, "|", "\\|"), strings.ReplaceAll(ex, "|", "\\|"))
		}
	}
	return b.String()
}
