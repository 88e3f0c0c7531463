// Package statemanager keeps waiting tasks: the suspended saga envelopes that a
// StartTask step parks until a ProceedTask, a TimeoutTask or a deadline closes
// them. It knows tasks, deadlines and decisions, never sagas. Store is the
// contract; RedisStore is the production backend; storetest is the conformance
// suite every backend passes.
package statemanager
