package app

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sort"
	"time"

	"github.com/tidwall/gjson"

	"github.com/sagarunner/sagarunner/saga"
	"github.com/sagarunner/sagarunner/statemanager"
)

// Bounds of the start-up check for instances waiting on a saga version that
// is no longer loaded. It reads a sample, never a whole domain: a runner
// with millions of waiting tasks must start as fast as one with none, and
// a warning needs one example, not an exact count.
const (
	// staleSampleTasks bounds the tasks read per domain.
	staleSampleTasks = 500
	// staleSamplePage bounds one read: a task carries its suspended
	// envelope, so a page of huge envelopes stays a few megabytes.
	staleSamplePage = 50
	// staleCheckTimeout bounds the whole check; it runs beside the runner
	// and never delays it.
	staleCheckTimeout = 30 * time.Second
)

// StaleWait counts sampled open tasks of one domain whose instance waits on
// a saga version that is not loaded: when such a task closes, its
// continuation is dead-lettered (UNKNOWN_SAGA_VERSION, or UNKNOWN_SAGA when
// no version of the saga is loaded) instead of resuming.
type StaleWait struct {
	Domain  string
	Saga    string
	Version int
	// Tasks is how many of the sampled tasks wait on it; Sampled is how
	// many open tasks of the domain were read, Full whether that was all
	// of them as far as the sample's reads could see.
	Tasks, Sampled int
	Full           bool
}

// StaleVersions samples the open tasks of each domain and reports, per
// (domain, saga, version), those whose instance no version of set can
// resume. The version is read from the task's suspended envelope
// (sagaMeta.version), the very value its continuation will carry. The
// sample takes the oldest open tasks of each tenant in tenants (WAITING and
// IN_APPROVAL), then the tasks with the earliest deadlines of every tenant,
// up to staleSampleTasks per domain. Tasks a direct action started (no
// saga) are skipped.
func StaleVersions(ctx context.Context, set *saga.Set, stores statemanager.Resolver, domains, tenants []string) ([]StaleWait, error) {
	var out []StaleWait
	for _, d := range domains {
		s, err := stores.Store(d)
		if err != nil {
			return out, fmt.Errorf("domain %s: %w", d, err)
		}
		tasks, full, err := sampleOpen(ctx, s, tenants)
		if err != nil {
			return out, fmt.Errorf("domain %s: %w", d, err)
		}
		type sv struct {
			saga    string
			version int
		}
		counts := map[sv]int{}
		for _, t := range tasks {
			if t.Saga == "" {
				continue
			}
			v := int(gjson.GetBytes(t.Envelope, "sagaMeta.version").Int())
			if _, ok := set.ByVersion(t.Saga, v); !ok {
				counts[sv{t.Saga, v}]++
			}
		}
		keys := make([]sv, 0, len(counts))
		for k := range counts {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool {
			if keys[i].saga != keys[j].saga {
				return keys[i].saga < keys[j].saga
			}
			return keys[i].version < keys[j].version
		})
		for _, k := range keys {
			out = append(out, StaleWait{Domain: d, Saga: k.saga, Version: k.version, Tasks: counts[k], Sampled: len(tasks), Full: full})
		}
	}
	return out, nil
}

// sampleOpen reads up to staleSampleTasks open tasks of s; full reports
// that no read was cut short by the bound.
func sampleOpen(ctx context.Context, s statemanager.Store, tenants []string) ([]*statemanager.Task, bool, error) {
	seen := map[string]bool{}
	var tasks []*statemanager.Task
	full := true
	keep := func(t *statemanager.Task) {
		if !seen[t.ID] && t.Waiting() {
			seen[t.ID] = true
			tasks = append(tasks, t)
		}
	}
	for _, tenant := range tenants {
		for _, status := range []string{statemanager.StatusWaiting, statemanager.StatusInApproval} {
			left := staleSampleTasks - len(tasks)
			if left <= 0 {
				return tasks, false, nil
			}
			limit := min(left, staleSamplePage)
			page, err := s.List(ctx, statemanager.Filter{Tenant: tenant, Status: status, Limit: limit})
			if err != nil {
				return tasks, false, err
			}
			if len(page) == limit {
				full = false
			}
			for _, t := range page {
				keep(t)
			}
		}
	}
	// The deadline index spans every tenant, so tenants nobody configured
	// (a JWT's) are sampled too, as far as their tasks have deadlines.
	left := staleSampleTasks - len(tasks)
	if left <= 0 {
		return tasks, false, nil
	}
	due, err := s.Between(ctx, 0, math.MaxInt64, left)
	if err != nil {
		return tasks, false, err
	}
	if len(due) == left {
		full = false
	}
	for _, d := range due {
		if seen[d.ID] {
			continue
		}
		t, err := s.Get(ctx, d.ID)
		if err != nil {
			continue // closed or gone since: not waiting
		}
		keep(t)
	}
	return tasks, full, nil
}

// warnStaleVersions logs one warning per (domain, saga, version) that
// sampled open tasks wait on and no loaded saga can resume, so an operator
// who removed a version learns it before the first dead letter. It never
// fails the process: a check that cannot run is logged and dropped.
func (a *App) warnStaleVersions(parent context.Context) {
	ctx, cancel := context.WithTimeout(parent, staleCheckTimeout)
	defer cancel()
	domains := slices.Clone(a.engine.Domains())
	for _, sm := range a.cfg.StateManagers {
		domains = append(domains, sm.Domain)
	}
	domains = append(domains, a.cfg.Timers.Domains...)
	slices.Sort(domains)
	domains = slices.Compact(domains)
	tenants := []string{""}
	for _, t := range a.cfg.Auth.Tokens {
		tenants = append(tenants, t.Tenant)
	}
	slices.Sort(tenants)
	tenants = slices.Compact(tenants)

	stale, err := StaleVersions(ctx, a.sagas, a.stores, domains, tenants)
	for _, s := range stale {
		count := fmt.Sprint(s.Tasks)
		if !s.Full {
			count = "at least " + count
		}
		loaded := "none"
		if vs := a.sagas.Versions(s.Saga); len(vs) > 0 {
			loaded = fmt.Sprint(vs)
		}
		a.log.Warn("instances wait on a saga version that is not loaded: when their tasks close, the continuations are dead-lettered; load the version again to let them finish",
			"domain", s.Domain, "saga", s.Saga, "version", s.Version, "loadedVersions", loaded,
			"waitingTasks", count, "sampledTasks", s.Sampled)
	}
	if err != nil && parent.Err() == nil {
		// Shutting down is no failure of the check; anything else is
		// worth a line, since the operator now knows less than usual.
		a.log.Warn("could not finish the check for instances waiting on unloaded saga versions", "err", err)
	}
}
