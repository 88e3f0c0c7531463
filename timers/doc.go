// Package timers fires the automatic deadlines of waiting tasks. There is no
// external scheduler: every runner fires the deadline shards that belong to
// the request-topic partitions it owns, so ownership follows the consumer
// group and a dead runner's deadlines move with its partitions. A Scheduler
// runs one loop per (domain, shard); each loop first re-emits the effects of
// closes lost in a crash (Engine.Recover), then polls Engine.FireDue. Two
// owners racing on one shard during a rebalance are harmless: the state
// manager's atomic close lets exactly one of them time a task out.
package timers
