package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/idemhq/idem/payd/internal/api"
	"github.com/idemhq/idem/payd/internal/payments"
	"github.com/idemhq/idem/payd/internal/simulator"
)

// checkRaw checks against the OpenAPI document a response read from a raw
// connection, to a request with method, path and header, and returns its
// body.
func checkRaw(t *testing.T, method, path string, header http.Header, resp *http.Response) string {
	t.Helper()
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("reading the answer to %s %s: %v", method, path, err)
	}
	c, err := loadContract()
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(method, path, nil)
	req.Header = header
	if err := c.Check(req, nil, resp, body); err != nil {
		t.Errorf("%s %s: %v", method, path, err)
	}
	return string(body)
}

// rawGet sends GET path with Host: payd and header, written as given, on a
// new connection to p, and returns the answer, checked.
func rawGet(t *testing.T, p *proc, path string, header http.Header) (*http.Response, string) {
	t.Helper()
	conn := dialAPI(t, p)
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: payd\r\n", path)
	for name, values := range header {
		for _, v := range values {
			fmt.Fprintf(&b, "%s: %s\r\n", name, v)
		}
	}
	b.WriteString("Connection: close\r\n\r\n")
	if _, err := io.WriteString(conn, b.String()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	header = header.Clone()
	header.Set("Connection", "close")
	return resp, checkRaw(t, http.MethodGet, path, header, resp)
}

// TestHeaderLimitOverTheWire: payd serves a request whose line and
// headers are api.MaxHeaderBytes as sent (Host, Connection and X-Pad here);
// one byte more gets 431 problem+json from payd; past the HTTP server's
// own limit (16 KiB) Go answers a plain-text 431 before payd sees the
// request. On the code before, everything under the server's limit was
// served.
func TestHeaderLimitOverTheWire(t *testing.T) {
	_, simURL := newSim(t, simulator.Faults{})
	p := startPayd(t, paydArgs(filepath.Join(t.TempDir(), "payd.db"), simURL)...)
	pad := func(total int) http.Header {
		used := len("GET /healthz HTTP/1.1\r\n") + len("Host: payd\r\n") + len("Connection: close\r\n") + len("X-Pad: \r\n")
		return http.Header{"X-Pad": {strings.Repeat("p", total-used)}}
	}
	if resp, body := rawGet(t, p, "/healthz", pad(api.MaxHeaderBytes)); resp.StatusCode != http.StatusOK {
		t.Errorf("%d header bytes = %d %s, want 200", api.MaxHeaderBytes, resp.StatusCode, body)
	}
	resp, body := rawGet(t, p, "/healthz", pad(api.MaxHeaderBytes+1))
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge || resp.Header.Get("Content-Type") != "application/problem+json" || !strings.Contains(body, `"headers_too_large"`) {
		t.Errorf("%d header bytes = %d %s %s, want 431 problem+json headers_too_large", api.MaxHeaderBytes+1, resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	resp, body = rawGet(t, p, "/healthz", pad(maxHeaderBytes+8<<10))
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Errorf("%d header bytes = %d %s %s, want Go's plain-text 431", maxHeaderBytes+8<<10, resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
}

// TestContractOverTheWire: payd, a real process, serves its OpenAPI
// document to anyone, lists charges a page at a time and refunds what is
// left of one, and answers an unknown route and method with problems,
// each exchange checked against the document, on SQLite and PostgreSQL.
func TestContractOverTheWire(t *testing.T) {
	eachDatabase(t, func(t *testing.T, db string) {
		_, simURL := newSim(t, simulator.Faults{})
		p := startPayd(t, paydArgs(db, simURL)...)
		client := apiClient(t, 0)
		do := func(method, path, idemKey, body string) (*http.Response, string) {
			t.Helper()
			req, err := http.NewRequest(method, p.url+path, strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+testKey)
			if body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			if idemKey != "" {
				req.Header.Set("Idempotency-Key", idemKey)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return resp, string(b)
		}
		resp, doc := do(http.MethodGet, "/openapi.json", "", "")
		if resp.StatusCode != http.StatusOK || doc != string(api.OpenAPI()) {
			t.Fatalf("GET /openapi.json = %d, %d bytes; want 200 and the document", resp.StatusCode, len(doc))
		}
		var ids []string
		for i := range 3 {
			r, err := postCharge(client, p.url, fmt.Sprint("wire-", i), fmt.Sprintf(`{"amount":%d,"currency":"usd","reference":"wire"}`, 1000+i), 10)
			if err != nil || r.status != http.StatusOK || r.header.Get("Preference-Applied") != "wait=10" {
				t.Fatalf("charge %d = %v %d %s (Preference-Applied %q), want 200 final, wait=10 applied", i, err, r.status, r.body, r.header.Get("Preference-Applied"))
			}
			ids = append(ids, r.charge.ID)
		}
		var listed []string
		for after := ""; ; {
			path := "/v1/charges?reference=wire&limit=2"
			if after != "" {
				path += "&starting_after=" + after
			}
			resp, body := do(http.MethodGet, path, "", "")
			var page struct {
				Data    []payments.Charge `json:"data"`
				HasMore bool              `json:"has_more"`
			}
			if err := json.Unmarshal([]byte(body), &page); err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("GET %s = %d %s", path, resp.StatusCode, body)
			}
			for _, c := range page.Data {
				listed = append(listed, c.ID)
			}
			if !page.HasMore {
				break
			}
			after = page.Data[len(page.Data)-1].ID
		}
		if strings.Join(listed, ",") != strings.Join(ids, ",") {
			t.Errorf("listed %v, want the charges in the order made: %v", listed, ids)
		}
		refunds := "/v1/charges/" + ids[0] + "/refunds"
		if resp, body := do(http.MethodPost, refunds, "part", `{"amount":400}`); resp.StatusCode != http.StatusCreated {
			t.Fatalf("refund of 400 = %d %s", resp.StatusCode, body)
		}
		resp, body := do(http.MethodPost, refunds, "rest", "")
		var refund payments.RefundView
		if err := json.Unmarshal([]byte(body), &refund); err != nil || resp.StatusCode != http.StatusCreated || refund.Amount != 600 {
			t.Fatalf("refund of what is left = %d %s, want 201 of 600", resp.StatusCode, body)
		}
		if resp, body := do(http.MethodPost, refunds, "more", "{}"); resp.StatusCode != http.StatusConflict || !strings.Contains(body, `"nothing_left_to_refund"`) {
			t.Fatalf("refund with nothing left = %d %s, want 409 nothing_left_to_refund", resp.StatusCode, body)
		}
		if resp, body := do(http.MethodGet, "/v1/refunds", "", ""); resp.StatusCode != http.StatusNotFound || !strings.Contains(body, `"route_not_found"`) {
			t.Errorf("GET /v1/refunds = %d %s, want 404 route_not_found", resp.StatusCode, body)
		}
		if resp, body := do(http.MethodPatch, "/v1/charges/"+ids[0], "", ""); resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
			t.Errorf("PATCH a charge = %d %s (Allow %q), want 405 with Allow: GET, HEAD", resp.StatusCode, body, resp.Header.Get("Allow"))
		}
	})
}
