package statemanager

import (
	"regexp"
	"strings"
)

// libDefinition matches the line defining a lib.lua helper: a local
// function or a local constant, at the start of a line.
var libDefinition = regexp.MustCompile(`(?m)^local (?:function )?([A-Za-z_][A-Za-z0-9_]*)`)

// luaComment matches a Lua line comment, so a helper a script only names
// in a comment is not prepended to it.
var luaComment = regexp.MustCompile(`--[^\n]*`)

// libChunk is one definition of lib.lua with the comment above it.
type libChunk struct {
	name string
	text string
}

// parseLib splits a lib into its definitions, each from the comment lines
// right above its defining line to the next one's; what comes before the
// first (the file's header comment) is dropped.
func parseLib(lib string) []libChunk {
	lines := strings.SplitAfter(lib, "\n")
	var starts []int
	var names []string
	for i, l := range lines {
		if m := libDefinition.FindStringSubmatch(l); m != nil {
			s := i
			for s > 0 && strings.HasPrefix(lines[s-1], "--") {
				s--
			}
			starts, names = append(starts, s), append(names, m[1])
		}
	}
	chunks := make([]libChunk, len(starts))
	for k, s := range starts {
		end := len(lines)
		if k+1 < len(starts) {
			end = starts[k+1]
		}
		chunks[k] = libChunk{name: names[k], text: strings.Join(lines[s:end], "")}
	}
	return chunks
}

// withLib returns body with the lib.lua definitions its code (comments
// aside) uses prepended, in lib order, and those they use in turn. Lua has no include, and every
// script call runs its top level again, creating each local function
// anew: prepending the whole lib cost every start, close and ack a few
// microseconds of Redis time for helpers it never calls.
func withLib(lib, body string) string {
	chunks := parseLib(lib)
	code := luaComment.ReplaceAllString(body, "")
	used := make([]bool, len(chunks))
	uses := func(text, name string) bool {
		return regexp.MustCompile(`\b` + name + `\b`).MatchString(text)
	}
	// A helper only uses helpers defined before it, so one pass from the
	// last to the first closes over the uses.
	for i := len(chunks) - 1; i >= 0; i-- {
		if uses(code, chunks[i].name) {
			used[i] = true
			continue
		}
		for j := i + 1; j < len(chunks); j++ {
			if used[j] && uses(luaComment.ReplaceAllString(chunks[j].text, ""), chunks[i].name) {
				used[i] = true
				break
			}
		}
	}
	var b strings.Builder
	for i, c := range chunks {
		if used[i] {
			b.WriteString(c.text)
		}
	}
	b.WriteString(body)
	return b.String()
}
