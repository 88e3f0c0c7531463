package metrics

import "sync"

// OtherLabel is the label value that stands for every value past a
// metric's series bound (WithMaxSeries).
const OtherLabel = "other"

// DefaultMaxSeries is how many label sets one metric of the runner keeps
// by default before new ones count under OtherLabel.
const DefaultMaxSeries = 1000

// bounded hands out the children of one vector by their label values and
// admits at most max distinct label sets: past it, a set not seen yet is
// recorded under overflow(set), which replaces its open labels (domain,
// saga, step, code) with OtherLabel and keeps the ones from a fixed set
// (a status). The callers pass only values from loaded definitions,
// configured domains and fixed code sets; the bound is what keeps a bug, or
// a value that slipped through from a request, from growing the series
// set, and with it every scrape and the Prometheus server, without end.
//
// The cache also spares the hot path the vector's hashing of its labels:
// a lookup is a read lock and a map read keyed by an array of strings,
// which does not allocate.
type bounded[K comparable, C any] struct {
	max      int
	child    func(K) C
	overflow func(K) K

	mu sync.RWMutex
	m  map[K]C
	// admitted counts the label sets admitted under the bound; overflow
	// sets are kept in m too but not counted, and there are few of them,
	// made of OtherLabel and fixed values.
	admitted int
}

func newBounded[K comparable, C any](max int, child func(K) C, overflow func(K) K) *bounded[K, C] {
	return &bounded[K, C]{max: max, child: child, overflow: overflow, m: make(map[K]C)}
}

// get returns the child of k, or of overflow(k) when the bound is reached.
func (b *bounded[K, C]) get(k K) C {
	b.mu.RLock()
	c, ok := b.m[k]
	b.mu.RUnlock()
	if ok {
		return c
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if c, ok := b.m[k]; ok {
		return c
	}
	if b.admitted >= b.max {
		k = b.overflow(k)
		if c, ok := b.m[k]; ok {
			return c
		}
	} else {
		b.admitted++
	}
	c = b.child(k)
	b.m[k] = c
	return c
}

// one is the overflow of a single open label.
func one([1]string) [1]string { return [1]string{OtherLabel} }
