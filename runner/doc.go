// Package runner is the Kafka side of sagarunner: it consumes the trigger
// topics and the request topic in one consumer group, hands each record to
// the saga engine, makes the engine's output durable and only then commits.
//
// Records of one partition are handled strictly in order by that partition's
// worker; partitions run in parallel. A worker handles a batch of polled
// records, produces all of their outputs asynchronously, waits once for the
// acknowledgements, acks the closed tasks in the engine once, and marks the
// batch's last offset for the committer. Revocation waits for in-flight
// batches and commits before the partition moves, so a new owner starts
// where the old one stopped.
//
// Failures are judged in one place: every record goes through a handler
// chain (middleware.go) whose failure policy classifies the error
// (Classify): transient errors pause the partition and retry with jittered
// backoff for as long as they last, permanent ones dead-letter the record at
// once, unknown ones after Config.MaxAttempts tries. An output that cannot
// be produced (too large, no such topic) is replaced by a dead letter naming
// its target and its cause, so no record holds a partition. Readiness and
// the lag and uncommitted-age gauges show a partition that does not move.
// The runner also owns the automatic deadlines of its request-topic
// partitions (package timers).
package runner
