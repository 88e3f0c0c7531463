//go:build !race

package test

// raceEnabled builds the runner binary with the race detector too.
const raceEnabled = false
