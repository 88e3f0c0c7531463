package runner

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/sagarunner/sagarunner/instances"
	"github.com/sagarunner/sagarunner/saga"
	"github.com/sagarunner/sagarunner/saga/envelope"
)

// InstanceStore is where the runner writes the instance events of the
// outputs it makes durable (*instances.Store). ApplyBatch must be
// idempotent per group: a batch retried after a failure applies again.
type InstanceStore interface {
	ApplyBatch(ctx context.Context, b *instances.Batch) error
}

// WithInstances makes the runner apply every output's instance events to
// store, and publish them on auditTopic ("" publishes none), as part of
// making the output durable: an input is committed only once its events
// are applied and its audit records acknowledged.
func WithInstances(store InstanceStore, auditTopic string) Option {
	return func(r *Runner) { r.instances, r.auditTopic = store, auditTopic }
}

// instanceDeader is the engine telling which instance a record the runner
// dead-letters ends (*saga.Engine).
type instanceDeader interface {
	DeadInstance(rec saga.Record, code, reason string) []instances.Event
}

// InstanceMetrics is implemented by a Metrics that also counts instances.
type InstanceMetrics interface {
	// InstanceStarted counts an instance started, by saga.
	InstanceStarted(saga string)
	// InstanceEnded counts an instance ended, by saga and end status.
	InstanceEnded(saga, status string)
	// OpenInstances sets how many instances are open, store-wide.
	OpenInstances(n int64)
}

// openCounter is an InstanceStore that counts its open instances cheaply.
type openCounter interface {
	CountOpen(ctx context.Context) (int64, error)
}

// sampleOpenInstances sets the open instances gauge from the store, when
// both can. A failed count leaves the last value, logged rate-limited.
func (r *Runner) sampleOpenInstances(ctx context.Context) {
	m, ok := r.metrics.(InstanceMetrics)
	c, ok2 := r.instances.(openCounter)
	if !ok || !ok2 {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	n, err := c.CountOpen(cctx)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			r.events.log(slog.LevelWarn, topicPartition{"instances", 0}, "runner: cannot count open instances", "reason", err.Error())
		}
		return
	}
	m.OpenInstances(n)
}

// instanceWrites are the instance events of a batch of outputs, encoded
// once: the same bytes go to the store and, as audit records, to the audit
// topic.
type instanceWrites struct {
	batch instances.Batch
	// audit holds every output's audit records; output i's are
	// audit[from[i]:from[i+1]].
	audit []envelope.Record
	from  []int
}

// encodeInstances encodes the instance events of outs; nil when tracking is
// off or there are none.
func (r *Runner) encodeInstances(outs []saga.Output) *instanceWrites {
	if r.instances == nil && r.auditTopic == "" {
		return nil
	}
	n := 0
	for i := range outs {
		n += len(outs[i].Instances)
	}
	if n == 0 {
		return nil
	}
	w := &instanceWrites{from: make([]int, len(outs)+1)}
	w.batch.Grow(n)
	if r.auditTopic != "" {
		w.audit = make([]envelope.Record, 0, len(outs))
	}
	for i := range outs {
		w.from[i] = len(w.audit)
		audits := w.batch.Add(outs[i].Instances)
		if r.auditTopic == "" {
			continue
		}
		// One record per instance the output touched, keyed by the
		// instance id, its events in order: one input's trail of an
		// instance is one record.
		for _, a := range audits {
			w.audit = append(w.audit, envelope.Record{Topic: r.auditTopic, Key: auditKey(a), Value: a.Value})
		}
	}
	w.from[len(outs)] = len(w.audit)
	return w
}

// auditKey is the key of a's record, the instance id: the bytes of the id
// in the record's value, which begins with it, when it needed no escaping
// there, else a copy.
func auditKey(a instances.Audit) []byte {
	const head = `{"instanceId":"`
	id := a.Instance
	if v := a.Value; len(v) > len(head)+len(id) && string(v[len(head):len(head)+len(id)]) == id && v[len(head)+len(id)] == '"' {
		return v[len(head) : len(head)+len(id) : len(head)+len(id)]
	}
	return []byte(id)
}

// auditOf returns output i's audit records.
func (w *instanceWrites) auditOf(i int) []envelope.Record {
	if w == nil {
		return nil
	}
	return w.audit[w.from[i]:w.from[i+1]:w.from[i+1]]
}

// apply writes w's events, or does nothing when there are none.
func (r *Runner) apply(ctx context.Context, w *instanceWrites) error {
	if w == nil || r.instances == nil {
		return nil
	}
	if err := r.instances.ApplyBatch(ctx, &w.batch); err != nil {
		return fmt.Errorf("runner: instance events: %w: %w", saga.ErrRetry, err)
	}
	return nil
}

// auditRecords are out's events on the audit topic (see encodeInstances).
func (r *Runner) auditRecords(out *saga.Output) []envelope.Record {
	if r.auditTopic == "" || len(out.Instances) == 0 {
		return nil
	}
	return r.encodeInstances([]saga.Output{*out}).auditOf(0)
}

// applyInstances writes the events of outs, or does nothing when
// tracking is off or there are none.
func (r *Runner) applyInstances(ctx context.Context, outs []saga.Output) error {
	return r.apply(ctx, r.encodeInstances(outs))
}

// countInstances feeds the instance metrics from a durable output.
func (r *Runner) countInstances(out *saga.Output) {
	m, ok := r.metrics.(InstanceMetrics)
	if !ok {
		return
	}
	for _, e := range out.Instances {
		switch e.Type {
		case instances.EventStarted:
			m.InstanceStarted(e.Saga)
		case instances.EventFinished:
			m.InstanceEnded(e.Saga, instances.StatusCompleted)
		case instances.EventFailed, instances.EventDeadLettered:
			m.InstanceEnded(e.Saga, instances.StatusFailed)
		case instances.EventCancelled:
			m.InstanceEnded(e.Saga, instances.StatusCancelled)
		}
	}
}
