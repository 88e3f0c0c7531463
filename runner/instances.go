package runner

import (
	"context"
	"fmt"

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

// InstanceMetrics is implemented by a Metrics that also counts instances.
type InstanceMetrics interface {
	// InstanceStarted counts an instance started, by saga.
	InstanceStarted(saga string)
	// InstanceEnded counts an instance ended, by saga and end status.
	InstanceEnded(saga, status string)
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
