package payments

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/idemhq/idem/payd/internal/database"
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
	// Sent says the attempt may have left a request under the provider
	// key at the provider, still to be acted on: the row's sent_at moves
	// to now. An attempt refused before it was sent, or answered with a
	// provider error that says it did nothing, leaves it as it was.
	Sent bool
	// Hold, if set, is the mismatch that holds the payment or refund: the
	// provider's record under its key is not the one payd asked for. The
	// row stays unknown, is never claimed again, and the mismatch is
	// recorded with it.
	Hold *Mismatch
	// endsEscalation: a final outcome that also resolves the
	// outcome_unresolved mismatch its key may have, in the same
	// transaction (a worker's, near the end of the key window).
	endsEscalation bool
}

func (o Outcome) final() bool { return o.State == StateSucceeded || o.State == StateFailed }

// holdKind is the hold column's value for o.
func (o Outcome) holdKind() any {
	if o.Hold == nil {
		return nil
	}
	return o.Hold.Kind
}

// ErrFenced is returned by Settle when the caller's fence is no longer the
// payment's: another worker has claimed it since, or a webhook or
// reconciliation has settled it, and that decides it.
var ErrFenced = errors.New("payments: lease lost: a newer claim holds the payment")

// Settle records o for c if c's fence is still current, and posts the
// ledger's charge transaction in the same database transaction if o is
// success, or records the mismatch that holds it. It returns the payment
// as settled.
func (s *Store) Settle(ctx context.Context, c *Claim, o Outcome) (_ *Payment, err error) {
	ctx, span := startSettle(ctx, "payment", paymentIDKey.String(c.ID), o, "worker")
	defer func() { endSpan(span, err) }()
	args := []any{c.ID, c.Fence, o.State, nullable(o.ProviderID), nullable(o.FailureCode), nullable(o.FailureMessage),
		o.Due.Milliseconds(), o.Sent, o.holdKind()}
	if s.sql.settleAndPost != "" && o.Hold == nil && !o.endsEscalation {
		args = append(args, newID("txn_"), rand.IntN(balanceSlots))
		p, err := scanPayment(s.db.QueryRow(ctx, s.sql.settleAndPost, args...))
		if errors.Is(err, database.ErrNoRows) {
			return nil, ErrFenced
		}
		if err != nil {
			return nil, wrap("settle payment", err)
		}
		s.countSettled(p, o)
		return p, nil
	}
	var p *Payment
	err = s.db.InTx(ctx, func(q database.Querier) error {
		var err error
		p, err = scanPayment(q.QueryRow(ctx, s.sql.settle, args...))
		switch {
		case errors.Is(err, database.ErrNoRows):
			return ErrFenced
		case err != nil:
			return err
		case o.Hold != nil:
			return s.recordMismatch(ctx, q, o.Hold)
		case o.endsEscalation:
			if err := s.resolveMismatches(ctx, q, p.ProviderKey, []string{MismatchUnresolved}, ""); err != nil {
				return err
			}
		}
		if o.State != StateSucceeded {
			return nil
		}
		return s.postCharge(ctx, q, p.ID, p.AccountID, p.Currency, p.Amount)
	})
	if errors.Is(err, ErrFenced) {
		return nil, err
	}
	if err != nil {
		return nil, wrap("settle payment", err)
	}
	s.countSettled(p, o)
	return p, nil
}

// countSettled counts a worker's settlement of p to o, if o is final.
func (s *Store) countSettled(p *Payment, o Outcome) {
	if o.final() && o.Hold == nil {
		s.metrics.settledAs("payment", o.State, byWorker, p.UpdatedAt.Sub(p.CreatedAt))
	}
}

// SettleByKey records the final outcome o for the payment with the
// provider key, unless the payment is final already; it reports whether it
// did. It bumps the fence, so a worker still calling the provider for the
// payment is refused when it reports (ErrFenced), and lifts a hold: the
// caller has checked the provider's record against the payment. The
// settlement, its ledger transaction, an audit entry naming actor and why,
// and the resolution of an escalated unknown outcome commit together.
func (s *Store) SettleByKey(ctx context.Context, providerKey string, o Outcome, actor, why string) (_ bool, err error) {
	if !o.final() || o.Hold != nil {
		return false, fmt.Errorf("payments: settle by key: %s is not a final state", o.State)
	}
	ctx, span := startSettle(ctx, "payment", providerKeyKey.String(providerKey), o, actor)
	defer func() { endSpan(span, err) }()
	var (
		settled   bool
		ageMillis int64 // since the payment was accepted
	)
	err = s.db.InTx(ctx, func(q database.Querier) error {
		settled = false
		var (
			id, accountID, currency, traceparent string
			amount                               int64
		)
		err := q.QueryRow(ctx, s.sql.settleByKey, providerKey, o.State, nullable(o.ProviderID),
			nullable(o.FailureCode), nullable(o.FailureMessage)).Scan(&id, &accountID, &amount, &currency, &ageMillis, &traceparent)
		if errors.Is(err, database.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		settled = true
		span.SetAttributes(paymentIDKey.String(id))
		linkTo(ctx, traceparent)
		if o.State == StateSucceeded {
			if err := s.postCharge(ctx, q, id, accountID, currency, amount); err != nil {
				return err
			}
		}
		if err := s.resolveMismatches(ctx, q, providerKey, []string{MismatchUnresolved}, ""); err != nil {
			return err
		}
		return s.audit(ctx, q, actor, "settle_payment", id, fmt.Sprintf("%s: %s as %s", why, id, o.State))
	})
	span.SetAttributes(changedKey.Bool(settled))
	if err != nil {
		return false, wrap("settle payment by key", err)
	}
	if settled {
		s.metrics.settledAs("payment", o.State, actor, time.Duration(ageMillis)*time.Millisecond)
	}
	return settled, nil
}

// HoldByKey holds the payment with m's provider key, unless it is final:
// it stays unknown, is claimed by no worker and settled by no webhook or
// reconciliation until a look at its key finds the provider agreeing, and
// its fence is bumped so a worker still calling the provider is refused.
// It records m, and an audit entry, in the same transaction, and reports
// whether the payment was held.
func (s *Store) HoldByKey(ctx context.Context, m *Mismatch, actor, why string) (bool, error) {
	return s.holdByKey(ctx, s.sql.holdByKey, m, actor, why)
}

func (s *Store) holdByKey(ctx context.Context, stmt string, m *Mismatch, actor, why string) (bool, error) {
	var held bool
	err := s.db.InTx(ctx, func(q database.Querier) error {
		var id string
		switch err := q.QueryRow(ctx, stmt, m.ProviderKey, m.Kind).Scan(&id); {
		case errors.Is(err, database.ErrNoRows):
			held = false
		case err != nil:
			return err
		default:
			held = true
			if err := s.audit(ctx, q, actor, "hold", m.PaymentID, fmt.Sprintf("%s: %s held: %s", why, id, m.Detail)); err != nil {
				return err
			}
		}
		return s.recordMismatch(ctx, q, m)
	})
	return held, wrap("hold by key", err)
}

// audit appends to the audit log.
func (s *Store) audit(ctx context.Context, q database.Querier, actor, action, paymentID, detail string) error {
	_, err := q.Exec(ctx, s.sql.audit, newID("aud_"), actor, action, paymentID, detail)
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
	rs, err := s.db.Query(ctx, s.sql.auditOf, paymentID)
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
