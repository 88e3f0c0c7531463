package saga_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/sagarunner/sagarunner/actions"
	"github.com/sagarunner/sagarunner/saga"
	"github.com/sagarunner/sagarunner/saga/envelope"
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
			want: []string{`x.yaml:3:1: saga: unknown key "retries" (known: saga, description, version, trigger, autoFail, onCancel, steps)`},
		},
		{
			name: "unknown step key",
			yaml: head + "  - id: a\n    action: Finish\n    retry: 3\n",
			want: []string{`x.yaml:6:5: step "a": unknown key "retry" (known: id, action, domain, inputElement, outputElement, parameters, condition, next)`},
		},
		{
			name: "unknown trigger key",
			yaml: "saga: s\ntrigger: {topic: t, cron: daily}\nsteps:\n  - {id: a, action: Finish}\n",
			want: []string{`x.yaml:2:21: trigger: unknown key "cron" (known: topic, path, businessKeyPath)`},
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
			want: []string{`x.yaml:6: saga "s" version 1 is already defined at x.yaml:1`},
		},
		{
			name: "two sagas on one trigger path",
			yaml: "saga: s\ntrigger: {path: /p}\nsteps:\n  - {id: a, action: Finish}\n---\nsaga: u\ntrigger: {path: /p}\nsteps:\n  - {id: a, action: Finish}\n",
			want: []string{`x.yaml:6: saga "u": trigger path "/p" is already served by saga "s" (x.yaml:1)`},
		},
		{
			name: "two sagas with one name and version",
			yaml: "saga: s\nversion: 2\ntrigger: {topic: t}\nsteps:\n  - {id: a, action: Finish}\n---\nsaga: s\nversion: 2\ntrigger: {topic: u}\nsteps:\n  - {id: a, action: Finish}\n",
			want: []string{`x.yaml:7: saga "s" version 2 is already defined at x.yaml:1`},
		},
		{
			name: "two versions with a problem each",
			yaml: "saga: s\nversion: 1\ntrigger: {topic: t}\nsteps:\n  - {id: a, action: Finish, next: gone}\n---\nsaga: s\nversion: 2\ntrigger: {topic: t}\nsteps:\n  - {id: a, action: Teleport}\n",
			want: []string{
				`x.yaml:5: step "a": next goes to unknown step "gone" (steps: a)`,
				`x.yaml:11: step "a": unknown action "Teleport" (known: ` + strings.Join(actions.Default.Names(), ", ") + `)`,
			},
		},
		{
			name: "onCancel names no step",
			yaml: "saga: s\nonCancel: undo\ntrigger: {topic: t}\nsteps:\n  - {id: a, action: Finish}\n",
			want: []string{`x.yaml:2:11: saga "s": onCancel names unknown step "undo" (steps: a)`},
		},
		{
			name: "onCancel empty",
			yaml: "saga: s\nonCancel: \"\"\ntrigger: {topic: t}\nsteps:\n  - {id: a, action: Finish}\n",
			want: []string{`x.yaml:2:11: onCancel must name a step`},
		},
		{
			name: "onCancel not a string",
			yaml: "saga: s\nonCancel: [a]\ntrigger: {topic: t}\nsteps:\n  - {id: a, action: Finish}\n",
			want: []string{`x.yaml:2:11: onCancel must be a string`},
		},
		{
			name: "businessKeyPath names the whole payload",
			yaml: "saga: s\ntrigger: {topic: t, businessKeyPath: \"$.\"}\nsteps:\n  - {id: a, action: Finish}\n",
			want: []string{`x.yaml:2:38: trigger businessKeyPath "$." names the whole record, not a value in it: give the path of the key, e.g. parameters.applicationId`},
		},
		{
			name: "businessKeyPath empty",
			yaml: "saga: s\ntrigger: {topic: t, businessKeyPath: \"\"}\nsteps:\n  - {id: a, action: Finish}\n",
			want: []string{`x.yaml:2:38: trigger businessKeyPath "" names the whole record, not a value in it: give the path of the key, e.g. parameters.applicationId`},
		},
		{
			name: "businessKeyPath with a modifier",
			yaml: "saga: s\ntrigger: {topic: t, businessKeyPath: parameters.@reverse}\nsteps:\n  - {id: a, action: Finish}\n",
			want: []string{`x.yaml:2:38: trigger businessKeyPath "parameters.@reverse": modifiers (@) and pipes (|) are not allowed, only a path to one value`},
		},
		{
			name: "businessKeyPath with a pipe",
			yaml: "saga: s\ntrigger: {topic: t, businessKeyPath: \"a|b\"}\nsteps:\n  - {id: a, action: Finish}\n",
			want: []string{`x.yaml:2:38: trigger businessKeyPath "a|b": modifiers (@) and pipes (|) are not allowed, only a path to one value`},
		},
		{
			name: "businessKeyPath with an empty element",
			yaml: "saga: s\ntrigger: {topic: t, businessKeyPath: parameters..id}\nsteps:\n  - {id: a, action: Finish}\n",
			want: []string{`x.yaml:2:38: trigger businessKeyPath "parameters..id" has an empty path element`},
		},
		{
			name: "businessKeyPath too long",
			yaml: "saga: s\ntrigger: {topic: t, businessKeyPath: " + strings.Repeat("a", 257) + "}\nsteps:\n  - {id: a, action: Finish}\n",
			want: []string{`x.yaml:2:38: trigger businessKeyPath is 257 bytes long, the limit is 256`},
		},
		{
			name: "businessKeyPath not a string",
			yaml: "saga: s\ntrigger: {topic: t, businessKeyPath: [a]}\nsteps:\n  - {id: a, action: Finish}\n",
			want: []string{`x.yaml:2:38: trigger businessKeyPath must be a string`},
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
				`testdata/bad_many.yaml:3:1: saga: unknown key "colour" (known: saga, description, version, trigger, autoFail, onCancel, steps)`,
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
				`testdata/dup_b.yaml:1: saga "twin" version 1 is already defined at testdata/dup_a.yaml:1`,
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
		{name: "an older version on the same path leaves it",
			user: "saga: mine\nversion: 1\ntrigger: {path: /Hook}\nsteps:\n  - id: f\n    action: Finish\n---\n" +
				"saga: mine\nversion: 2\ntrigger: {path: /Mine}\nsteps:\n  - id: f\n    action: Finish\n",
			wantHook: saga.BuiltInPrefix + "hook.yaml"},
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

// versionPair is saga "apply" twice: version 1 and version 2 on one trigger
// topic and path, each publishing its own version. Version 1 also has a
// topic of its own, which starts nothing once version 2 is loaded.
const (
	applyV1 = "saga: apply\nversion: 1\ntrigger: {topic: applications, path: /apply}\nsteps:\n" +
		"  - {id: done, action: Publish, parameters: {topic: out, pattern: \"'v1'\"}}\n"
	applyV2 = "saga: apply\nversion: 2\ntrigger: {topic: applications, path: /apply, businessKeyPath: parameters.applicationId}\n" +
		"onCancel: withdraw\nsteps:\n" +
		"  - {id: done, action: Publish, parameters: {topic: out, pattern: \"'v2'\"}}\n" +
		"  - {id: withdraw, action: Publish, parameters: {topic: out, pattern: \"'withdrawn'\"}}\n"
)

func TestLoadVersionsSideBySide(t *testing.T) {
	dir := t.TempDir()
	// The higher version sorts first by file name, so "current" cannot
	// mean "loaded last".
	for name, body := range map[string]string{"a_v2.yaml": applyV2, "b_v1.yaml": applyV1,
		"c_other.yaml": "saga: other\ntrigger: {topic: applications}\nsteps:\n  - {id: f, action: Finish}\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	set, err := saga.Load(actions.Default, dir)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	v1, ok1 := set.ByVersion("apply", 1)
	v2, ok2 := set.ByVersion("apply", 2)
	if !ok1 || !ok2 || v1.Version != 1 || v2.Version != 2 || !strings.HasSuffix(v1.File, "b_v1.yaml") {
		t.Fatalf("ByVersion = %+v %v, %+v %v", v1, ok1, v2, ok2)
	}
	if _, ok := set.ByVersion("apply", 3); ok {
		t.Error("ByVersion(apply, 3) found a saga")
	}
	if g, _ := set.ByName("apply"); g != v2 {
		t.Errorf("ByName(apply) = version %d, want the highest, 2", g.Version)
	}
	if !set.Current(v2) || set.Current(v1) {
		t.Errorf("Current: v1 %v v2 %v, want only v2", set.Current(v1), set.Current(v2))
	}
	if got := set.Versions("apply"); !reflect.DeepEqual(got, []int{1, 2}) {
		t.Errorf("Versions(apply) = %v", got)
	}
	if got := set.Versions("gone"); got != nil {
		t.Errorf("Versions(gone) = %v", got)
	}
	var onTopic []string
	for _, g := range set.ByTopic("applications") {
		onTopic = append(onTopic, fmt.Sprintf("%s v%d", g.Name, g.Version))
	}
	if strings.Join(onTopic, ", ") != "apply v2, other v1" {
		t.Errorf("ByTopic(applications) = %v, want only the current version of each saga", onTopic)
	}
	if g, ok := set.ByPath("/apply"); !ok || g != v2 {
		t.Errorf("ByPath(/apply) = %v", g)
	}
	if len(set.Sagas) != 3 {
		t.Errorf("%d sagas in the set, want every version listed", len(set.Sagas))
	}
	if v2.BusinessKeyPath != "parameters.applicationId" || v2.OnCancel != "withdraw" || v1.BusinessKeyPath != "" || v1.OnCancel != "" {
		t.Errorf("v2 businessKeyPath %q onCancel %q; v1 %q %q", v2.BusinessKeyPath, v2.OnCancel, v1.BusinessKeyPath, v1.OnCancel)
	}
}

// TestLoadOlderVersionTriggers checks that only current versions claim
// trigger topics and paths: an older version's trigger starts nothing, so
// it conflicts with nothing.
func TestLoadOlderVersionTriggers(t *testing.T) {
	const yaml = "saga: x\nversion: 1\ntrigger: {topic: old-topic, path: /p}\nsteps:\n  - {id: f, action: Finish}\n---\n" +
		"saga: x\nversion: 2\ntrigger: {topic: new-topic, path: /q}\nsteps:\n  - {id: f, action: Finish}\n---\n" +
		"saga: y\ntrigger: {path: /p}\nsteps:\n  - {id: f, action: Finish}\n"
	set, err := saga.LoadBytes(actions.Default, "x.yaml", []byte(yaml))
	if err != nil {
		t.Fatalf("LoadBytes: %v", err)
	}
	if got := set.Topics(); !reflect.DeepEqual(got, []string{"new-topic"}) {
		t.Errorf("Topics = %v, want only the current version's", got)
	}
	if g, ok := set.ByPath("/p"); !ok || g.Name != "y" {
		t.Errorf("ByPath(/p) = %v, want saga y", g)
	}
	if g, ok := set.ByPath("/q"); !ok || g.Name != "x" || g.Version != 2 {
		t.Errorf("ByPath(/q) = %v", g)
	}
}

func TestLoadOnCancel(t *testing.T) {
	// The onCancel step and the steps after it are reached from the
	// cancel, not from the first step: they are not unreachable.
	const yaml = "saga: s\nonCancel: undo\ntrigger: {topic: t}\nsteps:\n  - {id: a, action: Finish}\n" +
		"  - {id: undo, action: Publish, parameters: {topic: undone}, next: bye}\n  - {id: bye, action: Finish}\n" +
		"  - {id: orphan, action: Finish}\n"
	_, err := saga.LoadBytes(actions.Default, "x.yaml", []byte(yaml))
	got := loadErrors(t, err)
	want := []string{`x.yaml:8: saga "s": step "orphan" is unreachable from the first step "a" or the onCancel step "undo"`}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("errors:\n got: %s\nwant: %s", strings.Join(got, "\n      "), strings.Join(want, "\n      "))
	}
	fixed := strings.Replace(yaml, "  - {id: orphan, action: Finish}\n", "", 1)
	set, err := saga.LoadBytes(actions.Default, "x.yaml", []byte(fixed))
	if err != nil {
		t.Fatalf("LoadBytes: %v", err)
	}
	if g, _ := set.ByName("s"); g.OnCancel != "undo" {
		t.Errorf("OnCancel = %q", g.OnCancel)
	}
}

func TestBusinessKey(t *testing.T) {
	load := func(path string) *saga.Saga {
		t.Helper()
		set, err := saga.LoadBytes(actions.Default, "x.yaml", []byte("saga: s\ntrigger: {topic: t, businessKeyPath: \""+path+"\"}\nsteps:\n  - {id: a, action: Finish}\n"))
		if err != nil {
			t.Fatalf("LoadBytes: %v", err)
		}
		g, _ := set.ByName("s")
		return g
	}
	for _, tc := range []struct {
		name, path, value, want string
	}{
		{"string", "parameters.id", `{"payload": {"parameters": {"id": "app-42"}}}`, "app-42"},
		{"number as written", "parameters.id", `{"payload": {"parameters": {"id": 42}}}`, "42"},
		{"from the envelope root", "$.requestMeta.user", `{"requestMeta": {"user": "alice"}, "payload": {}}`, "alice"},
		{"absent", "parameters.id", `{"payload": {"parameters": {}}}`, ""},
		{"null", "parameters.id", `{"payload": {"parameters": {"id": null}}}`, ""},
		{"an object is no key", "parameters.id", `{"payload": {"parameters": {"id": {"a": 1}}}}`, ""},
		{"too long", "parameters.id", `{"payload": {"parameters": {"id": "` + strings.Repeat("k", saga.MaxBusinessKeyLen+1) + `"}}}`, ""},
		{"longest kept", "parameters.id", `{"payload": {"parameters": {"id": "` + strings.Repeat("k", saga.MaxBusinessKeyLen) + `"}}}`, strings.Repeat("k", saga.MaxBusinessKeyLen)},
		{"control characters", "parameters.id", `{"payload": {"parameters": {"id": "a\u0000b"}}}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, err := envelope.Decode([]byte(tc.value), func() string { return "r-1" })
			if err != nil {
				t.Fatal(err)
			}
			if got := load(tc.path).BusinessKey(env); got != tc.want {
				t.Errorf("BusinessKey = %q, want %q", got, tc.want)
			}
		})
	}
	if got := (&saga.Saga{}).BusinessKey(&envelope.Envelope{}); got != "" {
		t.Errorf("no businessKeyPath: key %q", got)
	}
}
