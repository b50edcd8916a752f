package api

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/idemhq/idem/payd/internal/openapitest"
)

// TestOpenAPIDocument: the document is valid OpenAPI 3.1, GET
// /openapi.json serves it to anyone, and the limits, currencies and
// listing parameters it states are the ones payd checks.
func TestOpenAPIDocument(t *testing.T) {
	if _, err := openapitest.New(openAPIDocument); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t)
	r := f.do(t, http.MethodGet, "/openapi.json", "", "", "")
	if r.status != http.StatusOK || r.header.Get("Content-Type") != "application/json" || r.body != string(openAPIDocument) {
		t.Fatalf("GET /openapi.json = %d %s, %d bytes; want 200 application/json, the embedded document", r.status, r.header.Get("Content-Type"), len(r.body))
	}
	var doc map[string]any
	if err := json.Unmarshal(openAPIDocument, &doc); err != nil {
		t.Fatal(err)
	}
	schema := func(path ...string) any {
		var v any = doc["components"].(map[string]any)["schemas"]
		for _, p := range path {
			m, _ := v.(map[string]any)
			v = m[p]
		}
		return v
	}
	for _, c := range []struct {
		what string
		doc  any
		code int
	}{
		{"Amount's maximum", schema("Amount", "maximum"), maxAmount},
		{"Reference's maxLength", schema("Reference", "maxLength"), maxReferenceLen},
		{"a description's maxLength", schema("ChargeRequest", "properties", "description", "maxLength"), maxDescriptionLen},
		{"Metadata's maxProperties", schema("Metadata", "maxProperties"), maxMetadataKeys},
		{"a metadata key's maxLength", schema("Metadata", "propertyNames", "maxLength"), maxMetadataKeyLen},
		{"a metadata value's maxLength", schema("Metadata", "additionalProperties", "maxLength"), maxMetadataValLen},
	} {
		if c.doc != float64(c.code) {
			t.Errorf("the document says %s is %v, payd checks %d", c.what, c.doc, c.code)
		}
	}
	var documented []string
	for _, c := range schema("Currency", "enum").([]any) {
		documented = append(documented, c.(string))
	}
	if !slices.Equal(documented, currencies) {
		t.Errorf("the document's currencies are not payd's:\n%v\n%v", documented, currencies)
	}
	var limit map[string]any
	var query []string
	for _, p := range doc["paths"].(map[string]any)["/v1/charges"].(map[string]any)["get"].(map[string]any)["parameters"].([]any) {
		p, _ := p.(map[string]any)
		if p["in"] == "query" {
			query = append(query, p["name"].(string))
		}
		if p["name"] == "limit" {
			limit = p["schema"].(map[string]any)
		}
	}
	if !slices.Equal(query, listParams) {
		t.Errorf("the document lists charges by %v, payd by %v", query, listParams)
	}
	if limit["maximum"] != float64(maxPageLimit) || limit["default"] != float64(defaultPageLimit) {
		t.Errorf("the document's limit is %v, payd's at most %d, by default %d", limit, maxPageLimit, defaultPageLimit)
	}
	prose := strings.Join(strings.Fields(string(openAPIDocument)), " ")
	for _, text := range []string{
		fmt.Sprintf("passed, at most %d:", int(DefaultMaxPreferWait.Seconds())),
		fmt.Sprintf("at most %d bytes", maxBodyBytes),
		fmt.Sprintf("at most %d bytes", MaxHeaderBytes),
	} {
		if !strings.Contains(prose, text) {
			t.Errorf("the document does not say %q", text)
		}
	}
}

// TestEveryRouteIsDocumented: each route payd serves is an operation of
// the document, and each operation of the document a route payd serves.
func TestEveryRouteIsDocumented(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]json.RawMessage
	}
	if err := json.Unmarshal(openAPIDocument, &doc); err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		for method := range ops {
			if method != "parameters" && method != "summary" && method != "description" && method != "servers" {
				documented[strings.ToUpper(method)+" "+path] = true
			}
		}
	}
	served := map[string]bool{}
	for _, rt := range newFixture(t).api.routes() {
		served[rt.pattern()] = true
		if !documented[rt.pattern()] {
			t.Errorf("payd serves %s, which the OpenAPI document does not have", rt.pattern())
		}
	}
	for op := range documented {
		if !served[op] {
			t.Errorf("the OpenAPI document has %s, which payd does not serve", op)
		}
	}
}

// TestUnroutedRequestsGetProblems: a path payd does not serve gets 404,
// and a method a path does not take 405 with the methods it does in
// Allow, each problem+json (on the code before, Go's plain-text
// answers).
func TestUnroutedRequestsGetProblems(t *testing.T) {
	f := newFixture(t)
	for _, c := range []struct {
		method, path, code, allow string
		status                    int
	}{
		{http.MethodGet, "/v1/nope", "route_not_found", "", http.StatusNotFound},
		{http.MethodGet, "/", "route_not_found", "", http.StatusNotFound},
		{http.MethodPost, "/v1/charges/ch_1/refunds/re_1", "route_not_found", "", http.StatusNotFound},
		{http.MethodDelete, "/v1/charges", "method_not_allowed", "GET, HEAD, POST", http.StatusMethodNotAllowed},
		{http.MethodPut, "/v1/charges/ch_1", "method_not_allowed", "GET, HEAD", http.StatusMethodNotAllowed},
		{http.MethodGet, "/v1/provider/webhooks", "method_not_allowed", "POST", http.StatusMethodNotAllowed},
		// Paths the mux would redirect to their clean form (307 before).
		{http.MethodGet, "/v1//charges", "route_not_found", "", http.StatusNotFound},
		{http.MethodPost, "/v1//charges", "route_not_found", "", http.StatusNotFound},
		{http.MethodGet, "/v1/charges/../balance", "route_not_found", "", http.StatusNotFound},
		{http.MethodGet, "/v1/./balance", "route_not_found", "", http.StatusNotFound},
	} {
		r := f.do(t, c.method, c.path, key, "", "")
		var p problem
		err := json.Unmarshal([]byte(r.body), &p)
		if err != nil || r.status != c.status || p.Status != c.status || p.Code != c.code || r.header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s %s = %d %s %s, want %d problem+json %s", c.method, c.path, r.status, r.header.Get("Content-Type"), r.body, c.status, c.code)
		}
		if got := r.header.Get("Allow"); got != c.allow {
			t.Errorf("%s %s: Allow %q, want %q", c.method, c.path, got, c.allow)
		}
	}
}

