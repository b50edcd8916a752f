package simulator_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/idemhq/idem/payd/internal/provider"
	"github.com/idemhq/idem/payd/internal/simulator"
)

func TestChargeIdempotency(t *testing.T) {
	sim, a := start(t, nil)
	body := chargeReq{Amount: 1999, Currency: "usd", Metadata: map[string]string{"payment_id": "pay_1", "reference": "order-1"}}

	first := a.do(http.MethodPost, "/charges", "key-1", body)
	if first.status != http.StatusOK || first.header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("first: %d, Idempotent-Replayed %q; want 200, none", first.status, first.header.Get("Idempotent-Replayed"))
	}
	ch := as[provider.Charge](t, first)
	if ch.ID == "" || ch.IdempotencyKey != "key-1" || ch.Amount != 1999 || ch.Currency != "usd" ||
		ch.Status != provider.StatusSucceeded || ch.Metadata["payment_id"] != "pay_1" || ch.Created.IsZero() {
		t.Fatalf("charge = %+v", ch)
	}

	// The same key returns the same charge; the currency's case does not
	// make it another request.
	body.Currency = "USD"
	again := a.do(http.MethodPost, "/charges", "key-1", body)
	if again.status != http.StatusOK || again.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay: %d, Idempotent-Replayed %q; want 200, true", again.status, again.header.Get("Idempotent-Replayed"))
	}
	if got := as[provider.Charge](t, again); got.ID != ch.ID || !got.Created.Equal(ch.Created) {
		t.Fatalf("replay = %+v, want %+v", got, ch)
	}

	a.charge("key-2", 1999)
	if got := len(sim.Charges()); got != 2 {
		t.Fatalf("charges = %d, want 2", got)
	}
}

func TestConcurrentIdenticalCharges(t *testing.T) {
	sim, a := start(t, nil)
	const n = 50
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			r, err := a.try(t.Context(), http.MethodPost, "/charges", "same-key", chargeReq{Amount: 500, Currency: "eur"})
			if err != nil || r.status != http.StatusOK {
				t.Errorf("request %d: %v %d", i, err, r.status)
				return
			}
			ids[i] = as[provider.Charge](t, r).ID
		})
	}
	wg.Wait()
	charges := sim.Charges()
	if len(charges) != 1 {
		t.Fatalf("charges = %d, want exactly 1", len(charges))
	}
	for i, id := range ids {
		if id != charges[0].ID {
			t.Errorf("request %d got charge %q, want %q", i, id, charges[0].ID)
		}
	}
}

func TestIdempotencyMismatch(t *testing.T) {
	sim, a := start(t, nil)
	ch := as[provider.Charge](t, a.charge("key", 1000))
	ref := as[provider.Refund](t, a.refund("refund-key", ch.ID, 100))
	other := as[provider.Charge](t, a.charge("other", 1000))

	tests := []struct {
		name string
		path string
		key  string
		body any
	}{
		{"charge, another amount", "/charges", "key", chargeReq{Amount: 1001, Currency: "usd"}},
		{"charge, another currency", "/charges", "key", chargeReq{Amount: 1000, Currency: "eur"}},
		{"refund, another amount", "/refunds", "refund-key", refundReq{Charge: ch.ID, Amount: 101}},
		{"refund, another charge", "/refunds", "refund-key", refundReq{Charge: other.ID, Amount: 100}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := a.on(t).do(http.MethodPost, tt.path, tt.key, tt.body)
			if r.status != http.StatusBadRequest || errorCode(r) != "idempotency_mismatch" {
				t.Fatalf("got %d %s, want 400 idempotency_mismatch", r.status, r.body)
			}
		})
	}
	if got := len(sim.Charges()); got != 2 {
		t.Errorf("charges = %d, want 2", got)
	}
	if got := sim.Refunds(); len(got) != 1 || got[0].ID != ref.ID {
		t.Errorf("refunds = %+v, want only %s", got, ref.ID)
	}
}

