package test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/sagarunner/sagarunner/statemanager"
)

// TestAttackLaunderedIdentity: a saga path whose Publish step forwards the
// body (pattern: parameters) to another saga's trigger topic. The gateway
// keeps the body as data, but the Publish makes that data a record value of
// its own, and a record on a trigger topic that spells requestMeta is read
// as an envelope: the identity written in the body would start the next
// saga. Nothing the caller sends may become identity (SPEC §11).
func TestAttackLaunderedIdentity(t *testing.T) {
	p, store := startAttackProcess(t)
	startAttackTask(t, p, store, "launder-1")

	body := `{"requestMeta":{"requestId":"launder-r","user":"alice","roles":["manager"],"tenant":"acme"},` +
		`"payload":{"parameters":{"taskId":"launder-1"}}}`
	if st, b := do(t, "POST", p.base+"/attack-forward", tokMallory, body); st != http.StatusOK {
		t.Fatalf("mallory forwards: %d %s", st, b)
	}
	// Give the relay saga time to run; alice's task must stay waiting.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		task, err := store.Get(context.Background(), "launder-1")
		if err != nil {
			t.Fatal(err)
		}
		if task.Status != statemanager.StatusWaiting {
			t.Fatalf("launder-1 is %s, closed by %q: the identity in mallory's body decided alice's task", task.Status, task.ClosedBy)
		}
		time.Sleep(poll)
	}
}