// TestHeaderLimit: a request line and headers of MaxHeaderBytes, as sent,
// are served; one byte more gets 431 problem+json (on the code before,
// they were served up to the server's 16 KiB).
func TestHeaderLimit(t *testing.T) {
	f := newFixture(t)
	send := func(total int) reply {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, f.url+"/healthz", nil)
		if err != nil {
			t.Fatal(err)
		}
		// Every header the server sees, so their sum is known: the client
		// adds none but these when they are set.
		req.Header.Set("User-Agent", "payd-test")
		req.Header.Set("Accept-Encoding", "identity")
		const lineEnd = len(": \r\n")
		used := len("GET /healthz HTTP/1.1\r\n") + len("Host") + len(req.URL.Host) + len("User-Agent") + len("payd-test") +
			len("Accept-Encoding") + len("identity") + 3*lineEnd
		req.Header.Set("X-Pad", strings.Repeat("p", total-used-len("X-Pad")-lineEnd))
		resp, err := f.client(t).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return reply{resp.StatusCode, resp.Header, string(b)}
	}
	if r := send(MaxHeaderBytes); r.status != http.StatusOK {
		t.Errorf("%d header bytes = %d %s, want 200", MaxHeaderBytes, r.status, r.body)
	}
	r := send(MaxHeaderBytes + 1)
	if r.status != http.StatusRequestHeaderFieldsTooLarge || r.header.Get("Content-Type") != "application/problem+json" || !strings.Contains(r.body, `"code":"headers_too_large"`) {
		t.Errorf("%d header bytes = %d %s %s, want 431 problem+json headers_too_large", MaxHeaderBytes+1, r.status, r.header.Get("Content-Type"), r.body)
	}
}

// TestPreferenceApplied: a charge that asks to wait is told the wait it
// was given, capped at MaxPreferWait (on the code before, the wait it
// asked for), a replay too; one that does not ask, or is refused, is told
// nothing.
func TestPreferenceApplied(t *testing.T) {
	f := newFixture(t)
	const body = `{"amount":1999,"currency":"usd","reference":"order_1"}`
	for _, c := range []struct {
		name, idemKey, body, prefer, applied string
		status                               int
	}{
		{"a wait", "p1", body, "wait=5", "wait=5", http.StatusOK},
		{"a wait over the cap", "p2", body, "wait=100", fmt.Sprintf("wait=%d", int(DefaultMaxPreferWait.Seconds())), http.StatusOK},
		{"a replay's wait", "p2", body, "wait=7", "wait=7", http.StatusOK},
		{"among other preferences", "p3", body, "respond-async, wait=3", "wait=3", http.StatusOK},
		{"a wait that overflows a duration", "p7", body, "wait=10000000000", fmt.Sprintf("wait=%d", int(DefaultMaxPreferWait.Seconds())), http.StatusOK},
		{"a wait with a parameter", "p8", body, "wait=4;foo=bar", "wait=4", http.StatusOK},
		{"no wait", "p4", body, "", "", http.StatusAccepted},
		{"another preference", "p5", body, "return=minimal", "", http.StatusAccepted},
		{"a refusal", "p6", `{"amount":0,"currency":"usd","reference":"r"}`, "wait=5", "", http.StatusBadRequest},
		{"another body under a key", "p1", strings.Replace(body, "1999", "5", 1), "wait=5", "", http.StatusUnprocessableEntity},
	} {
		var header []string
		if c.prefer != "" {
			header = []string{"Prefer", c.prefer}
		}
		r := f.do(t, http.MethodPost, "/v1/charges", key, c.idemKey, c.body, header...)
		got, present := r.header["Preference-Applied"]
		if r.status != c.status || (c.applied == "") == present || present && got[0] != c.applied {
			t.Errorf("%s: %d with Preference-Applied %q, want %d with %q", c.name, r.status, got, c.status, c.applied)
		}
	}
}

// TestManySmallHeaders: 2000 headers "A: b" are 12 KB as sent, over
// MaxHeaderBytes though their names and values are 4000 bytes: payd
// refuses them with its 431 problem+json (on the code before, which
// counted names and values alone, they were served, and 4000 of them,
// 24 KB, got the server's plain-text 431 instead of payd's).
func TestManySmallHeaders(t *testing.T) {
	f := newFixture(t)
	req, err := http.NewRequest(http.MethodGet, f.url+"/healthz", nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 2000 {
		req.Header.Add("A", "b")
	}
	resp, err := f.client(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("2000 small headers = %d %s, want payd's 431 problem+json", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}
