// Package saga loads YAML saga definitions (every error reported at once with
// file:line) and runs instances of them. The Engine walks an instance's steps
// from a trigger until it waits, finishes or fails, and returns the records to
// produce instead of producing them, so the runner can make them durable
// before it commits offsets.
package saga
