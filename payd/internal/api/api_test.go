package api

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/payd/internal/database"
	"github.com/idemhq/idem/payd/internal/database/dbtest"
	"github.com/idemhq/idem/payd/internal/database/pgdb"
	"github.com/idemhq/idem/payd/internal/database/sqlitedb"
	"github.com/idemhq/idem/payd/internal/openapitest"
	"github.com/idemhq/idem/payd/internal/payments"
	"github.com/idemhq/idem/payd/internal/provider"
	"github.com/idemhq/idem/payd/internal/simulator"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const key = "sk_test_api_0123456789"

type fixture struct {
	url      string
	api      *server
	store    *payments.Store
	sim      *simulator.Sim
	prov     *provider.Client
	contract *openapitest.Checker
	reg      *prometheus.Registry // the API's metrics
}

// webhookSecret is the secret fixtures verify the provider's webhooks
// with.
var webhookSecret = []byte("whsec_test")

// newFixture serves the API on a SQLite store, with workers charging a
// simulator, all in process.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	return newFixtureOn(t, filepath.Join(t.TempDir(), "payd.db"), &payments.ProcessorConfig{PollInterval: 10 * time.Millisecond})
}

// newFixtureOn is newFixture on databaseURL, with the workers of cfg.
func newFixtureOn(t testing.TB, databaseURL string, cfg *payments.ProcessorConfig) *fixture {
	t.Helper()
	return newFixtureWith(t, fixtureOptions{databaseURL: databaseURL, workers: cfg})
}

type fixtureOptions struct {
	databaseURL string
	workers     *payments.ProcessorConfig // nil: no workers
	sim         *simulator.Sim            // nil: a simulator of its own
	log         *slog.Logger              // nil: none
}

// newFixtureWith serves the API as o says: one payd instance.
func newFixtureWith(t testing.TB, o fixtureOptions) *fixture {
	t.Helper()
	d := dbtest.Open(t, o.databaseURL)
	if err := d.Idem.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	store := payments.New(d.DB, nil)
	if err := store.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, acct := range []struct{ id, key string }{{"acct_a", key}, {"acct_b", "sk_test_other_0123456789"}} {
		if err := store.EnsureAccount(t.Context(), acct.id, acct.id, acct.key); err != nil {
			t.Fatal(err)
		}
	}
	sim := o.sim
	if sim == nil {
		sim = simulator.New(&simulator.Config{Seed: 1})
		t.Cleanup(sim.Close)
	}
	simSrv := httptest.NewServer(sim.Handler())
	t.Cleanup(simSrv.Close)
	prov, err := provider.NewClient(simSrv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prov.CloseIdleConnections)
	var proc *payments.Processor
	if o.workers != nil {
		proc = payments.NewProcessor(store, prov, o.workers)
		proc.Start(t.Context())
		t.Cleanup(func() { proc.Stop(context.Background()) })
	}
	engine, err := idem.New(d.Idem, &idem.Config{Namespace: "payd"})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	s, err := newServer(Config{Store: store, Engine: engine, Tx: txOfDB(d.DB), Processor: proc, Registry: reg,
		WebhookSecrets: [][]byte{webhookSecret}, Provider: prov, Logger: o.log})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.handler())
	t.Cleanup(srv.Close)
	return &fixture{url: srv.URL, api: s, store: store, sim: sim, prov: prov, contract: contract(t), reg: reg}
}

// contract is the checker of the OpenAPI document, loaded once: it does
// not change while the tests run.
var loadContract = sync.OnceValues(func() (*openapitest.Checker, error) { return openapitest.New(openAPIDocument) })

