package main

import (
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/idemhq/idem/payd/internal/simulator"
)

// send makes one request to payd's API with the headers given in pairs,
// checked against the API's document, and returns its status.
func send(t *testing.T, method, url, body string, header ...string) int {
	t.Helper()
	return sendWith(t, apiClient(t, 0), method, url, body, header...)
}

// sendAdmin is send to the admin endpoints, which the API's document does
// not describe.
func sendAdmin(t *testing.T, method, url, body string, header ...string) int {
	t.Helper()
	return sendWith(t, http.DefaultClient, method, url, body, header...)
}

func sendWith(t *testing.T, c *http.Client, method, url, body string, header ...string) int {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// accessLines are p's access-log lines, by request id, once there are n.
func (p *proc) accessLines(n int) map[string]map[string]any {
	p.t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		out := map[string]map[string]any{}
		count := 0
		for line := range strings.Lines(p.logs.String()) {
			var entry map[string]any
			if json.Unmarshal([]byte(line), &entry) != nil || entry["msg"] != "payd: request" {
				continue
			}
			count++
			id, _ := entry["request_id"].(string)
			out[id] = entry
		}
		if count >= n || time.Now().After(deadline) {
			if count != n || len(out) != n {
				p.t.Fatalf("%d access-log lines for %d request ids, want %d:\n%s", count, len(out), n, p.logs)
			}
			return out
		}
	}
}

// TestAccessLog: a real payd serve logs one line per request, whatever
// answers it: accepted, replayed, a key reused for another body, a
// refused API key, a refused body, an unknown charge and an unknown path.
// Each line has the method, the route pattern (never the raw path), the
// status, the duration in seconds, the request id, the account once
// authenticated, and the idempotency outcome where that layer ran; no
// line of the log has an API key, an Idempotency-Key or a body.
func TestAccessLog(t *testing.T) {
	_, simURL := newSim(t, simulator.Faults{})
	p := startPayd(t, paydArgs(filepath.Join(t.TempDir(), "payd.db"), simURL)...)
	const (
		idemKey   = "idemkey-7c1f0a"
		wrongKey  = "sk_wrong_9d2e"
		bodyTrace = "body-marker-51aa"
	)
	charge := `{"amount":1999,"currency":"usd","reference":"` + bodyTrace + `"}`
	auth := "Bearer " + testKey
	requests := []struct {
		id, method, path, body string
		header                 []string
		status                 int
		route, account, idem   string
	}{
		{"r-accepted", "POST", "/v1/charges", charge, []string{"Authorization", auth, "Idempotency-Key", idemKey}, 202, "POST /v1/charges", "acct_dev", "executed"},
		{"r-replayed", "POST", "/v1/charges", charge, []string{"Authorization", auth, "Idempotency-Key", idemKey}, 202, "POST /v1/charges", "acct_dev", "replayed"},
		{"r-conflict", "POST", "/v1/charges", strings.Replace(charge, "1999", "2999", 1), []string{"Authorization", auth, "Idempotency-Key", idemKey}, 422, "POST /v1/charges", "acct_dev", "conflict"},
		{"r-401", "POST", "/v1/charges", charge, []string{"Authorization", "Bearer " + wrongKey, "Idempotency-Key", idemKey + "-2"}, 401, "POST /v1/charges", "", ""},
		{"r-400", "POST", "/v1/charges", `{"amount":-1,"currency":"usd","reference":"` + bodyTrace + `"}`, []string{"Authorization", auth, "Idempotency-Key", idemKey + "-3"}, 400, "POST /v1/charges", "acct_dev", ""},
		{"r-404", "GET", "/v1/charges/ch_nothing_here", "", []string{"Authorization", auth}, 404, "GET /v1/charges/{id}", "acct_dev", ""},
		{"r-unmatched", "GET", "/v1/nothing/" + bodyTrace, "", nil, 404, "unmatched", "", ""},
	}
	for _, r := range requests {
		if got := send(t, r.method, p.url+r.path, r.body, append(r.header, "X-Request-Id", r.id)...); got != r.status {
			t.Fatalf("%s: status %d, want %d", r.id, got, r.status)
		}
	}
	lines := p.accessLines(len(requests))
	for _, r := range requests {
		l := lines[r.id]
		if l == nil {
			t.Errorf("%s: no access-log line", r.id)
			continue
		}
		if l["method"] != r.method || l["route"] != r.route || l["status"] != float64(r.status) || l["level"] != "INFO" {
			t.Errorf("%s: logged %v %v %v at %v, want %s %s %d at INFO", r.id, l["method"], l["route"], l["status"], l["level"], r.method, r.route, r.status)
		}
		if d, ok := l["duration_seconds"].(float64); !ok || d <= 0 || d > 10 {
			t.Errorf("%s: duration_seconds %v, want seconds as a number", r.id, l["duration_seconds"])
		}
		if got, _ := l["account"].(string); got != r.account {
			t.Errorf("%s: account %q, want %q", r.id, got, r.account)
		}
		if got, _ := l["idempotency"].(string); got != r.idem {
			t.Errorf("%s: idempotency %q, want %q", r.id, got, r.idem)
		}
	}
	for _, secret := range []string{testKey, wrongKey, idemKey, bodyTrace, "Bearer", "ch_nothing_here"} {
		if strings.Contains(p.logs.String(), secret) {
			t.Errorf("the log has %q:\n%s", secret, p.logs)
		}
	}
}

