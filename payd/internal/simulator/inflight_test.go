package simulator_test

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/idemhq/idem/payd/internal/provider"
	"github.com/idemhq/idem/payd/internal/simulator"
)

// TestInFlight: a duplicate sent while the first request under its key
// is held gets 409, acting on nothing, by InFlightRate; otherwise it
// replays.
func TestInFlight(t *testing.T) {
	tests := []struct {
		name      string
		rate      float64
		dupAmount int64
		// want, for the duplicate
		status    int
		code      string
		replayed  bool
		conflicts int64
	}{
		{name: "rate 1: 409", rate: 1, dupAmount: 1000, status: 409, code: "idempotency_key_in_use", conflicts: 1},
		{name: "rate 1, another amount: 409, not a mismatch", rate: 1, dupAmount: 2000, status: 409, code: "idempotency_key_in_use", conflicts: 1},
		{name: "rate 0: replays", rate: 0, dupAmount: 1000, status: 200, replayed: true},
		{name: "rate 0, another amount: mismatch", rate: 0, dupAmount: 2000, status: 400, code: "idempotency_mismatch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const hang = 10 * time.Second
				sim, a := startMem(t, &simulator.Config{Faults: simulator.Faults{HangRate: 1, HangFor: hang}})
				first := sendLost(t.Context(), a, "/charges", "key", chargeReq{Amount: 1000, Currency: "usd"})
				synctest.Wait() // charged, and hanging
				a.setFaults(map[string]any{"in_flight_rate": tt.rate})

				r := a.do("POST", "/charges", "key", chargeReq{Amount: tt.dupAmount, Currency: "usd"})
				if r.status != tt.status || errorCode(r) != tt.code || (r.header.Get("Idempotent-Replayed") == "true") != tt.replayed {
					t.Errorf("duplicate: %d %s replayed=%q, want %d %q replayed=%v", r.status, r.body, r.header.Get("Idempotent-Replayed"), tt.status, tt.code, tt.replayed)
				}
				if got := sim.Charges(); len(got) != 1 || got[0].Amount != 1000 {
					t.Errorf("charges = %+v, want the first only", got)
				}
				if l := <-first; l.err != nil || l.r.status != 200 || l.after != hang {
					t.Errorf("first: %d %v after %v, want 200 after %v", l.r.status, l.err, l.after, hang)
				}
				// Answered: the key is free, and replays whatever the rate.
				if r := a.charge("key", 1000); r.status != 200 || r.header.Get("Idempotent-Replayed") != "true" {
					t.Errorf("after the first was answered: %d %s, want a replay", r.status, r.body)
				}
				if got := sim.Stats().InFlightConflicts; got != tt.conflicts {
					t.Errorf("in-flight conflicts = %d, want %d", got, tt.conflicts)
				}
			})
		})
	}
}

// TestInFlightEarlierOnly: only an earlier request makes a key busy. The
// first request, acted on while a later duplicate waits out its latency,
// is not refused for it; the duplicate is, for the first.
func TestInFlightEarlierOnly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim, a := startMem(t, &simulator.Config{Faults: simulator.Faults{
			LatencyMin: time.Second, InFlightRate: 1, HangRate: 1, HangFor: 10 * time.Second,
		}})
		first := sendLost(t.Context(), a, "/charges", "key", chargeReq{Amount: 1000, Currency: "usd"})
		time.Sleep(time.Second / 2)
		second := sendLost(t.Context(), a, "/charges", "key", chargeReq{Amount: 1000, Currency: "usd"})
		if l := <-second; l.err != nil || l.r.status != 409 {
			t.Errorf("second: %d %s (%v), want 409", l.r.status, l.r.body, l.err)
		}
		if l := <-first; l.err != nil || l.r.status != 200 {
			t.Errorf("first: %d %s (%v), want 200", l.r.status, l.r.body, l.err)
		}
		if got := len(sim.Charges()); got != 1 {
			t.Errorf("%d charges, want 1", got)
		}
	})
}

// TestInFlightRefunds: refund keys are tracked too, apart from charge
// keys.
func TestInFlightRefunds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim, a := startMem(t, nil)
		ch := as[provider.Charge](t, a.charge("charge", 1000))
		a.setFaults(map[string]any{"hang_rate": 1, "hang_for": "10s"})
		first := sendLost(t.Context(), a, "/refunds", "key", refundReq{Charge: ch.ID, Amount: 100})
		synctest.Wait()
		a.setFaults(map[string]any{"in_flight_rate": 1})

		if r := a.refund("key", ch.ID, 100); r.status != 409 || errorCode(r) != "idempotency_key_in_use" {
			t.Errorf("duplicate refund: %d %s, want 409", r.status, r.body)
		}
		if r := a.charge("key", 1000); r.status != 200 {
			t.Errorf("a charge under the refund's key: %d %s, want 200", r.status, r.body)
		}
		if l := <-first; l.err != nil || l.r.status != 200 {
			t.Errorf("first: %d %v, want 200", l.r.status, l.err)
		}
		if got := sim.Refunds(); len(got) != 1 {
			t.Errorf("refunds = %+v, want 1", got)
		}
	})
}

// TestInFlightAfterAnswers: a key is free as soon as its request is
// answered, refused or dropped, so that a client's next request under it
// is never refused for the last one. Half the requests draw the fault,
// so that many follow one that did, at once, on the same key.
func TestInFlightAfterAnswers(t *testing.T) {
	tests := []struct {
		name    string
		faults  simulator.Faults
		invalid bool // every other request is refused as invalid
	}{
		{name: "answered"},
		{name: "500", faults: simulator.Faults{ErrorRate: 0.5}},
		{name: "429", faults: simulator.Faults{RateLimitRate: 0.5}},
		{name: "invalid", invalid: true},
		{name: "dropped", faults: simulator.Faults{DropAfterChargeRate: 0.5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.faults.InFlightRate = 1
			sim, a := start(t, &simulator.Config{Faults: tt.faults})
			for i := range 200 {
				body := chargeReq{Amount: 1000, Currency: "usd"}
				if tt.invalid && i%2 == 0 {
					body.Amount = 0
				}
				if r, err := a.try(t.Context(), "POST", "/charges", "key", body); err == nil && r.status == 409 {
					t.Fatalf("request %d: 409, for a request already answered or dropped", i)
				}
			}
			if got := sim.Stats().InFlightConflicts; got != 0 {
				t.Errorf("in-flight conflicts = %d, want 0", got)
			}
		})
	}
}
