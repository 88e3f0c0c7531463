package saga_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/sagarunner/sagarunner/actions"
	"github.com/sagarunner/sagarunner/saga"
)

// loadErrors returns the problem lines of a *LoadError, failing the test on
// any other outcome.
func loadErrors(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		t.Fatal("loaded without error")
	}
	var le *saga.LoadError
	if !errors.As(err, &le) {
		t.Fatalf("error %T is not a *LoadError: %v", err, err)
	}
	out := make([]string, len(le.Errors))
	for i, fe := range le.Errors {
		out[i] = fe.Error()
	}
	if len(out) == 0 || le.Error() != strings.Join(out, "\n") {
		t.Fatalf("LoadError.Error() = %q, want its %d problems one per line", le.Error(), len(out))
	}
	return out
}

func TestLoadValid(t *testing.T) {
	set, err := saga.Load(actions.Default, filepath.Join("testdata", "valid.yaml"))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	g, ok := set.ByName("approval")
	if !ok {
		t.Fatal("saga approval not loaded")
	}
	if g.Version != 2 || !g.AutoFail || g.Description != "approve or escalate" || g.Line != 2 {
		t.Errorf("saga fields: version %d autoFail %v description %q line %d", g.Version, g.AutoFail, g.Description, g.Line)
	}
	if got := set.ByTopic("approvals"); len(got) != 1 || got[0] != g {
		t.Errorf("ByTopic(approvals) = %v", got)
	}
	if got, ok := set.ByPath("/approvals"); !ok || got != g {
		t.Errorf("ByPath(/approvals) = %v, %v", got, ok)
	}
	if !reflect.DeepEqual(set.Topics(), []string{"approvals"}) || !reflect.DeepEqual(set.Paths(), []string{"/approvals"}) {
		t.Errorf("Topics %v Paths %v", set.Topics(), set.Paths())
	}
	st, ok := g.Step("approve")
	if !ok || st.Action == nil || st.Domain != "workflow" || st.Next["TIMEOUT"] != "publish" || st.Line != 9 {
		t.Errorf("step approve = %+v", st)
	}
	if pub, _ := g.Step("publish"); pub.Params["topic"] != "approved" {
		t.Errorf("publish params = %v", pub.Params)
	}
}

func TestLoadDefaults(t *testing.T) {
	set, err := saga.LoadBytes(nil, "d.yaml", []byte("saga: d\nautoFail: false\ntrigger: {topic: t}\nsteps:\n  - {id: a, action: Finish}\n"))
	if err != nil {
		t.Fatalf("LoadBytes: %v", err)
	}
	g, _ := set.ByName("d")
	if g.Version != 1 || g.AutoFail {
		t.Errorf("version %d autoFail %v, want 1 and false", g.Version, g.AutoFail)
	}
}

