package simulator_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/idemhq/idem/payd/internal/provider"
	"github.com/idemhq/idem/payd/internal/simulator"
)

func TestFaults(t *testing.T) {
	tests := []struct {
		name   string
		faults simulator.Faults
		amount int64
		// want
		status      int // 0: no response at all
		code        string
		header      [2]string
		charged     bool
		declineCode string
		stats       simulator.Stats
	}{
		{name: "none", amount: 1000, status: 200, charged: true,
			stats: simulator.Stats{Requests: 1}},
		{name: "500 does nothing", faults: simulator.Faults{ErrorRate: 1}, amount: 1000,
			status: 500, code: "server_error", stats: simulator.Stats{Requests: 1, Errors: 1}},
		{name: "429 does nothing", faults: simulator.Faults{RateLimitRate: 1}, amount: 1000,
			status: 429, code: "rate_limited", header: [2]string{"Retry-After", "1"}, stats: simulator.Stats{Requests: 1, RateLimited: 1}},
		{name: "500 wins over 429", faults: simulator.Faults{ErrorRate: 1, RateLimitRate: 1}, amount: 1000,
			status: 500, code: "server_error", stats: simulator.Stats{Requests: 1, Errors: 1}},
		{name: "random decline", faults: simulator.Faults{DeclineRate: 1}, amount: 1000,
			status: 402, charged: true, declineCode: "generic_decline", stats: simulator.Stats{Requests: 1}},
		{name: "the amount rule wins over a random decline", faults: simulator.Faults{DeclineRate: 1}, amount: 1002,
			status: 402, charged: true, declineCode: "card_declined", stats: simulator.Stats{Requests: 1}},
		{name: "drop after charging: the ghost charge", faults: simulator.Faults{DropAfterChargeRate: 1}, amount: 1000,
			status: 0, charged: true, stats: simulator.Stats{Requests: 1, Drops: 1}},
		{name: "a declined charge dropped", faults: simulator.Faults{DropAfterChargeRate: 1}, amount: 1003,
			status: 0, charged: true, declineCode: "insufficient_funds", stats: simulator.Stats{Requests: 1, Drops: 1}},
		{name: "429 wins over a drop", faults: simulator.Faults{RateLimitRate: 1, DropAfterChargeRate: 1}, amount: 1000,
			status: 429, code: "rate_limited", header: [2]string{"Retry-After", "1"}, stats: simulator.Stats{Requests: 1, RateLimited: 1}},
		{name: "late: no response, charged when due", faults: simulator.Faults{LateRate: 1, LateMin: 10 * time.Millisecond}, amount: 1000,
			status: 0, charged: true, stats: simulator.Stats{Requests: 1, LateExecutions: 1}},
		{name: "500 wins over late", faults: simulator.Faults{ErrorRate: 1, LateRate: 1}, amount: 1000,
			status: 500, code: "server_error", stats: simulator.Stats{Requests: 1, Errors: 1}},
		{name: "429 wins over late", faults: simulator.Faults{RateLimitRate: 1, LateRate: 1}, amount: 1000,
			status: 429, code: "rate_limited", header: [2]string{"Retry-After", "1"}, stats: simulator.Stats{Requests: 1, RateLimited: 1}},
		{name: "late wins over a drop and a hang", faults: simulator.Faults{LateRate: 1, LateMin: 10 * time.Millisecond, DropAfterChargeRate: 1, HangRate: 1},
			amount: 1000, status: 0, charged: true, stats: simulator.Stats{Requests: 1, LateExecutions: 1}},
		{name: "a late charge declined when due", faults: simulator.Faults{LateRate: 1, LateMin: 10 * time.Millisecond, DeclineRate: 1}, amount: 1000,
			status: 0, charged: true, declineCode: "generic_decline", stats: simulator.Stats{Requests: 1, LateExecutions: 1}},
		{name: "other amount", faults: simulator.Faults{OtherAmountRate: 1}, amount: 1000,
			status: 200, charged: true, stats: simulator.Stats{Requests: 1, OtherAmounts: 1}},
		{name: "in flight with nothing else in flight", faults: simulator.Faults{InFlightRate: 1}, amount: 1000,
			status: 200, charged: true, stats: simulator.Stats{Requests: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sim, a := start(t, &simulator.Config{Faults: tt.faults})
			r, err := a.try(t.Context(), "POST", "/charges", "key", chargeReq{Amount: tt.amount, Currency: "usd"})
			switch {
			case tt.status == 0 && err == nil:
				t.Fatalf("got %d %s, want no response", r.status, r.body)
			case tt.status != 0 && err != nil:
				t.Fatalf("no response (%v), want %d", err, tt.status)
			case tt.status != 0 && (r.status != tt.status || errorCode(r) != tt.code):
				t.Fatalf("got %d %s, want %d %q", r.status, r.body, tt.status, tt.code)
			}
			if tt.header[0] != "" && r.header.Get(tt.header[0]) != tt.header[1] {
				t.Errorf("%s = %q, want %q", tt.header[0], r.header.Get(tt.header[0]), tt.header[1])
			}
			charges := sim.Charges()
			if got := len(charges) == 1; got != tt.charged {
				t.Fatalf("charges = %+v, want charged %v", charges, tt.charged)
			}
			if tt.charged && charges[0].DeclineCode != tt.declineCode {
				t.Errorf("decline code %q, want %q", charges[0].DeclineCode, tt.declineCode)
			}
			if got := sim.Stats(); got != tt.stats {
				t.Errorf("stats = %+v, want %+v", got, tt.stats)
			}
		})
	}
}

