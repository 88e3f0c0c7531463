package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"unsafe"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sagarunner/sagarunner/actions"
	"github.com/sagarunner/sagarunner/auth"
	"github.com/sagarunner/sagarunner/saga"
	"github.com/sagarunner/sagarunner/saga/envelope"
)

// Response headers of a saga path.
const (
	HeaderRequestID = "X-Request-Id"
	HeaderStatus    = "X-Saga-Status"
	HeaderCode      = "X-Saga-Code"
)

// failStatus maps a FAIL result code to an HTTP status.
var failStatus = map[string]int{
	actions.CodeTaskNotFound: http.StatusNotFound,
	actions.CodeTaskClosed:   http.StatusConflict,
	actions.CodeTaskIDInUse:  http.StatusConflict,
	actions.CodeForbidden:    http.StatusForbidden,
	actions.CodeBadInput:     http.StatusBadRequest,
	actions.CodePattern:      http.StatusBadRequest,
	// The lifecycle's refusals (SPEC §12): a conflict with the task's
	// state is 409, and a domain whose store has no lifecycle cannot do
	// what was asked at all.
	actions.CodeTaskClaimed:     http.StatusConflict,
	actions.CodeInApproval:      http.StatusConflict,
	actions.CodeNotInApproval:   http.StatusConflict,
	actions.CodeAlreadyApproved: http.StatusConflict,
	actions.CodeSelfApproval:    http.StatusConflict,
	actions.CodeTaskChanged:     http.StatusConflict,
	actions.CodeTooManyChanges:  http.StatusConflict,
	actions.CodeUnsupported:     http.StatusNotImplemented,
}

// statusValues are the X-Saga-Status values of the statuses a saga ends
// with, shared as jsonContentType is.
var statusValues = map[string][]string{
	envelope.StatusSuccess:   {envelope.StatusSuccess},
	envelope.StatusFail:      {envelope.StatusFail},
	envelope.StatusTimeout:   {envelope.StatusTimeout},
	envelope.StatusCancelled: {envelope.StatusCancelled},
}

// builtinClosePaths are the generic task hooks shipped in sagas/; their
// documented body is {"taskId", "data", "domain"}, so a missing taskId is
// refused here instead of after a round trip through Kafka.
var builtinClosePaths = map[string]bool{"/ProceedTask": true, "/TimeoutTask": true}

// startSaga turns the request into a start record for s, produces it and,
// unless ?async=true, waits for the response on the reply topic.
func (g *Gateway) startSaga(w http.ResponseWriter, r *http.Request, s *saga.Saga, id auth.Identity) {
	async, err := boolParam(r, "async")
	if err != nil {
		writeError(w, http.StatusBadRequest, actions.CodeBadInput, err.Error())
		return
	}
	if action, sweeps := g.sweeping[s]; sweeps && g.auth.Enabled() && !g.isAdmin(id) {
		writeError(w, http.StatusForbidden, actions.CodeForbidden,
			fmt.Sprintf("%s runs %s, which acts on many tasks at once: it needs an admin role", s.Trigger.Path, action))
		return
	}
	body, ok := g.readObject(w, r)
	if !ok {
		return
	}
	if err := precheck(s, body); err != nil {
		writeError(w, http.StatusBadRequest, actions.CodeBadInput, err.Error())
		return
	}
	reqID := g.newID()
	rec, err := g.sagaRecord(s, body, id, reqID)
	if err != nil {
		writeError(w, http.StatusBadRequest, actions.CodeBadInput, err.Error())
		return
	}
	if reply, ok := g.exchange(w, r, rec, reqID, async); ok {
		g.answer(w, reqID, reply, "")
	}
}

// exchange produces rec, the request reqID, and, unless async, waits for
// its reply on the reply topic. It answers the caller itself (202 when
// async, 503, 413, 502 or 504 when the exchange fails) and returns the
// reply only when there is one to answer with.
func (g *Gateway) exchange(w http.ResponseWriter, r *http.Request, rec *kgo.Record, reqID string, async bool) (*envelope.Envelope, bool) {
	if !async && !g.positioned.Load() {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "NOT_READY", "the reply consumer is not positioned yet; retry, or use ?async=true")
		return nil, false
	}
	w.Header().Set(HeaderRequestID, reqID)
	var replies <-chan *envelope.Envelope
	if !async {
		replies = g.await(reqID)
		defer g.unwait(reqID)
	}
	ctx, cancel := context.WithTimeout(r.Context(), g.cfg.Timeout)
	defer cancel()
	if err := g.client.ProduceSync(ctx, rec).FirstErr(); err != nil {
		g.produceFailed(w, r, rec.Topic, reqID, err)
		return nil, false
	}
	if async {
		writeJSON(w, http.StatusAccepted, map[string]string{"requestId": reqID})
		return nil, false
	}
	select {
	case reply := <-replies:
		return reply, true
	case <-ctx.Done():
		if r.Context().Err() != nil {
			return nil, false // the caller left; nobody to answer.
		}
		writeJSON(w, http.StatusGatewayTimeout, errorBody{
			Error:     fmt.Sprintf("no response within %v; the request may still complete", g.cfg.Timeout),
			Code:      "GATEWAY_TIMEOUT",
			RequestID: reqID,
		})
		return nil, false
	}
}

