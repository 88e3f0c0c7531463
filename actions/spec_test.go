package actions_test

import (
	"strings"
	"testing"

	"github.com/sagarunner/sagarunner/actions"
)

// The declarations are what saga validation and the docs are built from, so
// each rule a saga author can break is checked here through Build.
func TestSpecsRejectBadConfig(t *testing.T) {
	tests := []struct {
		name   string
		action string
		in     actions.Input
		want   []string // every reason that must be reported
	}{
		{"StartTask needs a domain", "StartTask", actions.Input{},
			[]string{"domain is required by StartTask"}},
		{"StartTask pattern must compile", "StartTask",
			actions.Input{Domain: "workflow", Params: map[string]any{"inputPattern": "{data: "}},
			[]string{`"inputPattern"`, "does not compile"}},
		{"StartTask timeout must be an integer", "StartTask",
			actions.Input{Domain: "workflow", Params: map[string]any{"timeout": "soon"}},
			[]string{`"timeout"`, "want an integer"}},
		{"StartTask takes one deadline", "StartTask",
			actions.Input{Domain: "workflow", Params: map[string]any{"timeout": 1000, "timeoutOn": int64(1763800000000)}},
			[]string{"timeout or timeoutOn, not both"}},
		{"StartTask timeout not negative", "StartTask",
			actions.Input{Domain: "workflow", Params: map[string]any{"timeout": -5}},
			[]string{"must not be negative"}},
		{"unknown parameters are named", "ProceedTask",
			actions.Input{Domain: "workflow", Params: map[string]any{"taskid": "id", "enrich": "x"}},
			[]string{`"enrich"`, `"taskid"`, "unknown parameter of ProceedTask"}},
		{"TimeoutTask needs a domain", "TimeoutTask", actions.Input{},
			[]string{"domain is required by TimeoutTask"}},
		{"Publish needs a topic", "Publish", actions.Input{},
			[]string{`"topic"`, "required"}},
		{"Publish takes no elements", "Publish",
			actions.Input{InputElement: "parameters", Params: map[string]any{"topic": "out"}},
			[]string{"inputElement is not used by Publish"}},
		{"Transform needs a target and a pattern", "Transform", actions.Input{},
			[]string{"outputElement is required by Transform", `"pattern"`}},
		{"Finish takes no parameters", "Finish",
			actions.Input{Params: map[string]any{"code": "X"}},
			[]string{"unknown parameter of Finish (known: none)"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spec, ok := actions.Default.Lookup(tc.action)
			if !ok {
				t.Fatalf("%s not registered", tc.action)
			}
			_, errs := spec.Build(tc.in)
			if len(errs) == 0 {
				t.Fatal("Build accepted the config")
			}
			var all []string
			for _, e := range errs {
				all = append(all, e.Error())
			}
			joined := strings.Join(all, "\n")
			for _, w := range tc.want {
				if !strings.Contains(joined, w) {
					t.Errorf("errors %q do not mention %q", joined, w)
				}
			}
		})
	}
}

func TestSpecsDeclareDefaults(t *testing.T) {
	workflow := actions.Input{Domain: "workflow"}
	tests := []struct {
		action, param string
		in            actions.Input
		want          any
	}{
		{"StartTask", "taskIdPath", workflow, "taskId"},
		{"ProceedTask", "taskIdPath", workflow, "taskId"},
		{"TimeoutTask", "taskIdPath", workflow, "taskId"},
		{"Fail", "code", actions.Input{}, actions.CodeFailed},
	}
	for _, tc := range tests {
		t.Run(tc.action+"."+tc.param, func(t *testing.T) {
			spec, _ := actions.Default.Lookup(tc.action)
			c, errs := spec.Check(tc.in)
			if len(errs) > 0 {
				t.Fatalf("check: %v", errs)
			}
			if got := c.Params[tc.param]; got != tc.want {
				t.Fatalf("%s = %v, want %v", tc.param, got, tc.want)
			}
		})
	}
}

// Every parameter carries a doc and an example, since the docs are generated
// from these declarations.
func TestSpecsAreDocumented(t *testing.T) {
	for _, name := range []string{"StartTask", "ProceedTask", "TimeoutTask", "TimeoutBetween", "Publish", "Transform", "Fail", "Finish"} {
		t.Run(name, func(t *testing.T) {
			spec, ok := actions.Default.Lookup(name)
			if !ok {
				t.Fatalf("%s not registered", name)
			}
			if spec.Doc == "" {
				t.Error("spec has no doc")
			}
			for _, p := range spec.Params {
				if p.Doc == "" || p.Example == "" {
					t.Errorf("parameter %s lacks a doc or an example", p.Name)
				}
			}
		})
	}
}
