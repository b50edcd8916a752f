package payments

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/idemhq/idem/payd/internal/provider"
)

// An attempt is what a worker does with a payment or refund it claimed.
// The rule for an outcome payd does not know (DESIGN §6), and why:
//
// A provider call that ended without an answer (a timeout, a reset after
// the request was written, a 409 for a key in flight) is unknown: the
// provider may have acted, or may act yet. A lookup by key that finds
// nothing proves nothing while a request under the key may still be in
// flight or queued at the provider, which can execute it later. So:
//
//  1. While attempts remain and the key window is open, an unknown outcome
//     is looked up, and if nothing is found the same request is sent again
//     under the same key. The provider's idempotency makes that safe: the
//     request returns the first one's result if that executed, is refused
//     as in flight (409) while it executes, or executes now, once, if it
//     never arrived (TestLateChargeIsNeverFailed).
//  2. Once attempts are spent, or the key window is near its end (past
//     it, a request under the key could be taken as new), nothing is sent
//     again: the payment is only looked up. A lookup that finds nothing
//     fails it only if no request under its key can have reached the
//     provider (every attempt was refused before it was sent, or answered
//     with an error that says the provider did nothing: a 429, a 503, a
//     refusal with nothing recorded under the key), or the last one
//     that may have did so longer ago than MaxProviderDelay, the longest
//     the provider takes to act on what it received. Otherwise it stays
//     unknown and is looked up again, with backoff, until the provider has
//     it or that time has passed
//     (TestNotFoundFailsOnlyWhenNothingCanBeOutstanding). A refund's
//     reservation is released only on such a failure or on the provider's
//     refusal (TestLateRefundKeepsItsReservation).
//  3. Near the end of the key window, a payment or refund still unknown
//     escalates: an open outcome_unresolved mismatch, a metric and a log
//     line. It is never sent under a new key (TestUnresolvedOutcomeEscalates).
//
// sent_at, recorded with each attempt's outcome, says when a request may
// last have been sent. A claim that takes over an expired lease folds in
// that lease's end, since its worker may have sent until then: its
// provider calls end when its lease does. A worker stopped past its lease
// in the instant between that check and its write could still send later;
// the fence refuses its outcome, the provider's idempotency keeps the
// charge single, and MaxProviderDelay should leave room for it.

// keyWindowMargin is how long before the end of the provider's key window
// a payment or refund is no longer sent, only looked up.
const keyWindowMargin = time.Hour

// task is a claimed payment or refund, as the processor drives it: the
// same discipline for both, with their own provider calls.
type task struct {
	kind, id    string // kind is "payment" or "refund"
	providerKey string
	fence       int64
	attempts    int
	traceparent string        // of the span that accepted it, "" if untraced
	moreDue     bool          // other work was due when it was claimed
	from        string        // the state it was claimed from
	age         time.Duration // since it was accepted
	sinceSent   time.Duration // since a request under the key may last have been sent; negative if none can have
	leaseEnd    time.Time     // by this process's clock; no request is sent after it
	// call sends the provider request under the task's provider key. An
	// answer the provider recorded (success or decline) is an Outcome,
	// checked against the task; anything else an error.
	call func(ctx context.Context) (Outcome, error)
	// lookup asks the provider what the task's key did, and checks it:
	// provider.ErrNotFound if it has nothing under the key.
	lookup func(ctx context.Context) (Outcome, error)
	settle func(ctx context.Context, o Outcome) error
	// settled runs once the task's final outcome is recorded.
	settled func()
	// subject describes what the task is about, for a mismatch.
	subject Mismatch
}

func (p *Processor) paymentTask(c *Claim, leaseEnd time.Time) *task {
	if c == nil {
		return nil
	}
	var final *Payment // as Settle recorded it
	return &task{
		kind: "payment", id: c.ID, providerKey: c.ProviderKey, fence: c.Fence, attempts: c.Attempts, from: c.From,
		traceparent: c.TraceParent, age: c.Age, sinceSent: c.SinceSent, moreDue: c.MoreDue, leaseEnd: leaseEnd,
		call: func(ctx context.Context) (Outcome, error) {
			ch, err := p.provider.Charge(ctx, provider.ChargeRequest{
				IdempotencyKey: c.ProviderKey,
				Amount:         c.Amount,
				Currency:       c.Currency,
				Metadata:       map[string]string{"payment_id": c.ID, "reference": c.Reference},
			})
			if ch.ID == "" || err != nil && provider.KindOf(err) != provider.KindDeclined {
				return Outcome{}, err
			}
			return judgeCharge(c.Payment, ch), err
		},
		lookup: func(ctx context.Context) (Outcome, error) {
			ch, err := p.provider.ChargeByKey(ctx, c.ProviderKey)
			if err != nil {
				return Outcome{}, err
			}
			return judgeCharge(c.Payment, ch), nil
		},
		settle: func(ctx context.Context, o Outcome) (err error) {
			final, err = p.store.Settle(ctx, c, o)
			return err
		},
		settled: func() { p.settled.Wake(c.ID, final) },
		subject: Mismatch{ProviderKey: c.ProviderKey, AccountID: c.AccountID, PaymentID: c.ID, SubjectAt: c.CreatedAt},
	}
}

