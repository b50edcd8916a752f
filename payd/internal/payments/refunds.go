package payments

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/idemhq/idem/payd/internal/database"
)

// Refund is a refund as payd keeps it. Like a payment, it is its own job:
// claimed with a fenced lease and sent to the provider with a key fixed
// when it was accepted.
type Refund struct {
	ID               string
	PaymentID        string
	AccountID        string
	Amount           int64
	Currency         string
	ChargeID         string // the provider's id of the charge refunded
	State            string
	Fence            int64
	Attempts         int
	ProviderKey      string
	ProviderRefundID string
	FailureCode      string
	FailureMessage   string
	// Hold is the kind of the open mismatch that holds the refund, or "".
	Hold      string
	CreatedAt time.Time
	UpdatedAt time.Time
}

func (r *Refund) final() bool { return r.State == StateSucceeded || r.State == StateFailed }

// RefundView is the API's refund object.
type RefundView struct {
	ID             string    `json:"id"`
	Object         string    `json:"object"`
	Charge         string    `json:"charge"`
	Amount         int64     `json:"amount"`
	Currency       string    `json:"currency"`
	Status         string    `json:"status"`
	FailureCode    *string   `json:"failure_code"`
	FailureMessage *string   `json:"failure_message"`
	CreatedAt      time.Time `json:"created_at"`
	UpdatedAt      time.Time `json:"updated_at"`
}

// View returns the API view of r: like a charge, a refund waiting for a
// retry or an unknown outcome is processing.
func (r *Refund) View() RefundView {
	p := Payment{State: r.State}
	v := RefundView{
		ID:        r.ID,
		Object:    "refund",
		Charge:    r.PaymentID,
		Amount:    r.Amount,
		Currency:  r.Currency,
		Status:    p.Status(),
		CreatedAt: r.CreatedAt,
		UpdatedAt: r.UpdatedAt,
	}
	if r.FailureCode != "" {
		v.FailureCode, v.FailureMessage = &r.FailureCode, &r.FailureMessage
	}
	return v
}

// RefundRefused is returned by CreateRefund for a refund the payment
// cannot take.
type RefundRefused struct {
	// Code is charge_not_succeeded, amount_exceeds_refundable or
	// nothing_left_to_refund, which depend on the payment's state and may
	// pass later (the charge succeeds, a pending refund fails), or
	// amount_too_large, an amount over the whole charge, which never can.
	Code   string
	Detail string
}

// Final reports whether the refusal holds whatever happens to the payment
// later, and so may be recorded as the request's outcome.
func (e *RefundRefused) Final() bool { return e.Code == "amount_too_large" }

func (e *RefundRefused) Error() string { return "payments: refund refused: " + e.Detail }

// RefundWhatIsLeft, as CreateRefund's amount, refunds what is left of the
// payment.
const RefundWhatIsLeft = 0

// CreateRefund accepts a refund of amount of the account's payment, or of
// what is left of it for RefundWhatIsLeft: it reserves the amount on the
// payment, so the refunds accepted never exceed what was captured however
// many arrive at once, inserts the refund as due work, and posts the
// reservation to the ledger. What is left is read with the payment's row
// locked, in the reservation's transaction, so two refunds of what is
// left never both take it: one gets it, the other nothing_left_to_refund
// (TestConcurrentRefundsOfWhatIsLeft). In a request's transaction
// (database.WithTx) it writes there. It returns ErrNotFound, or
// *RefundRefused for a payment not succeeded or an amount over what is
// left.
func (s *Store) CreateRefund(ctx context.Context, accountID, paymentID string, amount int64) (_ *Refund, err error) {
	id := newID("re_")
	ctx, span := startSpan(ctx, "payd.refund.accept", refundIDKey.String(id), paymentIDKey.String(paymentID))
	defer func() { endSpan(span, err) }()
	var r *Refund
	err = s.inRequestTx(ctx, func(q database.Querier) error {
		if amount == RefundWhatIsLeft {
			left, err := s.leftToRefund(ctx, q, accountID, paymentID)
			if err != nil {
				return err
			}
			amount = left
		}
		var currency, chargeID string
		err := q.QueryRow(ctx, s.sql.reserveRefund, paymentID, accountID, amount).Scan(&currency, &chargeID)
		if errors.Is(err, database.ErrNoRows) {
			return s.refusal(ctx, q, accountID, paymentID, amount)
		}
		if err != nil {
			return wrap("reserve a refund", err)
		}
		if r, err = scanRefund(q.QueryRow(ctx, s.sql.insertRefund, id, paymentID, accountID, amount, currency, chargeID, "payd_"+id,
			nullable(traceparentOf(ctx)))); err != nil {
			return wrap("create refund", err)
		}
		return s.post(ctx, q, txnRefundReserve, id, currency, merchantAccount(accountID), refundsPayableAccount(accountID), amount)
	})
	if err != nil {
		return nil, err
	}
	return r, nil
}

