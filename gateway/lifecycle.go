package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sagarunner/sagarunner/actions"
	"github.com/sagarunner/sagarunner/saga/envelope"
	"github.com/sagarunner/sagarunner/statemanager"
)

// maxTaskIDLen bounds a task id taken from the URL: it becomes a Redis key
// and a record key, and no id a saga makes comes near it.
const maxTaskIDLen = 512

// taskOps maps the operation segment of POST /tasks/{domain}/{id}/{op}
// (SPEC §12) to the direct action that performs it. The gateway only
// carries the operation to the runner; who may, and what it does, is the
// action's to decide.
var taskOps = map[string]string{
	"claim":    "ClaimTask",
	"unclaim":  "UnclaimTask",
	"assign":   "AssignTask",
	"complete": "CompleteTask",
	"approve":  "ApproveTask",
	"reject":   "RejectTask",
	"cancel":   "CancelTask",
	"deadline": "SetDeadline",
	"comments": "CommentTask",
}

// The elements of a task operation's envelope: the body is its input, and
// the task's state after the operation is its answer.
const (
	taskOpInput  = "parameters"
	taskOpOutput = "task"
)

// checkTaskOps is called by New: an operation whose action is not
// registered would be dead-lettered by every runner, so it is an error at
// start-up instead.
func checkTaskOps() error {
	var errs []error
	for op, name := range taskOps {
		if _, ok := actions.Default.Lookup(name); !ok {
			errs = append(errs, fmt.Errorf("gateway: task operation %q needs the action %q, which is not registered", op, name))
		}
	}
	return errors.Join(errs...)
}

func taskOpNames() string {
	ops := make([]string, 0, len(taskOps))
	for op := range taskOps {
		ops = append(ops, op)
	}
	slices.Sort(ops)
	return strings.Join(ops, ", ")
}

// taskOp serves POST /tasks/{domain}/{id}/{op}: it sends the operation to
// the runners as a direct action request and answers with the task's state
// after it, or the action's refusal mapped to a status (failStatus). The
// request's identity comes from authentication alone, as for a saga path,
// and the task's id and domain from the URL alone: a body naming others is
// overridden, so what is authorized is what the URL names.
func (g *Gateway) taskOp(w http.ResponseWriter, r *http.Request) {
	domain, id, op := r.PathValue("domain"), r.PathValue("id"), r.PathValue("op")
	action, ok := taskOps[op]
	if !ok {
		writeError(w, http.StatusNotFound, "NOT_FOUND", fmt.Sprintf("no task operation %.64q; one of %s, or GET history", op, taskOpNames()))
		return
	}
	if !g.checkTaskRef(w, domain, id) {
		return
	}
	body, ok := g.readObject(w, r)
	if !ok {
		return
	}
	body, err := withTaskRef(body, domain, id)
	if err != nil {
		writeError(w, http.StatusBadRequest, actions.CodeBadInput, err.Error())
		return
	}
	reqID := g.newID()
	rec, err := buildRecord(body, request{
		Topic:     g.cfg.RequestTopic,
		Identity:  identityOf(r.Context()),
		RequestID: reqID,
		ReplyTo:   g.cfg.ReplyTopic,
		CreatedAt: g.now().UnixMilli(),
		EventMeta: envelope.EventMeta{Action: action, Domain: domain, InputElement: taskOpInput, OutputElement: taskOpOutput},
	})
	if err != nil {
		writeError(w, http.StatusBadRequest, actions.CodeBadInput, err.Error())
		return
	}
	// The caller waits for the answer: an unknown task is 404 now, never
	// kept for a task that may start later (an early answer on Kafka).
	rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: actions.NoEarlyHeader, Value: []byte("1")})
	if reply, ok := g.exchange(w, r, rec, reqID, false); ok {
		g.answerTaskOp(w, reqID, reply)
	}
}

// conflictBody is a 409's body: the error, and where the task stands, so
// the loser of a race (SPEC §12) sees what it lost to without another
// read.
type conflictBody struct {
	errorBody
	Task json.RawMessage `json:"task"`
}

// answerTaskOp answers a task operation's reply. A refusal that is a
// conflict with the task's state carries the task's state at the
// operation's output element when the runner judged that the caller may
// see the task (actions.Refusal); the 409 then answers it beside the
// error. Everything else is answered as any saga's reply is.
func (g *Gateway) answerTaskOp(w http.ResponseWriter, reqID string, reply *envelope.Envelope) {
	res := reply.Result
	task := reply.Get(taskOpOutput)
	if res.Status != envelope.StatusFail || failStatus[res.Code] != http.StatusConflict || !task.IsObject() {
		g.answer(w, reqID, reply, taskOpOutput)
		return
	}
	w.Header().Set(HeaderStatus, headerSafe(res.Status))
	w.Header().Set(HeaderCode, headerSafe(res.Code))
	writeJSON(w, http.StatusConflict, conflictBody{
		errorBody: errorBody{Error: res.Message, Code: res.Code, RequestID: reqID},
		Task:      json.RawMessage(task.Raw),
	})
}

// taskHistory serves GET /tasks/{domain}/{id}/history, every event of the
// task oldest first, read from the store like GET /tasks/{domain}/{id} and
// with its visibility: a task the caller may not see is 404.
func (g *Gateway) taskHistory(w http.ResponseWriter, r *http.Request) {
	domain, id := r.PathValue("domain"), r.PathValue("id")
	if !g.checkTaskRef(w, domain, id) {
		return
	}
	store, ok := g.store(w, domain)
	if !ok {
		return
	}
	lc, ok := store.(statemanager.Lifecycle)
	if !ok {
		writeError(w, http.StatusNotImplemented, actions.CodeUnsupported, fmt.Sprintf("the state manager of %q keeps no task history", domain))
		return
	}
	if _, ok := g.visibleTask(w, r, store, domain, id); !ok {
		return
	}
	events, err := lc.History(r.Context(), id)
	if errors.Is(err, statemanager.ErrNotFound) {
		// Expired between the two reads.
		writeError(w, http.StatusNotFound, actions.CodeTaskNotFound, fmt.Sprintf("no task %q in domain %q", id, domain))
		return
	}
	if err != nil {
		g.storeFailed(w, domain, err)
		return
	}
	if events == nil {
		events = []statemanager.Event{}
	}
	writeJSON(w, http.StatusOK, events)
}

// checkTaskRef refuses, with 400, a domain or task id from the URL that no
// task can have.
func (g *Gateway) checkTaskRef(w http.ResponseWriter, domain, id string) bool {
	if err := checkDomain(domain); err != nil {
		writeError(w, http.StatusBadRequest, actions.CodeBadInput, err.Error())
		return false
	}
	if id == "" || len(id) > maxTaskIDLen {
		writeError(w, http.StatusBadRequest, actions.CodeBadInput, fmt.Sprintf("task id must be 1 to %d bytes", maxTaskIDLen))
		return false
	}
	return true
}

// withTaskRef sets taskId and domain of body, a JSON object, to the URL's.
// The body is decoded and encoded again rather than patched in place, so a
// body repeating a key cannot leave a second taskId that some reader takes
// for the first.
func withTaskRef(body []byte, domain, id string) ([]byte, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		return nil, fmt.Errorf("body: %w", err)
	}
	if fields == nil {
		fields = map[string]json.RawMessage{}
	}
	for k, v := range map[string]string{"taskId": id, "domain": domain} {
		raw, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		fields[k] = raw
	}
	return json.Marshal(fields)
}
