package clock

import (
	"testing"
	"time"
)

func TestFake(t *testing.T) {
	start := time.UnixMilli(1_763_800_000_000)
	f := NewFake(start)
	early, late := f.After(time.Second), f.After(time.Minute)
	immediate := f.After(0)
	select {
	case <-immediate:
	default:
		t.Fatal("After(0) did not fire at once")
	}
	f.Advance(999 * time.Millisecond)
	select {
	case <-early:
		t.Fatal("fired before its time")
	default:
	}
	f.Advance(time.Millisecond)
	select {
	case at := <-early:
		if !at.Equal(start.Add(time.Second)) {
			t.Errorf("fired at %v", at)
		}
	default:
		t.Fatal("did not fire at its time")
	}
	f.Set(start) // never backwards
	if got := NowMillis(f); got != start.Add(time.Second).UnixMilli() {
		t.Errorf("clock moved back to %d", got)
	}
	select {
	case <-late:
		t.Fatal("a minute waiter fired after a second")
	default:
	}
}
