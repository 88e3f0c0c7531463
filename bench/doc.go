// Package bench is the load generator behind `sagarunner bench`: it drives a
// runner with the scenarios of the performance targets (StartTask and
// ProceedTask throughput, deadline lateness under a million waiting tasks,
// the HTTP /ProceedTask hook, memory as waiting tasks grow) and prints one
// JSON line per measurement. By default the runner under test is a child
// process of the bench, started from the sagarunner binary itself, so its
// peak memory and CPU time are measured apart from the load generator and
// the embedded broker, which run in the bench process.
package bench