func TestLoadErrors(t *testing.T) {
	const head = "saga: s\ntrigger: {topic: t}\nsteps:\n"
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{
			name: "unknown saga key",
			yaml: "saga: s\ntrigger: {topic: t}\nretries: 3\nsteps:\n  - {id: a, action: Finish}\n",
			want: []string{`x.yaml:3:1: saga: unknown key "retries" (known: saga, description, version, trigger, autoFail, steps)`},
		},
		{
			name: "unknown step key",
			yaml: head + "  - id: a\n    action: Finish\n    retry: 3\n",
			want: []string{`x.yaml:6:5: step "a": unknown key "retry" (known: id, action, domain, inputElement, outputElement, parameters, condition, next)`},
		},
		{
			name: "unknown trigger key",
			yaml: "saga: s\ntrigger: {topic: t, cron: daily}\nsteps:\n  - {id: a, action: Finish}\n",
			want: []string{`x.yaml:2:21: trigger: unknown key "cron" (known: topic, path)`},
		},
		{
			name: "unknown action",
			yaml: head + "  - id: a\n    action: Teleport\n",
			want: []string{`x.yaml:5: step "a": unknown action "Teleport" (known: ` + strings.Join(actions.Default.Names(), ", ") + `)`},
		},
		{
			name: "unknown condition type",
			yaml: head + "  - id: a\n    condition: {type: regex, element: x}\n",
			want: []string{`x.yaml:5:23: step "a": unknown condition type "regex" (known: eventStatus, elementValue, hasElement, jmespath)`},
		},
		{
			name: "route to a missing step",
			yaml: head + "  - id: a\n    action: Finish\n    next:\n      SUCCESS: b\n      FAIL: gone\n  - id: b\n    action: Finish\n",
			want: []string{`x.yaml:8: step "a": next "FAIL" goes to unknown step "gone" (steps: a, b)`},
		},
		{
			name: "always route to a missing step",
			yaml: head + "  - id: a\n    action: Finish\n    next: gone\n",
			want: []string{`x.yaml:6: step "a": next goes to unknown step "gone" (steps: a)`},
		},
		{
			name: "unreachable step",
			yaml: head + "  - {id: a, action: Finish}\n  - {id: b, action: Finish}\n",
			want: []string{`x.yaml:5: saga "s": step "b" is unreachable from the first step "a"`},
		},
		{
			name: "loop without a waiting step",
			yaml: head + "  - {id: a, action: Transform, outputElement: x, parameters: {pattern: '@'}, next: b}\n" +
				"  - {id: b, condition: {type: hasElement, element: x}, next: {\"true\": a}}\n",
			want: []string{`x.yaml:4: saga "s": steps a -> b -> a form a loop with no waiting step (StartTask) in it, so an instance would never stop`},
		},
		{
			name: "step routing to itself",
			yaml: head + "  - {id: a, condition: {type: eventStatus}, next: {FAIL: a}}\n",
			want: []string{`x.yaml:4: saga "s": steps a -> a form a loop with no waiting step (StartTask) in it, so an instance would never stop`},
		},
		{
			name: "parameter pattern does not compile",
			yaml: head + "  - id: a\n    action: Transform\n    outputElement: x\n    parameters:\n      pattern: \"{a: \"\n",
			want: []string{`x.yaml:8: step "a": parameter "pattern": pattern "{a: " does not compile: SyntaxError: Incomplete expression`},
		},
		{
			name: "condition pattern does not compile",
			yaml: head + "  - id: a\n    condition:\n      type: jmespath\n      pattern: \"a[\"\n",
			want: []string{`x.yaml:7:16: step "a": pattern "a[" does not compile: SyntaxError: Expected tStar, received: tEOF`},
		},
		{
			name: "missing required parameter",
			yaml: head + "  - id: a\n    action: Publish\n    parameters: {pattern: '@'}\n",
			want: []string{`x.yaml:6: step "a": parameter "topic": required`},
		},
		{
			name: "missing required event-meta field",
			yaml: head + "  - id: a\n    action: StartTask\n",
			want: []string{`x.yaml:5: step "a": domain is required by StartTask`},
		},
		{
			name: "parameter of the wrong type",
			yaml: head + "  - id: a\n    action: StartTask\n    domain: workflow\n    parameters:\n      timeout: soon\n",
			want: []string{`x.yaml:8: step "a": parameter "timeout": want an integer, got string`},
		},
		{
			name: "unknown parameter",
			yaml: head + "  - id: a\n    action: Finish\n    parameters: {speed: 3}\n",
			want: []string{`x.yaml:6: step "a": parameter "speed": unknown parameter of Finish (known: none)`},
		},
		{
			name: "duplicate step ids",
			yaml: head + "  - {id: a, action: Finish, next: a2}\n  - {id: a2, action: Finish}\n  - {id: a, action: Finish}\n",
			want: []string{`x.yaml:6: saga "s": duplicate step id "a" (first at line 4)`},
		},
		{
			name: "duplicate key",
			yaml: "saga: s\nsaga: t\ntrigger: {topic: t}\nsteps:\n  - {id: a, action: Finish}\n",
			want: []string{`x.yaml:2:1: saga: duplicate key "saga" (first at line 1)`},
		},
		{
			name: "no trigger",
			yaml: "saga: s\nsteps:\n  - {id: a, action: Finish}\n",
			want: []string{`x.yaml:1:1: saga "s" has no trigger: set trigger.topic and/or trigger.path`},
		},
		{
			name: "no steps",
			yaml: "saga: s\ntrigger: {topic: t}\nsteps: []\n",
			want: []string{`x.yaml:3:8: saga "s" has no steps`},
		},
		{
			name: "no name",
			yaml: "trigger: {topic: t}\nsteps:\n  - {id: a, action: Finish}\n",
			want: []string{`x.yaml:1:1: saga has no name: add the key saga`},
		},
		{
			name: "both action and condition",
			yaml: head + "  - id: a\n    action: Finish\n    condition: {type: eventStatus}\n",
			want: []string{`x.yaml:6: step "a" has both an action and a condition: a step is one or the other`},
		},
		{
			name: "neither action nor condition",
			yaml: head + "  - id: a\n    domain: workflow\n",
			want: []string{`x.yaml:4:5: step "a" has neither an action nor a condition`},
		},
		{
			name: "route on a status no action returns",
			yaml: head + "  - id: a\n    action: Finish\n    next: {SUCCESS: b, DONE: b}\n  - {id: b, action: Finish}\n",
			want: []string{`x.yaml:6: step "a": next: "DONE" is not a status an action returns (known: SUCCESS, FAIL, TIMEOUT, CANCELLED, *)`},
		},
		{
			name: "trigger path without slash",
			yaml: "saga: s\ntrigger: {path: hook}\nsteps:\n  - {id: a, action: Finish}\n",
			want: []string{`x.yaml:2:17: trigger path "hook" must start with /`},
		},
		{
			name: "invalid YAML",
			yaml: "saga: s\ntrigger:\n  topic: [a,\n",
			want: []string{`x.yaml:3: invalid YAML: did not find expected node content`},
		},
		{
			name: "several problems at once",
			yaml: head + "  - id: a\n    action: Teleport\n    next: b\n  - id: b\n    condition: {type: elementValue}\n    next: {\"*\": nowhere}\n  - {id: c, action: Finish}\n",
			want: []string{
				`x.yaml:5: step "a": unknown action "Teleport" (known: ` + strings.Join(actions.Default.Names(), ", ") + `)`,
				`x.yaml:8:16: step "b": condition elementValue needs an element`,
				`x.yaml:9: step "b": next "*" goes to unknown step "nowhere" (steps: a, b, c)`,
				`x.yaml:10: saga "s": step "c" is unreachable from the first step "a"`,
			},
		},
		{
			name: "two sagas with one name",
			yaml: "saga: s\ntrigger: {topic: t}\nsteps:\n  - {id: a, action: Finish}\n---\nsaga: s\ntrigger: {topic: u}\nsteps:\n  - {id: a, action: Finish}\n",
			want: []string{`x.yaml:6: saga "s" is already defined at x.yaml:1`},
		},
		{
			name: "two sagas on one trigger path",
			yaml: "saga: s\ntrigger: {path: /p}\nsteps:\n  - {id: a, action: Finish}\n---\nsaga: u\ntrigger: {path: /p}\nsteps:\n  - {id: a, action: Finish}\n",
			want: []string{`x.yaml:6: saga "u": trigger path "/p" is already served by saga "s" (x.yaml:1)`},
		},
		{
			name: "empty file",
			yaml: "# nothing here\n",
			want: []string{`x.yaml: no saga definition in file`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := saga.LoadBytes(actions.Default, "x.yaml", []byte(tc.yaml))
			got := loadErrors(t, err)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("errors:\n got: %s\nwant: %s", strings.Join(got, "\n      "), strings.Join(tc.want, "\n      "))
			}
		})
	}
}

