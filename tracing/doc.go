// Package tracing is sagarunner's OpenTelemetry tracing: the provider built
// from the standard OTEL_* environment variables, the W3C trace context
// carried in Kafka record headers, and the hooks that make spans of Kafka
// produces and Redis calls. The runner and the gateway start the spans of
// their own work (a record handled, an HTTP request) and take a
// TracerProvider; a nil one means tracing is off, and then nothing here is
// installed, so an untraced process pays nothing for it.
//
// Spans never carry a record's value, a request body or a credential: only
// identifiers (topic, partition, offset, request, saga, step, action, task)
// and outcomes.
package tracing