// leftToRefund returns what is left to refund of the payment, locking its
// row for the rest of q's transaction, or the refusal if nothing is.
func (s *Store) leftToRefund(ctx context.Context, q database.Querier, accountID, paymentID string) (int64, error) {
	var left int64
	err := q.QueryRow(ctx, s.sql.refundable, paymentID, accountID).Scan(&left)
	switch {
	case errors.Is(err, database.ErrNoRows):
		return 0, s.refusal(ctx, q, accountID, paymentID, RefundWhatIsLeft)
	case err != nil:
		return 0, wrap("read what is left to refund", err)
	case left == 0:
		return 0, &RefundRefused{Code: "nothing_left_to_refund",
			Detail: fmt.Sprintf("charge %s has nothing left to refund; a refund still processing gives its amount back if it fails", paymentID)}
	}
	return left, nil
}

// refusal says why the payment could not take a refund of amount.
func (s *Store) refusal(ctx context.Context, q database.Querier, accountID, paymentID string, amount int64) error {
	p, err := scanPayment(q.QueryRow(ctx, s.sql.getPayment, paymentID, accountID))
	switch {
	case errors.Is(err, database.ErrNoRows):
		return ErrNotFound
	case err != nil:
		return wrap("create refund", err)
	case p.State != StateSucceeded:
		return &RefundRefused{Code: "charge_not_succeeded", Detail: fmt.Sprintf("charge %s is %s; only a succeeded charge can be refunded", p.ID, p.Status())}
	case amount > p.Amount:
		return &RefundRefused{Code: "amount_too_large", Detail: fmt.Sprintf("a refund of %d is more than the charge %s of %d %s; refund at most %d",
			amount, p.ID, p.Amount, p.Currency, p.Amount)}
	}
	return &RefundRefused{Code: "amount_exceeds_refundable", Detail: fmt.Sprintf("a refund of %d is more than the %d %s left to refund on charge %s; a refund still processing gives its amount back if it fails",
		amount, p.Amount-p.AmountRefunded, p.Currency, p.ID)}
}

// Refunds returns the refunds of a payment, oldest first.
func (s *Store) Refunds(ctx context.Context, paymentID string) ([]*Refund, error) {
	rs, err := s.db.Query(ctx, s.sql.refundsOf, paymentID)
	if err != nil {
		return nil, wrap("list refunds", err)
	}
	defer rs.Close()
	out := []*Refund{}
	for rs.Next() {
		r, err := scanRefund(rs)
		if err != nil {
			return nil, wrap("list refunds", err)
		}
		out = append(out, r)
	}
	return out, wrap("list refunds", rs.Err())
}

// RefundClaim is a refund a worker holds, as Claim is a payment.
type RefundClaim struct {
	*Refund
	From        string
	Age         time.Duration
	SinceSent   time.Duration
	MoreDue     bool
	TraceParent string
}

// ClaimDueRefund claims the refund due first for lease, or returns nil
// when none is due.
func (s *Store) ClaimDueRefund(ctx context.Context, lease time.Duration) (*RefundClaim, error) {
	var (
		from           string
		ageMs, sinceMs int64
		more           bool
		traceparent    string
	)
	var r *Refund
	err := s.db.Write(ctx, func(ctx context.Context) (err error) {
		r, err = scanRefund(s.db.QueryRow(ctx, s.sql.claimDueRefund, lease.Milliseconds()), &from, &ageMs, &sinceMs, &more, &traceparent)
		return err
	})
	if errors.Is(err, database.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, wrap("claim a due refund", err)
	}
	return &RefundClaim{Refund: r, From: from, Age: time.Duration(ageMs) * time.Millisecond, SinceSent: sinceSent(sinceMs), MoreDue: more,
		TraceParent: traceparent}, nil
}

