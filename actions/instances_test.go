package actions_test

import (
	"strings"
	"testing"

	"github.com/sagarunner/sagarunner/actions"
	"github.com/sagarunner/sagarunner/saga/envelope"
)

// A CancelInstance request from a careless or hostile producer is refused
// BAD_INPUT before any store is read: an id that is not a string, or huge;
// a reason that is not a string, or larger than a note may be; a re-queue
// count that could make the request go round for ever (negative, fraction,
// past the bound).
func TestCancelInstanceRefusesBadInput(t *testing.T) {
	x, _, _ := newExec(t)
	a := build(t, "CancelInstance", actions.Input{InputElement: "parameters"})
	for _, body := range []string{
		`{}`,
		`{"instanceId": 42}`,
		`{"instanceId": ""}`,
		`{"instanceId": "` + strings.Repeat("i", 600) + `"}`,
		`{"instanceId": "r-1", "reason": {"why": "x"}}`,
		`{"instanceId": "r-1", "reason": "` + strings.Repeat("r", 5000) + `"}`,
		`{"instanceId": "r-1", "tries": -1000000000}`,
		`{"instanceId": "r-1", "tries": 1.5}`,
		`{"instanceId": "r-1", "tries": "3"}`,
		`{"instanceId": "r-1", "tries": 1e9}`,
	} {
		env := &envelope.Envelope{RequestMeta: envelope.RequestMeta{RequestID: "c-1"}, Payload: []byte(`{"parameters": ` + body + `}`)}
		out := run(t, a, x, env)
		wantResult(t, out, envelope.StatusFail, actions.CodeBadInput)
		if len(out.Records) != 0 || len(out.Acks) != 0 {
			t.Errorf("%.60s: produced %d records, %d acks", body, len(out.Records), len(out.Acks))
		}
	}
}
