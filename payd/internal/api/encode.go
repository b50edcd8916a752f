package api

import (
	"encoding/json"
	"net/http"
)

// encode writes v as JSON with status, headers first.
func encode(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v) // the client may be gone; nothing to do then
}

// problem is an RFC 9457 problem detail, with the offending parameter
// named where there is one.
type problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
	Code   string `json:"code,omitempty"`
	Param  string `json:"param,omitempty"`
}

// fail writes a problem+json response. Every detail payd writes is in
// one style (TestProblemDetailsShareOneStyle): a lowercase sentence with
// no final period, saying what is wrong and, unless a rule such as
// "amount must be …" says it, after a semicolon what to do; parameters
// and headers are named as the client spells them (amount,
// metadata[key], created[gte], Idempotency-Key).
func fail(w http.ResponseWriter, status int, code, param, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(problem{
		Type:   "about:blank",
		Title:  http.StatusText(status),
		Status: status,
		Detail: detail,
		Code:   code,
		Param:  param,
	})
}

// internalError answers 500 with a generic body; the caller logs the real
// error.
func internalError(w http.ResponseWriter) {
	fail(w, http.StatusInternalServerError, "internal_error", "", "payd could not complete the request; it has been logged, and a retry with the same Idempotency-Key is safe")
}

// Details more than one refusal shares.
const (
	noSuchCharge   = "no charge with this id belongs to your account; check the id"
	unreadableBody = "the request body could not be read; send it again"
)
