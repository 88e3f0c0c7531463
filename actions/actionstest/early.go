package actionstest

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/sagarunner/sagarunner/statemanager"
)

// memEarly is a MemStore's early answers (statemanager.EarlyAnswers),
// under the store's lock.
type memEarly struct {
	parked map[string][]statemanager.Parked // task id -> arrival order
	seq    int64
	n      int
	// TTL and Max are the limits; zero takes statemanager's defaults.
	ttl time.Duration
	max int
}

var _ statemanager.EarlyAnswers = (*MemStore)(nil)

// SetEarlyLimits sets how long early answers wait and how many the store
// keeps (zero: statemanager.DefaultEarlyTTL and DefaultEarlyMax).
func (s *MemStore) SetEarlyLimits(ttl time.Duration, maxParked int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.early.ttl, s.early.max = ttl, maxParked
}

// StartEarly: see statemanager.EarlyAnswers.
func (s *MemStore) StartEarly(ctx context.Context, t *statemanager.Task) (*statemanager.Task, bool, bool, error) {
	stored, created, err := s.Start(ctx, t)
	s.mu.Lock()
	defer s.mu.Unlock()
	return stored, created, err == nil && len(s.early.parked[t.ID]) > 0, err
}

// Park: see statemanager.EarlyAnswers.
func (s *MemStore) Park(_ context.Context, p statemanager.Parked, at int64) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.tasks[p.TaskID]; ok {
		return false, statemanager.ErrTaskExists
	}
	for _, q := range s.early.parked[p.TaskID] {
		if q.Key == p.Key {
			return false, nil
		}
	}
	ttl, maxParked := s.early.ttl, s.early.max
	if ttl == 0 {
		ttl = statemanager.DefaultEarlyTTL
	}
	if maxParked == 0 {
		maxParked = statemanager.DefaultEarlyMax
	}
	if len(s.early.parked[p.TaskID]) >= statemanager.EarlyPerTask {
		return false, fmt.Errorf("%w: task %q", statemanager.ErrEarlyFull, p.TaskID)
	}
	if s.early.n >= maxParked {
		return false, fmt.Errorf("%w: the domain", statemanager.ErrEarlyFull)
	}
	if s.early.parked == nil {
		s.early.parked = map[string][]statemanager.Parked{}
	}
	s.early.seq++
	p.Seq, p.ExpiresAt = s.early.seq, at+ttl.Milliseconds()
	p.Value = append([]byte(nil), p.Value...)
	s.early.parked[p.TaskID] = append(s.early.parked[p.TaskID], p)
	s.early.n++
	return true, nil
}

// Early: see statemanager.EarlyAnswers.
func (s *MemStore) Early(_ context.Context, id string) ([]statemanager.Parked, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]statemanager.Parked(nil), s.early.parked[id]...), nil
}

// Unpark: see statemanager.EarlyAnswers.
func (s *MemStore) Unpark(_ context.Context, refs []statemanager.EarlyRef) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range refs {
		ps := s.early.parked[r.TaskID]
		for i, p := range ps {
			if p.Key == r.Key {
				s.early.parked[r.TaskID] = append(ps[:i:i], ps[i+1:]...)
				s.early.n--
				break
			}
		}
		if len(s.early.parked[r.TaskID]) == 0 {
			delete(s.early.parked, r.TaskID)
		}
	}
	return nil
}

// Expired: see statemanager.EarlyAnswers.
func (s *MemStore) Expired(_ context.Context, shard int, now int64, limit int) ([]statemanager.Parked, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []statemanager.Parked
	for id, ps := range s.early.parked {
		if s.ShardOf(id) != shard {
			continue
		}
		for _, p := range ps {
			if p.ExpiresAt <= now {
				out = append(out, p)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].ExpiresAt != out[j].ExpiresAt {
			return out[i].ExpiresAt < out[j].ExpiresAt
		}
		return out[i].Seq < out[j].Seq
	})
	if limit <= 0 {
		limit = statemanager.DefaultLimit
	}
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}
