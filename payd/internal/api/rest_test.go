package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/idemhq/idem/payd/internal/payments"
)

// TestRefundOfWhatIsLeft: a refund without an amount (an empty body, {}
// or null) refunds what is left of the charge; once nothing is left, one
// is refused 409 nothing_left_to_refund, and not recorded. On the code
// before, a refund needed an amount.
func TestRefundOfWhatIsLeft(t *testing.T) {
	eachDatabase(t, func(t *testing.T, url string) {
		f := newFixtureOn(t, url, &fastWorkers)
		refund := func(c payments.Charge, idemKey, body string) (reply, payments.RefundView) {
			t.Helper()
			r := f.do(t, http.MethodPost, "/v1/charges/"+c.ID+"/refunds", key, idemKey, body)
			var v payments.RefundView
			json.Unmarshal([]byte(r.body), &v)
			return r, v
		}
		for _, body := range []string{``, `{}`, `{"amount":null}`} {
			c := f.chargeNow(t, 1000)
			if r, _ := refund(c, "part-"+c.ID, `{"amount":300}`); r.status != http.StatusCreated {
				t.Fatalf("refund of 300 = %d %s", r.status, r.body)
			}
			r, v := refund(c, "rest-"+c.ID, body)
			if r.status != http.StatusCreated || v.Amount != 700 || v.Charge != c.ID {
				t.Fatalf("refund with body %q = %d %s, want 201 and the 700 left", body, r.status, r.body)
			}
			again, _ := refund(c, "rest-"+c.ID, body)
			if again.body != r.body || again.header.Get("Idempotent-Replayed") != "true" {
				t.Fatalf("its retry = %d %s, want it replayed", again.status, again.body)
			}
			for range 2 { // refused, not recorded: refused again, not replayed
				none, _ := refund(c, "more-"+c.ID, body)
				if none.status != http.StatusConflict || !strings.Contains(none.body, `"code":"nothing_left_to_refund"`) || none.header.Get("Idempotent-Replayed") != "" {
					t.Fatalf("a refund of what is left of nothing = %d %s, want 409 nothing_left_to_refund, not a replay", none.status, none.body)
				}
			}
			if got := f.awaitRefunds(t, c.ID); got.AmountRefunded != 1000 || len(got.Refunds) != 2 {
				t.Fatalf("after both refunds: %d refunded in %d refunds, want 1000 in 2", got.AmountRefunded, len(got.Refunds))
			}
		}
		declined := f.chargeNow(t, 1002)
		if r, _ := refund(declined, "declined", `{}`); r.status != http.StatusConflict || !strings.Contains(r.body, `"code":"charge_not_succeeded"`) {
			t.Fatalf("a refund of what is left of a declined charge = %d %s, want 409 charge_not_succeeded", r.status, r.body)
		}
		if r, _ := refund(payments.Charge{ID: "ch_nope"}, "nope", `{}`); r.status != http.StatusNotFound {
			t.Fatalf("a refund of what is left of no charge = %d %s, want 404", r.status, r.body)
		}
		f.verify(t)
	})
}

// TestConcurrentRefundsOfWhatIsLeft: 10 refunds of what is left and 10 of
// 100 arrive at once, each with its own key. Whatever their order, the
// refunds accepted add up to the whole charge, never more: what is left
// is read and reserved under the charge's row lock, so no two refunds of
// what is left both take it.
func TestConcurrentRefundsOfWhatIsLeft(t *testing.T) {
	eachDatabase(t, func(t *testing.T, url string) {
		f := newFixtureOn(t, url, &fastWorkers)
		c := f.chargeNow(t, 1000)
		var (
			wg       sync.WaitGroup
			mu       sync.Mutex
			accepted int64
			rests    int
		)
		for i := range 20 {
			body := `{}`
			if i%2 == 1 {
				body = `{"amount":100}`
			}
			wg.Go(func() {
				r := f.do(t, http.MethodPost, "/v1/charges/"+c.ID+"/refunds", key, fmt.Sprint("refund-", i), body)
				var v payments.RefundView
				json.Unmarshal([]byte(r.body), &v)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case r.status == http.StatusCreated:
					accepted += v.Amount
					if body == `{}` {
						rests++
					}
				case r.status == http.StatusConflict && (strings.Contains(r.body, `"nothing_left_to_refund"`) || strings.Contains(r.body, `"amount_exceeds_refundable"`)):
				default:
					t.Errorf("refund %d = %d %s", i, r.status, r.body)
				}
			})
		}
		wg.Wait()
		if accepted != 1000 || rests != 1 {
			t.Fatalf("the refunds accepted add up to %d, %d of them of what was left; want 1000, and 1", accepted, rests)
		}
		got := f.awaitRefunds(t, c.ID)
		var refunded int64
		for _, r := range f.sim.Refunds() {
			refunded += r.Amount
		}
		if got.AmountRefunded != 1000 || refunded != 1000 {
			t.Fatalf("amount_refunded %d, the provider refunded %d; want 1000 on both sides", got.AmountRefunded, refunded)
		}
		f.verify(t)
	})
}