func contract(t testing.TB) *openapitest.Checker {
	t.Helper()
	c, err := loadContract()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// client is an HTTP client to the fixture that fails t for any request or
// response the OpenAPI document does not allow.
func (f *fixture) client(t testing.TB) *http.Client { return f.contract.Client(t, 0) }

// txOfDB is the TxType of db's idempotency store, as payd's commands
// choose it.
func txOfDB(db database.DB) TxType {
	if db.Dialect() == database.Postgres {
		return TxOf(pgdb.Tx)
	}
	return TxOf(sqlitedb.Tx)
}

type reply struct {
	status int
	header http.Header
	body   string
}

func (f *fixture) do(t *testing.T, method, path, apiKey, idemKey, body string, header ...string) reply {
	t.Helper()
	req, err := http.NewRequest(method, f.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+apiKey)
	}
	if idemKey != "" {
		req.Header.Set("Idempotency-Key", idemKey)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := f.client(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, string(b)}
}

func TestRejects(t *testing.T) {
	f := newFixture(t)
	const good = `{"amount":1999,"currency":"usd","reference":"order_1"}`
	for _, tc := range []struct {
		name, apiKey, idemKey, body string
		status                      int
		param                       string
	}{
		{"NoAPIKey", "", "k", good, 401, ""},
		{"UnknownAPIKey", "sk_nope", "k", good, 401, ""},
		{"NoIdempotencyKey", key, "", good, 400, ""},
		{"MissingAmount", key, "k", `{"currency":"usd","reference":"r"}`, 400, "amount"},
		{"FractionalAmount", key, "k", `{"amount":19.99,"currency":"usd","reference":"r"}`, 400, "amount"},
		{"ZeroAmount", key, "k", `{"amount":0,"currency":"usd","reference":"r"}`, 400, "amount"},
		{"HugeAmount", key, "k", `{"amount":100000000,"currency":"usd","reference":"r"}`, 400, "amount"},
		{"UpperCaseCurrency", key, "k", `{"amount":1,"currency":"USD","reference":"r"}`, 400, "currency"},
		{"UnknownCurrency", key, "k", `{"amount":1,"currency":"abc","reference":"r"}`, 400, "currency"},
		{"MissingReference", key, "k", `{"amount":1,"currency":"usd"}`, 400, "reference"},
		{"LongReference", key, "k", `{"amount":1,"currency":"usd","reference":"` + strings.Repeat("r", 256) + `"}`, 400, "reference"},
		{"UnknownField", key, "k", `{"amount":1,"currency":"usd","reference":"r","amont":2}`, 400, "amont"},
		{"NotJSON", key, "k", `amount=1`, 400, ""},
		{"MetadataNotStrings", key, "k", `{"amount":1,"currency":"usd","reference":"r","metadata":{"a":1}}`, 400, "metadata[a]"},
		{"MetadataNotAnObject", key, "k", `{"amount":1,"currency":"usd","reference":"r","metadata":5}`, 400, "metadata"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := f.do(t, http.MethodPost, "/v1/charges", tc.apiKey, tc.idemKey, tc.body)
			if r.status != tc.status || !strings.HasPrefix(r.header.Get("Content-Type"), "application/problem+json") {
				t.Fatalf("status %d %s (%s), want %d problem+json", r.status, r.header.Get("Content-Type"), r.body, tc.status)
			}
			var p problem
			json.Unmarshal([]byte(r.body), &p)
			if tc.param != "" && p.Param != tc.param {
				t.Fatalf("problem names %q, want %q: %s", p.Param, tc.param, r.body)
			}
		})
	}
	// Nothing was stored: the key is still free for a valid request.
	if r := f.do(t, http.MethodPost, "/v1/charges", key, "k", good); r.status != http.StatusAccepted || r.header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("valid request after rejected ones = %d replayed %q, want a fresh 202", r.status, r.header.Get("Idempotent-Replayed"))
	}
}

