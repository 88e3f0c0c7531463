// Package timers fires the automatic deadlines of waiting tasks. There is no
// external scheduler: every runner fires the deadline shards that belong to
// the request-topic partitions it owns, so ownership follows the consumer
// group and a dead runner's deadlines move with its partitions. A Scheduler
// runs one loop per (domain, shard); each loop first re-emits the effects of
// closes lost in a crash (Engine.Recover), then fires what is due
// (Engine.FireDue). Two owners racing on one shard during a rebalance are
// harmless: the state manager's atomic close lets exactly one of them time a
// task out.
//
// A loop whose shard has nothing due does not poll: with a store that is a
// Waker it reads the shard's next deadline and sleeps until then, at most
// Config.MaxIdle, and a start or a deadline moved earlier, in any runner,
// wakes it sooner (statemanager.RedisStore.WakeTimers). A shard that fires
// is polled every PollInterval until it goes quiet, so under load deadlines
// are still fired in batches. A lost wake-up delays a deadline by at most
// MaxIdle; nothing is fired twice, since firing is the same atomic close.
package timers