func TestDeclineRule(t *testing.T) {
	tests := []struct {
		amount     int64
		wantStatus int
		wantCode   string
	}{
		{1000, http.StatusOK, ""},
		{1001, http.StatusOK, ""},
		{1002, http.StatusPaymentRequired, "card_declined"},
		{1003, http.StatusPaymentRequired, "insufficient_funds"},
		{1004, http.StatusOK, ""},
		{2, http.StatusPaymentRequired, "card_declined"},
		{103, http.StatusPaymentRequired, "insufficient_funds"},
		{1020, http.StatusOK, ""},
		{1032, http.StatusOK, ""},
	}
	sim, a := start(t, nil)
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.amount), func(t *testing.T) {
			key := fmt.Sprint("decline-", tt.amount)
			for _, attempt := range []string{"first", "replay"} {
				r := a.on(t).charge(key, tt.amount)
				ch := as[provider.Charge](t, r)
				wantState := provider.StatusSucceeded
				if tt.wantCode != "" {
					wantState = provider.StatusFailed
				}
				if r.status != tt.wantStatus || ch.DeclineCode != tt.wantCode || ch.Status != wantState {
					t.Errorf("%s: %d %s/%q, want %d %s/%q", attempt, r.status, ch.Status, ch.DeclineCode, tt.wantStatus, wantState, tt.wantCode)
				}
			}
		})
	}
	if got := len(sim.Charges()); got != len(tests) {
		t.Errorf("charges = %d, want %d: a declined charge is recorded once", got, len(tests))
	}
}

func TestRefusedRequests(t *testing.T) {
	tests := []struct {
		name     string
		method   string
		path     string
		key      string
		body     any
		wantCode int
		want     string
	}{
		{"no key", "POST", "/charges", "", chargeReq{Amount: 100, Currency: "usd"}, 400, "idempotency_key_required"},
		{"key too long", "POST", "/charges", strings.Repeat("k", 256), chargeReq{Amount: 100, Currency: "usd"}, 400, "invalid_request"},
		{"zero amount", "POST", "/charges", "k", chargeReq{Amount: 0, Currency: "usd"}, 400, "invalid_request"},
		{"negative amount", "POST", "/charges", "k", chargeReq{Amount: -5, Currency: "usd"}, 400, "invalid_request"},
		{"bad currency", "POST", "/charges", "k", chargeReq{Amount: 100, Currency: "us"}, 400, "invalid_request"},
		{"malformed JSON", "POST", "/charges", "k", []byte(`{"amount":`), 400, "invalid_request"},
		{"unknown field", "POST", "/charges", "k", []byte(`{"amount":100,"currency":"usd","amont":1}`), 400, "invalid_request"},
		{"two values", "POST", "/charges", "k", []byte(`{"amount":100,"currency":"usd"} {}`), 400, "invalid_request"},
		{"refund without key", "POST", "/refunds", "", refundReq{Charge: "ch_1", Amount: 1}, 400, "idempotency_key_required"},
		{"refund without charge", "POST", "/refunds", "k", refundReq{Amount: 1}, 400, "invalid_request"},
		{"bad time", "GET", "/charges?created_gte=yesterday", "", nil, 400, "invalid_request"},
		{"unknown route", "POST", "/charge", "k", chargeReq{Amount: 100, Currency: "usd"}, 404, "no_route"},
	}
	sim, a := start(t, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := a.on(t).do(tt.method, tt.path, tt.key, tt.body)
			if r.status != tt.wantCode || errorCode(r) != tt.want {
				t.Errorf("got %d %s, want %d %s", r.status, r.body, tt.wantCode, tt.want)
			}
		})
	}
	if got := len(sim.Charges()); got != 0 {
		t.Errorf("charges = %d, want 0", got)
	}
	// A refused request binds nothing to its key.
	if r := a.charge("k", 100); r.status != http.StatusOK || r.header.Get("Idempotent-Replayed") != "" {
		t.Errorf("after refusals, a valid request with their key: %d replayed=%q, want a new charge", r.status, r.header.Get("Idempotent-Replayed"))
	}
}