func TestDropAfterRefund(t *testing.T) {
	sim, a := start(t, nil)
	ch := as[provider.Charge](t, a.charge("charge", 1000))
	a.setFaults(map[string]any{"drop_after_charge_rate": 1})
	if r, err := a.try(t.Context(), "POST", "/refunds", "refund", refundReq{Charge: ch.ID, Amount: 400}); err == nil {
		t.Fatalf("got %d %s, want no response", r.status, r.body)
	}
	if got := sim.Refunds(); len(got) != 1 || got[0].Amount != 400 {
		t.Fatalf("refunds = %+v, want the one dropped", got)
	}
	a.setFaults(nil)
	if r := a.refund("refund", ch.ID, 400); r.status != 200 || r.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("retry: %d %s, want the refund replayed", r.status, r.body)
	}
}

// TestHang: the charge is made on arrival; the answer comes HangFor
// later.
func TestHang(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim, a := startMem(t, &simulator.Config{Faults: simulator.Faults{HangRate: 1, HangFor: 30 * time.Second}})
		start := time.Now()
		done := make(chan reply)
		go func() { done <- a.charge("key", 1000) }()

		synctest.Wait()
		if got := len(sim.Charges()); got != 1 {
			t.Fatalf("while hanging: %d charges, want 1", got)
		}
		select {
		case r := <-done:
			t.Fatalf("answered %d before HangFor", r.status)
		default:
		}
		r := <-done
		if r.status != 200 || time.Since(start) != 30*time.Second {
			t.Fatalf("answered %d after %v, want 200 after 30s", r.status, time.Since(start))
		}
		if got := sim.Stats().Hangs; got != 1 {
			t.Errorf("hangs = %d, want 1", got)
		}
	})
}

// TestHangPastTheClient: a client that gives up gets nothing, and the
// charge stands.
func TestHangPastTheClient(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim, a := startMem(t, &simulator.Config{Faults: simulator.Faults{HangRate: 1}})
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		if r, err := a.try(ctx, "POST", "/charges", "key", chargeReq{Amount: 1000, Currency: "usd"}); err == nil {
			t.Fatalf("got %d, want the client's timeout", r.status)
		}
		if got := len(sim.Charges()); got != 1 {
			t.Fatalf("%d charges, want 1", got)
		}
	})
}

func TestLatency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const lo, hi = 100 * time.Millisecond, 300 * time.Millisecond
		_, a := startMem(t, &simulator.Config{Faults: simulator.Faults{LatencyMin: lo, LatencyMax: hi}})
		var took []time.Duration
		for i := range 20 {
			start := time.Now()
			a.charge(fmt.Sprint("key-", i), 1000)
			took = append(took, time.Since(start))
			if d := took[i]; d < lo || d >= hi {
				t.Errorf("request %d took %v, want within [%v, %v)", i, d, lo, hi)
			}
		}
		if slices.Min(took) == slices.Max(took) {
			t.Errorf("every request took %v: latency is not drawn", took[0])
		}
	})
}

