// Package clock is the single source of time for saga and timer logic. Code that
// decides on deadlines takes a Clock so tests can run on a virtual clock and
// never sleep for a deadline to pass.
package clock

import (
	"sync"
	"time"
)

// Clock tells the time and waits for it. Implementations are safe for
// concurrent use.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// After returns a channel that receives once d has elapsed on this clock.
	After(d time.Duration) <-chan time.Time
}

// Real is the wall clock.
type Real struct{}

var _ Clock = Real{}

// Now returns time.Now().
func (Real) Now() time.Time { return time.Now() }

// After is time.After.
func (Real) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Millis returns t as Unix epoch milliseconds, the unit of every deadline.
func Millis(t time.Time) int64 { return t.UnixMilli() }

// NowMillis returns c.Now() in epoch milliseconds.
func NowMillis(c Clock) int64 { return c.Now().UnixMilli() }

// Fake is a virtual clock that only moves when told to. Waiters registered
// with After fire when Advance or Set moves the clock past their time.
type Fake struct {
	mu      sync.Mutex
	now     time.Time
	waiters []fakeWaiter
}

type fakeWaiter struct {
	at time.Time
	ch chan time.Time
}

var _ Clock = (*Fake)(nil)

// NewFake returns a virtual clock set to start.
func NewFake(start time.Time) *Fake { return &Fake{now: start} }

// Now returns the virtual time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// After returns a channel that fires once the virtual clock reaches now+d.
func (f *Fake) After(d time.Duration) <-chan time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan time.Time, 1)
	at := f.now.Add(d)
	if d <= 0 {
		ch <- f.now
		return ch
	}
	f.waiters = append(f.waiters, fakeWaiter{at: at, ch: ch})
	return ch
}

// Advance moves the virtual clock forward by d and fires due waiters.
func (f *Fake) Advance(d time.Duration) { f.Set(f.Now().Add(d)) }

// Set moves the virtual clock to t (never backwards) and fires due waiters.
func (f *Fake) Set(t time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if t.Before(f.now) {
		return
	}
	f.now = t
	kept := f.waiters[:0]
	for _, w := range f.waiters {
		if !w.at.After(t) {
			w.ch <- t
			continue
		}
		kept = append(kept, w)
	}
	f.waiters = kept
}