func TestRefunds(t *testing.T) {
	sim, a := start(t, nil)
	ch := as[provider.Charge](t, a.charge("charge", 1000))
	declined := as[provider.Charge](t, a.charge("declined", 1002))

	steps := []struct {
		name       string
		key        string
		charge     string
		amount     int64
		wantStatus int
		wantCode   string
		replayed   bool
	}{
		{"partial", "r1", ch.ID, 300, 200, "", false},
		{"same key again", "r1", ch.ID, 300, 200, "", true},
		{"more than is left", "r2", ch.ID, 701, 400, "amount_too_large", false},
		{"the rest", "r2", ch.ID, 700, 200, "", false},
		{"nothing left", "r3", ch.ID, 1, 400, "amount_too_large", false},
		{"declined charge", "r4", declined.ID, 1, 400, "charge_not_succeeded", false},
		{"unknown charge", "r5", "ch_nope", 1, 404, "charge_not_found", false},
		{"zero", "r6", ch.ID, 0, 400, "invalid_request", false},
	}
	for _, s := range steps {
		r := a.refund(s.key, s.charge, s.amount)
		if r.status != s.wantStatus || errorCode(r) != s.wantCode || (r.header.Get("Idempotent-Replayed") == "true") != s.replayed {
			t.Fatalf("%s: %d %s replayed=%q, want %d %q replayed=%v", s.name, r.status, r.body,
				r.header.Get("Idempotent-Replayed"), s.wantStatus, s.wantCode, s.replayed)
		}
		if r.status == 200 {
			if ref := as[provider.Refund](t, r); ref.ChargeID != s.charge || ref.Amount != s.amount ||
				ref.IdempotencyKey != s.key || ref.Status != provider.StatusSucceeded {
				t.Fatalf("%s: refund = %+v", s.name, ref)
			}
		}
	}
	if got := len(sim.Refunds()); got != 2 {
		t.Errorf("refunds = %d, want 2", got)
	}
	got := as[provider.Charge](t, a.do("GET", "/charges/"+ch.ID, "", nil))
	if got.AmountRefunded != 1000 {
		t.Errorf("amount_refunded = %d, want 1000", got.AmountRefunded)
	}
}

func TestConcurrentRefundsNeverExceedTheCharge(t *testing.T) {
	sim, a := start(t, nil)
	ch := as[provider.Charge](t, a.charge("charge", 1000))
	const n = 25 // of 100 each: only 10 fit
	statuses := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			r, err := a.try(t.Context(), "POST", "/refunds", fmt.Sprint("refund-", i), refundReq{Charge: ch.ID, Amount: 100})
			if err != nil {
				t.Error(err)
				return
			}
			statuses[i] = r.status
		})
	}
	wg.Wait()
	ok := 0
	for _, s := range statuses {
		switch s {
		case http.StatusOK:
			ok++
		case http.StatusBadRequest:
		default:
			t.Errorf("status %d", s)
		}
	}
	var sum int64
	for _, r := range sim.Refunds() {
		sum += r.Amount
	}
	if ok != 10 || sum != 1000 || sim.Charges()[0].AmountRefunded != 1000 {
		t.Errorf("accepted %d refunds summing to %d, charge refunded %d; want 10, 1000, 1000", ok, sum, sim.Charges()[0].AmountRefunded)
	}
}