// TestLatencyPastTheClient is the seed system's ghost charge: the provider
// is slow, the client gives up, and the provider charges anyway.
func TestLatencyPastTheClient(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim, a := startMem(t, &simulator.Config{Faults: simulator.Faults{LatencyMin: 5 * time.Second}})
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		if _, err := a.try(ctx, "POST", "/charges", "key", chargeReq{Amount: 1000, Currency: "usd"}); err == nil {
			t.Fatal("answered within the client's timeout")
		}
		if got := len(sim.Charges()); got != 0 {
			t.Fatalf("at 1s: %d charges, want 0", got)
		}
		time.Sleep(4 * time.Second)
		synctest.Wait()
		if got := len(sim.Charges()); got != 1 {
			t.Fatalf("at 5s: %d charges, want 1", got)
		}
	})
}

func TestFaultsEndpoint(t *testing.T) {
	sim, a := start(t, &simulator.Config{Faults: simulator.Faults{ErrorRate: 1}})

	// The control routes draw no faults.
	if r := a.do("GET", "/_faults", "", nil); r.status != 200 || as[map[string]any](t, r)["error_rate"] != 1.0 {
		t.Fatalf("GET /_faults = %d %s", r.status, r.body)
	}
	set := map[string]any{
		"latency_min": "1ms", "latency_max": "2ms", "rate_limit_rate": 0.25, "decline_rate": 0.5,
		"drop_after_charge_rate": 0.125, "hang_rate": 0.0625, "hang_for": "1m30s",
		"late_rate": 0.375, "late_min": "4s", "late_max": "5s", "in_flight_rate": 0.625, "other_amount_rate": 0.875,
		"webhook_duplicate_rate": 0.75, "webhook_reorder": "2s", "webhook_delay_max": "3s",
	}
	a.setFaults(set) // replaces: error_rate is now 0
	want := simulator.Faults{
		LatencyMin: time.Millisecond, LatencyMax: 2 * time.Millisecond, RateLimitRate: 0.25, DeclineRate: 0.5,
		DropAfterChargeRate: 0.125, HangRate: 0.0625, HangFor: 90 * time.Second,
		LateRate: 0.375, LateMin: 4 * time.Second, LateMax: 5 * time.Second, InFlightRate: 0.625, OtherAmountRate: 0.875,
		WebhookDuplicateRate: 0.75, WebhookReorder: 2 * time.Second, WebhookDelayMax: 3 * time.Second,
	}
	if got := sim.Faults(); got != want {
		t.Fatalf("faults = %+v, want %+v", got, want)
	}
	got := as[map[string]any](t, a.do("GET", "/_faults", "", nil))
	set["error_rate"] = 0.0
	for k, v := range set {
		if got[k] != v {
			t.Errorf("GET /_faults: %s = %v, want %v", k, got[k], v)
		}
	}

	for _, bad := range []string{
		`{"error_rate":1.5}`, `{"hang_rate":-0.1}`, `{"latency_min":"-1s"}`,
		`{"late_rate":2}`, `{"in_flight_rate":-1}`, `{"other_amount_rate":1.1}`, `{"late_max":"-2s"}`,
		`{"latency_min":"soon"}`, `{"latency_min":5}`, `{"eror_rate":1}`, `[]`,
	} {
		if r := a.do("POST", "/_faults", "", []byte(bad)); r.status != 400 || errorCode(r) != "invalid_request" {
			t.Errorf("POST /_faults %s: %d %s, want 400 invalid_request", bad, r.status, r.body)
		}
	}
	if got := sim.Faults(); got != want {
		t.Errorf("after refusals, faults = %+v, want them unchanged", got)
	}
	if got := sim.Stats().Requests; got != 0 {
		t.Errorf("requests = %d, want the control routes uncounted", got)
	}
	if r := a.do("GET", "/_stats", "", nil); r.status != 200 {
		t.Errorf("GET /_stats: %d", r.status)
	}
}

