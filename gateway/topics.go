package gateway

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sagarunner/sagarunner/actions"
	"github.com/sagarunner/sagarunner/auth"
	"github.com/sagarunner/sagarunner/saga/envelope"
)

// publishResult answers POST /topics/{topic}.
type publishResult struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
	Key       string `json:"key,omitempty"`
}

// publish serves POST /topics/{topic}?key=: the body, a JSON object, is
// produced as one record. The caller's identity is stamped into it exactly
// as for a saga path, since a published envelope can carry a ProceedTask.
func (g *Gateway) publish(w http.ResponseWriter, r *http.Request) {
	topic := r.PathValue("topic")
	if err := checkTopic(topic); err != nil {
		writeError(w, http.StatusBadRequest, actions.CodeBadInput, err.Error())
		return
	}
	if strings.HasPrefix(topic, "__") {
		writeError(w, http.StatusForbidden, actions.CodeForbidden, fmt.Sprintf("%q is an internal topic", topic))
		return
	}
	id := identityOf(r.Context())
	if g.auth.Enabled() && len(g.cfg.PublishRoles) > 0 && !holdsAny(id, g.cfg.PublishRoles) {
		writeError(w, http.StatusForbidden, actions.CodeForbidden,
			fmt.Sprintf("publishing needs one of the roles %s", strings.Join(g.cfg.PublishRoles, ", ")))
		return
	}
	if r.ContentLength == 0 {
		writeError(w, http.StatusBadRequest, actions.CodeBadInput, "body is empty; publish a JSON object")
		return
	}
	body, ok := g.readObject(w, r)
	if !ok {
		return
	}
	value, key, err := g.stamp(body, id)
	if err != nil {
		writeError(w, http.StatusBadRequest, actions.CodeBadInput, err.Error())
		return
	}
	if k := r.URL.Query().Get("key"); k != "" {
		key = k
	}
	rec := &kgo.Record{Topic: topic, Value: value}
	if key != "" {
		rec.Key = []byte(key)
	}
	ctx, cancel := context.WithTimeout(r.Context(), g.cfg.Timeout)
	defer cancel()
	res, err := g.client.ProduceSync(ctx, rec).First()
	if err != nil {
		g.produceFailed(w, r, topic, "", err)
		return
	}
	writeJSON(w, http.StatusAccepted, publishResult{Topic: res.Topic, Partition: res.Partition, Offset: res.Offset, Key: key})
}

// stamp puts the caller's identity into a published record and returns the
// record value and its default key (the requestId). An envelope keeps
// everything but requestMeta.user and roles, which are overwritten (and
// removed when auth is off, leaving a trusted request as before). A bare
// object under auth is wrapped into the envelope the runner would have
// made of it, because a bare object carries no identity and would
// otherwise reach the task actions as a trusted caller.
func (g *Gateway) stamp(body []byte, id auth.Identity) ([]byte, string, error) {
	root := gjson.ParseBytes(body)
	isEnvelope := false
	for _, k := range []string{"requestMeta", "sagaMeta", "eventMeta", "payload", "result"} {
		if root.Get(k).Exists() {
			isEnvelope = true
			break
		}
	}
	if !isEnvelope {
		if !g.auth.Enabled() {
			return body, "", nil
		}
		env := envelope.Envelope{RequestMeta: envelope.RequestMeta{
			RequestID: g.newID(), User: id.User, Roles: id.Roles, CreatedAt: g.now().UnixMilli(),
		}}
		env.Payload, _ = sjson.SetRawBytes([]byte(`{}`), "parameters", body)
		return env.Encode(), env.RequestMeta.RequestID, nil
	}
	if rm := root.Get("requestMeta"); rm.Exists() && !rm.IsObject() {
		return nil, "", fmt.Errorf("requestMeta must be an object")
	}
	var err error
	for _, f := range []struct {
		path  string
		value any
		empty bool
	}{
		{"requestMeta.user", id.User, id.User == ""},
		{"requestMeta.roles", id.Roles, len(id.Roles) == 0},
	} {
		if f.empty {
			body, err = sjson.DeleteBytes(body, f.path)
		} else {
			body, err = sjson.SetBytes(body, f.path, f.value)
		}
		if err != nil {
			return nil, "", fmt.Errorf("stamping identity: %w", err)
		}
	}
	return body, gjson.GetBytes(body, "requestMeta.requestId").String(), nil
}

func holdsAny(id auth.Identity, roles []string) bool {
	for _, r := range id.Roles {
		if contains(roles, r) {
			return true
		}
	}
	return false
}
