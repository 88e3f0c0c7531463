package gateway

import (
	"encoding/json"
	"net/http"
)

// errorBody is the shape of every error answer.
type errorBody struct {
	Error     string `json:"error"`
	Code      string `json:"code"`
	RequestID string `json:"requestId,omitempty"`
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, errorBody{Error: msg, Code: code})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"cannot encode response","code":"INTERNAL"}`)
	}
	writeRaw(w, status, b)
}

// Header values every answer carries, shared rather than built per
// answer. Each has len == cap, so an Add appends to a copy, never to the
// shared array; nothing writes to a header value in place.
var (
	jsonContentType = []string{"application/json"}
	noSniff         = []string{"nosniff"}
	newline         = []byte("\n")
)

func writeRaw(w http.ResponseWriter, status int, b []byte) {
	h := w.Header()
	h["Content-Type"] = jsonContentType
	h["X-Content-Type-Options"] = noSniff
	w.WriteHeader(status)
	_, _ = w.Write(b)
	_, _ = w.Write(newline)
}
