package chaos

import (
	"strings"
	"testing"

	"github.com/idemhq/idem/payd/internal/provider"
)

// heldEvidence is a payd run after its drain in which everything adds up:
//
//   - p1 charged 1000 (ch_1);
//   - p2 charged 2000 (ch_2), 500 of it refunded by r2 (re_2);
//   - p3 asked 3000, the provider charged 2999 (ch_3): held, with
//     amount_mismatch m3 open, not posted;
//   - p4 charged 1000 (ch_4); its refund r4 asked 300, the provider
//     refunded 299 (re_4): held, with refund_amount_mismatch m4 open, 300
//     reserved from the merchant;
//
// and the simulator made two objects for another amount. Merchant acct_1
// is owed 1000 + 2000 − 500 + 1000 − 300 = 3200.
func heldEvidence() *evidence {
	charge := func(id, pid, key string, amount int64) provider.Charge {
		return provider.Charge{ID: id, IdempotencyKey: key, Amount: amount, Currency: "usd", Status: provider.StatusSucceeded,
			Metadata: map[string]string{"payment_id": pid, "reference": "ref_" + pid}}
	}
	refund := func(id, rid, key, chargeID string, amount int64) provider.Refund {
		return provider.Refund{ID: id, IdempotencyKey: key, ChargeID: chargeID, Amount: amount, Status: provider.StatusSucceeded,
			Metadata: map[string]string{"refund_id": rid}}
	}
	payment := func(id, state, chargeID string, amount, refunded int64, hold string) paymentRow {
		return paymentRow{ID: id, AccountID: "acct_1", Reference: "ref_" + id, State: state, Currency: "usd", ProviderKey: "pk_" + id,
			ProviderChargeID: chargeID, Amount: amount, AmountRefunded: refunded, Hold: hold}
	}
	rec := func(phase string, s seen, r *refundSeen) *record {
		return &record{plan: plan{key: "key-" + s.ID, reference: "ref_" + s.ID}, seen: []seen{s}, phase: phase, refund: r}
	}
	return &evidence{
		charges: []provider.Charge{
			charge("ch_1", "p1", "pk_p1", 1000),
			charge("ch_2", "p2", "pk_p2", 2000),
			charge("ch_3", "p3", "pk_p3", 2999),
			charge("ch_4", "p4", "pk_p4", 1000),
		},
		refunds: []provider.Refund{
			refund("re_2", "r2", "rk_r2", "ch_2", 500),
			refund("re_4", "r4", "rk_r4", "ch_4", 299),
		},
		payments: []paymentRow{
			payment("p1", "succeeded", "ch_1", 1000, 0, ""),
			payment("p2", "succeeded", "ch_2", 2000, 500, ""),
			payment("p3", "processing", "", 3000, 0, "amount_mismatch"),
			payment("p4", "succeeded", "ch_4", 1000, 300, ""), // r4 reserved, as payd reserves it
		},
		records: []*record{
			rec("done", seen{Status: 200, ID: "p1", State: "succeeded"}, nil),
			rec("done", seen{Status: 200, ID: "p2", State: "succeeded"}, &refundSeen{ID: "r2", Amount: 500, Status: "succeeded", Final: true}),
			rec("settle", seen{Status: 202, ID: "p3", State: "pending"}, nil),
			rec("refund", seen{Status: 200, ID: "p4", State: "succeeded"}, &refundSeen{ID: "r4", Amount: 300, Status: "processing"}),
		},
		refunded: true,
		store: &storeEvidence{
			hasRefunds: true,
			refunds: []refundRow{
				{ID: "r2", PaymentID: "p2", AccountID: "acct_1", Currency: "usd", State: "succeeded", ProviderKey: "rk_r2", ProviderRefundID: "re_2", Amount: 500},
				{ID: "r4", PaymentID: "p4", AccountID: "acct_1", Currency: "usd", State: "processing", ProviderKey: "rk_r4", Amount: 300, Hold: "refund_amount_mismatch"},
			},
			ledger: &ledgerEvidence{
				txns: map[txnKey]int{
					{"charge", "p1"}: 1, {"charge", "p2"}: 1, {"charge", "p4"}: 1,
					{"refund_reserve", "r2"}: 1, {"refund", "r2"}: 1, {"refund_reserve", "r4"}: 1,
				},
				available: map[balanceKey]int64{{"acct_1", "usd"}: 3200},
				count:     6,
			},
			holds: true,
			mismatches: []mismatchRow{
				{ID: "m3", Kind: "amount_mismatch", ProviderKey: "pk_p3", AccountID: "acct_1", PaymentID: "p3", ProviderID: "ch_3", Detail: "the provider charged 2999, not 3000"},
				{ID: "m4", Kind: "refund_amount_mismatch", ProviderKey: "rk_r4", AccountID: "acct_1", PaymentID: "p4", RefundID: "r4", ProviderID: "re_4", Detail: "the provider refunded 299, not 300"},
			},
		},
		otherAmounts: 2,
	}
}