func TestChargeLifecycle(t *testing.T) {
	f := newFixture(t)
	const body = `{"amount":1999,"currency":"usd","reference":"order_1","description":"tea","metadata":{"cart":"7"}}`
	first := f.do(t, http.MethodPost, "/v1/charges", key, "k1", body)
	var c payments.Charge
	json.Unmarshal([]byte(first.body), &c)
	if first.status != http.StatusAccepted || c.Status != "pending" || first.header.Get("Location") != "/v1/charges/"+c.ID {
		t.Fatalf("create = %d %s, want 202 pending with its Location", first.status, first.body)
	}
	replay := f.do(t, http.MethodPost, "/v1/charges", key, "k1", body)
	if replay.status != http.StatusAccepted || replay.body != first.body || replay.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay = %d %q, want the same 202 body, replayed", replay.status, replay.header.Get("Idempotent-Replayed"))
	}
	if r := f.do(t, http.MethodPost, "/v1/charges", key, "k1", strings.Replace(body, "1999", "2999", 1)); r.status != http.StatusUnprocessableEntity {
		t.Fatalf("same key, other body = %d, want 422", r.status)
	}
	// The same key from another account is that account's own request.
	if r := f.do(t, http.MethodPost, "/v1/charges", "sk_test_other_0123456789", "k1", body); r.status != http.StatusAccepted || r.header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("another account's k1 = %d replayed %q, want a fresh 202", r.status, r.header.Get("Idempotent-Replayed"))
	}
	waited := f.do(t, http.MethodPost, "/v1/charges", key, "k1", body, "Prefer", "wait=10")
	json.Unmarshal([]byte(waited.body), &c)
	if waited.status != http.StatusOK || c.Status != "succeeded" || waited.header.Get("Preference-Applied") != "wait=10" {
		t.Fatalf("Prefer: wait=10 = %d %s, want 200 succeeded", waited.status, waited.body)
	}
	if r := f.do(t, http.MethodGet, "/v1/charges/"+c.ID, key, "", ""); r.status != http.StatusOK || !strings.Contains(r.body, `"status":"succeeded"`) {
		t.Fatalf("GET = %d %s", r.status, r.body)
	}
	if r := f.do(t, http.MethodGet, "/v1/charges/"+c.ID, "sk_test_other_0123456789", "", ""); r.status != http.StatusNotFound {
		t.Fatalf("GET by another account = %d, want 404", r.status)
	}
	var page struct {
		Data    []payments.Charge `json:"data"`
		HasMore bool              `json:"has_more"`
	}
	r := f.do(t, http.MethodGet, "/v1/charges?reference=order_1&limit=1", key, "", "")
	json.Unmarshal([]byte(r.body), &page)
	if r.status != http.StatusOK || len(page.Data) != 1 || page.Data[0].ID != c.ID || page.HasMore {
		t.Fatalf("list = %d %s, want the one charge", r.status, r.body)
	}
}

func TestHealthReadinessMetrics(t *testing.T) {
	f := newFixture(t)
	for path, want := range map[string]string{"/healthz": "ok", "/readyz": "ready"} {
		if r := f.do(t, http.MethodGet, path, "", "", ""); r.status != http.StatusOK || !strings.Contains(r.body, want) {
			t.Errorf("%s = %d %q", path, r.status, r.body)
		}
	}
	f.do(t, http.MethodPost, "/v1/charges", key, "m1", `{"amount":1,"currency":"usd","reference":"r"}`)
	f.do(t, http.MethodPost, "/v1/charges", key, "m1", `{"amount":1,"currency":"usd","reference":"r"}`)
	if r := f.do(t, http.MethodGet, "/metrics", "", "", ""); r.status != http.StatusNotFound {
		t.Errorf("/metrics on the API = %d, want 404: metrics are on the admin listener", r.status)
	}
	admin, err := NewAdmin(AdminConfig{Registry: f.reg})
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	admin.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for _, line := range []string{"payd_accepts_total 1", "payd_replays_total 1"} {
		if !strings.Contains(w.Body.String(), line) {
			t.Errorf("admin metrics lack %q", line)
		}
	}
}
