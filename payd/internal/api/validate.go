package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// invalid is a validation error naming the parameter at fault.
type invalid struct{ param, code, detail string }

func (e *invalid) Error() string { return e.param + ": " + e.detail }

// decodeJSON decodes body, one JSON object of v's fields and no others,
// into v, or returns an *invalid naming the field at fault.
func decodeJSON(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			if strings.HasPrefix(typeErr.Field, "metadata") {
				return &invalid{"metadata", "invalid_type", "metadata must be an object whose values are strings"}
			}
			return &invalid{typeErr.Field, "invalid_type", fmt.Sprintf("%s must be a %s", typeErr.Field, jsonKind(typeErr.Type.String()))}
		}
		if field, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			name := strings.Trim(field, `"`)
			return &invalid{name, "unknown_parameter", "unknown parameter " + field}
		}
		return &invalid{"", "invalid_json", "the body is not a JSON object: " + err.Error()}
	}
	if dec.More() {
		return &invalid{"", "invalid_json", "the body holds more than one JSON value"}
	}
	return nil
}

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
			fail(w, http.StatusBadRequest, "unreadable_body", "", "the request body could not be read")
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
