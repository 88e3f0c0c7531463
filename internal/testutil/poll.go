// Package testutil holds test helpers shared across packages.
package testutil

import (
	"testing"
	"time"
)

// Eventually polls fn every sleep until it returns nil or total elapses, then
// fails the test with fn's last error. Tests use it instead of sleeping for
// an effect.
func Eventually(t testing.TB, total, sleep time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(total)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met after %v: %v", total, err)
		}
		time.Sleep(sleep)
	}
}