// TestAdminServesMetrics: /metrics is on the admin address, in every
// role, with the engine's events among payd's metrics; the API's address
// answers 404 for it.
func TestAdminServesMetrics(t *testing.T) {
	_, simURL := newSim(t, simulator.Faults{})
	db := filepath.Join(t.TempDir(), "payd.db")
	p := startPayd(t, paydArgs(db, simURL, "--role", "api")...)
	if r, err := postCharge(apiClient(t, 0), p.url, "admin-1", orderBody, 0); err != nil || r.status != http.StatusAccepted {
		t.Fatalf("charge: %v %+v", err, r)
	}
	if got := send(t, http.MethodGet, p.url+"/metrics", ""); got != http.StatusNotFound {
		t.Errorf("GET /metrics on the API = %d, want 404", got)
	}
	metrics := scrape(t, p.admin, "")
	for _, want := range []string{`idem_events_total{outcome="executed"} 1`, "idem_not_recorded_total 0", "idem_duration_seconds_bucket",
		`payd_http_requests_total{method="POST",route="POST /v1/charges",status="202"} 1`, "payd_queue_depth 1", "go_goroutines"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("the API's admin /metrics lack %q", want)
		}
	}
	worker := startPayd(t, paydArgs(db, simURL, "--role", "worker")...)
	if worker.admin == "" {
		t.Fatal("a worker printed no admin address")
	}
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(scrape(t, worker.admin, ""), `payd_settled_total{by="worker",kind="payment",state="succeeded"} 1`) {
		if time.Now().After(deadline) {
			t.Fatalf("the worker's /metrics never counted the charge settled:\n%s", scrape(t, worker.admin, ""))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// scrape reads adminURL's /metrics, with the admin key if one is given.
func scrape(t *testing.T, adminURL, key string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, adminURL+"/metrics", nil)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s/metrics = %d: %s", adminURL, resp.StatusCode, b)
	}
	return string(b)
}

// TestAdminAddrNeedsAKey: admin endpoints on an address that is not
// loopback are refused without an admin key; with one, given by flag or
// PAYD_ADMIN_KEY, every admin request must send it, and it is never
// printed or logged.
func TestAdminAddrNeedsAKey(t *testing.T) {
	getenv := func(string) string { return "" }
	for _, addr := range []string{"0.0.0.0:0", ":9090", "192.0.2.1:9090", "payd.internal:9090"} {
		err := run(t.Context(), []string{"payd", "serve", "--admin-addr", addr}, getenv, nil, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "--admin-key") {
			t.Errorf("--admin-addr %s without a key: %v, want a refusal naming --admin-key", addr, err)
		}
	}

	_, simURL := newSim(t, simulator.Faults{})
	db := filepath.Join(t.TempDir(), "payd.db")
	const adminKey = "adm_operator_secret_4f1c"
	p := startPayd(t, paydArgs(db, simURL, "--admin-addr", "0.0.0.0:0", "--admin-key", adminKey)...)
	if got := sendAdmin(t, http.MethodGet, p.admin+"/metrics", ""); got != http.StatusUnauthorized {
		t.Errorf("admin /metrics without the key = %d, want 401", got)
	}
	if !strings.Contains(scrape(t, p.admin, adminKey), "payd_queue_depth") {
		t.Error("admin /metrics with the key lacks payd's metrics")
	}
	if strings.Contains(p.logs.String(), adminKey) {
		t.Errorf("the log has the admin key:\n%s", p.logs)
	}
	out := serveOutput(t, []string{"PAYD_ADMIN_KEY=" + adminKey}, paydArgs(db, simURL, "--admin-addr", "0.0.0.0:0")...)
	if strings.Contains(out, adminKey) || !strings.Contains(out, "$PAYD_ADMIN_KEY") {
		t.Errorf("the output shows the admin key, or no placeholder for it:\n%s", out)
	}
}
