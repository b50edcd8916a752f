package api

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// invalid is a validation error naming the parameter at fault.
type invalid struct{ param, code, detail string }

func (e *invalid) Error() string { return e.param + ": " + e.detail }

// decodeJSON decodes body, exactly one JSON object of v's fields, into v,
// or returns an *invalid naming the field at fault. It reads the body one
// way only, so that no proxy, firewall or log that parses it can see
// another request than the one payd acts on: member names must match
// exactly and appear once, the text must be valid UTF-8, and nothing may
// follow the object (TestStrictInput).
func decodeJSON(body []byte, v any) error {
	err := json.Unmarshal(body, v, json.RejectUnknownMembers(true))
	var syntax *jsontext.SyntacticError
	if errors.As(err, &syntax) {
		param := paramOf(syntax.JSONPointer)
		if errors.Is(err, jsontext.ErrDuplicateName) {
			return &invalid{param, "duplicate_parameter", fmt.Sprintf("%s appears more than once in the body; send it once", param)}
		}
		return &invalid{param, "invalid_json", fmt.Sprintf("the body must be one JSON object in valid UTF-8 with nothing after it (%v at byte %d)", syntax.Err, syntax.ByteOffset)}
	}
	if err == nil {
		// null decodes into nothing: it is no object either.
		if jsontext.Value(body).Kind() != '{' {
			return &invalid{"", "invalid_json", "the body must be a JSON object"}
		}
		return nil
	}
	var semantic *json.SemanticError
	if errors.As(err, &semantic) {
		param := paramOf(semantic.JSONPointer)
		switch {
		case errors.Is(err, json.ErrUnknownName):
			return &invalid{param, "unknown_parameter", fmt.Sprintf("%s is not a parameter of this request; check its spelling, names are case-sensitive", param)}
		case param == "":
			return &invalid{"", "invalid_json", "the body must be a JSON object"}
		case strings.HasPrefix(param, "metadata"):
			return &invalid{param, "invalid_type", "metadata must be an object whose values are strings"}
		}
		return &invalid{param, "invalid_type", fmt.Sprintf("%s must be a %s", param, jsonKind(semantic.GoType.String()))}
	}
	return &invalid{"", "invalid_json", fmt.Sprintf("the body must be one JSON object (%v)", err)}
}

// paramOf names the member at ptr as payd's errors name parameters:
// amount, or metadata[key].
func paramOf(ptr jsontext.Pointer) string {
	var parts []string
	for token := range ptr.Tokens() {
		parts = append(parts, token)
	}
	if len(parts) == 0 {
		return ""
	}
	param := parts[0]
	for _, p := range parts[1:] {
		param += "[" + p + "]"
	}
	return param
}

// storable refuses a string that either database cannot keep as given:
// PostgreSQL's text refuses NUL, so SQLite must too, for one body to get
// one answer on both.
func storable(s string) bool { return !strings.ContainsRune(s, 0) }

// checkAmount checks a required amount in minor units.
func checkAmount(amount *int64) error {
	switch {
	case amount == nil:
		return &invalid{"amount", "missing", "amount is required, in minor units"}
	case *amount < 1 || *amount > maxAmount:
		return &invalid{"amount", "invalid_amount", fmt.Sprintf("amount must be an integer from 1 to %d, in minor units", maxAmount)}
	}
	return nil
}

func jsonKind(goType string) string {
	switch {
	case strings.Contains(goType, "int"):
		return "whole number"
	}
	return "string"
}

// validate rejects a request whose body check refuses with 400 before it
// reaches the idempotency layer, so it stores nothing and costs no database
// round trip. The body it read is handed on.
func (s *server) validate(check func(body []byte) error, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
		if err != nil {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				fail(w, http.StatusRequestEntityTooLarge, "body_too_large", "", fmt.Sprintf("the body must be at most %d bytes", maxBodyBytes))
				return
			}
			fail(w, http.StatusBadRequest, "unreadable_body", "", unreadableBody)
			return
		}
		if ct := r.Header.Values("Content-Type"); len(body) != 0 && (len(ct) != 1 || !isJSON(ct[0])) {
			fail(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "", "a body must be sent as Content-Type: application/json")
			return
		}
		if err := check(body); err != nil {
			var bad *invalid
			errors.As(err, &bad)
			fail(w, http.StatusBadRequest, bad.code, bad.param, bad.detail)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		next.ServeHTTP(w, r)
	})
}

// isJSON reports whether contentType is application/json, with no
// parameter but a charset of utf-8. A body is read one way only: one sent
// as a form, say, which a proxy or a firewall would read as a form, is
// refused rather than read as JSON, and so is one with two Content-Type
// headers, which two readers could take one each (TestContentTypeIsJSON).
func isJSON(contentType string) bool {
	mediaType, params, err := mime.ParseMediaType(contentType)
	if err != nil || mediaType != "application/json" {
		return false
	}
	for k, v := range params {
		if k != "charset" || !strings.EqualFold(v, "utf-8") {
			return false
		}
	}
	return true
}
