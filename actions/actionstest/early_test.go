package actionstest_test

import (
	"testing"

	"github.com/sagarunner/sagarunner/actions/actionstest"
	"github.com/sagarunner/sagarunner/statemanager"
	"github.com/sagarunner/sagarunner/statemanager/storetest"
)

// TestMemStoreEarlyAnswers holds the in-memory store to the early-answer
// suite, so action tests on it see what Redis does.
func TestMemStoreEarlyAnswers(t *testing.T) {
	storetest.RunEarly(t, func(*testing.T) statemanager.Store { return actionstest.NewMemStore() })
}
