// Package actionstest holds an in-memory state manager with the task
// lifecycle (statemanager.Lifecycle), for tests of the lifecycle actions and
// of sagas that use them. It keeps the contract of statemanager.Store and
// Lifecycle (versions, idempotent keys, history) without any of Redis's
// costs; it is not meant for production.
package actionstest

import (
	"context"
	"encoding/json"
	"slices"
	"sort"
	"sync"

	"github.com/sagarunner/sagarunner/statemanager"
)

// Resolver resolves every domain to its own MemStore.
type Resolver struct {
	mu     sync.Mutex
	stores map[string]*MemStore
}

// NewResolver returns an empty Resolver.
func NewResolver() *Resolver { return &Resolver{stores: map[string]*MemStore{}} }

// Store returns the domain's store, creating it on first use.
func (r *Resolver) Store(domain string) (statemanager.Store, error) {
	if !statemanager.ValidDomain(domain) {
		return nil, statemanager.ErrInvalidDomain
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.stores[domain]
	if !ok {
		s = NewMemStore()
		r.stores[domain] = s
	}
	return s, nil
}

// MemStore is one domain's tasks in memory.
type MemStore struct {
	mu        sync.Mutex
	tasks     map[string]*statemanager.Task
	history   map[string][]statemanager.Event
	keys      map[string]map[string]bool // task id -> applied change keys
	pending   map[string]bool
	watermark int64
	// early holds the early answers (early.go).
	early memEarly
}

var (
	_ statemanager.Store     = (*MemStore)(nil)
	_ statemanager.Lifecycle = (*MemStore)(nil)
)

// NewMemStore returns an empty store.
func NewMemStore() *MemStore {
	return &MemStore{tasks: map[string]*statemanager.Task{}, history: map[string][]statemanager.Event{},
		keys: map[string]map[string]bool{}, pending: map[string]bool{}}
}

func clone(t *statemanager.Task) *statemanager.Task {
	b, _ := json.Marshal(t)
	var c statemanager.Task
	_ = json.Unmarshal(b, &c)
	return &c
}

func (s *MemStore) event(id string, e statemanager.Event) {
	e.Seq = int64(len(s.history[id]) + 1)
	s.history[id] = append(s.history[id], e)
}

// Start: see statemanager.Store.
func (s *MemStore) Start(_ context.Context, t *statemanager.Task) (*statemanager.Task, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.tasks[t.ID]; ok {
		same := old.StartKey == t.StartKey && (t.StartKey != "" || (old.RequestID == t.RequestID && old.StepID == t.StepID))
		if statemanager.Open(old.Status) || same {
			return clone(old), false, nil
		}
		if s.pending[t.ID] {
			return nil, false, statemanager.ErrClosePending
		}
	}
	c := clone(t)
	c.Status = statemanager.StatusWaiting
	c.Version = 1
	s.tasks[t.ID] = c
	s.history[t.ID] = nil
	s.keys[t.ID] = map[string]bool{}
	s.event(t.ID, statemanager.Event{Type: statemanager.EventStarted, At: c.StartedAt, RequestID: c.RequestID})
	return clone(c), true, nil
}

// Get: see statemanager.Store.
func (s *MemStore) Get(_ context.Context, id string) (*statemanager.Task, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tasks[id]
	if !ok {
		return nil, statemanager.ErrNotFound
	}
	return clone(t), nil
}

// Close: see statemanager.Store.
func (s *MemStore) Close(_ context.Context, c statemanager.Close) (*statemanager.Task, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.close(c, true)
}

func (s *MemStore) close(c statemanager.Close, record bool) (*statemanager.Task, bool, error) {
	t, ok := s.tasks[c.ID]
	if !ok {
		return nil, false, statemanager.ErrNotFound
	}
	if !statemanager.Open(t.Status) {
		if c.Key != "" && t.CloseKey == c.Key {
			return clone(t), true, nil
		}
		return clone(t), false, statemanager.ErrClosed
	}
	t.Status, t.ClosedAt, t.ClosedBy, t.CloseData, t.CloseKey, t.EnrichPath = c.Status, c.At, c.By, c.Data, c.Key, c.EnrichPath
	if c.Outcome != "" || c.Note != "" {
		t.Outcome, t.Note = c.Outcome, c.Note
	}
	t.Version++
	s.pending[c.ID] = true
	if record {
		typ := map[string]string{statemanager.StatusCompleted: statemanager.EventCompleted,
			statemanager.StatusCancelled: statemanager.EventCancelled}[c.Status]
		if typ == "" {
			typ = statemanager.EventTimedOut
		}
		s.event(c.ID, statemanager.Event{Type: typ, At: c.At, Actor: c.By, Outcome: c.Outcome, Note: c.Note, RequestID: c.Key})
	}
	return clone(t), false, nil
}

// Apply: see statemanager.Lifecycle.
func (s *MemStore) Apply(_ context.Context, c statemanager.Change) (*statemanager.Task, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tasks[c.ID]
	if !ok {
		return nil, false, statemanager.ErrNotFound
	}
	if c.Key != "" && (s.keys[c.ID][c.Key] || (!statemanager.Open(t.Status) && t.CloseKey == c.Key)) {
		return clone(t), true, nil
	}
	if !statemanager.Open(t.Status) {
		return clone(t), false, statemanager.ErrClosed
	}
	if t.Version != c.Version {
		return clone(t), false, statemanager.ErrStale
	}
	set := func(dst *string, v *string) {
		if v != nil {
			*dst = *v
		}
	}
	set(&t.Status, c.Status)
	set(&t.ClaimedBy, c.ClaimedBy)
	set(&t.User, c.User)
	set(&t.Outcome, c.Outcome)
	set(&t.Note, c.Note)
	set(&t.CompletedBy, c.CompletedBy)
	if c.Roles != nil {
		t.Roles = slices.Clone(*c.Roles)
	}
	if c.Approvals != nil {
		t.Approvals = slices.Clone(*c.Approvals)
	}
	if c.Deadline != nil {
		t.Deadline = *c.Deadline
	}
	if c.CloseData != nil {
		t.CloseData = slices.Clone(*c.CloseData)
	}
	set(&t.EnrichPath, c.EnrichPath)
	t.Version++
	if c.Key != "" {
		s.keys[c.ID][c.Key] = true
	}
	s.event(c.ID, c.Event)
	if c.Close != nil {
		cl := *c.Close
		cl.ID, cl.Key = c.ID, c.Key
		closed, _, err := s.close(cl, false)
		return closed, false, err
	}
	return clone(t), false, nil
}

// History: see statemanager.Lifecycle.
func (s *MemStore) History(_ context.Context, id string) ([]statemanager.Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.tasks[id]; !ok {
		return nil, statemanager.ErrNotFound
	}
	return slices.Clone(s.history[id]), nil
}

// Ack: see statemanager.Store.
func (s *MemStore) Ack(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.pending, id)
	return nil
}

