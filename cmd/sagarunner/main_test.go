package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// execute runs the command line in process and returns its output.
func execute(t *testing.T, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	root := newRoot()
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(args)
	err = root.ExecuteContext(context.Background())
	return out.String(), errb.String(), err
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("saga: bad\nversion: 1\ntrigger: {topic: t}\nsteps:\n  - id: a\n    action: NoSuchAction\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	userDir, overDir := t.TempDir(), t.TempDir()
	for dir, content := range map[string]string{
		userDir: "saga: mine\ntrigger: {topic: t}\nsteps:\n  - id: f\n    action: Finish\n",
		overDir: "saga: mine\ntrigger: {path: /ProceedTask}\nsteps:\n  - id: f\n    action: Finish\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, "mine.yaml"), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
	}{
		{"shipped sagas are valid", []string{"validate", "../../sagas"}, 0, "ok  job_post_approval"},
		{"bad file reports file:line:col", []string{"validate", bad}, 1, "bad.yaml:6"},
		{"built-ins load beside a folder holding copies of them", []string{"validate", "../../sagas"}, 0, "ok  proceed_task"},
		{"built-ins are listed as such", []string{"validate", userDir}, 0, "(POST /ProceedTask)  built-in"},
		{"a user's saga on a built-in path replaces it", []string{"validate", overDir}, 0, `saga "mine" replaces the built-in "proceed_task"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, err := execute(t, "", tc.args...)
			code := 0
			var ee exitError
			if errors.As(err, &ee) {
				code = ee.code
			} else if err != nil {
				t.Fatalf("error: %v", err)
			}
			if code != tc.wantCode {
				t.Errorf("exit code %d, want %d (stderr %q)", code, tc.wantCode, errOut)
			}
			if !strings.Contains(out+errOut, tc.wantOut) {
				t.Errorf("output %q does not mention %q", out+errOut, tc.wantOut)
			}
		})
	}
}

func TestReadEvents(t *testing.T) {
	for _, tc := range []struct {
		name, in, key string
		wantKeys      []string
		wantErr       string
	}{
		{"keys from requestId", "{\"requestMeta\":{\"requestId\":\"r-1\"}}\n\n{\"a\":1}\n", "", []string{"r-1", ""}, ""},
		{"explicit key", "{\"a\":1}\n", "k", []string{"k"}, ""},
		{"every bad line at once", "{\"a\":1}\nnot json\n[1,2]\n", "", nil, "in:2: not a JSON object\nin:3: not a JSON object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			recs, err := readEvents(strings.NewReader(tc.in), "in", "topic", tc.key)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var keys []string
			for _, r := range recs {
				keys = append(keys, string(r.Key))
			}
			if strings.Join(keys, ",") != strings.Join(tc.wantKeys, ",") {
				t.Errorf("keys = %q, want %q", keys, tc.wantKeys)
			}
		})
	}
}

func TestPublishNeedsTopic(t *testing.T) {
	if _, _, err := execute(t, "{}\n", "publish"); err == nil || !strings.Contains(err.Error(), "--topic") {
		t.Errorf("err = %v", err)
	}
}

func TestRunRefusesWithoutAuth(t *testing.T) {
	_, _, err := execute(t, "", "run", "--sagas", "../../sagas")
	if err == nil || !strings.Contains(err.Error(), "--insecure") {
		t.Errorf("err = %v, want a refusal naming --insecure", err)
	}
}

// TestActionsReferenceIsCurrent keeps docs/ACTIONS.md equal to what the
// registry declares; regenerate it with
// `go run ./cmd/sagarunner actions > docs/ACTIONS.md`.
func TestActionsReferenceIsCurrent(t *testing.T) {
	want, err := os.ReadFile("../../docs/ACTIONS.md")
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := execute(t, "", "actions")
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Error("docs/ACTIONS.md is stale: run go run ./cmd/sagarunner actions > docs/ACTIONS.md")
	}
}
