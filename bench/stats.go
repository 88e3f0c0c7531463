package bench

import (
	"math"
	"slices"
)

// quantiles returns the p50, p99 and max of ms (nearest rank), or zeros
// when it is empty. It sorts ms.
func quantiles(ms []float64) (p50, p99, maxv float64) {
	if len(ms) == 0 {
		return 0, 0, 0
	}
	slices.Sort(ms)
	return rank(ms, 0.50), rank(ms, 0.99), ms[len(ms)-1]
}

func rank(sorted []float64, q float64) float64 {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// round1 keeps figures readable in the JSON lines.
func round1(v float64) float64 { return math.Round(v*10) / 10 }

func round2(v float64) float64 { return math.Round(v*100) / 100 }