// sagaRecord builds the start record of s: the body as payload.parameters
// and requestMeta from the authenticated identity alone, since task actions
// authorize against it. A saga with a trigger topic is started there like
// any event of that topic; one without is named on the request topic.
func (g *Gateway) sagaRecord(s *saga.Saga, body []byte, id auth.Identity, reqID string) (*kgo.Record, error) {
	req := request{Topic: s.Trigger.Topic, Identity: id, RequestID: reqID, ReplyTo: g.cfg.ReplyTopic, CreatedAt: g.now().UnixMilli()}
	if req.Topic == "" {
		req.Topic, req.Saga = g.cfg.RequestTopic, s
	}
	return buildRecord(body, req)
}

// answer writes the response envelope: its payload, or only the element at
// outputElement of it when that is set, or an error body for a FAIL.
func (g *Gateway) answer(w http.ResponseWriter, reqID string, reply *envelope.Envelope, outputElement string) {
	res := reply.Result
	if v, ok := statusValues[res.Status]; ok {
		w.Header()[HeaderStatus] = v
	} else {
		w.Header().Set(HeaderStatus, headerSafe(res.Status))
	}
	if res.Code != "" {
		w.Header().Set(HeaderCode, headerSafe(res.Code))
	}
	if res.Status == envelope.StatusFail {
		status, ok := failStatus[res.Code]
		if !ok {
			status = http.StatusUnprocessableEntity
		}
		code, msg := res.Code, res.Message
		if code == "" {
			code = actions.CodeFailed
		}
		if msg == "" {
			msg = "the saga failed with " + code
		}
		writeJSON(w, status, errorBody{Error: msg, Code: code, RequestID: reqID})
		return
	}
	payload := []byte(reply.Payload)
	if outputElement != "" {
		payload = []byte(reply.Get(outputElement).Raw)
	}
	if len(payload) == 0 {
		payload = []byte(`{}`)
	}
	writeRaw(w, http.StatusOK, payload)
}

func (g *Gateway) produceFailed(w http.ResponseWriter, r *http.Request, topic, reqID string, err error) {
	if r.Context().Err() != nil {
		return
	}
	if errors.Is(err, kerr.MessageTooLarge) {
		// The body fit MaxBody but not the producer's record limit: the
		// caller's request is too large, which is no fault of the server
		// and no reason to log one.
		writeJSON(w, http.StatusRequestEntityTooLarge, errorBody{
			Error: fmt.Sprintf("the record made of this body is larger than %s accepts: %v", topic, err), Code: "BODY_TOO_LARGE", RequestID: reqID})
		return
	}
	g.log.Warn("gateway: produce failed", "topic", topic, "requestId", reqID, "err", err)
	status, code := http.StatusBadGateway, "PRODUCE_FAILED"
	if errors.Is(err, context.DeadlineExceeded) {
		status, code = http.StatusGatewayTimeout, "GATEWAY_TIMEOUT"
	}
	writeJSON(w, status, errorBody{Error: fmt.Sprintf("publishing to %s: %v", topic, err), Code: code, RequestID: reqID})
}

// readObject reads a body that must be a JSON object no larger than
// MaxBody; an empty body is the empty object. It answers 413 or 400 and
// returns false otherwise.
func (g *Gateway) readObject(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	hint := r.ContentLength
	if hint > g.cfg.MaxBody {
		hint = 0 // refused once MaxBody is read
	}
	raw, err := readBody(http.MaxBytesReader(w, r.Body, g.cfg.MaxBody), min(hint, maxBodyHint))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeError(w, http.StatusRequestEntityTooLarge, "BODY_TOO_LARGE", fmt.Sprintf("body exceeds %d bytes", g.cfg.MaxBody))
			return nil, false
		}
		writeError(w, http.StatusBadRequest, actions.CodeBadInput, fmt.Sprintf("reading body: %v", err))
		return nil, false
	}
	body, err := parseObject(raw)
	if err != nil {
		writeError(w, http.StatusBadRequest, actions.CodeBadInput, err.Error())
		return nil, false
	}
	return body, true
}

// maxBodyHint caps the buffer a declared Content-Length reserves before
// the body arrives: a caller declaring much and sending slowly gets
// memory only as its bytes come.
const maxBodyHint = 32 << 10

