package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestValidateVersions checks validate over several versions of one saga:
// each version is checked on its own and listed, the older one as
// superseded, and a (name, version) defined twice names both files.
func TestValidateVersions(t *testing.T) {
	write := func(dir, name, body string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const v1 = "saga: apply\nversion: 1\ntrigger: {topic: apps}\nsteps:\n  - {id: f, action: Finish}\n"
	const v2 = "saga: apply\nversion: 2\ntrigger: {topic: apps}\nsteps:\n  - {id: f, action: Finish}\n"

	t.Run("two versions load together", func(t *testing.T) {
		dir := t.TempDir()
		write(dir, "v1.yaml", v1)
		write(dir, "v2.yaml", v2)
		out, errOut, err := execute(t, "", "validate", dir)
		if err != nil {
			t.Fatalf("validate: %v\n%s", err, errOut)
		}
		for _, want := range []string{
			"ok  apply                        v1  1 steps  (superseded by v2: finishes its instances, starts none)",
			"ok  apply                        v2  1 steps  (apps)",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("output does not list %q:\n%s", want, out)
			}
		}
	})
	t.Run("each version checked on its own, a duplicate names both files", func(t *testing.T) {
		dir := t.TempDir()
		first := write(dir, "a.yaml", v2)
		again := write(dir, "b.yaml", v2)
		bad := write(dir, "c.yaml", "saga: apply\nversion: 3\ntrigger: {topic: apps}\nsteps:\n  - {id: f, action: Finish, next: gone}\n")
		_, errOut, err := execute(t, "", "validate", dir)
		var ee exitError
		if !errors.As(err, &ee) || ee.code != 1 {
			t.Fatalf("err = %v, want exit code 1", err)
		}
		for _, want := range []string{
			again + `:1: saga "apply" version 2 is already defined at ` + first + ":1",
			bad + `:5: step "f": next goes to unknown step "gone" (steps: f)`,
		} {
			if !strings.Contains(errOut, want) {
				t.Errorf("stderr does not report %q:\n%s", want, errOut)
			}
		}
	})
}
