package tracing

import (
	"context"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/propagation"

	"github.com/sagarunner/sagarunner/saga/envelope"
)

// Headers carries the trace context in the headers of a record the engine
// returns or consumes. Set replaces a header of the same key (matched
// case-insensitively, as the propagator's keys are lower-case) and copies
// the slice first: the engine may share one header slice between records.
type Headers struct{ H *[]envelope.Header }

var _ propagation.TextMapCarrier = Headers{}

// Get returns the first value of key.
func (c Headers) Get(key string) string {
	for _, h := range *c.H {
		if strings.EqualFold(h.Key, key) {
			return string(h.Value)
		}
	}
	return ""
}

// Set sets key to value.
func (c Headers) Set(key, value string) {
	hs := make([]envelope.Header, 0, len(*c.H)+1)
	for _, h := range *c.H {
		if !strings.EqualFold(h.Key, key) {
			hs = append(hs, h)
		}
	}
	*c.H = append(hs, envelope.Header{Key: key, Value: []byte(value)})
}

// Keys lists the header keys.
func (c Headers) Keys() []string {
	out := make([]string, len(*c.H))
	for i, h := range *c.H {
		out[i] = h.Key
	}
	return out
}

// RecordHeaders carries the trace context in a kgo record's headers, with
// Headers' rules.
type RecordHeaders struct{ R *kgo.Record }

var _ propagation.TextMapCarrier = RecordHeaders{}

// Get returns the first value of key.
func (c RecordHeaders) Get(key string) string {
	for _, h := range c.R.Headers {
		if strings.EqualFold(h.Key, key) {
			return string(h.Value)
		}
	}
	return ""
}

// Set sets key to value.
func (c RecordHeaders) Set(key, value string) {
	hs := make([]kgo.RecordHeader, 0, len(c.R.Headers)+1)
	for _, h := range c.R.Headers {
		if !strings.EqualFold(h.Key, key) {
			hs = append(hs, h)
		}
	}
	c.R.Headers = append(hs, kgo.RecordHeader{Key: key, Value: []byte(value)})
}

// Keys lists the header keys.
func (c RecordHeaders) Keys() []string {
	out := make([]string, len(c.R.Headers))
	for i, h := range c.R.Headers {
		out[i] = h.Key
	}
	return out
}

// Extract returns ctx with the remote span context carried in hs, if any.
func Extract(ctx context.Context, hs []envelope.Header) context.Context {
	return Propagator.Extract(ctx, Headers{&hs})
}

// Inject writes the span context of ctx into *hs, replacing any trace
// context there. Nothing is written when ctx carries no valid span.
func Inject(ctx context.Context, hs *[]envelope.Header) {
	Propagator.Inject(ctx, Headers{hs})
}
