// Package test holds the end-to-end and fault tests of sagarunner. They run
// whole processes exactly as the binary builds them (internal/app, or the
// built binary itself) against an in-process Kafka broker reached over TCP
// and a real redis-server, and observe them only from outside: Kafka topics,
// HTTP and the state kept in Redis. The package has no non-test code.
package test