// judged runs every oracle that reads the evidence and returns the checks
// by name.
func judged(ev *evidence) (*TargetReport, map[string]Check) {
	tr := &TargetReport{}
	ev.judge(tr)
	tr.Checks = append(tr.Checks, clientsDone(ev.records, ev.explain().ids()))
	tr.Checks = append(tr.Checks, ev.storeChecks(tr)...)
	out := map[string]Check{}
	for _, c := range tr.Checks {
		out[c.Name] = c
	}
	return tr, out
}

// TestHeldEvidencePasses: the evidence the oracle tests break passes every
// check as it is, so each failure below is the mutation's.
func TestHeldEvidencePasses(t *testing.T) {
	tr, checks := judged(heldEvidence())
	for _, c := range checks {
		if c.Status != Pass {
			t.Errorf("check %q = %s %s %v; want a pass", c.Name, c.Status, c.Detail, c.Examples)
		}
	}
	for _, name := range []string{"refunds map one to one", "balances match the provider", "holds and mismatches are explained"} {
		if _, ok := checks[name]; !ok {
			t.Errorf("no check %q", name)
		}
	}
	if tr.HeldPayments != 1 || tr.HeldRefunds != 1 || tr.MismatchesExplained != 2 || len(tr.Held) != 2 || tr.LostCharges != 0 || tr.StuckPayments != 0 {
		t.Errorf("held %d payments and %d refunds, %d mismatches explained, %d listed, %d lost, %d stuck; want 1, 1, 2, 2, 0, 0",
			tr.HeldPayments, tr.HeldRefunds, tr.MismatchesExplained, len(tr.Held), tr.LostCharges, tr.StuckPayments)
	}
}

type oracleCase struct {
	name   string
	break_ func(ev *evidence)
	fails  map[string]string // check → a string one of its examples holds
}

func runOracleCases(t *testing.T, cases []oracleCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ev := heldEvidence()
			tc.break_(ev)
			_, checks := judged(ev)
			for name, want := range tc.fails {
				c, ok := checks[name]
				if !ok {
					t.Errorf("no check %q", name)
					continue
				}
				if c.Status != Fail || !strings.Contains(strings.Join(c.Examples, "\n"), want) {
					t.Errorf("check %q = %s %s %v; want a failure naming %q", name, c.Status, c.Detail, c.Examples, want)
				}
			}
		})
	}
}

func refundRowOf(ev *evidence, id string) *refundRow {
	for i := range ev.store.refunds {
		if ev.store.refunds[i].ID == id {
			return &ev.store.refunds[i]
		}
	}
	panic("no refund " + id)
}

