package gateway

import (
	"errors"
	"fmt"
	"slices"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sagarunner/sagarunner/auth"
	"github.com/sagarunner/sagarunner/saga"
	"github.com/sagarunner/sagarunner/saga/envelope"
)

// errBadBody is wrapped by buildRecord when the runners' decoder would
// refuse the record the body makes; the gateway answers 400 with it.
var errBadBody = errors.New("body")

// request is everything but the body that a record built from an HTTP
// request holds. Nothing in it comes from the body.
type request struct {
	// Topic and Key place the record; Key defaults to RequestID.
	Topic string
	Key   string
	// Identity is the authenticated caller, the only source of the
	// identity fields of requestMeta (SPEC §11).
	Identity  auth.Identity
	RequestID string
	ReplyTo   string
	CreatedAt int64
	// Saga, when set, names the saga to start: a path saga without a
	// trigger topic is started by name on the request topic.
	Saga *saga.Saga
	// EventMeta, when its Action is set, makes the record a direct action
	// request instead (a task operation): the gateway names the action,
	// never the body.
	EventMeta envelope.EventMeta
}

// buildRecord makes the record for body, a compact JSON object: the body
// becomes payload.parameters of a new envelope whose requestMeta the
// gateway fills from req alone. The body is always data: whatever keys it
// holds (requestMeta, sagaMeta, eventMeta, in any spelling) sit inside
// payload.parameters, where no reader takes them for meta. The record is
// then read back with the runners' strict decoder, so a body the runners
// would refuse (text that is not valid Unicode, say) is refused here with
// the reason instead of being dead-lettered later, and the identity read
// back is checked to be exactly the one given. It is a pure function so
// that FuzzRecordIdentity can hold it to that without a broker.
func buildRecord(body []byte, req request) (*kgo.Record, error) {
	env := envelope.Envelope{RequestMeta: envelope.RequestMeta{
		RequestID: req.RequestID,
		User:      req.Identity.User,
		Roles:     slices.Clone(req.Identity.Roles),
		Tenant:    req.Identity.Tenant,
		ReplyTo:   req.ReplyTo,
		CreatedAt: req.CreatedAt,
	}}
	payload := make([]byte, 0, len(body)+len(`{"parameters":}`))
	payload = append(append(append(payload, `{"parameters":`...), body...), '}')
	env.Payload = payload
	if req.Saga != nil {
		env.SagaMeta = envelope.SagaMeta{Saga: req.Saga.Name, Version: req.Saga.Version}
	}
	env.EventMeta = req.EventMeta
	value := env.Encode()
	got, err := envelope.Decode(value, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errBadBody, err)
	}
	m := got.RequestMeta
	if m.User != req.Identity.User || m.Tenant != req.Identity.Tenant || !slices.Equal(m.Roles, req.Identity.Roles) ||
		m.RequestID != req.RequestID || m.Hops != 0 || got.EventMeta.Action != req.EventMeta.Action {
		// Unreachable while Encode and Decode agree; refusing beats
		// sending a record whose identity is not the caller's.
		return nil, fmt.Errorf("gateway: the record built for request %q does not read back its identity", req.RequestID)
	}
	key := req.Key
	if key == "" {
		key = req.RequestID
	}
	return &kgo.Record{Topic: req.Topic, Key: []byte(key), Value: value}, nil
}
