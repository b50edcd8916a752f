package idemhttp

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// A problem is an error response (RFC 9457, application/problem+json).
// Every problem has type "about:blank", so its status says what kind of
// error it is, and a "code" member that tells apart the cases one status
// covers.
type problem struct {
	status     int
	code       string
	detail     string
	retryAfter bool // add Retry-After
}

// The problems the middleware answers with. Each detail is one lowercase
// sentence without a final period, saying what is wrong and, after a
// semicolon, what the client should do, as payd's own are.
var problems = [...]problem{
	probKeyMissing:     {http.StatusBadRequest, "idempotency_key_missing", "an Idempotency-Key header is required; send one, unique to this request", false},
	probKeyRepeated:    {http.StatusBadRequest, "idempotency_key_repeated", "the Idempotency-Key header must be sent once", false},
	probKeyMalformed:   {http.StatusBadRequest, "idempotency_key_malformed", "the Idempotency-Key must be a quoted string or a token of 1 to 255 printable ASCII characters", false},
	probUnauthorized:   {http.StatusUnauthorized, "unauthenticated", "the request could not be authenticated", false},
	probBodyTooLarge:   {http.StatusRequestEntityTooLarge, "body_too_large", "the request body is over the size limit", false},
	probBodyUnreadable: {http.StatusBadRequest, "body_unreadable", "the request body could not be read; send it again", false},
	probInFlight:       {http.StatusConflict, "request_in_flight", "a request with this Idempotency-Key is still being processed; retry later with the same key", true},
	probMismatch:       {http.StatusUnprocessableEntity, "idempotency_key_reused", "this Idempotency-Key was used with a different request; use a new key for a new request", false},
	probUnsettled:      {http.StatusServiceUnavailable, "outcome_unsettled", "the outcome of this request is not settled; retry later with the same key", true},
	probUnavailable:    {http.StatusServiceUnavailable, "store_unavailable", "the request was not processed; retry later with the same key", true},
	probInternal:       {http.StatusInternalServerError, "internal_error", "the server could not process this request", false},
}

const (
	probKeyMissing = iota
	probKeyRepeated
	probKeyMalformed
	probUnauthorized
	probBodyTooLarge
	probBodyUnreadable
	probInFlight
	probMismatch
	probUnsettled
	probUnavailable
	probInternal
	numProblems
)

// problemJSON is the wire form of a problem.
type problemJSON struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Code   string `json:"code"`
	// For code response_not_stored: the status the request was answered
	// with when it ran.
	OriginalStatus int `json:"original_status,omitempty"`
}

func (p problem) json(originalStatus int) []byte {
	b, err := json.Marshal(problemJSON{
		Type:           "about:blank",
		Title:          http.StatusText(p.status),
		Status:         p.status,
		Detail:         p.detail,
		Code:           p.code,
		OriginalStatus: originalStatus,
	})
	if err != nil {
		panic(err) // strings and ints always encode
	}
	return append(b, '\n')
}

// tooLarge is the replay of a response that was sent but not kept.
var tooLarge = problem{http.StatusInternalServerError, "response_not_stored",
	"This request was processed, but its response was too large to keep for replay. Look the result up instead of retrying.", false}

// writeProblem writes a prebuilt problem body.
func writeProblem(w http.ResponseWriter, status int, body []byte, retryAfter string) {
	h := w.Header()
	h["Content-Type"] = []string{"application/problem+json"}
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	h["Cache-Control"] = []string{"no-store"}
	if retryAfter != "" {
		h["Retry-After"] = []string{retryAfter}
	}
	w.WriteHeader(status)
	w.Write(body)
}
