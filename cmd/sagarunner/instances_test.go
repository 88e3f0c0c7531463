package main

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/sagarunner/sagarunner/instances"
	"github.com/sagarunner/sagarunner/internal/redistest"
)

// TestInstancesCommands reads instances a runner recorded (applied here
// straight to the store the configuration names) with list, get and
// timeline, and refuses bad filters as usage errors.
func TestInstancesCommands(t *testing.T) {
	addr, rdb := redistest.Start(t)
	st, err := instances.NewStore(rdb, instances.Config{})
	if err != nil {
		t.Fatal(err)
	}
	err = st.Apply(context.Background(), []instances.Event{
		{Instance: "r-1", Key: "start", Type: instances.EventStarted, At: 1000, Actor: "alice", Saga: "approval", Version: 2, Tenant: "acme", BusinessKey: "order-9"},
		{Instance: "r-1", Key: "s1", Type: instances.EventStep, At: 1001, Step: "approve", Action: "StartTask", Status: "WAITING", Domain: "workflow", TaskID: "t-9"},
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want []string
		code int
	}{
		{"list", []string{"instances", "list", "--tenant", "acme"}, []string{"r-1", "approval/v2", "WAITING", "order-9", "alice"}, 0},
		{"list by key", []string{"instances", "list", "--tenant", "acme", "--business-key", "order-9", "--json"}, []string{`"id":"r-1"`}, 0},
		{"other tenant", []string{"instances", "list"}, nil, 0},
		{"get", []string{"instances", "get", "r-1"}, []string{`"status": "WAITING"`, `"id": "t-9"`}, 0},
		{"timeline", []string{"instances", "timeline", "r-1"}, []string{"started", "approve", "WAITING"}, 0},
		{"bad status", []string{"instances", "list", "--status", "DONE"}, nil, 2},
		{"bad time", []string{"instances", "list", "--started-after", "yesterday"}, nil, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, err := execute(t, "", append(tc.args, "--redis", addr)...)
			var ee exitError
			switch {
			case tc.code == 0 && err != nil:
				t.Fatalf("error %v; stderr %s", err, errOut)
			case tc.code != 0 && (!errors.As(err, &ee) || ee.code != tc.code):
				t.Fatalf("want exit %d, got %v; stderr %s", tc.code, err, errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Fatalf("output lacks %q:\n%s", w, out)
				}
			}
			if tc.name == "other tenant" && strings.Contains(out, "r-1") {
				t.Fatalf("another tenant's instance listed:\n%s", out)
			}
		})
	}
	if _, _, err := execute(t, "", "instances", "get", "nope", "--redis", addr); err == nil || !strings.Contains(err.Error(), "no instance") {
		t.Fatalf("unknown instance: %v", err)
	}
}
