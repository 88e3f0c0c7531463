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
// outputs it makes durable (*instances.Store). Apply must be idempotent per
// event key: a batch retried after a failure applies its events again.
type InstanceStore interface {
	Apply(ctx context.Context, events []instances.Event) error
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

// auditRecords are out's events on the audit topic: one record per
// instance the output touched, keyed by the instance id, its events in
// order, so one input's trail of an instance is one record.
func (r *Runner) auditRecords(out *saga.Output) []envelope.Record {
	if r.auditTopic == "" || len(out.Instances) == 0 {
		return nil
	}
	evs := out.Instances
	if len(evs) == 1 || sameInstance(evs) {
		return []envelope.Record{{Topic: r.auditTopic, Key: []byte(evs[0].Instance), Value: instances.AuditRecord(evs[0].Instance, evs)}}
	}
	var order []string
	byID := map[string][]instances.Event{}
	for _, e := range evs {
		if _, ok := byID[e.Instance]; !ok {
			order = append(order, e.Instance)
		}
		byID[e.Instance] = append(byID[e.Instance], e)
	}
	recs := make([]envelope.Record, 0, len(order))
	for _, id := range order {
		recs = append(recs, envelope.Record{Topic: r.auditTopic, Key: []byte(id), Value: instances.AuditRecord(id, byID[id])})
	}
	return recs
}

func sameInstance(evs []instances.Event) bool {
	for _, e := range evs[1:] {
		if e.Instance != evs[0].Instance {
			return false
		}
	}
	return true
}

// applyInstances writes the events of outs, or does nothing when
// tracking is off or there are none.
func (r *Runner) applyInstances(ctx context.Context, outs []saga.Output) error {
	if r.instances == nil {
		return nil
	}
	n := 0
	for i := range outs {
		n += len(outs[i].Instances)
	}
	if n == 0 {
		return nil
	}
	evs := make([]instances.Event, 0, n)
	for i := range outs {
		evs = append(evs, outs[i].Instances...)
	}
	if err := r.instances.Apply(ctx, evs); err != nil {
		return fmt.Errorf("runner: instance events: %w: %w", saga.ErrRetry, err)
	}
	return nil
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