// TestLoadFiles checks that problems across files are reported together,
// each with its own file, and that folders are walked.
func TestLoadFiles(t *testing.T) {
	tests := []struct {
		name  string
		paths []string
		want  []string
	}{
		{
			name:  "one file with many problems",
			paths: []string{"testdata/bad_many.yaml"},
			want: []string{
				`testdata/bad_many.yaml:3:1: saga: unknown key "colour" (known: saga, description, version, trigger, autoFail, steps)`,
				`testdata/bad_many.yaml:6: step "first": unknown action "Teleport" (known: ` + strings.Join(actions.Default.Names(), ", ") + `)`,
				`testdata/bad_many.yaml:9:16: step "second": condition elementValue needs an element`,
				`testdata/bad_many.yaml:10: step "second": next "*" goes to unknown step "nowhere" (steps: first, second, orphan)`,
				`testdata/bad_many.yaml:11: saga "many": step "orphan" is unreachable from the first step "first"`,
			},
		},
		{
			name:  "duplicates across files",
			paths: []string{"testdata/dup_a.yaml", "testdata/dup_b.yaml"},
			want: []string{
				`testdata/dup_b.yaml:1: saga "twin" is already defined at testdata/dup_a.yaml:1`,
				`testdata/dup_b.yaml:6: saga "other": trigger path "/twin" is already served by saga "twin" (testdata/dup_a.yaml:1)`,
			},
		},
		{
			name:  "syntax error and a missing file",
			paths: []string{"testdata/syntax.yaml", "testdata/missing.yaml"},
			want: []string{
				`testdata/missing.yaml: no such file or directory`,
				`testdata/syntax.yaml:3: invalid YAML: did not find expected node content`,
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := saga.Load(actions.Default, tc.paths...)
			got := loadErrors(t, err)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("errors:\n got: %s\nwant: %s", strings.Join(got, "\n      "), strings.Join(tc.want, "\n      "))
			}
		})
	}
	t.Run("folder", func(t *testing.T) {
		_, err := saga.Load(actions.Default, "testdata")
		got := loadErrors(t, err)
		files := map[string]bool{}
		for _, line := range got {
			files[strings.SplitN(line, ":", 2)[0]] = true
		}
		for _, f := range []string{"testdata/bad_many.yaml", "testdata/dup_b.yaml", "testdata/syntax.yaml"} {
			if !files[f] {
				t.Errorf("no problem reported for %s in:\n%s", f, strings.Join(got, "\n"))
			}
		}
		if files["testdata/valid.yaml"] {
			t.Errorf("valid.yaml reported: %s", strings.Join(got, "\n"))
		}
	})
}