func TestLookups(t *testing.T) {
	_, a := start(t, nil)
	ch := as[provider.Charge](t, a.charge("charge-key", 1000))
	declined := as[provider.Charge](t, a.charge("declined-key", 1003))
	ref := as[provider.Refund](t, a.refund("refund-key", ch.ID, 10))

	tests := []struct {
		path       string
		wantStatus int
		wantID     string
	}{
		{"/charges?idempotency_key=charge-key", 200, ch.ID},
		{"/charges?idempotency_key=declined-key", 200, declined.ID},
		{"/charges?idempotency_key=nope", 404, ""},
		{"/charges/" + ch.ID, 200, ch.ID},
		{"/charges/ch_nope", 404, ""},
		{"/refunds?idempotency_key=refund-key", 200, ref.ID},
		{"/refunds?idempotency_key=charge-key", 404, ""},
	}
	for _, tt := range tests {
		r := a.do("GET", tt.path, "", nil)
		if r.status != tt.wantStatus {
			t.Errorf("GET %s: %d %s, want %d", tt.path, r.status, r.body, tt.wantStatus)
			continue
		}
		if tt.wantStatus == 404 && errorCode(r) != "not_found" {
			t.Errorf("GET %s: %s, want code not_found", tt.path, r.body)
		}
		if tt.wantID != "" {
			if got := as[struct{ ID string }](t, r).ID; got != tt.wantID {
				t.Errorf("GET %s: id %s, want %s", tt.path, got, tt.wantID)
			}
		}
	}
	if got := as[struct{ Data []provider.Refund }](t, a.do("GET", "/refunds", "", nil)).Data; len(got) != 1 || got[0].ID != ref.ID {
		t.Errorf("GET /refunds = %+v", got)
	}
}

// TestListByTime makes a charge and a refund each second, on the bubble's
// clock, and lists ranges of them.
func TestListByTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, a := startMem(t, nil)
		t0 := time.Now()
		for i := range 4 {
			ch := as[provider.Charge](t, a.charge(fmt.Sprint("c", i), 1000))
			a.refund(fmt.Sprint("r", i), ch.ID, 1)
			time.Sleep(time.Second)
		}
		at := func(s int) string {
			return url.QueryEscape(t0.Add(time.Duration(s) * time.Second).Format(time.RFC3339Nano))
		}
		tests := []struct {
			query string
			want  []string // keys, in order
		}{
			{"", []string{"0", "1", "2", "3"}},
			{"?created_gte=" + at(1), []string{"1", "2", "3"}},
			{"?created_lt=" + at(1), []string{"0"}},
			{"?created_gte=" + at(1) + "&created_lt=" + at(3), []string{"1", "2"}},
			{"?created_gte=" + at(4), nil},
		}
		for _, tt := range tests {
			charges := as[struct{ Data []provider.Charge }](t, a.do("GET", "/charges"+tt.query, "", nil)).Data
			refunds := as[struct{ Data []provider.Refund }](t, a.do("GET", "/refunds"+tt.query, "", nil)).Data
			if len(charges) != len(tt.want) || len(refunds) != len(tt.want) {
				t.Errorf("%q: %d charges, %d refunds, want %d", tt.query, len(charges), len(refunds), len(tt.want))
				continue
			}
			for i, k := range tt.want {
				if charges[i].IdempotencyKey != "c"+k || refunds[i].IdempotencyKey != "r"+k {
					t.Errorf("%q: #%d is %s and %s, want c%s and r%s", tt.query, i, charges[i].IdempotencyKey, refunds[i].IdempotencyKey, k, k)
				}
			}
		}
	})
}

// TestKeyWindow: a key reused after the window makes a new charge.
func TestKeyWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim, a := startMem(t, &simulator.Config{KeyWindow: time.Hour})
		first := as[provider.Charge](t, a.charge("k", 100))
		time.Sleep(time.Hour - time.Nanosecond)
		if got := as[provider.Charge](t, a.charge("k", 100)); got.ID != first.ID {
			t.Fatalf("inside the window: charge %s, want %s", got.ID, first.ID)
		}
		time.Sleep(time.Nanosecond)
		second := as[provider.Charge](t, a.charge("k", 100))
		if second.ID == first.ID || len(sim.Charges()) != 2 {
			t.Fatalf("after the window: charge %s (first %s), %d charges; want a second charge", second.ID, first.ID, len(sim.Charges()))
		}
		// The lookup finds the latest charge under the key.
		if got := as[provider.Charge](t, a.do("GET", "/charges?idempotency_key=k", "", nil)); got.ID != second.ID {
			t.Errorf("lookup = %s, want %s", got.ID, second.ID)
		}
	})
}