func (s *MemStore) due(from, to int64, shard int, limit int) []statemanager.Due {
	var out []statemanager.Due
	for id, t := range s.tasks {
		if statemanager.Open(t.Status) && t.Deadline != 0 && t.Deadline >= from && t.Deadline <= to && (shard < 0 || s.ShardOf(id) == shard) {
			out = append(out, statemanager.Due{ID: id, Deadline: t.Deadline})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Deadline != out[j].Deadline {
			return out[i].Deadline < out[j].Deadline
		}
		return out[i].ID < out[j].ID
	})
	if len(out) > limit {
		out = out[:limit]
	}
	return out
}

// Due: see statemanager.Store.
func (s *MemStore) Due(_ context.Context, shard int, until int64, limit int) ([]statemanager.Due, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.due(-1<<63, until, shard, limit), nil
}

// Between: see statemanager.Store.
func (s *MemStore) Between(_ context.Context, from, to int64, limit int) ([]statemanager.Due, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.due(from, to, -1, limit), nil
}

// Pending: see statemanager.Store.
func (s *MemStore) Pending(_ context.Context, shard int, closedBefore int64, limit int) ([]*statemanager.Task, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*statemanager.Task
	for id := range s.pending {
		if t := s.tasks[id]; s.ShardOf(id) == shard && t.ClosedAt <= closedBefore && len(out) < limit {
			out = append(out, clone(t))
		}
	}
	return out, nil
}

// Watermark: see statemanager.Store.
func (s *MemStore) Watermark(context.Context) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.watermark, nil
}

// SetWatermark: see statemanager.Store.
func (s *MemStore) SetWatermark(_ context.Context, ms int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.watermark = max(s.watermark, ms)
	return nil
}

// List: see statemanager.Store; it filters every task, which a test's
// handful allows.
func (s *MemStore) List(_ context.Context, f statemanager.Filter) ([]*statemanager.Task, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	status := f.Status
	if status == "" {
		status = statemanager.StatusWaiting
	}
	var out []*statemanager.Task
	for _, t := range s.tasks {
		if t.Status != status || t.Tenant != f.Tenant || !t.VisibleTo(f.Tenant, f.Viewer) {
			continue
		}
		if f.User != "" && t.User != f.User && t.ClosedBy != f.User {
			continue
		}
		if f.Role != "" && !slices.Contains(t.Roles, f.Role) {
			continue
		}
		out = append(out, clone(t))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].StartedAt < out[j].StartedAt })
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out, nil
}

// Shards: one.
func (s *MemStore) Shards() int { return 1 }

// ShardOf: every task is in shard 0.
func (s *MemStore) ShardOf(string) int { return 0 }
