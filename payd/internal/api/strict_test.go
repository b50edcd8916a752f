package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// strictCases are bodies that two parsers could read two ways, or that a
// database could not keep, each with the refusal payd answers: 400, code
// and param. They share a fault-free reference "r".
var strictCases = []struct {
	name, body, code, param string
}{
	{"duplicate member", `{"amount":1999,"amount":5,"currency":"usd","reference":"r"}`, "duplicate_parameter", "amount"},
	{"duplicate currency", `{"amount":1999,"currency":"usd","currency":"jpy","reference":"r"}`, "duplicate_parameter", "currency"},
	{"duplicate metadata key", `{"amount":1999,"currency":"usd","reference":"r","metadata":{"a":"x","a":"y"}}`, "duplicate_parameter", "metadata[a]"},
	{"name in another case", `{"AMOUNT":1999,"currency":"usd","reference":"r"}`, "unknown_parameter", "AMOUNT"},
	{"unknown member", `{"amount":1999,"currency":"usd","reference":"r","capture":false}`, "unknown_parameter", "capture"},
	{"trailing brace", `{"amount":1999,"currency":"usd","reference":"r"}}`, "invalid_json", ""},
	{"trailing bracket", `{"amount":1999,"currency":"usd","reference":"r"}]`, "invalid_json", ""},
	{"second object", `{"amount":1999,"currency":"usd","reference":"r"} {"amount":5}`, "invalid_json", ""},
	{"invalid UTF-8", "{\"amount\":1999,\"currency\":\"usd\",\"reference\":\"r\xff\"}", "invalid_json", "reference"},
	{"lone surrogate", `{"amount":1999,"currency":"usd","reference":"\ud800"}`, "invalid_json", "reference"},
	{"NUL in description", `{"amount":1999,"currency":"usd","reference":"r","description":"a\u0000b"}`, "invalid_description", "description"},
	{"NUL in a metadata value", `{"amount":1999,"currency":"usd","reference":"r","metadata":{"k":"a\u0000"}}`, "invalid_metadata", "metadata[k]"},
	{"NUL in the reference", `{"amount":1999,"currency":"usd","reference":"r\u0000"}`, "invalid_reference", "reference"},
	{"array", `[]`, "invalid_json", ""},
	{"string", `"hello"`, "invalid_json", ""},
	{"null", `null`, "invalid_json", ""},
	{"empty", ``, "invalid_json", ""},
	{"amount as a string", `{"amount":"1999","currency":"usd","reference":"r"}`, "invalid_type", "amount"},
	{"fractional amount", `{"amount":19.99,"currency":"usd","reference":"r"}`, "invalid_type", "amount"},
	{"metadata value not a string", `{"amount":1999,"currency":"usd","reference":"r","metadata":{"k":1}}`, "invalid_type", "metadata[k]"},
}

// TestStrictInput: every body in strictCases gets its 400 problem+json,
// naming its field, the same on SQLite and PostgreSQL; none reaches the
// idempotency layer (the same key then accepts a good body) and the
// provider, with workers running, charges the good bodies alone. Run with
// -v, it logs the table of what payd answers.
func TestStrictInput(t *testing.T) {
	eachDatabase(t, func(t *testing.T, url string) {
		f := newFixtureOn(t, url, &fastWorkers)
		for i, c := range strictCases {
			idemKey := fmt.Sprint("strict-", i)
			r := f.do(t, http.MethodPost, "/v1/charges", key, idemKey, c.body)
			var problem struct{ Code, Param, Detail string }
			if err := json.Unmarshal([]byte(r.body), &problem); err != nil || r.status != http.StatusBadRequest ||
				problem.Code != c.code || problem.Param != c.param || !strings.HasPrefix(r.header.Get("Content-Type"), "application/problem+json") {
				t.Errorf("%s: %d %s %s, want 400 problem+json code %s param %q", c.name, r.status, r.header.Get("Content-Type"), r.body, c.code, c.param)
				continue
			}
			t.Logf("| %s | %d | %s | %s |", c.name, r.status, problem.Code, problem.Param)
			if strings.Contains(problem.Detail, " must be") && strings.HasPrefix(problem.Detail, " ") {
				t.Errorf("%s: detail %q names no field", c.name, problem.Detail)
			}
			// Nothing was recorded under the key: a good body is accepted.
			good := f.do(t, http.MethodPost, "/v1/charges", key, idemKey, fmt.Sprintf(`{"amount":100,"currency":"usd","reference":"ok-%d"}`, i))
			if good.status != http.StatusAccepted || good.header.Get("Idempotent-Replayed") != "" {
				t.Errorf("%s: the same key with a good body = %d %s, want 202, not a replay", c.name, good.status, good.body)
			}
		}
		// Only the good bodies became payments; the refused ones charged nothing.
		r := f.do(t, http.MethodGet, "/v1/charges?reference=r", key, "", "")
		if r.status != http.StatusOK || strings.Contains(r.body, `"reference":"r"`) {
			t.Errorf("charges with the refused bodies' reference = %d %s, want none", r.status, r.body)
		}
		deadline := time.Now().Add(20 * time.Second)
		for len(f.sim.Charges()) < len(strictCases) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(50 * time.Millisecond) // a charge too many would show by now
		charged := f.sim.Charges()
		for _, ch := range charged {
			if ch.Amount != 100 {
				t.Errorf("the provider charged %d: a refused body reached it", ch.Amount)
			}
		}
		if len(charged) != len(strictCases) {
			t.Errorf("the provider made %d charges, want %d: one per good body", len(charged), len(strictCases))
		}
	})
}
