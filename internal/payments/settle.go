package payments

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// Outcome is what is recorded for a payment or refund: by the worker that
// holds it, or, for a final outcome, by a webhook or reconciliation.
type Outcome struct {
	State string
	// ProviderID is the provider's id of the charge or refund.
	ProviderID     string
	FailureCode    string
	FailureMessage string
	// Due is how long until a retry_scheduled or unknown payment is due
	// again.
	Due time.Duration
}

func (o Outcome) final() bool { return o.State == StateSucceeded || o.State == StateFailed }

// ErrFenced is returned by Settle when the caller's fence is no longer the
// payment's: another worker has claimed it since, or a webhook or
// reconciliation has settled it, and that decides it.
var ErrFenced = errors.New("payments: lease lost: a newer claim holds the payment")

// Settle records o for c if c's fence is still current, and posts the
// ledger's charge transaction in the same database transaction if o is
// success. It returns the payment as settled.
func (s *Store) Settle(ctx context.Context, c *Claim, o Outcome) (*Payment, error) {
	args := []any{c.ID, c.Fence, o.State, nullable(o.ProviderID), nullable(o.FailureCode), nullable(o.FailureMessage), o.Due.Milliseconds()}
	if s.sql.settleAndPost != "" {
		args = append(args, newID("txn_"), rand.IntN(balanceSlots))
		p, err := scanPayment(s.pool.queryRow(ctx, s.sql.settleAndPost, args...))
		if errors.Is(err, errNoRows) {
			return nil, ErrFenced
		}
		return p, wrap("settle payment", err)
	}
	var p *Payment
	err := s.inTx(ctx, func(q querier) error {
		var err error
		p, err = scanPayment(q.queryRow(ctx, s.sql.settle, args...))
		if errors.Is(err, errNoRows) {
			return ErrFenced
		}
		if err != nil || o.State != StateSucceeded {
			return err
		}
		return s.postCharge(ctx, q, p.ID, p.AccountID, p.Currency, p.Amount)
	})
	if errors.Is(err, ErrFenced) {
		return nil, err
	}
	if err != nil {
		return nil, wrap("settle payment", err)
	}
	return p, nil
}

// SettleByKey records the final outcome o for the payment with the
// provider key, unless the payment is final already; it reports whether it
// did. It bumps the fence, so a worker still calling the provider for the
// payment is refused when it reports (ErrFenced). The settlement, its
// ledger transaction and an audit entry naming actor and why commit
// together.
func (s *Store) SettleByKey(ctx context.Context, providerKey string, o Outcome, actor, why string) (bool, error) {
	if !o.final() {
		return false, fmt.Errorf("payments: settle by key: %s is not a final state", o.State)
	}
	var settled bool
	err := s.inTx(ctx, func(q querier) error {
		settled = false
		var (
			id, accountID, currency string
			amount                  int64
		)
		err := q.queryRow(ctx, s.sql.settleByKey, providerKey, o.State, nullable(o.ProviderID),
			nullable(o.FailureCode), nullable(o.FailureMessage)).Scan(&id, &accountID, &amount, &currency)
		if errors.Is(err, errNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		settled = true
		if o.State == StateSucceeded {
			if err := s.postCharge(ctx, q, id, accountID, currency, amount); err != nil {
				return err
			}
		}
		return s.audit(ctx, q, actor, "settle_payment", id, fmt.Sprintf("%s: %s as %s", why, id, o.State))
	})
	return settled, wrap("settle payment by key", err)
}

// audit appends to the audit log.
func (s *Store) audit(ctx context.Context, q querier, actor, action, paymentID, detail string) error {
	_, err := q.exec(ctx, s.sql.audit, newID("aud_"), actor, action, paymentID, detail)
	return wrap("audit", err)
}

// AuditEntry is a line of the audit log: a change made by a webhook or by
// reconciliation rather than by the worker that held the payment.
type AuditEntry struct {
	ID        string    `json:"id"`
	At        time.Time `json:"at"`
	Actor     string    `json:"actor"`
	Action    string    `json:"action"`
	PaymentID string    `json:"payment_id,omitempty"`
	Detail    string    `json:"detail"`
}

// Audit returns the audit log's entries about a payment, oldest first.
func (s *Store) Audit(ctx context.Context, paymentID string) ([]AuditEntry, error) {
	rs, err := s.pool.query(ctx, s.sql.auditOf, paymentID)
	if err != nil {
		return nil, wrap("read the audit log", err)
	}
	defer rs.Close()
	var out []AuditEntry
	for rs.Next() {
		var (
			e  AuditEntry
			at int64
		)
		if err := rs.Scan(&e.ID, &at, &e.Actor, &e.Action, &e.PaymentID, &e.Detail); err != nil {
			return nil, wrap("read the audit log", err)
		}
		e.At = fromMillis(at)
		out = append(out, e)
	}
	return out, wrap("read the audit log", rs.Err())
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}
