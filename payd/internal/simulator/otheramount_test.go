package simulator_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"testing/synctest"

	"github.com/idemhq/idem/payd/internal/provider"
	"github.com/idemhq/idem/payd/internal/simulator"
)

func TestOtherAmount(t *testing.T) {
	tests := []struct {
		asked, made int64
		status      int
		declineCode string
	}{
		{1000, 999, 200, ""},
		{1, 2, 200, ""},
		{2, 1, 402, "card_declined"}, // the decline rule reads the amount asked
		{1004, 1003, 200, ""},        // and so does not decline this one
		{1003, 1002, 402, "insufficient_funds"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.asked), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				sim, a, rc := startHooks(t, simulator.Config{Faults: simulator.Faults{OtherAmountRate: 1}}, nil)
				r := a.charge("key", tt.asked)
				ch := as[provider.Charge](t, r)
				if r.status != tt.status || ch.Amount != tt.made || ch.DeclineCode != tt.declineCode {
					t.Fatalf("charge: %d, %d %q, want %d, %d %q", r.status, ch.Amount, ch.DeclineCode, tt.status, tt.made, tt.declineCode)
				}
				// A retry as asked replays what was made; the fault is drawn
				// only for a new charge.
				if r := a.charge("key", tt.asked); r.header.Get("Idempotent-Replayed") != "true" || as[provider.Charge](t, r).Amount != tt.made {
					t.Errorf("retry: %d %s, want the charge of %d replayed", r.status, r.body, tt.made)
				}
				if got := as[provider.Charge](t, a.do("GET", "/charges?idempotency_key=key", "", nil)); got.Amount != tt.made {
					t.Errorf("lookup: amount %d, want %d", got.Amount, tt.made)
				}
				if got := as[struct{ Data []provider.Charge }](t, a.do("GET", "/charges", "", nil)).Data; len(got) != 1 || got[0].Amount != tt.made {
					t.Errorf("listing: %+v", got)
				}
				synctest.Wait()
				var data provider.Charge
				if hooks := rc.deliveries(); len(hooks) != 1 || json.Unmarshal(hooks[0].event.Data, &data) != nil || data.Amount != tt.made {
					t.Errorf("webhooks %v, amount %d; want one of %d", ids(hooks), data.Amount, tt.made)
				}
				if got := sim.Stats().OtherAmounts; got != 1 || len(sim.Charges()) != 1 {
					t.Errorf("other amounts = %d, charges %d; want 1, 1", got, len(sim.Charges()))
				}
			})
		})
	}
}

func TestOtherAmountRefund(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim, a, rc := startHooks(t, simulator.Config{}, nil)
		ch := as[provider.Charge](t, a.charge("charge", 1000))
		a.setFaults(map[string]any{"other_amount_rate": 1})
		steps := []struct {
			name        string
			key         string
			asked, made int64
			replayed    bool
			refunded    int64 // of the charge, after
		}{
			{"one less", "r1", 400, 399, false, 399},
			{"a retry as asked replays", "r1", 400, 399, true, 399},
			{"one less, fitting what is left", "r2", 601, 600, false, 999},
			{"one more would exceed what is left: as asked", "r3", 1, 1, false, 1000},
		}
		for _, st := range steps {
			r := a.refund(st.key, ch.ID, st.asked)
			if r.status != 200 || as[provider.Refund](t, r).Amount != st.made || (r.header.Get("Idempotent-Replayed") == "true") != st.replayed {
				t.Errorf("%s: %d %s replayed=%q, want 200 of %d replayed=%v", st.name, r.status, r.body, r.header.Get("Idempotent-Replayed"), st.made, st.replayed)
			}
			if got := as[provider.Charge](t, a.do("GET", "/charges/"+ch.ID, "", nil)).AmountRefunded; got != st.refunded {
				t.Errorf("%s: charge refunded %d, want %d", st.name, got, st.refunded)
			}
		}
		if got := as[provider.Refund](t, a.do("GET", "/refunds?idempotency_key=r1", "", nil)); got.Amount != 399 {
			t.Errorf("lookup: %d, want 399", got.Amount)
		}
		var listed []int64
		for _, r := range as[struct{ Data []provider.Refund }](t, a.do("GET", "/refunds", "", nil)).Data {
			listed = append(listed, r.Amount)
		}
		var hooked []int64
		synctest.Wait()
		for _, d := range rc.deliveries()[1:] {
			var r provider.Refund
			if err := json.Unmarshal(d.event.Data, &r); err != nil {
				t.Fatal(err)
			}
			hooked = append(hooked, r.Amount)
		}
		if want := []int64{399, 600, 1}; fmt.Sprint(listed) != fmt.Sprint(want) || fmt.Sprint(hooked) != fmt.Sprint(want) {
			t.Errorf("listed %v, webhooks %v; want %v", listed, hooked, want)
		}
		if got := sim.Stats().OtherAmounts; got != 2 {
			t.Errorf("other amounts = %d, want 2", got)
		}
	})
}

