package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/sagarunner/sagarunner/actions"
	"github.com/sagarunner/sagarunner/auth"
	"github.com/sagarunner/sagarunner/instances"
	"github.com/sagarunner/sagarunner/saga/envelope"
)

// HeaderNextCursor carries the cursor of the next page of a listing.
const HeaderNextCursor = "X-Next-Cursor"

// maxInstanceID bounds an instance id from a URL: ids are request ids.
const maxInstanceID = 256

// listInstances serves GET /instances?saga=&status=&businessKey=
// &startedAfter=&startedBefore=&sort=&limit=&cursor=, newest first, the
// next page's cursor in X-Next-Cursor. With auth on a caller lists only
// its own tenant's instances, and a non-admin only those it started or
// acted on.
func (g *Gateway) listInstances(w http.ResponseWriter, r *http.Request) {
	if !g.instancesOn(w) {
		return
	}
	q := r.URL.Query()
	f := instances.Filter{Saga: q.Get("saga"), Status: strings.ToUpper(q.Get("status")), BusinessKey: q.Get("businessKey"),
		Sort: q.Get("sort"), Cursor: q.Get("cursor")}
	for _, p := range []struct {
		name string
		dst  *int64
	}{{"startedAfter", &f.StartedAfter}, {"startedBefore", &f.StartedBefore}} {
		if v := q.Get(p.name); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				writeError(w, http.StatusBadRequest, actions.CodeBadInput, fmt.Sprintf("%s %.40q must be epoch milliseconds", p.name, v))
				return
			}
			*p.dst = n
		}
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || n > instances.MaxLimit {
			writeError(w, http.StatusBadRequest, actions.CodeBadInput, fmt.Sprintf("limit %.40q must be an integer in [1, %d]", v, instances.MaxLimit))
			return
		}
		f.Limit = n
	}
	if len(f.Saga)+len(f.BusinessKey)+len(f.Cursor) > 1024 {
		writeError(w, http.StatusBadRequest, actions.CodeBadInput, "filters too long")
		return
	}
	caller := identityOf(r.Context())
	if g.auth.Enabled() {
		f.Tenant = caller.Tenant
		if !g.isAdmin(caller) {
			f.Viewer = caller.User
		}
	}
	page, err := g.instances.List(r.Context(), f)
	if errors.Is(err, instances.ErrBadFilter) {
		writeError(w, http.StatusBadRequest, actions.CodeBadInput, err.Error())
		return
	}
	if err != nil {
		g.instancesFailed(w, err)
		return
	}
	if page.NextCursor != "" {
		w.Header().Set(HeaderNextCursor, page.NextCursor)
	}
	writeJSON(w, http.StatusOK, page.Instances)
}

// getInstance serves GET /instances/{id}.
func (g *Gateway) getInstance(w http.ResponseWriter, r *http.Request) {
	if in, ok := g.visibleInstance(w, r); ok {
		writeJSON(w, http.StatusOK, in)
	}
}

// instanceTimeline serves GET /instances/{id}/timeline, oldest first.
func (g *Gateway) instanceTimeline(w http.ResponseWriter, r *http.Request) {
	in, ok := g.visibleInstance(w, r)
	if !ok {
		return
	}
	tl, err := g.instances.Timeline(r.Context(), in.ID)
	if errors.Is(err, instances.ErrNotFound) {
		tl = []instances.Event{}
	} else if err != nil {
		g.instancesFailed(w, err)
		return
	}
	writeJSON(w, http.StatusOK, tl)
}

// visibleInstance reads the instance of the URL for the caller, answering
// errors itself. One the caller may not see answers 404 exactly like an
// unknown one, so ids of other tenants and users cannot be probed.
func (g *Gateway) visibleInstance(w http.ResponseWriter, r *http.Request) (*instances.Instance, bool) {
	if !g.instancesOn(w) {
		return nil, false
	}
	id := r.PathValue("id")
	if id == "" || len(id) > maxInstanceID {
		writeError(w, http.StatusBadRequest, actions.CodeBadInput, fmt.Sprintf("instance id must be 1 to %d bytes", maxInstanceID))
		return nil, false
	}
	in, err := g.instances.Get(r.Context(), id)
	if err == nil && !g.maySee(identityOf(r.Context()), in) {
		err = instances.ErrNotFound
	}
	if errors.Is(err, instances.ErrNotFound) {
		writeError(w, http.StatusNotFound, CodeInstanceNotFound, fmt.Sprintf("no instance %.80q", id))
		return nil, false
	}
	if err != nil {
		g.instancesFailed(w, err)
		return nil, false
	}
	return in, true
}

// CodeInstanceNotFound answers an unknown (or invisible) instance.
const CodeInstanceNotFound = "INSTANCE_NOT_FOUND"

