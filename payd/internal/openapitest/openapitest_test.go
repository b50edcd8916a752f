package openapitest

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

// thingsDoc documents POST /things, which takes {"n": 1 or more} and
// answers 201 {"id": …} or a 400 problem.
const thingsDoc = `{
  "openapi": "3.1.0",
  "info": {"title": "things", "version": "1"},
  "paths": {
    "/things": {
      "post": {
        "requestBody": {"required": true, "content": {"application/json": {"schema": {
          "type": "object", "required": ["n"], "additionalProperties": false,
          "properties": {"n": {"type": "integer", "minimum": 1}}}}}},
        "responses": {
          "201": {"description": "made", "content": {"application/json": {"schema": {
            "type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}}}}},
          "400": {"$ref": "#/components/responses/Refused"}
        }
      }
    }
  },
  "components": {
    "responses": {
      "Refused": {"description": "refused", "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
    },
    "schemas": {
      "Problem": {"type": "object", "required": ["code"], "properties": {"code": {"type": "string"}}}
    }
  }
}`

// recorder is a testing.TB that keeps what is reported to it.
type recorder struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, format)
}

// TestTransport: the transport lets through what the document allows and
// reports each kind of mismatch: a body, a status or a media type the
// document does not give, a request it refuses that was not refused, and
// the answers to requests it has no operation for.
func TestTransport(t *testing.T) {
	c := Must(t, []byte(thingsDoc))
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		contentType, answer      string
		header                   http.Header
		reported                 bool
	}{
		{"a documented exchange", "POST", "/things", `{"n":1}`, 201, "application/json", `{"id":"t1"}`, nil, false},
		{"a refusal of a bad request", "POST", "/things", `{"n":0}`, 400, "application/problem+json", `{"code":"bad"}`, nil, false},
		{"a bad request taken", "POST", "/things", `{"n":0}`, 201, "application/json", `{"id":"t1"}`, nil, true},
		{"a request without its body taken", "POST", "/things", ``, 201, "application/json", `{"id":"t1"}`, nil, true},
		{"a body not as documented", "POST", "/things", `{"n":1}`, 201, "application/json", `{"id":7}`, nil, true},
		{"a status not documented", "POST", "/things", `{"n":1}`, 200, "application/json", `{"id":"t1"}`, nil, true},
		{"a media type not documented", "POST", "/things", `{"n":1}`, 201, "text/plain", `t1`, nil, true},
		{"a problem not a Problem", "POST", "/things", `{}`, 400, "application/problem+json", `{"title":"no code"}`, nil, true},
		{"an unknown path's 404", "GET", "/nothing", ``, 404, "application/problem+json", `{"code":"route_not_found"}`, nil, false},
		{"an unknown path's 200", "GET", "/nothing", ``, 200, "text/plain", `hello`, nil, true},
		{"an unknown path's plain 404", "GET", "/nothing", ``, 404, "text/plain", `404 page not found`, nil, true},
		{"a wrong method's 405", "GET", "/things", ``, 405, "application/problem+json", `{"code":"method_not_allowed"}`, http.Header{"Allow": {"POST"}}, false},
		{"a 405 without Allow", "GET", "/things", ``, 405, "application/problem+json", `{"code":"method_not_allowed"}`, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				for k, v := range tc.header {
					w.Header()[k] = v
				}
				w.Header().Set("Content-Type", tc.contentType)
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.answer)
			}))
			defer srv.Close()
			rec := &recorder{TB: t}
			req, err := http.NewRequest(tc.method, srv.URL+tc.path, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if tc.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			resp, err := (&http.Client{Transport: c.Transport(rec, nil)}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(got) != tc.answer {
				t.Errorf("the client read %q, want the body %q", got, tc.answer)
			}
			if reported := len(rec.errs) > 0; reported != tc.reported {
				t.Errorf("reported %v (%q), want %v", reported, rec.errs, tc.reported)
			}
		})
	}
}

// TestNewRefusesBadDocuments: a document that is not OpenAPI 3.1, or not
// valid, is refused before any request is checked against it.
func TestNewRefusesBadDocuments(t *testing.T) {
	for name, doc := range map[string]string{
		"3.0":        strings.Replace(thingsDoc, `"3.1.0"`, `"3.0.3"`, 1),
		"no info":    strings.Replace(thingsDoc, `"info": {"title": "things", "version": "1"},`, ``, 1),
		"a bad $ref": strings.Replace(thingsDoc, `#/components/responses/Refused`, `#/components/responses/Nothing`, 1),
		"not JSON":   `openapi: 3.1.0`,
		"no Problem": strings.Replace(thingsDoc, `"Problem"`, `"Trouble"`, 1),
	} {
		if _, err := New([]byte(doc)); err == nil {
			t.Errorf("%s: New accepted the document", name)
		}
	}
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
