package payments

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/idemhq/idem/payd/internal/database"
	"github.com/idemhq/idem/payd/internal/provider"
)

// ApplyEvent applies a verified provider webhook event: a charge or refund
// the provider decided settles the payment or refund with its key, if it
// is not final yet and the provider's record is the one payd asked for,
// the same way a worker would have (SettleByKey); one that is not is held
// (HoldByKey). Events may come late, twice and out of order, so an event
// never overrides a final state: if it disagrees with one, the provider is
// asked again, and what still disagrees is recorded as an open mismatch,
// never applied and never dropped silently (TestLateRefundEventContradicts).
// A final state changes only through an audited correction (Correct). It
// returns an error only for a failure worth the sender's retry.
func (s *Store) ApplyEvent(ctx context.Context, prov provider.Provider, ev provider.Event) error {
	why := "webhook " + ev.ID
	switch ev.Type {
	case provider.EventChargeSucceeded, provider.EventChargeFailed:
		var ch provider.Charge
		if err := json.Unmarshal(ev.Data, &ch); err != nil || ch.IdempotencyKey == "" {
			s.log.WarnContext(ctx, "payd: dropping a provider event whose charge cannot be read", slog.String("event", ev.ID), slog.Any("error", err))
			return nil
		}
		p, err := s.byProviderKey(ctx, ch.IdempotencyKey)
		if errors.Is(err, ErrNotFound) {
			p, err = nil, nil
		}
		if err != nil {
			return err
		}
		_, _, err = s.reckonCharge(ctx, prov, ch, p, "webhook", why)
		return err
	case provider.EventRefundSucceeded, provider.EventRefundFailed:
		var pr provider.Refund
		if err := json.Unmarshal(ev.Data, &pr); err != nil || pr.IdempotencyKey == "" {
			s.log.WarnContext(ctx, "payd: dropping a provider event whose refund cannot be read", slog.String("event", ev.ID), slog.Any("error", err))
			return nil
		}
		r, err := s.refundByKey(ctx, pr.IdempotencyKey)
		if errors.Is(err, ErrNotFound) {
			r, err = nil, nil
		}
		if err != nil {
			return err
		}
		_, _, err = s.reckonRefund(ctx, prov, pr, r, "webhook", why)
		return err
	}
	s.log.InfoContext(ctx, "payd: ignoring a provider event of a type payd does not use", slog.String("event", ev.ID), slog.String("type", ev.Type))
	return nil
}

// reckoning is what a look at the provider's record under a key found.
type reckoning int

const (
	reckonMatched  reckoning = iota // payd and the provider agree
	reckonSettled                   // a payment or refund not yet final was settled by it
	reckonHeld                      // one not yet final was held: the provider's record is not the one payd asked for
	reckonMismatch                  // recorded as a mismatch
	reckonIgnored                   // nothing to compare: a decline payd never recorded, a status that decides nothing
)

