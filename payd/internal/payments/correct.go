package payments

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/idemhq/idem/payd/internal/database"
	"github.com/idemhq/idem/payd/internal/provider"
)

// Correction is what Correct changed.
type Correction struct {
	Mismatch Mismatch `json:"mismatch"`
	// Subject is the payment or refund corrected.
	Subject string `json:"subject"`
	From    string `json:"from"`
	To      string `json:"to"`
	// Posted is the kind of journal transaction the correction posted, or
	// "" if it posted none.
	Posted string `json:"posted,omitempty"`
}

// CorrectParams says which mismatch to correct, and who and why, for the
// audit log.
type CorrectParams struct {
	MismatchID string
	Actor      string
	Reason     string
	// MaxProviderDelay is ProcessorConfig's: a payment or refund not final
	// is never corrected to failed while a request under its key may be
	// outstanding at the provider, one sent within it or a worker's lease
	// still live. Default DefaultMaxProviderDelay.
	MaxProviderDelay time.Duration
}

// ErrNotCorrectable is wrapped by Correct's error for a mismatch it cannot
// correct on its own; the error says what to do instead.
var ErrNotCorrectable = errors.New("payments: not correctable by payd")

// Correct settles an open mismatch the way an operator decides it: by the
// provider's record, looked up again now. The payment or refund under the
// mismatch's key takes the provider's state, even a final one: a failed
// charge the provider made succeeds and is posted (charge); a succeeded
// charge the provider does not have fails and is reversed
// (charge_reversal); a failed refund the provider paid is reserved again
// and paid (refund_correction); a succeeded refund the provider does not
// have fails and its amount is released (refund_correction_reversal). The
// change, its ledger transaction, an audit entry naming actor and reason,
// and the mismatch's resolution commit together
// (TestCorrectionPostsAndAudits). It refuses, with ErrNotCorrectable, what
// a state cannot fix: a provider record of another amount, currency or
// reference (correct it at the provider first), a key payd has no payment
// or refund under, a subject corrected before, and a succeeded charge with
// refunds; and it refuses to fail a payment or refund not final while a
// request under its key may still be outstanding
// (TestCorrectionWaitsForOutstandingRequests).
func (s *Store) Correct(ctx context.Context, prov provider.Provider, cp CorrectParams) (*Correction, error) {
	if cp.Reason == "" || cp.Actor == "" {
		return nil, errors.New("payments: a correction needs an actor and a reason, for the audit log")
	}
	if cp.MaxProviderDelay <= 0 {
		cp.MaxProviderDelay = DefaultMaxProviderDelay
	}
	m, err := s.MismatchByID(ctx, cp.MismatchID)
	if err != nil {
		return nil, fmt.Errorf("payments: correct %s: %w", cp.MismatchID, err)
	}
	if m.ResolvedAt != nil {
		return nil, fmt.Errorf("payments: correct %s: it was resolved at %s", m.ID, m.ResolvedAt.Format("2006-01-02 15:04:05"))
	}
	c := &Correction{Mismatch: *m}
	p, err := s.byProviderKey(ctx, m.ProviderKey)
	switch {
	case err == nil:
		return c, s.correctPayment(ctx, prov, c, p, cp)
	case !errors.Is(err, ErrNotFound):
		return nil, err
	}
	r, err := s.refundByKey(ctx, m.ProviderKey)
	switch {
	case err == nil:
		return c, s.correctRefund(ctx, prov, c, r, cp)
	case !errors.Is(err, ErrNotFound):
		return nil, err
	}
	return nil, fmt.Errorf("%w: payd has no payment or refund under key %s, so there is nothing of payd's to correct; "+
		"settle it with the provider (refund the charge or reverse the refund there)", ErrNotCorrectable, m.ProviderKey)
}

