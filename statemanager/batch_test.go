package statemanager_test

import (
	"context"
	"errors"
	"testing"

	"github.com/sagarunner/sagarunner/internal/redistest"
	"github.com/sagarunner/sagarunner/statemanager"
)

// plainStore hides the optional batch interfaces, as a backend without them
// would.
type plainStore struct{ statemanager.Store }

// TestBatchHelpersFallBack: CloseMany and AckMany give a store without the
// batch interfaces the same results through Close and Ack per id.
func TestBatchHelpersFallBack(t *testing.T) {
	_, client := redistest.Start(t)
	rs, err := statemanager.NewRedisStore(client, "workflow", statemanager.RedisConfig{Prefix: "fallback", Shards: 4})
	if err != nil {
		t.Fatal(err)
	}
	var s statemanager.Store = plainStore{rs}
	if _, ok := s.(statemanager.BatchCloser); ok {
		t.Fatal("wrapper still offers BatchCloser")
	}
	ctx := context.Background()
	for _, id := range []string{"a", "b"} {
		if _, _, err := s.Start(ctx, &statemanager.Task{ID: id, RequestID: "r-" + id, StepID: "s", Deadline: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := s.Close(ctx, statemanager.Close{ID: "b", Status: statemanager.StatusCompleted, Key: "other"}); err != nil {
		t.Fatal(err)
	}
	res, err := statemanager.CloseMany(ctx, s, []string{"a", "b", "nope"},
		statemanager.Close{Status: statemanager.StatusTimeout, At: 5, Key: "timeout"})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Err != nil || res[0].Task == nil || res[0].Task.Status != statemanager.StatusTimeout {
		t.Errorf("a: %+v", res[0])
	}
	if !errors.Is(res[1].Err, statemanager.ErrClosed) || res[1].Task == nil || res[1].Task.Status != statemanager.StatusCompleted {
		t.Errorf("b: %+v", res[1])
	}
	if !errors.Is(res[2].Err, statemanager.ErrNotFound) {
		t.Errorf("nope: %+v", res[2])
	}
	if err := statemanager.AckMany(ctx, s, []string{"a", "b"}); err != nil {
		t.Fatal(err)
	}
	if p, err := s.Pending(ctx, statemanager.ShardOf("a", 4), 1<<62, 0); err != nil || len(p) != 0 {
		t.Errorf("pending after AckMany: %d %v", len(p), err)
	}
}