// reckonCharge settles p, the payment with ch's provider key (nil if payd
// has none), to ch's outcome if it is not final yet and ch is the charge
// it asked for, holds it if ch is not, or else checks ch against it and
// records any mismatch. An actor that may hold stale news (a webhook)
// asks the provider again before it calls a final state wrong. It says
// which, with the mismatch.
func (s *Store) reckonCharge(ctx context.Context, prov provider.Provider, ch provider.Charge, p *Payment, actor, why string) (reckoning, *Mismatch, error) {
	o := chargeOutcome(ch)
	if !o.final() {
		return reckonIgnored, nil, nil
	}
	if p == nil {
		if ch.Status != provider.StatusSucceeded {
			return reckonIgnored, nil, nil
		}
		m := &Mismatch{Kind: MismatchLostCharge, ProviderKey: ch.IdempotencyKey, ProviderID: ch.ID, SubjectAt: ch.Created,
			Detail: fmt.Sprintf("the provider charged %d %s under key %s, and payd has no payment with that key", ch.Amount, ch.Currency, ch.IdempotencyKey)}
		return reckonMismatch, m, s.record(ctx, m)
	}
	if !p.Final() && p.Hold != "" && actor == "webhook" {
		// A hold is lifted by the provider's record, never by an event's
		// copy of it (TestWebhookNeverLiftsAHoldOnItsOwn).
		cur, err := prov.ChargeByKey(ctx, ch.IdempotencyKey)
		switch {
		case errors.Is(err, provider.ErrNotFound):
			return reckonIgnored, nil, nil
		case err != nil:
			return 0, nil, fmt.Errorf("payments: re-fetch charge %s: %w", ch.ID, err)
		}
		if ch, o = cur, chargeOutcome(cur); !o.final() {
			return reckonIgnored, nil, nil
		}
	}
	if !p.Final() {
		if m := chargeDiffers(p, ch); m != nil {
			if p.Hold == m.Kind { // held already: the mismatch stands
				return reckonHeld, m, s.record(ctx, m)
			}
			held, err := s.HoldByKey(ctx, m, actor, why)
			if err != nil || held {
				return reckonHeld, m, err
			}
		} else {
			settled, err := s.SettleByKey(ctx, ch.IdempotencyKey, o, actor, why)
			if err != nil || settled {
				return reckonSettled, nil, err
			}
		}
		// Final meanwhile, by a worker or another replica: compare.
		var err error
		if p, err = s.byProviderKey(ctx, ch.IdempotencyKey); err != nil {
			return 0, nil, err
		}
	}
	if p.State != o.State && actor == "webhook" {
		// The event disagrees with a final state: it may be stale, so the
		// provider's current record decides.
		cur, err := prov.ChargeByKey(ctx, ch.IdempotencyKey)
		switch {
		case err == nil:
			ch, o = cur, chargeOutcome(cur)
		case !errors.Is(err, provider.ErrNotFound):
			return 0, nil, fmt.Errorf("payments: re-fetch charge %s: %w", ch.ID, err)
		}
	}
	m := finalChargeDiffers(p, ch, o)
	if m == nil {
		return reckonMatched, nil, nil
	}
	return reckonMismatch, m, s.record(ctx, m)
}

// finalChargeDiffers is the mismatch between a final payment and the
// provider's charge under its key with outcome o, or nil.
func finalChargeDiffers(p *Payment, ch provider.Charge, o Outcome) *Mismatch {
	if m := chargeDiffers(p, ch); m != nil {
		return m
	}
	m := &Mismatch{ProviderKey: p.ProviderKey, AccountID: p.AccountID, PaymentID: p.ID, ProviderID: ch.ID}
	switch {
	case o.State == StateSucceeded && p.State != StateSucceeded:
		m.Kind, m.SubjectAt = MismatchLostCharge, ch.Created
		m.Detail = fmt.Sprintf("the provider's charge %s of %d %s succeeded; payment %s is %s", ch.ID, ch.Amount, ch.Currency, p.ID, p.State)
	case o.State != StateSucceeded && p.State == StateSucceeded:
		m.Kind, m.SubjectAt = MismatchMissingCharge, p.CreatedAt
		m.Detail = fmt.Sprintf("payment %s succeeded; the provider's charge %s under its key is %s", p.ID, ch.ID, ch.Status)
	default:
		return nil
	}
	return m
}