// TestIdempotencyComparesTheParametersAsked: a later request under a key
// is compared with what the first asked for, not with what was made.
func TestIdempotencyComparesTheParametersAsked(t *testing.T) {
	sim, a := start(t, &simulator.Config{Faults: simulator.Faults{OtherAmountRate: 1}})
	ch := as[provider.Charge](t, a.charge("charge", 1000)) // made 999
	a.refund("refund", ch.ID, 100)                         // made 99
	a.setFaults(nil)
	tests := []struct {
		name   string
		path   string
		key    string
		body   any
		status int
		code   string
	}{
		{"charge, as asked", "/charges", "charge", chargeReq{Amount: 1000, Currency: "usd"}, 200, ""},
		{"charge, as made", "/charges", "charge", chargeReq{Amount: 999, Currency: "usd"}, 400, "idempotency_mismatch"},
		{"charge, another currency", "/charges", "charge", chargeReq{Amount: 1000, Currency: "eur"}, 400, "idempotency_mismatch"},
		{"refund, as asked", "/refunds", "refund", refundReq{Charge: ch.ID, Amount: 100}, 200, ""},
		{"refund, as made", "/refunds", "refund", refundReq{Charge: ch.ID, Amount: 99}, 400, "idempotency_mismatch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := a.on(t).do("POST", tt.path, tt.key, tt.body)
			if r.status != tt.status || errorCode(r) != tt.code {
				t.Errorf("got %d %s, want %d %q", r.status, r.body, tt.status, tt.code)
			}
			if tt.status == 200 && r.header.Get("Idempotent-Replayed") != "true" {
				t.Errorf("not replayed")
			}
		})
	}
	if c, r := sim.Charges(), sim.Refunds(); len(c) != 1 || c[0].Amount != 999 || len(r) != 1 || r[0].Amount != 99 {
		t.Errorf("charges %+v, refunds %+v; want one of each, one unit less", c, r)
	}
}

// TestRefundMetadata: a refund's metadata is kept and returned wherever
// the refund is.
func TestRefundMetadata(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim, a, rc := startHooks(t, simulator.Config{}, nil)
		ch := as[provider.Charge](t, a.charge("charge", 1000))
		md := map[string]string{"refund_id": "ref_1", "payment_id": "pay_1"}
		r := a.do("POST", "/refunds", "refund", refundReq{Charge: ch.ID, Amount: 100, Metadata: md})
		replay := a.do("POST", "/refunds", "refund", refundReq{Charge: ch.ID, Amount: 100})
		synctest.Wait()
		var hooked provider.Refund
		if err := json.Unmarshal(rc.deliveries()[1].event.Data, &hooked); err != nil {
			t.Fatal(err)
		}
		for _, got := range []struct {
			where string
			ref   provider.Refund
		}{
			{"response", as[provider.Refund](t, r)},
			{"replay", as[provider.Refund](t, replay)},
			{"lookup", as[provider.Refund](t, a.do("GET", "/refunds?idempotency_key=refund", "", nil))},
			{"listing", as[struct{ Data []provider.Refund }](t, a.do("GET", "/refunds", "", nil)).Data[0]},
			{"webhook", hooked},
			{"Refunds", sim.Refunds()[0]},
		} {
			if fmt.Sprint(got.ref.Metadata) != fmt.Sprint(md) {
				t.Errorf("%s: metadata %v, want %v", got.where, got.ref.Metadata, md)
			}
		}
		// The copies are the caller's.
		sim.Refunds()[0].Metadata["refund_id"] = "changed"
		if got := sim.Refunds()[0].Metadata["refund_id"]; got != "ref_1" {
			t.Errorf("after changing a copy: %q", got)
		}
		if r := a.do("POST", "/refunds", "bad", []byte(`{"charge":"`+ch.ID+`","amount":1,"metadata":{"n":1}}`)); r.status != 400 || errorCode(r) != "invalid_request" {
			t.Errorf("metadata that is not strings: %d %s, want 400 invalid_request", r.status, r.body)
		}
	})
}
