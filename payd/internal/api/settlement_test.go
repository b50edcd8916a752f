package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idemhq/idem/payd/internal/payments"
	"github.com/idemhq/idem/payd/internal/pgtest"
	"github.com/idemhq/idem/payd/internal/provider"
	"github.com/idemhq/idem/payd/internal/simulator"
	"github.com/idemhq/idem/webhook"
)

// eachDatabase runs test on a new SQLite file and a new PostgreSQL
// database, by URL.
func eachDatabase(t *testing.T, test func(t *testing.T, databaseURL string)) {
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		test(t, filepath.Join(t.TempDir(), "payd.db"))
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		test(t, pgtest.Database(t))
	})
}

var fastWorkers = payments.ProcessorConfig{PollInterval: 10 * time.Millisecond, RetryBase: 10 * time.Millisecond}

// chargeNow creates a charge of amount and waits for it to be final.
func (f *fixture) chargeNow(t *testing.T, amount int64) payments.Charge {
	t.Helper()
	r := f.do(t, http.MethodPost, "/v1/charges", key, fmt.Sprint("charge-", rand.Uint64()),
		fmt.Sprintf(`{"amount":%d,"currency":"usd","reference":"order"}`, amount), "Prefer", "wait=10")
	var c payments.Charge
	if err := json.Unmarshal([]byte(r.body), &c); err != nil || r.status != http.StatusOK {
		t.Fatalf("charge = %d %s, want 200 and final", r.status, r.body)
	}
	return c
}

type chargeView struct {
	payments.Charge
	Refunds []payments.RefundView `json:"refunds"`
}

func (f *fixture) charge(t *testing.T, id string) chargeView {
	t.Helper()
	r := f.do(t, http.MethodGet, "/v1/charges/"+id, key, "", "")
	var c chargeView
	if err := json.Unmarshal([]byte(r.body), &c); err != nil || r.status != http.StatusOK {
		t.Fatalf("GET charge = %d %s", r.status, r.body)
	}
	return c
}

