package app_test

import (
	"context"
	"reflect"
	"strconv"
	"testing"

	"github.com/sagarunner/sagarunner/actions"
	"github.com/sagarunner/sagarunner/internal/app"
	"github.com/sagarunner/sagarunner/internal/redistest"
	"github.com/sagarunner/sagarunner/saga"
	"github.com/sagarunner/sagarunner/statemanager"
)

// TestStaleVersions stores open tasks of instances on several saga
// versions in a real Redis and checks that the start-up check counts
// exactly those no loaded version can resume, across tenants.
func TestStaleVersions(t *testing.T) {
	ctx := context.Background()
	_, client := redistest.Start(t)
	stores := statemanager.NewResolver(client, statemanager.RedisConfig{Shards: 4}, nil)
	store, err := stores.Store("workflow")
	if err != nil {
		t.Fatal(err)
	}
	set, err := saga.LoadBytes(actions.Default, "apply.yaml", []byte(
		"saga: apply\nversion: 2\ntrigger: {topic: apps}\nsteps:\n  - {id: f, action: Finish}\n"))
	if err != nil {
		t.Fatal(err)
	}
	envOf := func(name string, version int) []byte {
		if name == "" {
			return nil
		}
		return []byte(`{"sagaMeta":{"saga":"` + name + `","version":` + strconv.Itoa(version) + `,"stepId":"review"}}`)
	}
	for _, tc := range []struct {
		id, saga string
		version  int
		tenant   string
		deadline int64
		closed   bool
	}{
		{id: "v1-default", saga: "apply", version: 1},
		{id: "v1-other-tenant", saga: "apply", version: 1, tenant: "acme", deadline: 1_900_000_000_000}, // found through its deadline
		{id: "v2-loaded", saga: "apply", version: 2},
		{id: "gone-saga", saga: "gone", version: 1},
		{id: "direct", saga: ""},
		{id: "v1-closed", saga: "apply", version: 1, closed: true},
	} {
		task := &statemanager.Task{ID: tc.id, Saga: tc.saga, StepID: "review", RequestID: "r-" + tc.id, Tenant: tc.tenant,
			Deadline: tc.deadline, Envelope: envOf(tc.saga, tc.version)}
		if _, _, err := store.Start(ctx, task); err != nil {
			t.Fatalf("start %s: %v", tc.id, err)
		}
		if tc.closed {
			if _, _, err := store.Close(ctx, statemanager.Close{ID: tc.id, Status: statemanager.StatusCompleted, At: 1, Key: "c"}); err != nil {
				t.Fatalf("close %s: %v", tc.id, err)
			}
		}
	}
	got, err := app.StaleVersions(ctx, set, stores, []string{"workflow", "empty"}, []string{""})
	if err != nil {
		t.Fatalf("StaleVersions: %v", err)
	}
	want := []app.StaleWait{
		{Domain: "workflow", Saga: "apply", Version: 1, Tasks: 2, Sampled: 5, Full: true},
		{Domain: "workflow", Saga: "gone", Version: 1, Tasks: 1, Sampled: 5, Full: true},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("StaleVersions =\n %+v\nwant\n %+v", got, want)
	}
}