// reckonRefund is reckonCharge for a refund: r is the refund with pr's
// provider key, nil if payd has none.
func (s *Store) reckonRefund(ctx context.Context, prov provider.Provider, pr provider.Refund, r *Refund, actor, why string) (reckoning, *Mismatch, error) {
	o := refundOutcome(pr)
	if !o.final() {
		return reckonIgnored, nil, nil
	}
	if r == nil {
		if pr.Status != provider.StatusSucceeded {
			return reckonIgnored, nil, nil
		}
		m := &Mismatch{Kind: MismatchLostRefund, ProviderKey: pr.IdempotencyKey, ProviderID: pr.ID, SubjectAt: pr.Created,
			Detail: fmt.Sprintf("the provider refunded %d of charge %s under key %s, and payd has no refund with that key", pr.Amount, pr.ChargeID, pr.IdempotencyKey)}
		return reckonMismatch, m, s.record(ctx, m)
	}
	if !r.final() && r.Hold != "" && actor == "webhook" {
		cur, err := prov.RefundByKey(ctx, pr.IdempotencyKey)
		switch {
		case errors.Is(err, provider.ErrNotFound):
			return reckonIgnored, nil, nil
		case err != nil:
			return 0, nil, fmt.Errorf("payments: re-fetch refund %s: %w", pr.ID, err)
		}
		if pr, o = cur, refundOutcome(cur); !o.final() {
			return reckonIgnored, nil, nil
		}
	}
	if !r.final() {
		if m := refundDiffers(r, pr); m != nil {
			if r.Hold == m.Kind {
				return reckonHeld, m, s.record(ctx, m)
			}
			held, err := s.HoldRefundByKey(ctx, m, actor, why)
			if err != nil || held {
				return reckonHeld, m, err
			}
		} else {
			settled, err := s.SettleRefundByKey(ctx, pr.IdempotencyKey, o, actor, why)
			if err != nil || settled {
				return reckonSettled, nil, err
			}
		}
		var err error
		if r, err = s.refundByKey(ctx, pr.IdempotencyKey); err != nil {
			return 0, nil, err
		}
	}
	if r.State != o.State && actor == "webhook" {
		cur, err := prov.RefundByKey(ctx, pr.IdempotencyKey)
		switch {
		case err == nil:
			pr, o = cur, refundOutcome(cur)
		case !errors.Is(err, provider.ErrNotFound):
			return 0, nil, fmt.Errorf("payments: re-fetch refund %s: %w", pr.ID, err)
		}
	}
	m := finalRefundDiffers(r, pr, o)
	if m == nil {
		return reckonMatched, nil, nil
	}
	return reckonMismatch, m, s.record(ctx, m)
}

// finalRefundDiffers is finalChargeDiffers for a final refund.
func finalRefundDiffers(r *Refund, pr provider.Refund, o Outcome) *Mismatch {
	if m := refundDiffers(r, pr); m != nil {
		return m
	}
	m := &Mismatch{ProviderKey: r.ProviderKey, AccountID: r.AccountID, PaymentID: r.PaymentID, RefundID: r.ID, ProviderID: pr.ID}
	switch {
	case o.State == StateSucceeded && r.State != StateSucceeded:
		m.Kind, m.SubjectAt = MismatchLostRefund, pr.Created
		m.Detail = fmt.Sprintf("the provider's refund %s of %d on charge %s succeeded; refund %s is %s", pr.ID, pr.Amount, pr.ChargeID, r.ID, r.State)
	case o.State != StateSucceeded && r.State == StateSucceeded:
		m.Kind, m.SubjectAt = MismatchMissingRefund, r.CreatedAt
		m.Detail = fmt.Sprintf("refund %s succeeded; the provider's refund %s under its key is %s", r.ID, pr.ID, pr.Status)
	default:
		return nil
	}
	return m
}

// record records m on its own.
func (s *Store) record(ctx context.Context, m *Mismatch) error {
	return s.db.Write(ctx, func(ctx context.Context) error { return s.recordMismatch(ctx, s.db, m) })
}

// byProviderKey returns the payment with the provider key, of any account.
func (s *Store) byProviderKey(ctx context.Context, key string) (*Payment, error) {
	p, err := scanPayment(s.db.QueryRow(ctx, s.sql.paymentByKey, key))
	if errors.Is(err, database.ErrNoRows) {
		return nil, ErrNotFound
	}
	return p, wrap("find payment", err)
}