func (s *Store) correctPayment(ctx context.Context, prov provider.Provider, c *Correction, p *Payment, cp CorrectParams) error {
	ch, err := prov.ChargeByKey(ctx, p.ProviderKey)
	if err != nil && !errors.Is(err, provider.ErrNotFound) {
		return fmt.Errorf("payments: correct: look up the provider's charge: %w", err)
	}
	found := err == nil
	if found {
		if d := chargeDiffers(&Payment{ID: p.ID, Amount: p.Amount, Currency: p.Currency, Reference: p.Reference}, ch); d != nil {
			return fmt.Errorf("%w: %s; payd corrects states, not amounts: make the provider's charge match (refund or void it there) first", ErrNotCorrectable, d.Detail)
		}
	}
	o := Outcome{State: StateFailed, FailureCode: "corrected", FailureMessage: "corrected: the provider has no succeeded charge under the key"}
	if found && ch.Status == provider.StatusSucceeded {
		o = Outcome{State: StateSucceeded, ProviderID: ch.ID}
	}
	c.Subject, c.From, c.To = p.ID, p.State, o.State
	return s.db.InTx(ctx, func(q database.Querier) error {
		if p.State != o.State {
			if err := s.changePayment(ctx, q, c, p, o, outstandingBound(p.Final(), o, cp)); err != nil {
				return err
			}
		}
		return s.closeCorrection(ctx, q, c, p.ID, cp.Actor, cp.Reason)
	})
}

// outstandingBound is correctSQL's $7: the provider's longest processing
// time in ms when a subject not final is to fail, else -1.
func outstandingBound(final bool, o Outcome, cp CorrectParams) int64 {
	if final || o.State != StateFailed {
		return -1
	}
	return cp.MaxProviderDelay.Milliseconds()
}

// errChanged is Correct's error for a subject that changed meanwhile, or
// may still be acted on by the provider.
func errChanged(subject string) error {
	return fmt.Errorf("payments: %s changed while it was being corrected, or a request under its key may still be outstanding at the provider "+
		"(one sent within its longest processing time, or a worker's lease live): nothing was changed; try again later", subject)
}

// changePayment moves p from its state to o's, posting what that means;
// bound is correctSQL's $7.
func (s *Store) changePayment(ctx context.Context, q database.Querier, c *Correction, p *Payment, o Outcome, bound int64) error {
	switch {
	case p.State == StateSucceeded && p.AmountRefunded > 0:
		return fmt.Errorf("%w: payment %s has %d refunded; its refunds need correcting first", ErrNotCorrectable, p.ID, p.AmountRefunded)
	case p.State == StateSucceeded:
		c.Posted = txnChargeReversal
	case o.State == StateSucceeded:
		c.Posted = txnCharge
	}
	// One correction per payment: a second would post a kind posted already.
	for _, kind := range []string{txnChargeReversal, c.Posted} {
		if kind == "" {
			continue
		}
		if posted, err := s.posted(ctx, q, kind, p.ID); err != nil || posted {
			return cmpErr(err, fmt.Errorf("%w: payment %s was corrected before, or its ledger already has a %s transaction; correct it by hand",
				ErrNotCorrectable, p.ID, kind))
		}
	}
	n, err := q.Exec(ctx, s.sql.correctPayment, p.ID, p.State, o.State, nullable(o.ProviderID), nullable(o.FailureCode), nullable(o.FailureMessage), bound)
	switch {
	case err != nil:
		return wrap("correct payment", err)
	case n == 0:
		return errChanged("payment " + p.ID)
	case c.Posted == txnCharge:
		return s.postCharge(ctx, q, p.ID, p.AccountID, p.Currency, p.Amount)
	case c.Posted == txnChargeReversal:
		return s.post(ctx, q, txnChargeReversal, p.ID, p.Currency, merchantAccount(p.AccountID), clearingAccount, p.Amount)
	}
	return nil
}

func (s *Store) correctRefund(ctx context.Context, prov provider.Provider, c *Correction, r *Refund, cp CorrectParams) error {
	pr, err := prov.RefundByKey(ctx, r.ProviderKey)
	if err != nil && !errors.Is(err, provider.ErrNotFound) {
		return fmt.Errorf("payments: correct: look up the provider's refund: %w", err)
	}
	found := err == nil
	if found {
		if d := refundDiffers(&Refund{ID: r.ID, Amount: r.Amount, ChargeID: r.ChargeID}, pr); d != nil {
			return fmt.Errorf("%w: %s; payd corrects states, not amounts: make the provider's refund match first", ErrNotCorrectable, d.Detail)
		}
	}
	o := Outcome{State: StateFailed, FailureCode: "corrected", FailureMessage: "corrected: the provider has no succeeded refund under the key"}
	if found && pr.Status == provider.StatusSucceeded {
		o = Outcome{State: StateSucceeded, ProviderID: pr.ID}
	}
	c.Subject, c.From, c.To = r.ID, r.State, o.State
	return s.db.InTx(ctx, func(q database.Querier) error {
		if r.State != o.State {
			if err := s.changeRefund(ctx, q, c, r, o, outstandingBound(r.final(), o, cp)); err != nil {
				return err
			}
		}
		return s.closeCorrection(ctx, q, c, r.PaymentID, cp.Actor, cp.Reason)
	})
}

