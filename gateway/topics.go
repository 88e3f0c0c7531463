package gateway

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sagarunner/sagarunner/actions"
	"github.com/sagarunner/sagarunner/auth"
)

// publishResult answers POST /topics/{topic}.
type publishResult struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
	Key       string `json:"key,omitempty"`
}

// publish serves POST /topics/{topic}?key=: the body, a JSON object, is
// published as the payload.parameters of a new envelope whose requestMeta
// the gateway builds from the caller's identity, exactly as for a saga
// path. The body is always data, never an envelope: a caller cannot
// publish a direct action, a continuation or another identity this way.
// Only the configured topics are publishable, and never an internal one.
func (g *Gateway) publish(w http.ResponseWriter, r *http.Request) {
	topic := r.PathValue("topic")
	if err := checkTopic(topic); err != nil {
		writeError(w, http.StatusBadRequest, actions.CodeBadInput, err.Error())
		return
	}
	if why := g.cfg.internal(topic); why != "" {
		writeError(w, http.StatusForbidden, actions.CodeForbidden,
			fmt.Sprintf("%q is %s; internal topics are never publishable over HTTP", topic, why))
		return
	}
	if !slices.Contains(g.cfg.PublishTopics, topic) {
		writeError(w, http.StatusNotFound, "TOPIC_NOT_PUBLISHABLE",
			fmt.Sprintf("%q is not a publishable topic (the configuration's http.publishTopics lists them)", topic))
		return
	}
	id := identityOf(r.Context())
	if g.auth.Enabled() && len(g.cfg.PublishRoles) > 0 && !holdsAny(id, g.cfg.PublishRoles) {
		writeError(w, http.StatusForbidden, actions.CodeForbidden,
			fmt.Sprintf("publishing needs one of the roles %s", strings.Join(g.cfg.PublishRoles, ", ")))
		return
	}
	if action, sweeps := g.sweepingTopics[topic]; sweeps && g.auth.Enabled() && !g.isAdmin(id) {
		writeError(w, http.StatusForbidden, actions.CodeForbidden,
			fmt.Sprintf("%q triggers a saga that runs %s, which acts on many tasks at once: publishing there needs an admin role", topic, action))
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
	rec, err := g.publishRecord(topic, r.URL.Query().Get("key"), body, id)
	if err != nil {
		writeError(w, http.StatusBadRequest, actions.CodeBadInput, err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), g.cfg.Timeout)
	defer cancel()
	res, err := g.client.ProduceSync(ctx, rec).First()
	if err != nil {
		g.produceFailed(w, r, topic, "", err)
		return
	}
	writeJSON(w, http.StatusAccepted, publishResult{Topic: res.Topic, Partition: res.Partition, Offset: res.Offset, Key: string(rec.Key)})
}

// publishRecord builds the record of a publish: key, when set, places it
// (default: the new requestId); nothing else of the request but the body
// and the authenticated identity reaches it.
func (g *Gateway) publishRecord(topic, key string, body []byte, id auth.Identity) (*kgo.Record, error) {
	return buildRecord(body, request{Topic: topic, Key: key, Identity: id, RequestID: g.newID(), CreatedAt: g.now().UnixMilli()})
}

func holdsAny(id auth.Identity, roles []string) bool {
	for _, r := range id.Roles {
		if contains(roles, r) {
			return true
		}
	}
	return false
}
