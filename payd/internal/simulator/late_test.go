package simulator_test

import (
	"context"
	"encoding/json"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/idemhq/idem/payd/internal/provider"
	"github.com/idemhq/idem/payd/internal/simulator"
)

// lostReply is what a request whose response should be lost came to.
type lostReply struct {
	after time.Duration // when the client saw the connection end
	r     reply
	err   error
}

// sendLost sends a POST in the background; the channel reports how it
// ended.
func sendLost(ctx context.Context, a *api, path, key string, body any) <-chan lostReply {
	out := make(chan lostReply, 1)
	start := time.Now()
	go func() {
		r, err := a.try(ctx, http.MethodPost, path, key, body)
		out <- lostReply{time.Since(start), r, err}
	}()
	return out
}

// TestLateCharge: the hostile provider. The charge's response is lost,
// its key looks unknown and is busy until it executes, and then the
// charge is there, its webhook sent then, and the key replays it.
func TestLateCharge(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const after = 5 * time.Second
		sim, a, rc := startHooks(t, simulator.Config{Faults: simulator.Faults{LateRate: 1, LateMin: after}}, nil)
		start := time.Now()
		lost := sendLost(t.Context(), a, "/charges", "key", chargeReq{Amount: 1000, Currency: "usd", Metadata: map[string]string{"payment_id": "pay_1"}})
		synctest.Wait()
		a.setFaults(nil) // what follows is not late

		select {
		case l := <-lost:
			t.Fatalf("pending: the POST ended (%d %s, %v)", l.r.status, l.r.body, l.err)
		default:
		}
		if r := a.do("GET", "/charges?idempotency_key=key", "", nil); r.status != 404 || errorCode(r) != "not_found" {
			t.Errorf("pending: lookup %d %s, want 404 not_found", r.status, r.body)
		}
		if got := as[struct{ Data []provider.Charge }](t, a.do("GET", "/charges", "", nil)).Data; len(got) != 0 {
			t.Errorf("pending: listed %+v", got)
		}
		if r := a.charge("key", 1000); r.status != 409 || errorCode(r) != "idempotency_key_in_use" {
			t.Errorf("pending: a second POST got %d %s, want 409 idempotency_key_in_use", r.status, r.body)
		}
		if r := a.charge("key", 5000); r.status != 409 { // another amount: still busy, not a mismatch
			t.Errorf("pending: a POST for another amount got %d %s, want 409", r.status, r.body)
		}
		synctest.Wait()
		if got, hooks := sim.Charges(), rc.deliveries(); len(got) != 0 || len(hooks) != 0 {
			t.Fatalf("pending: charges %+v, webhooks %v; want none", got, ids(hooks))
		}

		time.Sleep(after)
		synctest.Wait()
		l := <-lost
		if l.err == nil || l.after != after {
			t.Errorf("the late POST got %d %s (%v) after %v, want no response at %v", l.r.status, l.r.body, l.err, l.after, after)
		}
		ch := as[provider.Charge](t, a.do("GET", "/charges?idempotency_key=key", "", nil))
		if ch.Amount != 1000 || ch.Metadata["payment_id"] != "pay_1" || !ch.Created.Equal(start.Add(after)) {
			t.Errorf("executed: lookup %+v, want 1000 created at %v", ch, start.Add(after))
		}
		r := a.charge("key", 1000)
		if r.status != 200 || r.header.Get("Idempotent-Replayed") != "true" || as[provider.Charge](t, r).ID != ch.ID {
			t.Errorf("executed: a retry got %d %s, want %s replayed", r.status, r.body, ch.ID)
		}
		hooks := rc.deliveries()
		var data provider.Charge
		if len(hooks) != 1 || json.Unmarshal(hooks[0].event.Data, &data) != nil || data.ID != ch.ID ||
			!hooks[0].at.Equal(start.Add(after)) || hooks[0].event.Created != start.Add(after).Unix() {
			t.Errorf("webhooks %v, want one for %s at %v", ids(hooks), ch.ID, after)
		}
		if s := sim.Stats(); s.LateExecutions != 1 || s.InFlightConflicts != 2 {
			t.Errorf("stats = %+v, want 1 late execution, 2 conflicts", s)
		}
	})
}