// SettleRefund records o for c if c's fence is still current, with its
// ledger transaction: paid on success; on failure, the reservation is
// released on the payment and reversed in the ledger; or the mismatch that
// holds it.
func (s *Store) SettleRefund(ctx context.Context, c *RefundClaim, o Outcome) (err error) {
	ctx, span := startSettle(ctx, "refund", refundIDKey.String(c.ID), o, "worker")
	defer func() { endSpan(span, err) }()
	err = s.db.InTx(ctx, func(q database.Querier) error {
		r := *c.Refund
		err := q.QueryRow(ctx, s.sql.settleRefund, c.ID, c.Fence, o.State, nullable(o.ProviderID),
			nullable(o.FailureCode), nullable(o.FailureMessage), o.Due.Milliseconds(), o.Sent, o.holdKind()).Scan(&r.PaymentID, &r.AccountID, &r.Amount, &r.Currency)
		switch {
		case errors.Is(err, database.ErrNoRows):
			return ErrFenced
		case err != nil:
			return err
		case o.Hold != nil:
			return s.recordMismatch(ctx, q, o.Hold)
		case o.endsEscalation:
			if err := s.resolveMismatches(ctx, q, c.ProviderKey, []string{MismatchUnresolved}, ""); err != nil {
				return err
			}
		}
		return s.finishRefund(ctx, q, &r, o.State)
	})
	if errors.Is(err, ErrFenced) {
		return err
	}
	if err != nil {
		return wrap("settle refund", err)
	}
	if o.final() && o.Hold == nil {
		s.metrics.settledAs("refund", o.State, byWorker, 0)
	}
	return nil
}

// SettleRefundByKey is SettleByKey for the refund with the provider key.
func (s *Store) SettleRefundByKey(ctx context.Context, providerKey string, o Outcome, actor, why string) (_ bool, err error) {
	if !o.final() || o.Hold != nil {
		return false, fmt.Errorf("payments: settle refund by key: %s is not a final state", o.State)
	}
	ctx, span := startSettle(ctx, "refund", providerKeyKey.String(providerKey), o, actor)
	defer func() { endSpan(span, err) }()
	var settled bool
	err = s.db.InTx(ctx, func(q database.Querier) error {
		settled = false
		var (
			r           Refund
			traceparent string
		)
		err := q.QueryRow(ctx, s.sql.settleRefundByKey, providerKey, o.State, nullable(o.ProviderID),
			nullable(o.FailureCode), nullable(o.FailureMessage)).Scan(&r.ID, &r.PaymentID, &r.AccountID, &r.Amount, &r.Currency, &traceparent)
		if errors.Is(err, database.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		settled = true
		span.SetAttributes(refundIDKey.String(r.ID))
		linkTo(ctx, traceparent)
		if err := s.finishRefund(ctx, q, &r, o.State); err != nil {
			return err
		}
		if err := s.resolveMismatches(ctx, q, providerKey, []string{MismatchUnresolved}, ""); err != nil {
			return err
		}
		return s.audit(ctx, q, actor, "settle_refund", r.PaymentID, fmt.Sprintf("%s: refund %s as %s", why, r.ID, o.State))
	})
	span.SetAttributes(changedKey.Bool(settled))
	if err != nil {
		return false, wrap("settle refund by key", err)
	}
	if settled {
		s.metrics.settledAs("refund", o.State, actor, 0)
	}
	return settled, nil
}

// HoldRefundByKey is HoldByKey for the refund with m's provider key.
func (s *Store) HoldRefundByKey(ctx context.Context, m *Mismatch, actor, why string) (bool, error) {
	return s.holdByKey(ctx, s.sql.holdRefundByKey, m, actor, why)
}

// refundByKey returns the refund with the provider key, of any account.
func (s *Store) refundByKey(ctx context.Context, key string) (*Refund, error) {
	r, err := scanRefund(s.db.QueryRow(ctx, s.sql.refundByKey, key))
	if errors.Is(err, database.ErrNoRows) {
		return nil, ErrNotFound
	}
	return r, wrap("find refund", err)
}

// finishRefund posts what a refund's new state means for the ledger, in
// q's transaction.
func (s *Store) finishRefund(ctx context.Context, q database.Querier, r *Refund, state string) error {
	payable, merchant := refundsPayableAccount(r.AccountID), merchantAccount(r.AccountID)
	switch state {
	case StateSucceeded:
		return s.post(ctx, q, txnRefund, r.ID, r.Currency, payable, clearingAccount, r.Amount)
	case StateFailed:
		if _, err := q.Exec(ctx, s.sql.releaseRefund, r.PaymentID, r.Amount); err != nil {
			return err
		}
		return s.post(ctx, q, txnRefundReversal, r.ID, r.Currency, payable, merchant, r.Amount)
	}
	return nil
}

func scanRefund(row database.Row, extra ...any) (*Refund, error) {
	var (
		r                Refund
		created, updated int64
	)
	dest := append([]any{&r.ID, &r.PaymentID, &r.AccountID, &r.Amount, &r.Currency, &r.ChargeID, &r.State, &r.Fence,
		&r.Attempts, &r.ProviderKey, &r.ProviderRefundID, &r.FailureCode, &r.FailureMessage, &r.Hold, &created, &updated}, extra...)
	if err := row.Scan(dest...); err != nil {
		return nil, err
	}
	r.CreatedAt, r.UpdatedAt = fromMillis(created), fromMillis(updated)
	return &r, nil
}