func (p *Processor) refundTask(c *RefundClaim, leaseEnd time.Time) *task {
	if c == nil {
		return nil
	}
	return &task{
		kind: "refund", id: c.ID, providerKey: c.ProviderKey, fence: c.Fence, attempts: c.Attempts, from: c.From,
		traceparent: c.TraceParent, age: c.Age, sinceSent: c.SinceSent, moreDue: c.MoreDue, leaseEnd: leaseEnd,
		call: func(ctx context.Context) (Outcome, error) {
			r, err := p.provider.Refund(ctx, provider.RefundRequest{IdempotencyKey: c.ProviderKey, ChargeID: c.ChargeID, Amount: c.Amount,
				Metadata: map[string]string{"payment_id": c.PaymentID, "refund_id": c.ID}})
			if err != nil {
				return Outcome{}, err
			}
			return judgeRefund(c.Refund, r), nil
		},
		lookup: func(ctx context.Context) (Outcome, error) {
			r, err := p.provider.RefundByKey(ctx, c.ProviderKey)
			if err != nil {
				return Outcome{}, err
			}
			return judgeRefund(c.Refund, r), nil
		},
		settle:  func(ctx context.Context, o Outcome) error { return p.store.SettleRefund(ctx, c, o) },
		settled: func() {},
		subject: Mismatch{ProviderKey: c.ProviderKey, AccountID: c.AccountID, PaymentID: c.PaymentID, RefundID: c.ID, SubjectAt: c.CreatedAt},
	}
}

// process works one claimed task to its next state, by the rule above.
func (p *Processor) process(ctx context.Context, t *task) {
	ctx, span := p.startAttempt(ctx, t)
	defer span.End()
	m, log := p.cfg.Metrics, p.cfg.Logger.With(slog.String(t.kind, t.id), slog.Int64("fence", t.fence))
	if t.from == StateProcessing {
		m.sweep()
		log.Info("payd: re-driving work whose worker lost its lease")
	}
	p.failpoint(FailpointAfterClaim)

	closing := t.age > p.cfg.KeyWindow-keyWindowMargin
	spent := t.attempts > p.cfg.MaxAttempts
	if closing || spent || t.from == StateUnknown {
		o, err := t.lookup(ctx)
		if !errors.Is(err, provider.ErrNotFound) || closing || spent {
			p.settle(ctx, t, p.lookedUp(ctx, t, o, err, closing, log), closing, log)
			return
		}
		// Nothing under the key yet, and attempts remain: the same
		// request goes again, under the same key.
	}
	callCtx, cancel := context.WithDeadline(ctx, t.leaseEnd)
	sent := time.Now()
	o, err := t.call(callCtx)
	took := time.Since(sent)
	cancel()
	p.failpoint(FailpointAfterResponse)
	kind := provider.KindOf(err)
	m.providerCall(t.kind, kind, o.State, took)
	switch kind {
	case 0:
		if o.State == "" { // an answer that decides nothing
			o = Outcome{State: StateUnknown, Due: p.cfg.UnknownDelay}
		}
		o.Sent = true
	case provider.KindDeclined:
		if o.State != "" { // a decline the provider recorded under the key: final
			o.Sent = true
			break
		}
		// Refused with nothing recorded under the key: this request was not
		// acted on, which says nothing of an earlier one under the key, still
		// perhaps outstanding (TestResendRefusalWaitsForTheFirst).
		pe, _ := errors.AsType[*provider.Error](err)
		refused := Outcome{State: StateFailed, FailureCode: pe.Code, FailureMessage: pe.Message}
		if o = p.notFound(t, log); o.final() {
			o = refused
		} else {
			log.Warn("payd: the provider refused the request again while an earlier one under the key may still be outstanding; it stays unknown",
				slog.Any("error", err))
		}
	case provider.KindRetryable:
		acted := mayHaveActed(err)
		if acted {
			t.sinceSent = 0 // this request may be outstanding itself
		}
		if t.attempts >= p.cfg.MaxAttempts {
			lo, lerr := t.lookup(ctx)
			o = p.lookedUp(ctx, t, lo, lerr, closing, log)
			o.Sent = acted
			break
		}
		m.retry()
		o = Outcome{State: StateRetryScheduled, Due: backoff(t.attempts, p.cfg.RetryBase, p.cfg.RetryMax), Sent: acted}
		log.Info("payd: provider call failed and will be retried", slog.Int("attempt", t.attempts), slog.Duration("in", o.Due), slog.Any("error", err))
	default: // unknown: the provider may have acted, or may yet
		o = Outcome{State: StateUnknown, Due: p.cfg.UnknownDelay, Sent: true}
		log.Warn("payd: provider outcome unknown; it will be looked up, and the request sent again under the same key while attempts remain", slog.Any("error", err))
	}
	p.settle(ctx, t, o, closing, log)
}