// TestLateRefund: a late refund is made when due, against the charge as
// it stands then.
func TestLateRefund(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const after = 5 * time.Second
		sim, a, rc := startHooks(t, simulator.Config{}, nil)
		start := time.Now()
		ch := as[provider.Charge](t, a.charge("charge", 1000))
		a.setFaults(map[string]any{"late_rate": 1, "late_min": after.String()})
		lost := sendLost(t.Context(), a, "/refunds", "late", refundReq{Charge: ch.ID, Amount: 400, Metadata: map[string]string{"refund_id": "ref_1"}})
		synctest.Wait()
		a.setFaults(nil)

		if r := a.do("GET", "/refunds?idempotency_key=late", "", nil); r.status != 404 || errorCode(r) != "not_found" {
			t.Errorf("pending: lookup %d %s, want 404 not_found", r.status, r.body)
		}
		if r := a.refund("late", ch.ID, 400); r.status != 409 || errorCode(r) != "idempotency_key_in_use" {
			t.Errorf("pending: a second POST got %d %s, want 409", r.status, r.body)
		}
		if r := a.charge("late", 1000); r.status != 200 { // charge keys are another namespace
			t.Errorf("pending: a charge under the refund's key got %d %s, want 200", r.status, r.body)
		}
		if got := as[struct{ Data []provider.Refund }](t, a.do("GET", "/refunds", "", nil)).Data; len(got) != 0 {
			t.Errorf("pending: listed %+v", got)
		}
		if got := as[provider.Charge](t, a.do("GET", "/charges/"+ch.ID, "", nil)); got.AmountRefunded != 0 {
			t.Errorf("pending: charge refunded %d, want 0", got.AmountRefunded)
		}

		time.Sleep(after)
		synctest.Wait()
		if l := <-lost; l.err == nil || l.after != after {
			t.Errorf("the late POST got %d %s (%v) after %v, want no response at %v", l.r.status, l.r.body, l.err, l.after, after)
		}
		ref := as[provider.Refund](t, a.do("GET", "/refunds?idempotency_key=late", "", nil))
		if ref.Amount != 400 || ref.ChargeID != ch.ID || ref.Metadata["refund_id"] != "ref_1" || !ref.Created.Equal(start.Add(after)) {
			t.Errorf("executed: lookup %+v", ref)
		}
		if got := as[provider.Charge](t, a.do("GET", "/charges/"+ch.ID, "", nil)); got.AmountRefunded != 400 {
			t.Errorf("executed: charge refunded %d, want 400", got.AmountRefunded)
		}
		if r := a.refund("late", ch.ID, 400); r.status != 200 || r.header.Get("Idempotent-Replayed") != "true" {
			t.Errorf("executed: a retry got %d %s, want the refund replayed", r.status, r.body)
		}
		hooks := rc.deliveries()
		if len(hooks) != 3 || hooks[2].event.Type != provider.EventRefundSucceeded || !hooks[2].at.Equal(start.Add(after)) {
			t.Errorf("webhooks %v, want the refund's last, at %v", ids(hooks), after)
		}
		if s := sim.Stats(); s.LateExecutions != 1 || len(sim.Refunds()) != 1 {
			t.Errorf("stats %+v, refunds %+v; want 1 late execution, 1 refund", s, sim.Refunds())
		}
	})
}

// TestLateRefundRefusedWhenDue: the charge changed while the refund was
// pending; when due it no longer fits, is refused, and binds nothing. Its
// client gave up long before, and the refund still came due.
func TestLateRefundRefusedWhenDue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim, a := startMem(t, nil)
		ch := as[provider.Charge](t, a.charge("charge", 1000))
		a.setFaults(map[string]any{"late_rate": 1, "late_min": "5s"})
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		if r, err := a.try(ctx, "POST", "/refunds", "late", refundReq{Charge: ch.ID, Amount: 600}); err == nil {
			t.Fatalf("the late POST got %d %s, want the client's timeout", r.status, r.body)
		}
		a.setFaults(nil)
		if r := a.refund("now", ch.ID, 500); r.status != 200 {
			t.Fatalf("another refund: %d %s", r.status, r.body)
		}
		time.Sleep(4 * time.Second)
		synctest.Wait()

		if got := sim.Refunds(); len(got) != 1 || got[0].IdempotencyKey != "now" {
			t.Errorf("refunds = %+v, want only the one that fitted", got)
		}
		if s := sim.Stats(); s.LateExecutions != 1 {
			t.Errorf("late executions = %d, want 1", s.LateExecutions)
		}
		if r := a.do("GET", "/refunds?idempotency_key=late", "", nil); r.status != 404 {
			t.Errorf("lookup %d %s, want 404", r.status, r.body)
		}
		if r := a.refund("late", ch.ID, 600); r.status != 400 || errorCode(r) != "amount_too_large" || r.header.Get("Idempotent-Replayed") != "" {
			t.Errorf("a retry got %d %s, want it judged anew: 400 amount_too_large", r.status, r.body)
		}
	})
}

// TestLatePastTheKeyWindow: a key reused after its window may be
// deferred, and while it is pending its lookup answers 404, not the
// expired charge.
func TestLatePastTheKeyWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, a := startMem(t, &simulator.Config{KeyWindow: time.Hour})
		first := as[provider.Charge](t, a.charge("key", 1000))
		time.Sleep(time.Hour)
		a.setFaults(map[string]any{"late_rate": 1, "late_min": "5s"})
		lost := sendLost(t.Context(), a, "/charges", "key", chargeReq{Amount: 1000, Currency: "usd"})
		synctest.Wait()
		a.setFaults(nil)
		if r := a.do("GET", "/charges?idempotency_key=key", "", nil); r.status != 404 {
			t.Errorf("pending: lookup %d %s, want 404", r.status, r.body)
		}
		time.Sleep(5 * time.Second)
		<-lost
		if got := as[provider.Charge](t, a.do("GET", "/charges?idempotency_key=key", "", nil)); got.ID == first.ID {
			t.Errorf("executed: lookup %s, want the new charge", got.ID)
		}
	})
}