// changeRefund moves r from its state to o's, posting what that means. A
// refund not final is settled as a worker would have; a final one is
// corrected, with the payment's refunded amount moved to match; bound is
// correctSQL's $7.
func (s *Store) changeRefund(ctx context.Context, q database.Querier, c *Correction, r *Refund, o Outcome, bound int64) error {
	if !r.final() {
		n, err := q.Exec(ctx, s.sql.correctRefund, r.ID, r.State, o.State, nullable(o.ProviderID), nullable(o.FailureCode), nullable(o.FailureMessage), bound)
		if err != nil || n == 0 {
			return cmpErr(wrap("correct refund", err), errChanged("refund "+r.ID))
		}
		c.Posted = map[string]string{StateSucceeded: txnRefund, StateFailed: txnRefundReversal}[o.State]
		return s.finishRefund(ctx, q, r, o.State)
	}
	kind, delta, debit, credit := txnRefundCorrection, r.Amount, merchantAccount(r.AccountID), clearingAccount
	if r.State == StateSucceeded {
		kind, delta, debit, credit = txnRefundCorrectionReversal, -r.Amount, clearingAccount, merchantAccount(r.AccountID)
	}
	for _, k := range []string{txnRefundCorrection, txnRefundCorrectionReversal} {
		if posted, err := s.posted(ctx, q, k, r.ID); err != nil || posted {
			return cmpErr(err, fmt.Errorf("%w: refund %s was corrected before; correct it by hand", ErrNotCorrectable, r.ID))
		}
	}
	var id string
	err := q.QueryRow(ctx, s.sql.adjustRefunded, r.PaymentID, delta).Scan(&id)
	if errors.Is(err, database.ErrNoRows) {
		return fmt.Errorf("%w: payment %s has not %d left to refund, which refund %s would take again; correct the other refunds first",
			ErrNotCorrectable, r.PaymentID, r.Amount, r.ID)
	}
	if err != nil {
		return wrap("correct refund", err)
	}
	n, err := q.Exec(ctx, s.sql.correctRefund, r.ID, r.State, o.State, nullable(o.ProviderID), nullable(o.FailureCode), nullable(o.FailureMessage), bound)
	if err != nil || n == 0 {
		return cmpErr(wrap("correct refund", err), errChanged("refund "+r.ID))
	}
	c.Posted = kind
	return s.post(ctx, q, kind, r.ID, r.Currency, debit, credit, r.Amount)
}

// closeCorrection audits c and resolves its mismatch, in q's transaction.
func (s *Store) closeCorrection(ctx context.Context, q database.Querier, c *Correction, paymentID, actor, reason string) error {
	detail := fmt.Sprintf("correction of mismatch %s (%s): %s %s to %s", c.Mismatch.ID, c.Mismatch.Kind, c.Subject, c.From, c.To)
	if c.From == c.To {
		detail = fmt.Sprintf("correction of mismatch %s (%s): %s already agrees with the provider (%s)", c.Mismatch.ID, c.Mismatch.Kind, c.Subject, c.To)
	}
	if c.Posted != "" {
		detail += ", posted " + c.Posted
	}
	if err := s.audit(ctx, q, actor, "correct", paymentID, detail+"; reason: "+reason); err != nil {
		return err
	}
	_, err := q.Exec(ctx, s.sql.resolveMismatch, c.Mismatch.Kind, c.Mismatch.ProviderKey)
	return wrap("resolve mismatch", err)
}

// posted reports whether the journal transaction kind for ref is posted.
func (s *Store) posted(ctx context.Context, q database.Querier, kind, ref string) (bool, error) {
	var n int
	err := q.QueryRow(ctx, s.sql.postedTxn, kind, ref).Scan(&n)
	return n > 0, wrap("read the ledger", err)
}

// cmpErr is err if it is not nil, else alt.
func cmpErr(err, alt error) error {
	if err != nil {
		return err
	}
	return alt
}
