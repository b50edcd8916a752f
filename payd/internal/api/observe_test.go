package api

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/idemhq/idem/internal/testenv"
	"github.com/idemhq/idem/webhook"
)

// TestRequestIDs: a sane X-Request-Id is kept and echoed, anything else
// is replaced by a new id, and every response has one; a replay carries
// its own request's id, not the recorded response's.
func TestRequestIDs(t *testing.T) {
	for _, tc := range []struct {
		name, sent string
		kept       bool
	}{
		{"Sane", "lb-7f3a:req/42", true},
		{"Longest", strings.Repeat("a", maxRequestIDLen), true},
		{"Missing", "", false},
		{"TooLong", strings.Repeat("a", maxRequestIDLen+1), false},
		{"Space", "two words", false},
		{"Control", "id\x01", false},
		{"NotASCII", "idé", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := requestID(tc.sent)
			if tc.kept && got != tc.sent || !tc.kept && (got == tc.sent || !strings.HasPrefix(got, "req_") || requestID(got) != got) {
				t.Errorf("requestID(%q) = %q, kept %v", tc.sent, got, tc.kept)
			}
		})
	}
	if a, b := requestID(""), requestID(""); a == b {
		t.Errorf("two new request ids are both %q", a)
	}

	f := newFixture(t)
	const body = `{"amount":1,"currency":"usd","reference":"r"}`
	first := f.do(t, http.MethodPost, "/v1/charges", key, "rid", body, "X-Request-Id", "client-1")
	replay := f.do(t, http.MethodPost, "/v1/charges", key, "rid", body, "X-Request-Id", "client-2")
	unauthenticated := f.do(t, http.MethodGet, "/v1/balance", "", "", "")
	if got := first.header.Get("X-Request-Id"); got != "client-1" {
		t.Errorf("first request's X-Request-Id = %q, want client-1", got)
	}
	if got := replay.header.Get("X-Request-Id"); got != "client-2" || replay.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("replay's X-Request-Id = %q (replayed %q), want its own, client-2", got, replay.header.Get("Idempotent-Replayed"))
	}
	if got := unauthenticated.header.Get("X-Request-Id"); unauthenticated.status != http.StatusUnauthorized || !strings.HasPrefix(got, "req_") {
		t.Errorf("a 401's X-Request-Id = %q, want a new id", got)
	}
}

// TestHTTPMetrics: every request is counted by the route pattern that
// matched, never its raw path, with a bounded method, and timed.
func TestHTTPMetrics(t *testing.T) {
	f := newFixture(t)
	const body = `{"amount":1,"currency":"usd","reference":"r"}`
	f.do(t, http.MethodPost, "/v1/charges", key, "m1", body)
	f.do(t, http.MethodPost, "/v1/charges", key, "m1", body)
	f.do(t, http.MethodGet, "/v1/charges/ch_nope", key, "", "")
	f.do(t, http.MethodGet, "/v1/charges/ch_other", "", "", "")
	f.do(t, http.MethodGet, "/no/such/path", "", "", "")
	f.do(t, "BREW", "/v1/charges", key, "", "")

	families, err := f.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		route, method, status string
		want                  float64
	}{
		{"POST /v1/charges", "POST", "202", 2},
		{"GET /v1/charges/{id}", "GET", "404", 1},
		{"GET /v1/charges/{id}", "GET", "401", 1},
		{unmatchedRoute, "GET", "404", 1},
		{unmatchedRoute, "other", "405", 1},
	} {
		labels := map[string]string{"route": c.route, "method": c.method, "status": c.status}
		if got := counterValue(families, "payd_http_requests_total", labels); got != c.want {
			t.Errorf("payd_http_requests_total%v = %v, want %v", labels, got, c.want)
		}
	}
	text := f.metricsText(t)
	for _, raw := range []string{"ch_nope", "ch_other", "/no/such/path", "BREW"} {
		if strings.Contains(text, raw) {
			t.Errorf("the metrics name %q, from a raw request:\n%s", raw, text)
		}
	}
	if !strings.Contains(text, `payd_http_request_duration_seconds_count{method="POST",route="POST /v1/charges"} 2`) {
		t.Errorf("no latency of the two charge requests:\n%s", text)
	}
}