// TestReproducible: the same seed and the same requests give the same run;
// another seed another.
func TestReproducible(t *testing.T) {
	run := func(seed uint64) []string {
		_, a := start(t, &simulator.Config{Seed: seed, Faults: simulator.Faults{
			ErrorRate: 0.2, RateLimitRate: 0.2, DeclineRate: 0.3, DropAfterChargeRate: 0.1,
		}})
		var out []string
		for i := range 60 {
			r, err := a.try(t.Context(), "POST", "/charges", fmt.Sprint("key-", i), chargeReq{Amount: 1000, Currency: "usd"})
			switch {
			case err != nil:
				out = append(out, "dropped")
			case r.status == 200 || r.status == 402:
				ch := as[provider.Charge](t, r)
				out = append(out, fmt.Sprint(r.status, ch.ID, ch.DeclineCode))
			default:
				out = append(out, fmt.Sprint(r.status, errorCode(r)))
			}
		}
		return out
	}
	a, b, c := run(7), run(7), run(8)
	if !slices.Equal(a, b) {
		t.Errorf("seed 7 twice:\n%v\n%v", a, b)
	}
	if slices.Equal(a, c) {
		t.Errorf("seeds 7 and 8 gave the same run: %v", a)
	}
	seen := map[string]bool{}
	for _, o := range a {
		seen[o[:3]] = true
	}
	for _, want := range []string{"200", "402", "500", "429", "dro"} {
		if !seen[want] {
			t.Errorf("no %s in %v", want, a)
		}
	}
}

func TestClosed(t *testing.T) {
	sim, a := start(t, nil)
	sim.Close()
	if r := a.charge("key", 1000); r.status != http.StatusServiceUnavailable || errorCode(r) != "unavailable" {
		t.Errorf("after Close: %d %s, want 503 unavailable", r.status, r.body)
	}
	sim.Close() // again: nothing
}

// TestReproducibleWithLateInFlightAndOtherAmounts: with the newer faults
// on, the same seed and the same requests still give the same run, late
// executions included; and a rate that changes nothing for these
// requests (InFlightRate, with one request at a time) shifts no other
// decision, as every request takes the same draws whatever the rates.
func TestReproducibleWithLateInFlightAndOtherAmounts(t *testing.T) {
	faults := simulator.Faults{
		ErrorRate: 0.1, DeclineRate: 0.2, DropAfterChargeRate: 0.1,
		LateRate: 0.3, LateMin: time.Second, LateMax: 3 * time.Second,
		InFlightRate: 0.5, OtherAmountRate: 0.3,
	}
	run := func(seed uint64, f simulator.Faults) []string {
		var out []string
		synctest.Test(t, func(t *testing.T) {
			sim, a := startMem(t, &simulator.Config{Seed: seed, Faults: f})
			start := time.Now()
			for i := range 80 {
				// Each key twice in a row: a retry, of a late one pending.
				ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
				r, err := a.try(ctx, "POST", "/charges", fmt.Sprint("key-", i/2), chargeReq{Amount: 1000, Currency: "usd"})
				cancel()
				switch {
				case err != nil:
					out = append(out, "lost")
				case r.status == 200 || r.status == 402:
					ch := as[provider.Charge](t, r)
					out = append(out, fmt.Sprint(r.status, ch.ID, ch.Amount, ch.DeclineCode))
				default:
					out = append(out, fmt.Sprint(r.status, errorCode(r)))
				}
			}
			time.Sleep(time.Minute) // every late execution is due
			for _, ch := range sim.Charges() {
				out = append(out, fmt.Sprint(ch.ID, ch.IdempotencyKey, ch.Amount, ch.DeclineCode, ch.Created.Sub(start)))
			}
			s := sim.Stats()
			out = append(out, fmt.Sprintf("late %d, conflicts %d, other %d", s.LateExecutions, s.InFlightConflicts, s.OtherAmounts))
			if s.LateExecutions == 0 || s.InFlightConflicts == 0 || s.OtherAmounts == 0 || s.Errors == 0 || s.Drops == 0 {
				t.Errorf("stats %+v: a fault never hit, so the run proves little", s)
			}
		})
		return out
	}
	a, b, c := run(7, faults), run(7, faults), run(8, faults)
	if !slices.Equal(a, b) {
		t.Errorf("seed 7 twice:\n%v\n%v", a, b)
	}
	if slices.Equal(a, c) {
		t.Errorf("seeds 7 and 8 gave the same run: %v", a)
	}
	faults.InFlightRate = 0
	if d := run(7, faults); !slices.Equal(a, d) {
		t.Errorf("InFlightRate 0.5 and 0 gave other runs:\n%v\n%v", a, d)
	}
}
