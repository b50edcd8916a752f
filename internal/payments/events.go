package payments

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/idemhq/idem/internal/provider"
)

// ApplyEvent applies a verified provider webhook event: a charge or refund
// the provider made settles the payment or refund with its key, if a
// worker has not settled it yet, the same way the worker would have
// (SettleByKey). Events may come late, twice and out of order, so an event
// never overrides a final state: if it disagrees with one, the provider is
// asked again, and a real disagreement is recorded as a reconciliation
// mismatch, never fixed silently. It returns an error only for a failure
// worth the sender's retry.
func (s *Store) ApplyEvent(ctx context.Context, prov provider.Provider, ev provider.Event) error {
	why := "webhook " + ev.ID
	switch ev.Type {
	case provider.EventChargeSucceeded, provider.EventChargeFailed:
		var ch provider.Charge
		if err := json.Unmarshal(ev.Data, &ch); err != nil || ch.IdempotencyKey == "" {
			s.log.Warn("payd: dropping a provider event whose charge cannot be read", slog.String("event", ev.ID), slog.Any("error", err))
			return nil
		}
		p, err := s.byProviderKey(ctx, ch.IdempotencyKey)
		if errors.Is(err, ErrNotFound) {
			p, err = nil, nil
		}
		if err != nil {
			return err
		}
		_, _, err = s.checkCharge(ctx, prov, ch, p, "webhook", why)
		return err
	case provider.EventRefundSucceeded:
		var r provider.Refund
		if err := json.Unmarshal(ev.Data, &r); err != nil || r.IdempotencyKey == "" {
			s.log.Warn("payd: dropping a provider event whose refund cannot be read", slog.String("event", ev.ID), slog.Any("error", err))
			return nil
		}
		return s.applyRefund(ctx, r, why)
	}
	s.log.Info("payd: ignoring a provider event of a type payd does not use", slog.String("event", ev.ID), slog.String("type", ev.Type))
	return nil
}

// chargeCheck is what checkCharge found.
type chargeCheck int

const (
	chargeMatched  chargeCheck = iota
	chargeSettled              // a payment not yet final was settled by it
	chargeMismatch             // recorded as a mismatch
	chargeIgnored              // nothing to compare: a decline payd never recorded
)

// checkCharge settles p, the payment with ch's provider key (nil if payd
// has none), to ch's outcome if it is not final yet, or else checks ch
// against it and records any mismatch. It says which, with the mismatch.
func (s *Store) checkCharge(ctx context.Context, prov provider.Provider, ch provider.Charge, p *Payment, actor, why string) (chargeCheck, Mismatch, error) {
	c, m, err := s.compareCharge(ctx, prov, ch, p, actor, why)
	if err == nil && c == chargeMismatch {
		err = s.recordMismatch(ctx, m)
	}
	return c, m, err
}

// compareCharge is checkCharge without recording the mismatch.
func (s *Store) compareCharge(ctx context.Context, prov provider.Provider, ch provider.Charge, p *Payment, actor, why string) (chargeCheck, Mismatch, error) {
	o := chargeOutcome(ch)
	if !o.final() {
		return chargeIgnored, Mismatch{}, nil
	}
	if p == nil {
		if ch.Status != provider.StatusSucceeded {
			return chargeIgnored, Mismatch{}, nil
		}
		return chargeMismatch, Mismatch{Kind: MismatchLostCharge, ProviderChargeID: ch.ID, SubjectAt: ch.Created,
			Detail: fmt.Sprintf("the provider charged %d %s under key %s, and payd has no payment with that key", ch.Amount, ch.Currency, ch.IdempotencyKey)}, nil
	}
	if !p.Final() {
		settled, err := s.SettleByKey(ctx, ch.IdempotencyKey, o, actor, why)
		if err != nil || settled {
			return chargeSettled, Mismatch{}, err
		}
		// Settled meanwhile by a worker or another replica: compare.
		if p, err = s.byProviderKey(ctx, ch.IdempotencyKey); err != nil {
			return 0, Mismatch{}, err
		}
	}
	if p.State != o.State && actor == "webhook" {
		// The event disagrees with a final state: it may be stale, so the
		// provider's current answer decides.
		cur, err := prov.ChargeByKey(ctx, ch.IdempotencyKey)
		if err != nil {
			return 0, Mismatch{}, fmt.Errorf("payments: re-fetch charge %s: %w", ch.ID, err)
		}
		ch, o = cur, chargeOutcome(cur)
	}
	switch {
	case ch.Amount != p.Amount || ch.Currency != p.Currency:
		return chargeMismatch, Mismatch{Kind: MismatchAmount, PaymentID: p.ID, ProviderChargeID: ch.ID, SubjectAt: ch.Created,
			Detail: fmt.Sprintf("payment %s is %d %s; the provider's charge %s is %d %s", p.ID, p.Amount, p.Currency, ch.ID, ch.Amount, ch.Currency)}, nil
	case o.State == StateSucceeded && p.State != StateSucceeded:
		return chargeMismatch, Mismatch{Kind: MismatchLostCharge, PaymentID: p.ID, ProviderChargeID: ch.ID, SubjectAt: ch.Created,
			Detail: fmt.Sprintf("the provider's charge %s of %d %s succeeded; payment %s is %s", ch.ID, ch.Amount, ch.Currency, p.ID, p.State)}, nil
	case o.State != StateSucceeded && p.State == StateSucceeded:
		return chargeMismatch, Mismatch{Kind: MismatchMissingCharge, PaymentID: p.ID, ProviderChargeID: ch.ID, SubjectAt: p.CreatedAt,
			Detail: fmt.Sprintf("payment %s succeeded; the provider's charge %s under its key is %s", p.ID, ch.ID, ch.Status)}, nil
	}
	return chargeMatched, Mismatch{}, nil
}

// applyRefund settles the refund the provider reports paid. A refund the
// provider made that payd has no record of is recorded as a mismatch.
func (s *Store) applyRefund(ctx context.Context, r provider.Refund, why string) error {
	o := refundOutcome(r)
	if !o.final() {
		return nil
	}
	settled, err := s.SettleRefundByKey(ctx, r.IdempotencyKey, o, "webhook", why)
	if err != nil || settled {
		return err
	}
	var n int
	if err := s.pool.queryRow(ctx, s.sql.refundByKey, r.IdempotencyKey).Scan(&n); err != nil {
		return wrap("find refund", err)
	}
	if n == 0 {
		return s.recordMismatch(ctx, Mismatch{Kind: MismatchLostRefund, ProviderChargeID: r.ChargeID, SubjectAt: r.Created,
			Detail: fmt.Sprintf("the provider refunded %d of charge %s under key %s, and payd has no refund with that key", r.Amount, r.ChargeID, r.IdempotencyKey)})
	}
	return nil
}

// byProviderKey returns the payment with the provider key, of any account.
func (s *Store) byProviderKey(ctx context.Context, key string) (*Payment, error) {
	p, err := scanPayment(s.pool.queryRow(ctx, s.sql.paymentByKey, key))
	if errors.Is(err, errNoRows) {
		return nil, ErrNotFound
	}
	return p, wrap("find payment", err)
}
