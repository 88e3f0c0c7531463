package runner

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for the logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) lines(t *testing.T) []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(s.b.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

func TestEventLogIsRateLimitedPerPartition(t *testing.T) {
	var buf syncBuffer
	l := newEventLog(slog.New(slog.NewJSONHandler(&buf, nil)))
	at := time.Unix(1_763_800_000, 0)
	l.now = func() time.Time { return at }
	a, b := topicPartition{"approvals", 0}, topicPartition{"approvals", 1}

	l.log(slog.LevelWarn, a, "dead letter", "offset", 1, "code", "PANIC", "reason", "boom")
	l.log(slog.LevelWarn, a, "dead letter", "offset", 2, "code", "PANIC", "reason", "boom")
	l.log(slog.LevelWarn, a, "dead letter", "offset", 3, "code", "PANIC", "reason", "boom")
	l.log(slog.LevelWarn, b, "dead letter", "offset", 7, "code", "PANIC", "reason", "boom")
	built := false
	l.logf(slog.LevelWarn, b, "dead letter", func() []any { built = true; return nil })
	if built {
		t.Error("attributes of a suppressed line were built")
	}
	at = at.Add(eventLogInterval)
	l.log(slog.LevelWarn, a, "dead letter", "offset", 4, "code", "PANIC", "reason", "boom")

	lines := buf.lines(t)
	if len(lines) != 3 {
		t.Fatalf("%d lines, want 3 (one per partition, then one after the interval): %v", len(lines), lines)
	}
	for _, k := range []string{"topic", "partition", "offset", "code", "reason"} {
		if _, ok := lines[0][k]; !ok {
			t.Errorf("line lacks %q: %v", k, lines[0])
		}
	}
	if got := lines[2]["suppressed"]; got != float64(2) {
		t.Errorf("suppressed = %v, want 2: %v", got, lines[2])
	}
	if _, ok := lines[1]["suppressed"]; ok {
		t.Errorf("first line of partition 1 reports suppressed lines: %v", lines[1])
	}
}
