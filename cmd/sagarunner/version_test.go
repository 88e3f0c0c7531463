package main

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestVersionLine(t *testing.T) {
	build := func(version string, settings ...debug.BuildSetting) *debug.BuildInfo {
		return &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Path: "github.com/sagarunner/sagarunner", Version: version}, Settings: settings}
	}
	rev := debug.BuildSetting{Key: "vcs.revision", Value: "0123abcd"}
	for _, tc := range []struct {
		name string
		info *debug.BuildInfo
		ok   bool
		want string
	}{
		{"release", build("v1.2.3", rev, debug.BuildSetting{Key: "vcs.modified", Value: "false"}), true,
			"sagarunner v1.2.3 commit 0123abcd go1.26.0"},
		{"dirty tree", build("(devel)", rev, debug.BuildSetting{Key: "vcs.modified", Value: "true"}), true,
			"sagarunner (devel) commit 0123abcd-dirty go1.26.0"},
		{"no VCS stamp", build(""), true, "sagarunner (devel) go1.26.0"},
		{"no build info", nil, false, "sagarunner (unknown version: no build information)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := versionLine(tc.info, tc.ok); got != tc.want {
				t.Errorf("versionLine = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestVersionCommands checks both spellings print the same single line.
func TestVersionCommands(t *testing.T) {
	want := versionLine(debug.ReadBuildInfo()) + "\n"
	for _, args := range [][]string{{"version"}, {"--version"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			out, _, err := execute(t, "", args...)
			if err != nil {
				t.Fatal(err)
			}
			if out != want || strings.Count(out, "\n") != 1 || !strings.HasPrefix(out, "sagarunner ") {
				t.Errorf("output %q, want %q", out, want)
			}
		})
	}
}
