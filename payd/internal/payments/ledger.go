package payments

import (
	"context"
	"errors"
	"math/rand/v2"

	"github.com/idemhq/idem/payd/internal/database"
)

// The ledger is double entry: every journal transaction's entries sum to
// zero. Amounts are signed minor units, debits positive and credits
// negative. Its accounts, per currency:
//
//   - provider_clearing: what the provider holds for us (an asset): debited
//     by a succeeded charge, credited by a paid refund.
//   - merchant:<account>: what we owe the merchant (a liability): credited
//     by a succeeded charge, debited when a refund is accepted.
//   - refunds_payable:<account>: refunds accepted and not yet paid by the
//     provider: credited when a refund is accepted, debited when it is paid
//     or fails.
//
// Journal transactions, each posted at most once per (kind, ref):
//
//	charge                      clearing +A, merchant −A   a charge succeeded
//	refund_reserve              merchant +R, payable −R    a refund was accepted
//	refund                      payable +R, clearing −R    the refund succeeded
//	refund_reversal             payable +R, merchant −R    the refund failed
//
// and the corrections of a final state (Correct), one per payment or refund:
//
//	charge_reversal             merchant +A, clearing −A   a succeeded charge corrected to failed
//	refund_correction           merchant +R, clearing −R   a failed refund corrected to succeeded
//	refund_correction_reversal  clearing +R, merchant −R   a succeeded refund corrected to failed
//
// (a failed charge corrected to succeeded posts its charge transaction).
const (
	txnCharge                   = "charge"
	txnRefundReserve            = "refund_reserve"
	txnRefund                   = "refund"
	txnRefundReversal           = "refund_reversal"
	txnChargeReversal           = "charge_reversal"
	txnRefundCorrection         = "refund_correction"
	txnRefundCorrectionReversal = "refund_correction_reversal"

	clearingAccount = "provider_clearing"
)

func merchantAccount(accountID string) string       { return "merchant:" + accountID }
func refundsPayableAccount(accountID string) string { return "refunds_payable:" + accountID }

// balanceSlots is how many rows hold each account's balance in a currency.
// A post adds to one of them, picked at random, so concurrent posts to one
// account (every charge credits its merchant and debits provider_clearing)
// seldom wait on each other's row lock until commit. A balance is the sum
// of its slots.
const balanceSlots = 16

// post records the journal transaction kind for ref in q's transaction:
// amount debited to one account and credited to another, so it balances by
// construction. It moves both balances, in account order so that
// concurrent posts lock their rows in one order and cannot deadlock. A
// transaction posted before is not posted again.
func (s *Store) post(ctx context.Context, q database.Querier, kind, ref, currency, debit, credit string, amount int64) error {
	var id string
	err := q.QueryRow(ctx, s.sql.insertTxn, newID("txn_"), kind, ref).Scan(&id)
	if errors.Is(err, database.ErrNoRows) {
		return nil // posted before
	}
	if err != nil {
		return wrap("post "+kind, err)
	}
	if _, err := q.Exec(ctx, s.sql.insertEntries, id, debit, credit, currency, amount, -amount); err != nil {
		return wrap("post "+kind, err)
	}
	first, second, firstAmount := debit, credit, amount
	if credit < debit {
		first, second, firstAmount = credit, debit, -amount
	}
	_, err = q.Exec(ctx, s.sql.addBalances, first, second, currency, firstAmount, -firstAmount, rand.IntN(balanceSlots))
	return wrap("post "+kind, err)
}

// postCharge posts a succeeded charge.
func (s *Store) postCharge(ctx context.Context, q database.Querier, paymentID, accountID, currency string, amount int64) error {
	return s.post(ctx, q, txnCharge, paymentID, currency, clearingAccount, merchantAccount(accountID), amount)
}

// Balance is an account's money in one currency, in minor units.
type Balance struct {
	Currency string `json:"currency"`
	// Available is what the merchant is owed: charges succeeded less
	// refunds accepted.
	Available int64 `json:"available"`
	// RefundsPending is refunds accepted and not yet paid.
	RefundsPending int64 `json:"refunds_pending"`
}

// Balances returns the account's balances, one per currency it has
// postings in, by currency.
func (s *Store) Balances(ctx context.Context, accountID string) ([]Balance, error) {
	rs, err := s.db.Query(ctx, s.sql.balances, merchantAccount(accountID), refundsPayableAccount(accountID))
	if err != nil {
		return nil, wrap("read balances", err)
	}
	defer rs.Close()
	out := []Balance{}
	for rs.Next() {
		var b Balance
		if err := rs.Scan(&b.Currency, &b.Available, &b.RefundsPending); err != nil {
			return nil, wrap("read balances", err)
		}
		out = append(out, b)
	}
	return out, wrap("read balances", rs.Err())
}