// awaitRefunds polls the charge until none of its refunds is processing.
func (f *fixture) awaitRefunds(t *testing.T, id string) chargeView {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; {
		c := f.charge(t, id)
		settled := true
		for _, r := range c.Refunds {
			settled = settled && (r.Status == "succeeded" || r.Status == "failed")
		}
		if settled {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("refunds of %s still processing after 20s: %+v", id, c.Refunds)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (f *fixture) verify(t *testing.T) {
	t.Helper()
	r, err := f.store.Verify(t.Context(), f.prov, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK() {
		var b strings.Builder
		r.Print(&b)
		t.Fatalf("payd verify failed:\n%s", b.String())
	}
}

// TestConcurrentRefunds: 20 concurrent partial refunds of one charge, each
// with its own Idempotency-Key, summing to more than the charge. The
// accepted ones sum to at most the charge, the rest are refused 409 (the
// amount left may grow again if a refund fails), and the provider sees
// exactly the accepted ones.
func TestConcurrentRefunds(t *testing.T) {
	eachDatabase(t, func(t *testing.T, url string) {
		f := newFixtureOn(t, url, &fastWorkers)
		c := f.chargeNow(t, 1000)

		var (
			accepted, refused atomic.Int64
			wg                sync.WaitGroup
		)
		for i := range 20 {
			wg.Go(func() {
				r := f.do(t, http.MethodPost, "/v1/charges/"+c.ID+"/refunds", key, fmt.Sprint("refund-", i), `{"amount":150}`)
				switch {
				case r.status == http.StatusCreated:
					accepted.Add(1)
				case r.status == http.StatusConflict && strings.Contains(r.body, `"amount_exceeds_refundable"`):
					refused.Add(1)
				default:
					t.Errorf("refund %d = %d %s", i, r.status, r.body)
				}
			})
		}
		wg.Wait()
		if accepted.Load() != 6 || refused.Load() != 14 {
			t.Fatalf("%d accepted and %d refused, want 6 (900 of 1000) and 14", accepted.Load(), refused.Load())
		}
		got := f.awaitRefunds(t, c.ID)
		var refunded int64
		for _, r := range f.sim.Refunds() {
			refunded += r.Amount
		}
		if got.AmountRefunded != 900 || len(got.Refunds) != 6 || len(f.sim.Refunds()) != 6 || refunded != 900 {
			t.Fatalf("amount_refunded %d with %d refunds; the provider made %d refunds of %d in all; want 900 in 6 on both sides",
				got.AmountRefunded, len(got.Refunds), len(f.sim.Refunds()), refunded)
		}
		r := f.do(t, http.MethodGet, "/v1/balance", key, "", "")
		if !strings.Contains(r.body, `{"currency":"usd","available":100,"refunds_pending":0}`) {
			t.Fatalf("balance = %d %s, want 100 available", r.status, r.body)
		}
		f.verify(t)
	})
}

// TestRefundRequests: an Idempotency-Key is required; a retry replays the
// refund and makes no other; refusals name what is wrong.
func TestRefundRequests(t *testing.T) {
	f := newFixtureOn(t, filepath.Join(t.TempDir(), "payd.db"), &fastWorkers)
	c := f.chargeNow(t, 1999)
	path := "/v1/charges/" + c.ID + "/refunds"
	for _, tc := range []struct {
		name, path, apiKey, idemKey, body string
		status                            int
		code                              string
	}{
		{"NoIdempotencyKey", path, key, "", `{"amount":1}`, 400, "idempotency_key_missing"},
		{"NegativeAmount", path, key, "r", `{"amount":-5}`, 400, "invalid_amount"},
		{"UnknownField", path, key, "r", `{"amount":5,"reason":"x"}`, 400, "unknown_parameter"},
		{"UnknownCharge", "/v1/charges/ch_nope/refunds", key, "r", `{"amount":5}`, 404, "not_found"},
		{"AnotherAccountsCharge", path, "sk_test_other_0123456789", "r", `{"amount":5}`, 404, "not_found"},
		{"TooMuch", path, key, "too-much", `{"amount":2000}`, 400, "amount_too_large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := f.do(t, http.MethodPost, tc.path, tc.apiKey, tc.idemKey, tc.body)
			if r.status != tc.status || !strings.Contains(r.body, `"code":"`+tc.code+`"`) {
				t.Fatalf("= %d %s, want %d %s", r.status, r.body, tc.status, tc.code)
			}
		})
	}
	first := f.do(t, http.MethodPost, path, key, "r1", `{"amount":500}`)
	again := f.do(t, http.MethodPost, path, key, "r1", `{"amount":500}`)
	if first.status != http.StatusCreated || again.body != first.body || again.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("refund = %d %s; retry = %d %q, want the same refund replayed", first.status, first.body, again.status, again.header.Get("Idempotent-Replayed"))
	}
	got := f.awaitRefunds(t, c.ID)
	if got.AmountRefunded != 500 || len(got.Refunds) != 1 || got.Refunds[0].Status != "succeeded" || len(f.sim.Refunds()) != 1 {
		t.Fatalf("after a refund and its retry: %+v, provider refunds %d; want one refund of 500", got, len(f.sim.Refunds()))
	}
	declined := f.chargeNow(t, 1002)
	if r := f.do(t, http.MethodPost, "/v1/charges/"+declined.ID+"/refunds", key, "r2", `{"amount":1}`); r.status != http.StatusConflict || !strings.Contains(r.body, "charge_not_succeeded") {
		t.Fatalf("refunding a declined charge = %d %s, want 409 charge_not_succeeded", r.status, r.body)
	}
	f.verify(t)
}

// providerCharge is the provider request payd's worker sends for c.
func providerCharge(c payments.Charge) provider.ChargeRequest {
	return provider.ChargeRequest{IdempotencyKey: "payd_" + c.ID, Amount: c.Amount, Currency: c.Currency,
		Metadata: map[string]string{"payment_id": c.ID, "reference": c.Reference}}
}

// eventCapture receives the simulator's webhooks and keeps their bodies.
type eventCapture struct {
	mu     sync.Mutex
	bodies [][]byte
}

func (c *eventCapture) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	c.mu.Lock()
	c.bodies = append(c.bodies, b)
	c.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (c *eventCapture) all() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]byte(nil), c.bodies...)
}

