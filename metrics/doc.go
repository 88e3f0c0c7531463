// Package metrics holds the Prometheus collectors that the runner and the
// HTTP gateway update, behind small methods that are safe on a nil *Metrics,
// so a component built without metrics (tests, the bench tool) never has to
// check before recording.
package metrics