// readBody is io.ReadAll starting from the size the request declares
// (size <= 0 when it declares none), so a body is read into one buffer
// instead of a chain of doublings. A declared size is only a hint: the
// body is read to its end whatever its length.
func readBody(rd io.Reader, size int64) ([]byte, error) {
	if size <= 0 {
		return io.ReadAll(rd)
	}
	// One byte more than declared, so the read that meets the end needs
	// no room of its own.
	b := make([]byte, 0, size+1)
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := rd.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

// parseObject checks that raw is one JSON object (empty is the empty
// object) and returns it compacted. It is the gateway's whole acceptance of
// a body before buildRecord, so the fuzz test starts from it too. A body
// already compact, as programs send them, is returned as it is, sharing
// raw's memory.
func parseObject(raw []byte) ([]byte, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return []byte(`{}`), nil
	}
	// envelope.Valid accepts exactly what json.Valid accepts.
	if !envelope.Valid(raw) {
		return nil, errors.New("body is not valid JSON")
	}
	if raw[0] != '{' {
		return nil, fmt.Errorf("body must be a JSON object, not %s", jsonKind(raw))
	}
	if compact(raw) {
		return raw, nil
	}
	buf := bytes.NewBuffer(make([]byte, 0, len(raw)))
	_ = json.Compact(buf, raw) // valid JSON compacts.
	return buf.Bytes(), nil
}

// compact reports whether valid JSON holds no whitespace outside its
// strings, so that json.Compact would leave it as it is.
func compact(valid []byte) bool {
	inString := false
	for i := 0; i < len(valid); i++ {
		switch c := valid[i]; {
		case inString && c == '\\':
			i++ // the escaped byte, a quote perhaps, ends nothing
		case c == '"':
			inString = !inString
		case !inString && (c == ' ' || c == '\t' || c == '\n' || c == '\r'):
			return false
		}
	}
	return true
}

// precheck refuses, before anything reaches Kafka, a close request that
// cannot name a task: without a task id the action would fall back to an id
// derived from this fresh request, which never exists.
func precheck(s *saga.Saga, body []byte) error {
	if builtinClosePaths[s.Trigger.Path] {
		// The results are only looked at here, so they may share body's
		// memory rather than copy it, as GetBytes would.
		doc := unsafe.String(unsafe.SliceData(body), len(body))
		id := gjson.Get(doc, "taskId")
		if id.Type != gjson.String || id.Str == "" {
			return fmt.Errorf(`body needs a non-empty string "taskId"`)
		}
		if d := gjson.Get(doc, "domain"); d.Exists() && (d.Type != gjson.String || checkDomain(d.Str) != nil) {
			return fmt.Errorf(`"domain" must be a domain name (letters, digits, '.', '_', '-')`)
		}
		return nil
	}
	if len(s.Steps) == 0 {
		return nil
	}
	st := s.Steps[0]
	// An inputPattern reshapes the input first; a root path reads outside
	// the body. Either way only the action can tell.
	if _, shaped := st.Params["inputPattern"]; shaped || envelope.IsRoot(st.InputElement) {
		return nil
	}
	payload, _ := sjson.SetRawBytes([]byte(`{}`), "parameters", body)
	input := envelope.GetIn(payload, st.InputElement)
	// A domain taken from the body names a Redis key prefix: it is checked
	// here, on the way in, like every domain the gateway sees.
	if p, _ := st.Params["domainPath"].(string); p != "" && !envelope.IsRoot(p) {
		if d := gjson.Get(input.Raw, p); d.Exists() && (d.Type != gjson.String || checkDomain(d.Str) != nil) {
			return fmt.Errorf("%q must be a domain name (1 to 64 letters, digits, '.', '_', '-')", p)
		}
	}
	if !closesTask(st) {
		return nil
	}
	idPath, _ := st.Params["taskIdPath"].(string)
	if idPath == "" {
		idPath = "taskId"
	}
	if envelope.IsRoot(idPath) {
		return nil
	}
	v := gjson.Get(input.Raw, idPath)
	if (v.Type == gjson.String && v.Str != "") || v.Type == gjson.Number {
		return nil
	}
	where := idPath
	if st.InputElement != "parameters" {
		where = "payload." + strings.TrimPrefix(st.InputElement+"."+idPath, ".")
	}
	return fmt.Errorf("body needs a task id at %q", where)
}

// closesTask reports whether a step closes one waiting task, whose id it
// must then find in the body; the action's spec says so.
func closesTask(st *saga.Step) bool {
	spec, ok := actions.Default.Lookup(st.ActionName)
	return ok && spec.ClosesTask
}

func boolParam(r *http.Request, name string) (bool, error) {
	if r.URL.RawQuery == "" {
		return false, nil // most requests: no query to parse
	}
	v := r.URL.Query().Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("query parameter %s=%q is not a boolean", name, v)
	}
	return b, nil
}

func jsonKind(raw []byte) string {
	switch raw[0] {
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 'n':
		return "null"
	case 't', 'f':
		return "a boolean"
	}
	return "a number"
}

// headerSafe keeps a result field from breaking the header block.
func headerSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r > 0x7e {
			return '?'
		}
		return r
	}, s)
}