// deliver posts a webhook to url with client, signed with secret.
func deliver(client *http.Client, url string, secret, body []byte) (int, bool, error) {
	req, err := http.NewRequest(http.MethodPost, url+"/v1/provider/webhooks", bytes.NewReader(body))
	if err != nil {
		return 0, false, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(webhook.DefaultHeader, webhook.Sign(secret, time.Now(), body))
	resp, err := client.Do(req)
	if err != nil {
		return 0, false, err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header.Get("Idempotent-Replayed") == "true", nil
}

// TestWebhooksDuplicatedAndShuffled: the provider made 1,000 charges whose
// responses payd never got; their signed events are delivered 3 times
// each, shuffled, to two payd instances on one database. Each is applied
// once, and every payment ends as the provider's charge did.
func TestWebhooksDuplicatedAndShuffled(t *testing.T) {
	eachDatabase(t, func(t *testing.T, url string) {
		const n = 1000
		events := &eventCapture{}
		hooks := httptest.NewServer(events)
		defer hooks.Close()
		sim := simulator.New(&simulator.Config{Seed: 1, WebhookURL: hooks.URL, WebhookSecret: "unused"})
		defer sim.Close()
		a := newFixtureWith(t, fixtureOptions{databaseURL: url, sim: sim})
		b := newFixtureWith(t, fixtureOptions{databaseURL: url, sim: sim})

		// Payments accepted, and charged by workers that never heard back.
		var created []payments.Charge
		for i := range n {
			r := a.do(t, http.MethodPost, "/v1/charges", key, fmt.Sprint("c", i),
				fmt.Sprintf(`{"amount":%d,"currency":"usd","reference":"order"}`, 1000+2*(i%3/2))) // a third declined
			var c payments.Charge
			if err := json.Unmarshal([]byte(r.body), &c); err != nil || r.status != http.StatusAccepted {
				t.Fatalf("create = %d %s", r.status, r.body)
			}
			created = append(created, c)
		}
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Go(func() {
				for i := w; i < n; i += 8 {
					c := created[i]
					_, err := a.prov.Charge(t.Context(), providerCharge(c))
					if provider.KindOf(err) != 0 && provider.KindOf(err) != provider.KindDeclined {
						t.Error(err)
					}
				}
			})
		}
		wg.Wait()
		for deadline := time.Now().Add(20 * time.Second); len(events.all()) < n; {
			if time.Now().After(deadline) {
				t.Fatalf("%d of %d events sent", len(events.all()), n)
			}
			time.Sleep(10 * time.Millisecond)
		}

		bodies := events.all()
		var deliveries [][]byte
		for _, body := range bodies {
			deliveries = append(deliveries, body, body, body)
		}
		rand.Shuffle(len(deliveries), func(i, j int) { deliveries[i], deliveries[j] = deliveries[j], deliveries[i] })
		var applied, replayed atomic.Int64
		for w := range 8 {
			wg.Go(func() {
				for i := w; i < len(deliveries); i += 8 {
					to := []*fixture{a, b}[i%2]
					status, wasReplay, err := deliver(to.client(t), to.url, webhookSecret, deliveries[i])
					switch {
					case err != nil || status != http.StatusNoContent:
						t.Errorf("delivery = %d %v, want 204", status, err)
					case wasReplay:
						replayed.Add(1)
					default:
						applied.Add(1)
					}
				}
			})
		}
		wg.Wait()
		if applied.Load() != n || replayed.Load() != 2*n {
			t.Fatalf("%d deliveries applied and %d replayed, want %d and %d", applied.Load(), replayed.Load(), n, 2*n)
		}

		byKey := map[string]provider.Charge{}
		for _, ch := range sim.Charges() {
			byKey[ch.IdempotencyKey] = ch
		}
		for _, c := range created {
			got := a.charge(t, c.ID)
			if want := byKey["payd_"+c.ID].Status; got.Status != want {
				t.Errorf("charge %s is %s; the provider's is %s", c.ID, got.Status, want)
			}
		}
		a.verify(t)
	})
}

// TestForgedWebhook: a delivery with a bad signature, or a good signature
// over another body, is refused and writes nothing, not even the event id;
// the genuine event is then applied.
func TestForgedWebhook(t *testing.T) {
	f := newFixtureWith(t, fixtureOptions{databaseURL: filepath.Join(t.TempDir(), "payd.db")})
	r := f.do(t, http.MethodPost, "/v1/charges", key, "c1", `{"amount":1999,"currency":"usd","reference":"order"}`)
	var c payments.Charge
	json.Unmarshal([]byte(r.body), &c)
	ch, err := f.prov.Charge(t.Context(), providerCharge(c))
	if err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(ch)
	genuine, _ := json.Marshal(provider.Event{ID: "evt_1", Type: provider.EventChargeSucceeded, Data: data})

	if status, _, err := deliver(f.client(t), f.url, []byte("not the secret"), genuine); err != nil || status != http.StatusBadRequest {
		t.Fatalf("forged signature = %d %v, want 400", status, err)
	}
	tampered := bytes.Replace(genuine, []byte(`"amount":1999`), []byte(`"amount":1`), 1)
	req, _ := http.NewRequest(http.MethodPost, f.url+"/v1/provider/webhooks", bytes.NewReader(tampered))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(webhook.DefaultHeader, webhook.Sign(webhookSecret, time.Now(), genuine))
	resp, err := f.client(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("genuine signature over a tampered body = %d, want 400", resp.StatusCode)
	}
	if got := f.charge(t, c.ID); got.Status != "pending" {
		t.Fatalf("after forged deliveries the charge is %s, want pending", got.Status)
	}
	// Had a forged delivery claimed evt_1, the genuine one would be replayed
	// or refused as a different body.
	status, replayed, err := deliver(f.client(t), f.url, webhookSecret, genuine)
	if err != nil || status != http.StatusNoContent || replayed {
		t.Fatalf("genuine delivery = %d replayed %t %v, want 204 applied now", status, replayed, err)
	}
	if got := f.charge(t, c.ID); got.Status != "succeeded" {
		t.Fatalf("after the genuine event the charge is %s, want succeeded", got.Status)
	}
}

// TestReconciliationEndpoint (and TestOperatorReconciliation): GET
// /v1/reconciliation shows a merchant
// what reconciliation left open about its own payments, and neither the
// runs, which span every account, nor a charge at the provider that no
// account asked for: those are the operator's.
func TestReconciliationEndpoint(t *testing.T) {
	f := newFixtureOn(t, filepath.Join(t.TempDir(), "payd.db"), &fastWorkers)
	if r := f.do(t, http.MethodGet, "/v1/reconciliation", key, "", ""); r.status != http.StatusOK || r.body != `{"object":"reconciliation","open_mismatches":[]}`+"\n" {
		t.Fatalf("before any run = %d %s", r.status, r.body)
	}
	f.chargeNow(t, 1999)
	// A charge at the provider that payd never asked for.
	if _, err := f.prov.Charge(t.Context(), provider.ChargeRequest{IdempotencyKey: "elsewhere", Amount: 700, Currency: "usd"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	rec := payments.NewReconciler(f.store, f.prov, &payments.ReconcilerConfig{Grace: time.Millisecond})
	run, err := rec.RunOnce(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if run.ProviderCharges != 2 || run.Matched != 1 || run.Mismatches != 1 {
		t.Fatalf("run = %+v, want 2 charges, 1 matched, 1 mismatch", run)
	}
	r := f.do(t, http.MethodGet, "/v1/reconciliation", key, "", "")
	if r.status != http.StatusOK || strings.Contains(r.body, "last_run") || strings.Contains(r.body, "elsewhere") || strings.Contains(r.body, payments.MismatchLostCharge) {
		t.Fatalf("a merchant's reconciliation = %d %s, want no run and no mismatch of no account's", r.status, r.body)
	}
	operatorSees(t, f, run)
}

// operatorSees checks TestOperatorReconciliation's half of
// TestReconciliationEndpoint: the admin's GET /reconciliation shows the
// last run and the mismatch of no account's.
func operatorSees(t *testing.T, f *fixture, run *payments.ReconciliationRun) {
	t.Helper()
	admin, err := NewAdmin(AdminConfig{Registry: f.reg, Store: f.store})
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	admin.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/reconciliation", nil))
	var got struct {
		LastRun    payments.ReconciliationRun `json:"last_run"`
		Mismatches []payments.Mismatch        `json:"open_mismatches"`
	}
	json.Unmarshal(w.Body.Bytes(), &got)
	if w.Code != http.StatusOK || got.LastRun.ID != run.ID || len(got.Mismatches) != 1 || got.Mismatches[0].Kind != payments.MismatchLostCharge || got.Mismatches[0].AccountID != "" {
		t.Fatalf("the operator's reconciliation = %d %s, want the run and the lost charge of no account", w.Code, w.Body)
	}
}

// TestWorkWithoutPolls: with polls an hour apart, a charge and then its
// refund still settle at once: the charge is handed to a worker when its
// accept commits, and the refund wakes one when its request commits.
func TestWorkWithoutPolls(t *testing.T) {
	eachDatabase(t, func(t *testing.T, url string) {
		f := newFixtureOn(t, url, &payments.ProcessorConfig{Workers: 2, PollInterval: time.Hour})
		c := f.chargeNow(t, 1000)
		if c.Status != "succeeded" {
			t.Fatalf("charge = %s, want succeeded", c.Status)
		}
		if r := f.do(t, http.MethodPost, "/v1/charges/"+c.ID+"/refunds", key, "refund-1", `{"amount":400}`); r.status != http.StatusCreated {
			t.Fatalf("refund = %d %s, want 201", r.status, r.body)
		}
		got := f.awaitRefunds(t, c.ID)
		if len(got.Refunds) != 1 || got.Refunds[0].Status != "succeeded" || got.AmountRefunded != 400 {
			t.Fatalf("refunds = %+v (refunded %d), want one of 400, succeeded", got.Refunds, got.AmountRefunded)
		}
	})
}
