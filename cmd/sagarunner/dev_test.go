package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sagarunner/sagarunner/internal/testutil"
)

// syncBuffer lets the test read what dev prints while dev still runs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestDevHelpIsTruthful(t *testing.T) {
	out, _, err := execute(t, "", "dev", "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, text string
		want       bool
	}{
		{"no claim of a default Redis address", "127.0.0.1:6379", false},
		{"embedded Redis by default", "default: an embedded in-memory Redis", true},
		{"loopback HTTP by default", "default 127.0.0.1:8080", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if strings.Contains(out, tc.text) != tc.want {
				t.Errorf("dev --help mentions %q: %v, want %v\n%s", tc.text, !tc.want, tc.want, out)
			}
		})
	}
}

// TestDevBanner starts dev in process and checks its banner prints the
// addresses it really bound and whether auth is on.
func TestDevBanner(t *testing.T) {
	authFile := filepath.Join(t.TempDir(), "auth.yaml")
	if err := os.WriteFile(authFile, []byte("auth:\n  tokens:\n    - {token: t-123, user: alice}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want []string // regular expressions, one per banner line
	}{
		{"defaults", nil, []string{
			`(?m)^  kafka     127\.0\.0\.1:[1-9][0-9]*   \(embedded broker`,
			`(?m)^  redis     127\.0\.0\.1:[1-9][0-9]*   \(embedded, in memory`,
			`(?m)^  http      http://127\.0\.0\.1:[1-9][0-9]*   \(this machine only`,
			`(?m)^  ui        http://127\.0\.0\.1:[1-9][0-9]*/ui/   \(web inbox`,
			`(?m)^  auth      none configured: every caller is trusted$`,
			`(?m)^    proceed_task +POST /ProceedTask$`,
		}},
		{"auth from --config", []string{"--config", authFile}, []string{
			`(?m)^  ui        http://127\.0\.0\.1:[1-9][0-9]*/ui/   \(web inbox: tasks and instances; pick one of the 1 configured users\)$`,
			`(?m)^  auth      on: callers need a bearer token$`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			root := newRoot()
			var out syncBuffer
			root.SetOut(&out)
			root.SetErr(&out)
			// Port 0 everywhere: tests run beside each other and beside a
			// developer's own dev.
			root.SetArgs(append([]string{"dev", "--kafka-port", "0", "--http", "127.0.0.1:0", "--sagas", "../../sagas"}, tc.args...))
			done := make(chan error, 1)
			go func() { done <- root.ExecuteContext(ctx) }()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("dev: %v", err)
				}
			}()
			testutil.Eventually(t, 30*time.Second, 20*time.Millisecond, func() error {
				select {
				case err := <-done:
					done <- err
					return fmt.Errorf("dev stopped: %v\n%s", err, out.String())
				default:
				}
				if !strings.Contains(out.String(), "Ctrl-C stops it.") {
					return fmt.Errorf("no banner yet")
				}
				return nil
			})
			banner := out.String()
			for _, re := range tc.want {
				if !regexp.MustCompile(re).MatchString(banner) {
					t.Errorf("banner does not match %s:\n%s", re, banner)
				}
			}
		})
	}
}