// mayHaveActed reports whether a retryable answer can have come after the
// provider acted on the request (provider.Error.MayHaveActed), so the
// request counts as one that may be outstanding
// (TestFiveHundredsCountAsSent).
func mayHaveActed(err error) bool {
	pe, ok := errors.AsType[*provider.Error](err)
	return ok && pe.MayHaveActed()
}

// lookedUp is the outcome of a lookup of t's key made to settle it, with
// nothing more to be sent unless it found nothing and attempts remain.
func (p *Processor) lookedUp(ctx context.Context, t *task, o Outcome, err error, closing bool, log *slog.Logger) Outcome {
	switch {
	case err == nil && o.State != "":
		return o
	case err == nil:
		log.Info("payd: the provider's record under the key decides nothing yet; it is looked up again")
		o = Outcome{State: StateUnknown, Due: p.cfg.UnknownDelay}
	case errors.Is(err, provider.ErrNotFound):
		o = p.notFound(t, log)
	default:
		log.Warn("payd: provider lookup failed; the outcome stays unknown", slog.Any("error", err))
		o = Outcome{State: StateUnknown, Due: p.cfg.UnknownDelay}
	}
	if closing && !o.final() {
		p.escalate(ctx, t, log)
		o.Due = max(o.Due, p.cfg.RetryMax)
	}
	return o
}

// notFound is the outcome of a lookup that found nothing under t's key
// when nothing is to be sent again: failed only if no request under the
// key can still be outstanding at the provider.
func (p *Processor) notFound(t *task, log *slog.Logger) Outcome {
	switch {
	case t.sinceSent < 0:
		return Outcome{State: StateFailed, FailureCode: "provider_unavailable",
			FailureMessage: "the provider could not be reached in time, and no request under the key ever reached it"}
	case t.sinceSent > p.cfg.MaxProviderDelay:
		return Outcome{State: StateFailed, FailureCode: "provider_no_record",
			FailureMessage: "the provider has nothing under the key, and the last request under it is older than the provider's longest processing time"}
	}
	// Looked up again with backoff, and once more just past the bound.
	n := min(max(t.attempts-p.cfg.MaxAttempts, 0), 16)
	due := min(p.cfg.MaxProviderDelay-t.sinceSent+time.Millisecond, max(p.cfg.UnknownDelay, min(p.cfg.RetryMax, p.cfg.UnknownDelay<<n)))
	log.Info("payd: the provider has nothing under the key yet, and a request under it may still be in flight; it stays unknown and is looked up again",
		slog.Duration("since_sent", t.sinceSent), slog.Duration("in", due))
	return Outcome{State: StateUnknown, Due: due}
}

// escalate records that t's outcome is still unknown near the end of the
// key window: an open mismatch, a metric and a log line.
func (p *Processor) escalate(ctx context.Context, t *task, log *slog.Logger) {
	p.cfg.Metrics.unresolved(t.kind)
	m := t.subject
	m.Kind = MismatchUnresolved
	m.Detail = fmt.Sprintf("the outcome of %s %s is still unknown near the end of the provider's key window: it is only looked up from now on, "+
		"never sent again; settle it with the provider", t.kind, t.id)
	log.Error("payd: outcome still unknown near the end of the provider's key window; it needs an operator", slog.String("provider_key", t.providerKey))
	err := p.store.db.Write(ctx, func(ctx context.Context) error { return p.store.recordMismatch(ctx, p.store.db, &m) })
	if err != nil {
		log.Warn("payd: recording the unresolved outcome failed; the next look records it", slog.Any("error", err))
	}
}

func (p *Processor) settle(ctx context.Context, t *task, o Outcome, closing bool, log *slog.Logger) {
	o.endsEscalation = closing && o.final()
	err := t.settle(ctx, o)
	attempted(ctx, o, err)
	switch {
	case errors.Is(err, ErrFenced):
		p.leaseLost(ctx, t, log)
		t.settled() // waiters read it again: it may be final by another's hand
	case err != nil:
		log.Warn("payd: recording the outcome failed; the lease will expire and the same provider key is tried again", slog.Any("error", err))
	case o.Hold != nil:
		p.cfg.Metrics.held(t.kind)
		log.Error("payd: the provider's record under the key is not what payd asked for; held until an operator corrects it",
			slog.String("mismatch", o.Hold.Kind), slog.String("detail", o.Hold.Detail))
	case o.final(): // counted by the Store
		t.settled()
		log.Info("payd: settled", slog.String("state", o.State), slog.Int("attempts", t.attempts))
	}
}

// backoff is the wait before attempt n+1 after n failed: exponential, with
// full jitter.
func backoff(n int, base, ceiling time.Duration) time.Duration {
	d := ceiling
	if n < 32 && base<<(n-1) < ceiling && base<<(n-1) > 0 {
		d = base << (n - 1)
	}
	return rand.N(d + 1)
}
