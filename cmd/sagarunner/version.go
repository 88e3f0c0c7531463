package main

import (
	"fmt"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// versionLine describes the binary in one line: the module version, the
// commit it was built from (marked dirty when the tree had uncommitted
// changes) and the Go version, from what the Go toolchain stamps into
// every binary. A `go run` or test binary has no stamped module version.
func versionLine(info *debug.BuildInfo, ok bool) string {
	if !ok || info == nil {
		return "sagarunner (unknown version: no build information)"
	}
	version := info.Main.Version
	if version == "" {
		version = "(devel)"
	}
	var rev, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	parts := []string{"sagarunner", version}
	if rev != "" {
		if modified == "true" {
			rev += "-dirty"
		}
		parts = append(parts, "commit "+rev)
	}
	parts = append(parts, info.GoVersion)
	return strings.Join(parts, " ")
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the module version, the commit and the Go version the binary was built with",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			fmt.Fprintln(cmd.OutOrStdout(), versionLine(debug.ReadBuildInfo()))
			return nil
		},
	}
}