// TestLateNotDeferred: only a new request that would be acted on is
// deferred. A refusal is answered at once, and a key with a result
// replays it.
func TestLateNotDeferred(t *testing.T) {
	sim, a := start(t, nil)
	ch := as[provider.Charge](t, a.charge("charge", 1000))
	a.refund("refund", ch.ID, 100)
	a.setFaults(map[string]any{"late_rate": 1, "late_min": "1h"})
	tests := []struct {
		name   string
		path   string
		key    string
		body   any
		status int
		code   string
	}{
		{"invalid charge", "/charges", "new", chargeReq{Amount: 0, Currency: "usd"}, 400, "invalid_request"},
		{"charge key with a result", "/charges", "charge", chargeReq{Amount: 1000, Currency: "usd"}, 200, ""},
		{"charge key with a result, another amount", "/charges", "charge", chargeReq{Amount: 1, Currency: "usd"}, 400, "idempotency_mismatch"},
		{"refund of an unknown charge", "/refunds", "new", refundReq{Charge: "ch_nope", Amount: 1}, 404, "charge_not_found"},
		{"refund too large", "/refunds", "new", refundReq{Charge: ch.ID, Amount: 901}, 400, "amount_too_large"},
		{"refund key with a result", "/refunds", "refund", refundReq{Charge: ch.ID, Amount: 100}, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := a.on(t).do("POST", tt.path, tt.key, tt.body)
			if r.status != tt.status || errorCode(r) != tt.code {
				t.Errorf("got %d %s, want %d %q at once", r.status, r.body, tt.status, tt.code)
			}
		})
	}
	// Nothing was left pending under the refused keys.
	a.setFaults(nil)
	if r := a.charge("new", 1000); r.status != 200 || r.header.Get("Idempotent-Replayed") != "" {
		t.Errorf("a charge under the refused key: %d %s, want a new charge", r.status, r.body)
	}
	if r := a.refund("new", ch.ID, 1); r.status != 200 || r.header.Get("Idempotent-Replayed") != "" {
		t.Errorf("a refund under the refused key: %d %s, want a new refund", r.status, r.body)
	}
	if s := sim.Stats(); s.LateExecutions != 0 || s.InFlightConflicts != 0 {
		t.Errorf("stats = %+v, want nothing deferred", s)
	}
}

// TestCloseAbandonsLate: Close ends a pending execution, which never
// executes; the late POST's connection is closed; and the bubble, which
// waits for every goroutine and timer it started, ends.
func TestCloseAbandonsLate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim, a, rc := startHooks(t, simulator.Config{Faults: simulator.Faults{LateRate: 1, LateMin: time.Hour}}, nil)
		lost := sendLost(t.Context(), a, "/charges", "key", chargeReq{Amount: 1000, Currency: "usd"})
		synctest.Wait()
		sim.Close()
		if l := <-lost; l.err == nil || l.after != 0 {
			t.Errorf("the late POST got %d %s (%v) after %v, want its connection closed by Close", l.r.status, l.r.body, l.err, l.after)
		}
		time.Sleep(2 * time.Hour)
		synctest.Wait()
		if got, hooks := sim.Charges(), rc.deliveries(); len(got) != 0 || len(hooks) != 0 {
			t.Errorf("after Close: charges %+v, webhooks %v; want none", got, ids(hooks))
		}
		if s := sim.Stats(); s.LateExecutions != 0 {
			t.Errorf("late executions = %d, want 0", s.LateExecutions)
		}
	})
}

// TestCloseWaitsForLateExecutions: on a real clock, a pending execution's
// goroutine is gone once Close returns, not merely told to go.
func TestCloseWaitsForLateExecutions(t *testing.T) {
	sim, a := start(t, &simulator.Config{Faults: simulator.Faults{LateRate: 1, LateMin: time.Hour}})
	lost := sendLost(t.Context(), a, "/charges", "key", chargeReq{Amount: 1000, Currency: "usd"})
	const pendingFrame = "simulator.(*Sim).runLate"
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(stacks(), pendingFrame); {
		if time.Now().After(deadline) {
			t.Fatal("the late charge never became pending")
		}
		runtime.Gosched()
	}
	buf := make([]byte, 1<<20) // allocated before Close, so that nothing delays the look
	sim.Close()
	if s := string(buf[:runtime.Stack(buf, true)]); strings.Contains(s, pendingFrame) {
		t.Errorf("a late execution outlived Close:\n%s", s)
	}
	if l := <-lost; l.err == nil {
		t.Errorf("the late POST got %d %s, want its connection closed", l.r.status, l.r.body)
	}
	if got := sim.Charges(); len(got) != 0 {
		t.Errorf("charges = %+v, want none", got)
	}
}

func stacks() string {
	buf := make([]byte, 1<<20)
	return string(buf[:runtime.Stack(buf, true)])
}
