package statemanager

import (
	"regexp"
	"strings"
	"testing"
)

func TestWithLibTakesWhatTheScriptUses(t *testing.T) {
	lib := "-- header\n-- more\n\n-- a\nlocal function a() return 1 end\n\nlocal cap = 5\n\n-- b uses a and cap\nlocal function b() return a() + cap end\n\nlocal function c() return 3 end\n"
	got := withLib(lib, "return b()\n")
	want := "-- a\nlocal function a() return 1 end\n\nlocal cap = 5\n\n-- b uses a and cap\nlocal function b() return a() + cap end\n\nreturn b()\n"
	if got != want {
		t.Fatalf("withLib:\n%s\nwant:\n%s", got, want)
	}
	if got := withLib(lib, "-- not b() nor a()\nreturn 1\n"); got != "-- not b() nor a()\nreturn 1\n" {
		t.Fatalf("a script using nothing got %q", got)
	}
}

// TestScriptsDefineWhatTheyCall keeps every composed script complete: each
// lib helper its code calls is defined in it, before the script's own code.
// (No script has "--" inside a string, which the comment stripping would
// cut: TestNoDashesInLuaStrings.)
func TestScriptsDefineWhatTheyCall(t *testing.T) {
	for name, body := range map[string]string{"start": startLua, "close": closeLua, "ack": ackLua, "apply": applyLua} {
		s := withLib(libLua, body)
		for _, c := range parseLib(libLua) {
			if strings.Contains(luaComment.ReplaceAllString(body, ""), c.name+"(") && !strings.Contains(s, "local function "+c.name+"(") {
				t.Errorf("%s calls %s but does not define it", name, c.name)
			}
		}
	}
}

// TestParseLibKeepsEveryLine: the definitions of lib.lua, joined, are the
// whole file but its header, so no line of a helper (a blank one inside a
// function, say) is lost.
func TestParseLibKeepsEveryLine(t *testing.T) {
	var b strings.Builder
	for _, c := range parseLib(libLua) {
		b.WriteString(c.text)
	}
	if !strings.HasSuffix(libLua, b.String()) || !strings.HasPrefix(strings.TrimPrefix(libLua, strings.TrimSuffix(libLua, b.String())), "--") {
		t.Fatalf("parsed lib is not the file's tail:\n%s", b.String())
	}
}

func TestNoDashesInLuaStrings(t *testing.T) {
	quoted := regexp.MustCompile(`'[^'\n]*--[^'\n]*'|"[^"\n]*--[^"\n]*"`)
	for name, body := range map[string]string{"lib": libLua, "start": startLua, "close": closeLua, "ack": ackLua, "apply": applyLua, "list": listLua} {
		for _, line := range strings.Split(body, "\n") {
			code := line
			if i := strings.Index(code, "--"); i >= 0 {
				code = code[:i]
			}
			if strings.Count(code, "'")%2 == 1 || strings.Count(code, `"`)%2 == 1 || quoted.MatchString(line) && !strings.HasPrefix(strings.TrimSpace(line), "--") {
				t.Errorf("%s: a string holds \"--\" (withLib would read a comment there): %s", name, line)
			}
		}
	}
}