// TestRefundsMapOneToOne: each way a provider refund and payd's refunds
// can come apart fails the one-to-one check.
func TestRefundsMapOneToOne(t *testing.T) {
	const check = "refunds map one to one"
	runOracleCases(t, []oracleCase{
		{"payd failed a refund the provider made", func(ev *evidence) {
			r := refundRowOf(ev, "r2")
			r.State, r.ProviderRefundID = "failed", ""
			delete(ev.store.ledger.txns, txnKey{"refund", "r2"})
		}, map[string]string{check: "payd refund r2 failed, though the provider refunded under its key"}},
		{"payd says succeeded, the provider has no refund", func(ev *evidence) {
			ev.refunds = ev.refunds[1:]
		}, map[string]string{check: "payd refund r2 (500, payment p2) succeeded; the provider has no succeeded refund under its key rk_r2"}},
		{"a provider refund payd does not know", func(ev *evidence) {
			ev.refunds = append(ev.refunds, provider.Refund{ID: "re_9", IdempotencyKey: "rk_r9", ChargeID: "ch_1", Amount: 250, Status: provider.StatusSucceeded})
		}, map[string]string{check: "provider refund re_9 (250 of charge ch_1): no payd refund has its key rk_r9"}},
		{"payd records another provider refund", func(ev *evidence) {
			refundRowOf(ev, "r2").ProviderRefundID = "re_x"
		}, map[string]string{check: `records provider refund "re_x"`}},
		{"the provider refunded another amount, and payd did not hold it", func(ev *evidence) {
			ev.refunds[0].Amount = 499
		}, map[string]string{check: "provider refund re_2 (499 of charge ch_2): payd refund r2 is for 500"}},
		{"a succeeded refund not posted", func(ev *evidence) {
			delete(ev.store.ledger.txns, txnKey{"refund", "r2"})
		}, map[string]string{check: "payd refund r2 has 0 refund transactions"}},
		{"a refund posted that did not succeed", func(ev *evidence) {
			ev.store.ledger.txns[txnKey{"refund", "r4"}] = 1
		}, map[string]string{check: "a refund transaction for r4, which is processing"}},
	})
}

// TestBalancesMatch: a merchant balance the provider's money does not
// explain fails, held objects set apart.
func TestBalancesMatch(t *testing.T) {
	const check = "balances match the provider"
	runOracleCases(t, []oracleCase{
		{"off by one", func(ev *evidence) {
			ev.store.ledger.available[balanceKey{"acct_1", "usd"}]--
		}, map[string]string{check: "merchant acct_1, usd: the ledger says 3199 available, the provider's charges less refunds 3200 (off by -1)"}},
		{"the provider charged another amount, and payd posted its own", func(ev *evidence) {
			ev.charges[0].Amount = 999
		}, map[string]string{check: "off by 1", "every succeeded payment was charged": "payment p1 (ref_p1) succeeded for 1000 with charge ch_1, which the provider made for 999"}},
		{"a held refund not reserved", func(ev *evidence) {
			ev.store.ledger.available[balanceKey{"acct_1", "usd"}] += 300
		}, map[string]string{check: "off by 300"}},
		{"a provider refund payd does not know, of its payment", func(ev *evidence) {
			ev.refunds = append(ev.refunds, provider.Refund{ID: "re_9", IdempotencyKey: "rk_r9", ChargeID: "ch_1", Amount: 250, Status: provider.StatusSucceeded})
		}, map[string]string{check: "off by 250"}},
		{"a provider charge of no payment", func(ev *evidence) {
			ev.charges = append(ev.charges, provider.Charge{ID: "ch_9", IdempotencyKey: "pk_gone", Amount: 70, Currency: "usd", Status: provider.StatusSucceeded,
				Metadata: map[string]string{"payment_id": "gone"}})
		}, map[string]string{check: "provider charge ch_9 (70 usd) is for no payment"}},
		{"a held payment posted", func(ev *evidence) {
			ev.store.ledger.available[balanceKey{"acct_1", "usd"}] += 3000
		}, map[string]string{check: "off by 3000"}},
	})
}

