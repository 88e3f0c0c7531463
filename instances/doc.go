// Package instances keeps what an operator or an auditor asks of a saga
// instance (SPEC §13): its record (status, current step, open tasks, times,
// last result, tenant, starter, business key) and its bounded timeline, in
// Redis, with the per-tenant listing indexes the dashboard pages through.
//
// The engine never writes here. It describes what happened as Events in its
// output, and the runner hands a whole batch's events to Store.Apply in one
// pipelined round trip (one script per shard), so tracking adds no round
// trip per step. Apply is idempotent per handled input and instance (see
// Batch), so a record handled again after a crash neither duplicates a
// timeline entry nor moves an instance back: an ended instance stays
// ended. The script does a few Redis calls per input, not per event, and
// the listing indexes change only when an instance starts or ends. Like a state manager, the
// package knows records and events, not sagas.
package instances
