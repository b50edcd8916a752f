package idemhttp_test

import (
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/idemhq/idem/idemhttp"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// step is one request of a behaviour and what it must get.
type step struct {
	req      req
	status   int
	code     string // problem code; "" for a handler's response
	replayed bool
	runs     int64 // handler runs so far, this step included
	check    func(t *testing.T, w *httptest.ResponseRecorder)
}

// TestBehaviour runs the checklist: each row is a sequence of requests on
// a fresh middleware and store. Rows named S<n> are the security checklist
// rows they cover.
func TestBehaviour(t *testing.T) {
	const k = `"k-3b1f0c2e-9d47"` // the raw key; it must never be logged
	keys := func(v ...string) []string { return v }
	long := strings.Repeat("k", idemhttp.MaxKeyLen)
	tests := []struct {
		name   string
		cfg    *idemhttp.Config
		steps  []step
		setup  func(*fixture)
		claims int64  // store claims over the whole row
		log    string // must appear in the log
	}{
		{name: "S1 missing key on a protected route", steps: []step{
			{req: req{}, status: 400, code: "idempotency_key_missing"},
		}},
		{name: "missing key where optional passes through", cfg: &idemhttp.Config{Optional: true}, steps: []step{
			{req: req{}, status: 201, runs: 1},
			{req: req{}, status: 201, runs: 2},
		}},
		{name: "S2 two Idempotency-Key fields", steps: []step{
			{req: req{keys: keys(k, k)}, status: 400, code: "idempotency_key_repeated"},
		}},
		{name: "S3 unterminated string", steps: []step{{req: req{keys: keys(`"abc`)}, status: 400, code: "idempotency_key_malformed"}}},
		{name: "S3 bad escape", steps: []step{{req: req{keys: keys(`"a\nb"`)}, status: 400, code: "idempotency_key_malformed"}}},
		{name: "S3 non-ASCII in string", steps: []step{{req: req{keys: keys("\"caf\u00e9\"")}, status: 400, code: "idempotency_key_malformed"}}},
		{name: "S3 non-ASCII token", steps: []step{{req: req{keys: keys("caf\u00e9")}, status: 400, code: "idempotency_key_malformed"}}},
		{name: "S3 CR LF", steps: []step{{req: req{keys: keys("\"a\r\nb\"")}, status: 400, code: "idempotency_key_malformed"}}},
		{name: "S3 NUL", steps: []step{{req: req{keys: keys("a\x00b")}, status: 400, code: "idempotency_key_malformed"}}},
		{name: "S3 DEL", steps: []step{{req: req{keys: keys("\"a\x7f\"")}, status: 400, code: "idempotency_key_malformed"}}},
		{name: "S3 space inside a token", steps: []step{{req: req{keys: keys("a b")}, status: 400, code: "idempotency_key_malformed"}}},
		{name: "S3 parameters", steps: []step{{req: req{keys: keys(`"abc";v=1`)}, status: 400, code: "idempotency_key_malformed"}}},
		{name: "S3 list of strings", steps: []step{{req: req{keys: keys(`"abc", "def"`)}, status: 400, code: "idempotency_key_malformed"}}},
		{name: "S3 empty string", steps: []step{{req: req{keys: keys(`""`)}, status: 400, code: "idempotency_key_malformed"}}},
		{name: "S3 empty field", steps: []step{{req: req{keys: keys("  ")}, status: 400, code: "idempotency_key_malformed"}}},
		{name: "S3 string over 255", steps: []step{{req: req{keys: keys(`"` + long + `x"`)}, status: 400, code: "idempotency_key_malformed"}}},
		{name: "S3 token over 255", steps: []step{{req: req{keys: keys(long + "x")}, status: 400, code: "idempotency_key_malformed"}}},
		{name: "255 characters are accepted", claims: 1, steps: []step{
			{req: req{keys: keys(`"` + long + `"`)}, status: 201, runs: 1},
		}},
		{name: "first request runs, retry replays", claims: 2, steps: []step{
			{req: req{keys: keys(k), body: `{"amount":1999}`}, status: 201, runs: 1},
			{req: req{keys: keys(k), body: `{"amount":1999}`}, status: 201, replayed: true, runs: 1},
		}},
		{name: "bare token and string name the same key", claims: 2, steps: []step{
			{req: req{keys: keys(`tok-42`)}, status: 201, runs: 1},
			{req: req{keys: keys(`"tok-42"`)}, status: 201, replayed: true, runs: 1},
		}},
		{name: "escapes are unquoted", claims: 2, steps: []step{
			{req: req{keys: keys(`"a\"b\\c"`)}, status: 201, runs: 1},
			{req: req{keys: keys(`a"b\c`)}, status: 201, replayed: true, runs: 1},
		}},
		{name: "surrounding spaces are ignored", claims: 2, steps: []step{
			{req: req{keys: keys(` "abc"	`)}, status: 201, runs: 1},
			{req: req{keys: keys(`abc`)}, status: 201, replayed: true, runs: 1},
		}},
		{name: "S5 different body", claims: 2, steps: []step{
			{req: req{keys: keys(k), body: `{"amount":1999}`}, status: 201, runs: 1},
			{req: req{keys: keys(k), body: `{"amount":1998}`}, status: 422, code: "idempotency_key_reused", runs: 1},
		}},
		{name: "S5 different query", claims: 2, steps: []step{
			{req: req{keys: keys(k), target: "/charges?capture=true"}, status: 201, runs: 1},
			{req: req{keys: keys(k), target: "/charges?capture=false"}, status: 422, code: "idempotency_key_reused", runs: 1},
		}},
		{name: "S5 different API version header", cfg: &idemhttp.Config{FingerprintHeaders: []string{"api-version"}}, claims: 2, steps: []step{
			{req: req{keys: keys(k), header: http.Header{"Api-Version": {"2026-01-01"}}}, status: 201, runs: 1},
			{req: req{keys: keys(k), header: http.Header{"Api-Version": {"2026-06-01"}}}, status: 422, code: "idempotency_key_reused", runs: 1},
		}},
		{name: "S5 different path on one pattern", cfg: &idemhttp.Config{Route: func(*http.Request) string { return "POST /charges/{id}/refund" }}, claims: 2, steps: []step{
			{req: req{keys: keys(k), target: "/charges/ch_1/refund"}, status: 201, runs: 1},
			{req: req{keys: keys(k), target: "/charges/ch_2/refund"}, status: 422, code: "idempotency_key_reused", runs: 1},
		}},
		{name: "query order does not matter", claims: 2, steps: []step{
			{req: req{keys: keys(k), target: "/charges?b=2&a=1&a=0"}, status: 201, runs: 1},
			{req: req{keys: keys(k), target: "/charges?a=1&a=0&b=%32"}, status: 201, replayed: true, runs: 1},
		}},
		{name: "other method is another record", claims: 2, steps: []step{
			{req: req{keys: keys(k)}, status: 201, runs: 1},
			{req: req{keys: keys(k), method: http.MethodPatch}, status: 201, runs: 2},
		}},
		{name: "other route is another record", claims: 2, steps: []step{
			{req: req{keys: keys(k), target: "/charges"}, status: 201, runs: 1},
			{req: req{keys: keys(k), target: "/refunds"}, status: 201, runs: 2},
		}},
		{name: "unprotected method passes through", steps: []step{
			{req: req{keys: keys(k), method: http.MethodGet}, status: 201, runs: 1},
			{req: req{keys: keys(k), method: http.MethodGet}, status: 201, runs: 2},
		}},
		{name: "protected methods are configurable", cfg: &idemhttp.Config{Methods: []string{http.MethodPut}}, claims: 2, steps: []step{
			{req: req{method: http.MethodPost}, status: 201, runs: 1},
			{req: req{keys: keys(k), method: http.MethodPut}, status: 201, runs: 2},
			{req: req{keys: keys(k), method: http.MethodPut}, status: 201, replayed: true, runs: 2},
		}},
		{name: "S4 another principal with the same key", claims: 3, steps: []step{
			{req: req{keys: keys(k), user: "alice"}, status: 201, runs: 1},
			{req: req{keys: keys(k), user: "bob"}, status: 201, runs: 2},
			{req: req{keys: keys(k), user: "bob"}, status: 201, replayed: true, runs: 2},
		}},
		{name: "S7 unauthenticated stores nothing", claims: 1, steps: []step{
			{req: req{keys: keys(k), user: "-"}, status: 401, code: "unauthenticated"},
			{req: req{keys: keys(k)}, status: 201, runs: 1},
		}},
		{name: "S10 body over the cap, length known", cfg: &idemhttp.Config{MaxRequestBytes: 8}, steps: []step{
			{req: req{keys: keys(k), body: "123456789"}, status: 413, code: "body_too_large"},
		}},
		{name: "S10 body over the cap, streamed", cfg: &idemhttp.Config{MaxRequestBytes: 8}, steps: []step{
			{req: req{keys: keys(k), body: "123456789", chunked: true}, status: 413, code: "body_too_large"},
		}},
		{name: "body at the cap", cfg: &idemhttp.Config{MaxRequestBytes: 8}, claims: 1, steps: []step{
			{req: req{keys: keys(k), body: "12345678", chunked: true}, status: 201, runs: 1},
		}},
		{name: "S8 429 releases the key", claims: 2, steps: []step{
			{req: req{keys: keys(k), target: "/charges?status=429"}, status: 429, runs: 1},
			{req: req{keys: keys(k), target: "/charges?status=429"}, status: 429, runs: 2},
		}},
		{name: "503 releases the key", claims: 2, steps: []step{
			{req: req{keys: keys(k), target: "/charges?status=503"}, status: 503, runs: 1},
			{req: req{keys: keys(k), target: "/charges?status=503"}, status: 503, runs: 2},
		}},
		{name: "retry statuses are configurable", cfg: &idemhttp.Config{RetryStatuses: []int{502}}, claims: 4, steps: []step{
			{req: req{keys: keys(k), target: "/charges?status=502"}, status: 502, runs: 1},
			{req: req{keys: keys(k), target: "/charges?status=502"}, status: 502, runs: 2},
			{req: req{keys: keys("k2"), target: "/charges?status=503"}, status: 503, runs: 3},
			{req: req{keys: keys("k2"), target: "/charges?status=503"}, status: 503, replayed: true, runs: 3},
		}},
		{name: "500 is recorded and replayed", claims: 2, steps: []step{
			{req: req{keys: keys(k), target: "/charges?status=500"}, status: 500, runs: 1},
			{req: req{keys: keys(k), target: "/charges?status=500"}, status: 500, replayed: true, runs: 1},
		}},
		{name: "a 4xx from the handler is recorded", claims: 2, steps: []step{
			{req: req{keys: keys(k), target: "/charges?status=402"}, status: 402, runs: 1},
			{req: req{keys: keys(k), target: "/charges?status=402"}, status: 402, replayed: true, runs: 1},
		}},
		{name: "a 5xx after the client went away releases the key", claims: 2, steps: []step{
			{req: req{keys: keys(k), target: "/charges?status=500&cancel=1"}, status: 500, runs: 1},
			{req: req{keys: keys(k), target: "/charges?status=500&cancel=1"}, status: 500, runs: 2},
		}},
		{name: "a 2xx after the client went away is recorded", claims: 2, steps: []step{
			{req: req{keys: keys(k), target: "/charges?status=201&cancel=1"}, status: 201, runs: 1},
			{req: req{keys: keys(k), target: "/charges?status=201&cancel=1"}, status: 201, replayed: true, runs: 1},
		}},
		{name: "a panic releases the key", claims: 2, steps: []step{
			{req: req{keys: keys(k), target: "/charges?panic=1"}, status: 599, runs: 1},
			{req: req{keys: keys(k), target: "/charges?panic=1"}, status: 599, runs: 2},
		}},
		{name: "a handler that writes nothing is a recorded 200", claims: 2, steps: []step{
			{req: req{keys: keys(k), target: "/charges?empty=1"}, status: 200, runs: 1},
			{req: req{keys: keys(k), target: "/charges?empty=1"}, status: 200, replayed: true, runs: 1},
		}},
		{name: "204 replays without a body", claims: 2, steps: []step{
			{req: req{keys: keys(k), target: "/charges?status=204"}, status: 204, runs: 1},
			{req: req{keys: keys(k), target: "/charges?status=204"}, status: 204, replayed: true, runs: 1},
		}},
		{name: "S11 response over the cap is sent, then not replayed", cfg: &idemhttp.Config{MaxResponseBytes: 100}, claims: 2, steps: []step{
			{req: req{keys: keys(k), target: "/charges?size=101"}, status: 201, runs: 1},
			{req: req{keys: keys(k), target: "/charges?size=101"}, status: 500, code: "response_not_stored", replayed: true, runs: 1},
		}},
		{name: "S11 the replay says what happened", cfg: &idemhttp.Config{MaxResponseBytes: 100}, claims: 2, steps: []step{
			{req: req{keys: keys(k), target: "/charges?size=1000"}, status: 201, runs: 1, check: func(t *testing.T, w *httptest.ResponseRecorder) {
				if w.Body.Len() != 1000 {
					t.Errorf("first response has %d bytes, want all 1000", w.Body.Len())
				}
			}},
			{req: req{keys: keys(k), target: "/charges?size=1000"}, status: 500, code: "response_not_stored", replayed: true, runs: 1, check: func(t *testing.T, w *httptest.ResponseRecorder) {
				if !strings.Contains(w.Body.String(), `"original_status":201`) || w.Header().Get("Location") != "/charges/ch_1" {
					t.Errorf("replay %v %s lacks the original status or Location", w.Header(), w.Body)
				}
			}},
		}},
		{name: "S12 replay has allow-listed fields only", cfg: &idemhttp.Config{ReplayHeaders: []string{"x-request-cost", "X-Private"}}, claims: 2, steps: []step{
			{req: req{keys: keys(k)}, status: 201, runs: 1, check: func(t *testing.T, w *httptest.ResponseRecorder) {
				for _, h := range []string{"Set-Cookie", "X-Private", "Cache-Control"} {
					if w.Header().Get(h) == "" {
						t.Errorf("live response lacks %s: the first client gets every field", h)
					}
				}
			}},
			{req: req{keys: keys(k)}, status: 201, replayed: true, runs: 1, check: func(t *testing.T, w *httptest.ResponseRecorder) {
				want := http.Header{
					"Content-Type":        {"application/json"},
					"Location":            {"/charges/ch_1"},
					"X-Request-Cost":      {"7"},
					"Content-Length":      {strconv.Itoa(w.Body.Len())},
					"Idempotent-Replayed": {"true"},
				}
				if !reflect.DeepEqual(w.Header(), want) {
					t.Errorf("replayed header %v, want %v", w.Header(), want)
				}
			}},
		}},
		{name: "store down before the handler fails closed", setup: func(f *fixture) { f.store.failClaim.Store(true) }, claims: 1, log: "store unavailable", steps: []step{
			{req: req{keys: keys(k)}, status: 503, code: "store_unavailable"},
		}},
		{name: "store down after the handler: the live response, logged", setup: func(f *fixture) { f.store.failComplete.Store(true) }, claims: 2, log: "level=ERROR", steps: []step{
			{req: req{keys: keys(k)}, status: 201, runs: 1},
			{req: req{keys: keys(k)}, status: 409, code: "request_in_flight", runs: 1},
		}},
		{name: "response at the cap is replayed", cfg: &idemhttp.Config{MaxResponseBytes: 100}, claims: 2, steps: []step{
			{req: req{keys: keys(k), target: "/charges?size=100"}, status: 201, runs: 1},
			{req: req{keys: keys(k), target: "/charges?size=100"}, status: 201, replayed: true, runs: 1},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.cfg)
			if tt.setup != nil {
				tt.setup(f)
			}
			var live string // the last response the handler made
			for i, s := range tt.steps {
				w := f.do(s.req)
				if w.Code != s.status {
					t.Fatalf("step %d: status %d, want %d; body %s", i, w.Code, s.status, w.Body)
				}
				if got := problemCode(t, w); got != s.code {
					t.Errorf("step %d: problem code %q, want %q", i, got, s.code)
				}
				if got := w.Header().Get("Idempotent-Replayed") == "true"; got != s.replayed {
					t.Errorf("step %d: replayed %t, want %t", i, got, s.replayed)
				}
				if got := f.app.runs.Load(); got != s.runs {
					t.Errorf("step %d: handler ran %d times, want %d", i, got, s.runs)
				}
				if (s.status == 409 || s.status == 503 && s.code != "") != (w.Header().Get("Retry-After") != "") {
					t.Errorf("step %d: Retry-After %q with status %d", i, w.Header().Get("Retry-After"), w.Code)
				}
				if s.replayed && s.code == "" && w.Body.String() != live {
					t.Errorf("step %d: replayed body %q, want the last live response's %q", i, w.Body, live)
				}
				if s.check != nil {
					s.check(t, w)
				}
				if !s.replayed && s.code == "" {
					live = w.Body.String()
				}
			}
			if got := f.store.claims.Load(); got != tt.claims {
				t.Errorf("store claims = %d, want %d", got, tt.claims)
			}
			if log := f.log.String(); !strings.Contains(log, tt.log) {
				t.Errorf("log %q lacks %q", log, tt.log)
			}
			if log := f.log.String(); strings.Contains(log, strings.Trim(k, `"`)) {
				t.Errorf("the raw key was logged: %s", log)
			}
		})
	}
}