// maySee is the visibility rule of SPEC §13: with auth on, admins of the
// instance's tenant, its starter and the people who acted on its tasks.
func (g *Gateway) maySee(caller auth.Identity, in *instances.Instance) bool {
	if !g.auth.Enabled() {
		return true
	}
	if caller.Tenant != in.Tenant {
		return false
	}
	return g.isAdmin(caller) || in.VisibleTo(caller.User)
}

func (g *Gateway) instancesOn(w http.ResponseWriter) bool {
	if g.instances == nil {
		writeError(w, http.StatusServiceUnavailable, "NO_INSTANCES", "instance tracking is off (instances.enabled)")
		return false
	}
	return true
}

func (g *Gateway) instancesFailed(w http.ResponseWriter, err error) {
	g.log.Warn("gateway: instance store failed", "err", err)
	w.Header().Set("Retry-After", "1")
	writeError(w, http.StatusServiceUnavailable, "INSTANCES_UNAVAILABLE", "the instance store is unavailable; retry")
}

// maxCancelReason bounds the reason of a cancel, kept in the timeline and
// the task's history.
const maxCancelReason = 1000

// cancelInstance serves POST /instances/{id}/cancel {"reason": ...}. An
// admin of the instance's tenant or its starter may cancel it (others who
// can see it, the people who acted on its tasks, get 403); an ended
// instance answers 409 with its record. The cancel travels to the runners
// as a CancelInstance request keyed by the instance, so it is handled in
// order with the instance's own records: its open tasks close CANCELLED,
// its onCancel step runs, and it ends CANCELLED.
func (g *Gateway) cancelInstance(w http.ResponseWriter, r *http.Request) {
	in, ok := g.visibleInstance(w, r)
	if !ok {
		return
	}
	caller := identityOf(r.Context())
	if g.auth.Enabled() && !g.isAdmin(caller) && caller.User != in.Starter {
		writeError(w, http.StatusForbidden, actions.CodeForbidden, "only an admin of its tenant or its starter may cancel an instance")
		return
	}
	if instances.Ended(in.Status) {
		writeJSON(w, http.StatusConflict, instanceConflict{errorBody: errorBody{Error: fmt.Sprintf("instance %q is %s already", in.ID, in.Status),
			Code: actions.CodeInstanceEnded}, Instance: in})
		return
	}
	body, ok := g.readObject(w, r)
	if !ok {
		return
	}
	var req struct {
		Reason string `json:"reason"`
	}
	if err := json.Unmarshal(body, &req); err != nil || len(req.Reason) > maxCancelReason {
		writeError(w, http.StatusBadRequest, actions.CodeBadInput, fmt.Sprintf(`body must be {"reason": a string of at most %d bytes}`, maxCancelReason))
		return
	}
	params, _ := json.Marshal(map[string]string{"instanceId": in.ID, "reason": req.Reason})
	reqID := g.newID()
	rec, err := buildRecord(params, request{
		Topic:     g.cfg.RequestTopic,
		Key:       in.ID,
		Identity:  caller,
		RequestID: reqID,
		ReplyTo:   g.cfg.ReplyTopic,
		CreatedAt: g.now().UnixMilli(),
		EventMeta: envelope.EventMeta{Action: cancelInstanceAction, InputElement: "parameters", OutputElement: "cancel"},
	})
	if err != nil {
		writeError(w, http.StatusBadRequest, actions.CodeBadInput, err.Error())
		return
	}
	reply, ok := g.exchange(w, r, rec, reqID, false)
	if !ok {
		return
	}
	res := reply.Result
	switch {
	case res.Status == envelope.StatusSuccess:
		writeJSON(w, http.StatusOK, map[string]string{"instanceId": in.ID, "status": instances.StatusCancelled, "requestId": reqID})
	case res.Code == actions.CodeInstanceEnded || res.Code == actions.CodeInstanceBusy:
		now, err := g.instances.Get(r.Context(), in.ID)
		if err != nil {
			now = in
		}
		writeJSON(w, http.StatusConflict, instanceConflict{errorBody: errorBody{Error: res.Message, Code: res.Code, RequestID: reqID}, Instance: now})
	case res.Code == actions.CodeInstanceNotFound:
		writeError(w, http.StatusNotFound, CodeInstanceNotFound, res.Message)
	default:
		g.answer(w, reqID, reply, "cancel")
	}
}

// cancelInstanceAction is the direct action a cancel travels as.
const cancelInstanceAction = "CancelInstance"

// instanceConflict is a 409's body: the error and where the instance stands.
type instanceConflict struct {
	errorBody
	Instance *instances.Instance `json:"instance"`
}