// TestHoldsAreExplained: a hold or an open mismatch that the injected
// faults do not explain fails the run; the other oracles then count the
// held payment and refund as lost and stuck.
func TestHoldsAreExplained(t *testing.T) {
	const check = "holds and mismatches are explained"
	runOracleCases(t, []oracleCase{
		{"provider-other-amount made nothing", func(ev *evidence) {
			ev.otherAmounts = 0
		}, map[string]string{
			check:              "payment p3 (ref_p3) is held (amount_mismatch): the provider's charge is for 2999, not 3000, but the simulator made nothing for another amount",
			"no lost charge":   "ch_3",
			"no payment stuck": "p3",
			"no refund stuck":  "refund r4 is processing",
			"one ledger transaction per provider charge": "ch_3 (payment p3): 0 charge transactions",
			"refunds match the provider":                 "payment p4: payd says 300 refunded (0 of it reserved by held refunds), the provider 299",
			"refunds map one to one":                     "payd refund r4 is processing",
			"every client saw its outcome":               "key-p3",
		}},
		{"the provider charged what payd asked", func(ev *evidence) {
			ev.charges[2].Amount = 3000
		}, map[string]string{check: "payment p3 (ref_p3) is held (amount_mismatch): the provider's charge under its key is for the same amount, 3000"}},
		{"held, and no mismatch open", func(ev *evidence) {
			ev.store.mismatches = ev.store.mismatches[1:]
		}, map[string]string{check: "payment p3 (ref_p3) is held (amount_mismatch): no open amount_mismatch names it"}},
		{"held refund, the provider has none", func(ev *evidence) {
			ev.refunds = ev.refunds[:1]
		}, map[string]string{check: "refund r4 (payment p4) is held (refund_amount_mismatch): the provider has no refund under its key"}},
		{"a mismatch of another kind", func(ev *evidence) {
			ev.store.mismatches = append(ev.store.mismatches, mismatchRow{ID: "m9", Kind: "payment_without_provider_charge", ProviderKey: "pk_p1", PaymentID: "p1", Detail: "no charge"})
		}, map[string]string{check: "open payment_without_provider_charge m9"}},
		{"an amount mismatch on a payment not held", func(ev *evidence) {
			ev.store.mismatches = append(ev.store.mismatches, mismatchRow{ID: "m8", Kind: "amount_mismatch", ProviderKey: "pk_p1", PaymentID: "p1", Detail: "metadata differs"})
		}, map[string]string{check: "open amount_mismatch m8: payment p1 is not held (it is succeeded)"}},
		{"an escalated outcome", func(ev *evidence) {
			ev.store.mismatches = append(ev.store.mismatches, mismatchRow{ID: "m7", Kind: "outcome_unresolved", ProviderKey: "pk_p1", PaymentID: "p1", Detail: "still unknown"})
		}, map[string]string{check: "open outcome_unresolved m7"}},
	})
}

// TestHoldsNeedTheirSchema: a payd whose schema has no holds, or whose
// mismatches cannot name one, gets the check skipped with the reason, and
// nothing it has is excused.
func TestHoldsNeedTheirSchema(t *testing.T) {
	ev := heldEvidence()
	ev.store.holds, ev.store.noHolds, ev.store.mismatches = false, "this payd holds nothing (no hold column on payments and refunds)", nil
	for i := range ev.payments {
		ev.payments[i].Hold = ""
	}
	for i := range ev.store.refunds {
		ev.store.refunds[i].Hold = ""
	}
	tr, checks := judged(ev)
	if c := checks["holds and mismatches are explained"]; c.Status != Skipped || !strings.Contains(c.Detail, "hold column") {
		t.Errorf("holds on a schema without them: %s %s; want skipped, saying why", c.Status, c.Detail)
	}
	if tr.HeldPayments != 0 || tr.StuckPayments != 1 || tr.LostCharges != 1 {
		t.Errorf("without holds: %d held, %d stuck, %d lost; want 0, 1 (p3), 1 (ch_3)", tr.HeldPayments, tr.StuckPayments, tr.LostCharges)
	}
	if c := checks["balances match the provider"]; c.Status != Fail || !strings.Contains(strings.Join(c.Examples, "\n"), "off by") {
		t.Errorf("balances with p3's charge unposted and r4 reserved, nothing held: %s %v; want a failure", c.Status, c.Examples)
	}
}