// counterValue is the value of the counter name with exactly labels among
// families, or -1 if there is none.
func counterValue(families []*dto.MetricFamily, name string, labels map[string]string) float64 {
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for _, l := range m.GetLabel() {
				if labels[l.GetName()] != l.GetValue() {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return -1
}

// metricsText is the fixture's metrics as the admin endpoints serve them.
func (f *fixture) metricsText(t *testing.T) string {
	t.Helper()
	admin, err := NewAdmin(AdminConfig{Registry: f.reg})
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	admin.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	return w.Body.String()
}

// TestAdminKey: with a key, the admin endpoints refuse a request without
// it or with another, logging the refusal but never a key; with it they
// serve /metrics, and 404 as problem+json elsewhere.
func TestAdminKey(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "payd_test_total", Help: "a counter"}))
	logs := &testenv.SyncBuffer{}
	const adminKey = "adm_secret_key"
	h, err := NewAdmin(AdminConfig{Registry: reg, Key: adminKey, Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	for _, tc := range []struct {
		name, path, authorization string
		status                    int
	}{
		{"NoKey", "/metrics", "", 401},
		{"WrongKey", "/metrics", "Bearer adm_other", 401},
		{"KeyWithoutBearer", "/metrics", adminKey, 401},
		{"KeyAsPrefix", "/metrics", "Bearer " + adminKey + "x", 401},
		{"Key", "/metrics", "Bearer " + adminKey, 200},
		{"KeyElsewhere", "/nothing", "Bearer " + adminKey, 404},
		{"NoKeyElsewhere", "/nothing", "", 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, srv.URL+tc.path, nil)
			if tc.authorization != "" {
				req.Header.Set("Authorization", tc.authorization)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var b bytes.Buffer
			b.ReadFrom(resp.Body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, b.String())
			}
			if tc.status == 200 && !strings.Contains(b.String(), "payd_test_total 0") {
				t.Fatalf("/metrics lacks the registry's counter:\n%s", b.String())
			}
			if tc.status != 200 && resp.Header.Get("Content-Type") != "application/problem+json" {
				t.Fatalf("a %d as %s, want problem+json", tc.status, resp.Header.Get("Content-Type"))
			}
		})
	}
	if n := strings.Count(logs.String(), "admin request refused"); n != 5 {
		t.Errorf("%d refusals logged, want 5:\n%s", n, logs)
	}
	if strings.Contains(logs.String(), "adm_") {
		t.Errorf("a key is in the log:\n%s", logs)
	}
	if _, err := NewAdmin(AdminConfig{}); err == nil {
		t.Error("NewAdmin without a Registry: no error")
	}
}

// TestRequestIDInHandlerLogs: what a handler logs while it serves a
// request, through a logger wrapped in LogRequestIDs, carries that
// request's id, once.
func TestRequestIDInHandlerLogs(t *testing.T) {
	logs := &testenv.SyncBuffer{}
	f := newFixtureWith(t, fixtureOptions{databaseURL: filepath.Join(t.TempDir(), "payd.db"),
		log: slog.New(LogRequestIDs(slog.NewJSONHandler(logs, nil)))})
	body := []byte(`{"id":"evt_bad","type":5}`) // signed, but not an event
	req, _ := http.NewRequest(http.MethodPost, f.url+"/v1/provider/webhooks", bytes.NewReader(body))
	req.Header.Set("X-Request-Id", "hook-1")
	req.Header.Set(webhook.DefaultHeader, webhook.Sign(webhookSecret, time.Now(), body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("webhook delivery = %d, want 204 (dropped)", resp.StatusCode)
	}

	var found bool
	for line := range strings.Lines(logs.String()) {
		var entry map[string]any
		if err := json.Unmarshal([]byte(line), &entry); err != nil {
			t.Fatalf("not JSON: %s", line)
		}
		if entry["msg"] == "payd: dropping a signed provider event that is not an event" {
			found = true
			if entry["request_id"] != "hook-1" || strings.Count(line, `"request_id"`) != 1 {
				t.Errorf("the handler's line has request_id %v, want hook-1 once: %s", entry["request_id"], line)
			}
		}
	}
	if !found {
		t.Fatalf("the handler logged nothing about the event:\n%s", logs)
	}
}
