package api

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/idemhq/idem/payd/internal/payments"
	"github.com/idemhq/idem/payd/internal/provider"
	"github.com/idemhq/idem/sqlitestore"
)

// TestStateRefusalsAreNotRecorded: a refund refused because of a state
// that can change is answered 409 and not recorded under its
// Idempotency-Key, so the same key succeeds once the state has changed:
// the charge succeeded (on the code before, charge_not_succeeded was
// replayed for the whole retention), or a pending refund failed and gave
// its amount back. The 409 is never the middleware's in-flight answer and
// is never a replay; a refusal that can never pass (over the whole
// charge) is recorded and replayed.
func TestStateRefusalsAreNotRecorded(t *testing.T) {
	eachDatabase(t, func(t *testing.T, url string) {
		f := newFixtureWith(t, fixtureOptions{databaseURL: url}) // no workers: the test moves every state
		r := f.do(t, http.MethodPost, "/v1/charges", key, "c1", `{"amount":1000,"currency":"usd","reference":"order"}`)
		var c payments.Charge
		if err := json.Unmarshal([]byte(r.body), &c); err != nil || r.status != http.StatusAccepted {
			t.Fatalf("create = %d %s", r.status, r.body)
		}
		path := "/v1/charges/" + c.ID + "/refunds"
		refused := func(r reply, code string) {
			t.Helper()
			if r.status != http.StatusConflict || !strings.Contains(r.body, `"code":"`+code+`"`) || r.header.Get("Idempotent-Replayed") != "" {
				t.Fatalf("= %d %s (replayed %q), want 409 %s, not a replay", r.status, r.body, r.header.Get("Idempotent-Replayed"), code)
			}
		}
		refused(f.do(t, http.MethodPost, path, key, "early", `{"amount":800}`), "charge_not_succeeded")
		refused(f.do(t, http.MethodPost, path, key, "early", `{"amount":800}`), "charge_not_succeeded")

		ch, err := f.prov.Charge(t.Context(), providerCharge(c))
		if err != nil {
			t.Fatal(err)
		}
		data, _ := json.Marshal(ch)
		if err := f.store.ApplyEvent(t.Context(), f.prov, provider.Event{ID: "evt_1", Type: provider.EventChargeSucceeded, Data: data}); err != nil {
			t.Fatal(err)
		}
		if r := f.do(t, http.MethodPost, path, key, "early", `{"amount":800}`); r.status != http.StatusCreated {
			t.Fatalf("the same key once the charge succeeded = %d %s, want 201", r.status, r.body)
		}

		refused(f.do(t, http.MethodPost, path, key, "second", `{"amount":500}`), "amount_exceeds_refundable")
		rc, err := f.store.ClaimDueRefund(t.Context(), time.Minute)
		if err != nil || rc == nil {
			t.Fatalf("claim the first refund: %v %v", rc, err)
		}
		if err := f.store.SettleRefund(t.Context(), rc, payments.Outcome{State: payments.StateFailed, FailureCode: "refused"}); err != nil {
			t.Fatal(err)
		}
		if r := f.do(t, http.MethodPost, path, key, "second", `{"amount":500}`); r.status != http.StatusCreated {
			t.Fatalf("the same key once the first refund failed = %d %s, want 201", r.status, r.body)
		}

		first := f.do(t, http.MethodPost, path, key, "whole", `{"amount":1001}`)
		again := f.do(t, http.MethodPost, path, key, "whole", `{"amount":1001}`)
		if first.status != http.StatusBadRequest || !strings.Contains(first.body, `"amount_too_large"`) || again.header.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("more than the charge = %d %s, again replayed %q; want 400 amount_too_large, recorded and replayed",
				first.status, first.body, again.header.Get("Idempotent-Replayed"))
		}
	})
}

// TestFailedRefundRollsBack: a refund whose database write fails halfway
// (its table gone, after the amount was reserved on the charge) gets 500,
// and the 500 is not recorded: the reservation rolls back with the key,
// and the same key succeeds once the database is back. On the code before,
// the 500 was recorded and the reservation committed with no refund, so
// the amount could never be refunded.
func TestFailedRefundRollsBack(t *testing.T) {
	path := filepath.Join(t.TempDir(), "payd.db")
	f := newFixtureOn(t, path, &fastWorkers)
	c := f.chargeNow(t, 1000)
	db, err := sqlitestore.OpenDB(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(t.Context(), `ALTER TABLE refunds RENAME TO refunds_away`); err != nil {
		t.Fatal(err)
	}
	refunds := "/v1/charges/" + c.ID + "/refunds"
	if r := f.do(t, http.MethodPost, refunds, key, "r1", `{"amount":300}`); r.status != http.StatusInternalServerError {
		t.Fatalf("refund without its table = %d %s, want 500", r.status, r.body)
	}
	if _, err := db.ExecContext(t.Context(), `ALTER TABLE refunds_away RENAME TO refunds`); err != nil {
		t.Fatal(err)
	}
	if got := f.charge(t, c.ID); got.AmountRefunded != 0 {
		t.Fatalf("amount_refunded %d after the failed refund, want 0: its reservation rolled back", got.AmountRefunded)
	}
	if r := f.do(t, http.MethodPost, refunds, key, "r1", `{"amount":300}`); r.status != http.StatusCreated || r.header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("the same key after the failure = %d %s, want 201, run again", r.status, r.body)
	}
	if got := f.awaitRefunds(t, c.ID); got.AmountRefunded != 300 || len(got.Refunds) != 1 {
		t.Fatalf("after the retry: %d refunded in %d refunds, want 300 in 1", got.AmountRefunded, len(got.Refunds))
	}
	f.verify(t)
}
