// Package sagas holds the example sagas and the built-in ones. The generic
// /ProceedTask and /TimeoutTask hooks are compiled into the binary, so they
// are served whatever folder --sagas names; a user's saga on the same path or
// with the same name replaces them.
package sagas

import "embed"

//go:embed proceed_task.yaml timeout_task.yaml
var builtIn embed.FS

// builtInFiles are the embedded files, in the order they are loaded.
var builtInFiles = []string{"proceed_task.yaml", "timeout_task.yaml"}

// BuiltIn returns the built-in saga files by file name. The map is a fresh
// copy on every call, so a caller may keep or change it.
func BuiltIn() map[string][]byte {
	out := make(map[string][]byte, len(builtInFiles))
	for _, name := range builtInFiles {
		data, err := builtIn.ReadFile(name)
		if err != nil {
			// The go:embed line above names every file, so the compiler
			// already checked they exist.
			panic("sagas: embedded file missing: " + name)
		}
		out[name] = data
	}
	return out
}
