package api

import (
	"errors"
	"io"
	"log/slog"
	"net/http"

	"github.com/idemhq/idem/payd/internal/payments"
)

// refundRequest is the body of POST /v1/charges/{id}/refunds: an empty
// body, {} or an amount of null refunds what is left of the charge.
type refundRequest struct {
	Amount *int64 `json:"amount"`
}

func parseRefund(body []byte) (*refundRequest, error) {
	var req refundRequest
	if len(body) == 0 {
		return &req, nil
	}
	if err := decodeJSON(body, &req); err != nil {
		return nil, err
	}
	if req.Amount == nil {
		return &req, nil
	}
	return &req, checkAmount(req.Amount)
}

// amount is the amount to refund, payments.RefundWhatIsLeft if none was
// given.
func (req *refundRequest) amount() int64 {
	if req.Amount == nil {
		return payments.RefundWhatIsLeft
	}
	return *req.Amount
}

func checkRefund(body []byte) error {
	_, err := parseRefund(body)
	return err
}

// createRefund accepts a refund of part or all of a succeeded charge,
// under the idempotency middleware: 201 and the refund, in the same
// transaction as the response. Without an amount it refunds what is left
// (TestRefundOfWhatIsLeft). An amount over the whole charge gets 400,
// recorded like any answer: it can never pass. A refusal that depends on
// the charge's state, which can change, gets 409, which the middleware
// never records (Config.RetryStatuses): a charge not succeeded yet
// (charge_not_succeeded), an amount over what is left to refund while
// other refunds are still pending (amount_exceeds_refundable), nothing
// left at all (nothing_left_to_refund). A retry with the same key is then
// judged afresh (TestStateRefusalsAreNotRecorded).
func (s *server) createRefund() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			fail(w, http.StatusBadRequest, "unreadable_body", "", unreadableBody)
			return
		}
		req, err := parseRefund(body)
		if err != nil { // validate let it through: a bug
			s.log.ErrorContext(r.Context(), "payd: a refund request passed validation once and failed it again", slog.Any("error", err))
			internalError(w)
			return
		}
		ref, err := s.store.CreateRefund(r.Context(), accountFrom(r.Context()), r.PathValue("id"), req.amount())
		refused, isRefused := errors.AsType[*payments.RefundRefused](err)
		switch {
		case errors.Is(err, payments.ErrNotFound):
			fail(w, http.StatusNotFound, "not_found", "id", noSuchCharge)
		case isRefused && refused.Final():
			fail(w, http.StatusBadRequest, refused.Code, "amount", refused.Detail)
		case isRefused && refused.Code == "amount_exceeds_refundable":
			fail(w, http.StatusConflict, refused.Code, "amount", refused.Detail)
		case isRefused:
			fail(w, http.StatusConflict, refused.Code, "", refused.Detail)
		case err != nil:
			s.failed(r, "payd: creating a refund failed", err)
			internalError(w)
		default:
			encode(w, http.StatusCreated, ref.View())
		}
	})
}

// notifyRefunds wakes a worker of this process for a refund created by
// the request, once next, the idempotent layer, has committed it: a worker
// woken before the commit would not see it.
func (s *server) notifyRefunds(next http.Handler) http.Handler {
	if s.processor == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &captured{header: http.Header{}}
		next.ServeHTTP(rec, r)
		if rec.status == http.StatusCreated && rec.header.Get("Idempotent-Replayed") != "true" {
			s.processor.NotifyRefund()
		}
		rec.writeTo(w)
	})
}
