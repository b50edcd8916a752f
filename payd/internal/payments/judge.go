package payments

import (
	"fmt"

	"github.com/idemhq/idem/payd/internal/provider"
)

// Before payd records anything the provider says about a charge or a
// refund, automatically (a worker's call or lookup, a webhook,
// reconciliation), it checks that the provider's record is the one payd
// asked for: the same amount and currency, for the same payment or refund
// (metadata), and the charge or refund it already recorded, if any. A
// record that differs is a mismatch: nothing is settled or posted, and a
// payment or refund not final is held until an operator corrects it
// (TestOtherAmountIsHeldNotSettled, TestWebhookOfAnotherAmountHolds).

// chargeDiffers is the mismatch between p and the provider's charge under
// its key, or nil if they are the same charge.
func chargeDiffers(p *Payment, ch provider.Charge) *Mismatch {
	var what string
	switch {
	case ch.Amount != p.Amount || ch.Currency != p.Currency:
		what = fmt.Sprintf("payment %s is %d %s; the provider's charge %s under its key is %d %s",
			p.ID, p.Amount, p.Currency, ch.ID, ch.Amount, ch.Currency)
	case differs(ch.Metadata["payment_id"], p.ID) || differs(ch.Metadata["reference"], p.Reference):
		what = fmt.Sprintf("payment %s (reference %q) does not match the provider's charge %s under its key, made for payment %q (reference %q)",
			p.ID, p.Reference, ch.ID, ch.Metadata["payment_id"], ch.Metadata["reference"])
	case p.ProviderChargeID != "" && p.ProviderChargeID != ch.ID:
		what = fmt.Sprintf("payment %s records charge %s; the provider's charge under its key is %s", p.ID, p.ProviderChargeID, ch.ID)
	default:
		return nil
	}
	return &Mismatch{Kind: MismatchAmount, ProviderKey: p.ProviderKey, AccountID: p.AccountID, PaymentID: p.ID,
		ProviderID: ch.ID, SubjectAt: p.CreatedAt, Detail: what}
}

// differs reports whether the provider's record states another value than
// payd's; one it does not state is not another.
func differs(stated, ours string) bool { return stated != "" && stated != ours }

// refundDiffers is chargeDiffers for a refund.
func refundDiffers(r *Refund, pr provider.Refund) *Mismatch {
	var what string
	switch {
	case pr.Amount != r.Amount || pr.ChargeID != r.ChargeID:
		what = fmt.Sprintf("refund %s is %d of charge %s; the provider's refund %s under its key is %d of %s",
			r.ID, r.Amount, r.ChargeID, pr.ID, pr.Amount, pr.ChargeID)
	case differs(pr.Metadata["refund_id"], r.ID):
		what = fmt.Sprintf("refund %s does not match the provider's refund %s under its key, made for refund %q",
			r.ID, pr.ID, pr.Metadata["refund_id"])
	case r.ProviderRefundID != "" && r.ProviderRefundID != pr.ID:
		what = fmt.Sprintf("refund %s records provider refund %s; the provider's refund under its key is %s", r.ID, r.ProviderRefundID, pr.ID)
	default:
		return nil
	}
	return &Mismatch{Kind: MismatchRefundAmount, ProviderKey: r.ProviderKey, AccountID: r.AccountID, PaymentID: r.PaymentID,
		RefundID: r.ID, ProviderID: pr.ID, SubjectAt: r.CreatedAt, Detail: what}
}

// chargeOutcome is the outcome of a charge the provider answered with, or
// a zero Outcome for a status that decides nothing.
func chargeOutcome(ch provider.Charge) Outcome {
	switch ch.Status {
	case provider.StatusSucceeded:
		return Outcome{State: StateSucceeded, ProviderID: ch.ID}
	case provider.StatusFailed:
		return Outcome{State: StateFailed, ProviderID: ch.ID, FailureCode: ch.DeclineCode, FailureMessage: "declined by the provider"}
	}
	return Outcome{}
}

// refundOutcome is the outcome of a refund the provider answered with, or
// a zero Outcome for a status that decides nothing.
func refundOutcome(r provider.Refund) Outcome {
	switch r.Status {
	case provider.StatusSucceeded:
		return Outcome{State: StateSucceeded, ProviderID: r.ID}
	case provider.StatusFailed:
		return Outcome{State: StateFailed, ProviderID: r.ID, FailureCode: "refund_failed", FailureMessage: "the provider failed the refund"}
	}
	return Outcome{}
}

// judgeCharge is what the provider's charge under p's key means for p, not
// final: its outcome, or, if the charge is not the one payd asked for, a
// hold.
func judgeCharge(p *Payment, ch provider.Charge) Outcome {
	if m := chargeDiffers(p, ch); m != nil {
		return Outcome{State: StateUnknown, Hold: m}
	}
	return chargeOutcome(ch)
}

// judgeRefund is judgeCharge for a refund.
func judgeRefund(r *Refund, pr provider.Refund) Outcome {
	if m := refundDiffers(r, pr); m != nil {
		return Outcome{State: StateUnknown, Hold: m}
	}
	return refundOutcome(pr)
}