func TestFileErrorFormat(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  saga.FileError
		want string
	}{
		{"line and column", saga.FileError{File: "x.yaml", Line: 3, Col: 7, Reason: "bad"}, "x.yaml:3:7: bad"},
		{"line only", saga.FileError{File: "x.yaml", Line: 3, Reason: "bad"}, "x.yaml:3: bad"},
		{"whole file", saga.FileError{File: "x.yaml", Reason: "bad"}, "x.yaml: bad"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.err.Error(); got != tc.want {
				t.Errorf("Error() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestLoadWithBuiltIns(t *testing.T) {
	const hook = "saga: hook\ntrigger: {path: /Hook}\nsteps:\n  - id: f\n    action: Finish\n"
	builtIn := map[string][]byte{"hook.yaml": []byte(hook)}
	for _, tc := range []struct {
		name string
		user string // the one user file's content; "" for an empty folder
		// wantHook is the file of the saga served on /Hook.
		wantHook     string
		wantShadowed string // "built-in name -> user name", "" for none
		wantSame     bool
	}{
		{name: "empty folder serves the built-in", wantHook: saga.BuiltInPrefix + "hook.yaml"},
		{name: "an unrelated user saga leaves it",
			user:     "saga: other\ntrigger: {path: /Other}\nsteps:\n  - id: f\n    action: Finish\n",
			wantHook: saga.BuiltInPrefix + "hook.yaml"},
		{name: "a user saga on the same path wins",
			user:     "saga: mine\ntrigger: {path: /Hook}\nsteps:\n  - id: f\n    action: Finish\n",
			wantHook: "user.yaml", wantShadowed: "hook -> mine"},
		{name: "a user saga with the same name wins",
			user:         "saga: hook\ntrigger: {topic: t}\nsteps:\n  - id: f\n    action: Finish\n",
			wantShadowed: "hook -> hook"},
		{name: "a copy of the built-in file is the same",
			user: hook, wantHook: "user.yaml", wantShadowed: "hook -> hook", wantSame: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.user != "" {
				if err := os.WriteFile(filepath.Join(dir, "user.yaml"), []byte(tc.user), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			set, shadowed, err := saga.LoadWithBuiltIns(actions.Default, builtIn, dir)
			if err != nil {
				t.Fatal(err)
			}
			gotHook := ""
			if g, ok := set.ByPath("/Hook"); ok {
				gotHook = strings.TrimPrefix(g.File, dir+string(filepath.Separator))
			}
			if gotHook != tc.wantHook {
				t.Errorf("/Hook served from %q, want %q", gotHook, tc.wantHook)
			}
			var got []string
			same := false
			for _, s := range shadowed {
				got = append(got, s.BuiltIn.Name+" -> "+s.By.Name)
				same = same || s.Same
			}
			if strings.Join(got, ", ") != tc.wantShadowed || same != tc.wantSame {
				t.Errorf("shadowed = %q (same %v), want %q (same %v)", got, same, tc.wantShadowed, tc.wantSame)
			}
		})
	}
}
