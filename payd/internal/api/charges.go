package api

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/idemhq/idem/payd/internal/payments"
)

// Limits on a charge request, as Stripe has them.
const (
	maxAmount         = 99_999_999
	maxReferenceLen   = 255
	maxDescriptionLen = 1000
	maxMetadataKeys   = 50
	maxMetadataKeyLen = 40
	maxMetadataValLen = 500
	maxBodyBytes      = 64 << 10
)

// currencies are the ISO 4217 codes of currencies in use, lower case.
var currencies = strings.Fields(`
aed afn all amd ang aoa ars aud awg azn bam bbd bdt bgn bhd bif bmd bnd bob brl bsd btn bwp byn bzd
cad cdf chf clp cny cop crc cup cve czk djf dkk dop dzd egp ern etb eur fjd fkp gbp gel ghs gip gmd
gnf gtq gyd hkd hnl htg huf idr ils inr iqd irr isk jmd jod jpy kes kgs khr kmf kpw krw kwd kyd kzt
lak lbp lkr lrd lsl lyd mad mdl mga mkd mmk mnt mop mru mur mvr mwk mxn myr mzn nad ngn nio nok npr
nzd omr pab pen pgk php pkr pln pyg qar ron rsd rub rwf sar sbd scr sdg sek sgd shp sle sos srd ssp
stn svc syp szl thb tjs tmt tnd top try ttd twd tzs uah ugx usd uyu uzs ves vnd vuv wst xaf xcd xof
xpf yer zar zmw zwl`)

// chargeRequest is the body of POST /v1/charges.
type chargeRequest struct {
	Amount      *int64            `json:"amount"`
	Currency    string            `json:"currency"`
	Reference   string            `json:"reference"`
	Description string            `json:"description"`
	Metadata    map[string]string `json:"metadata"`
}

// parseCharge decodes and checks a charge request.
func parseCharge(body []byte) (*chargeRequest, error) {
	var req chargeRequest
	if err := decodeJSON(body, &req); err != nil {
		return nil, err
	}
	if err := checkAmount(req.Amount); err != nil {
		return nil, err
	}
	switch {
	case req.Currency == "":
		return nil, &invalid{"currency", "missing", "currency is required: an ISO 4217 code in lower case"}
	case !isCurrency(req.Currency):
		return nil, &invalid{"currency", "invalid_currency", fmt.Sprintf("currency must be an ISO 4217 code in lower case, such as usd; %q is not one", req.Currency)}
	case req.Reference == "":
		return nil, &invalid{"reference", "missing", "reference is required: your identifier for the charge, such as an order number"}
	case !printable(req.Reference, maxReferenceLen):
		return nil, &invalid{"reference", "invalid_reference", fmt.Sprintf("reference must be 1 to %d printable characters", maxReferenceLen)}
	case utf8.RuneCountInString(req.Description) > maxDescriptionLen || !utf8.ValidString(req.Description) || !storable(req.Description):
		return nil, &invalid{"description", "invalid_description", fmt.Sprintf("description must be at most %d characters, without NUL", maxDescriptionLen)}
	case len(req.Metadata) > maxMetadataKeys:
		return nil, &invalid{"metadata", "invalid_metadata", fmt.Sprintf("metadata must hold at most %d keys", maxMetadataKeys)}
	}
	for k, v := range req.Metadata {
		if !printable(k, maxMetadataKeyLen) || utf8.RuneCountInString(v) > maxMetadataValLen || !utf8.ValidString(v) || !storable(v) {
			return nil, &invalid{"metadata[" + k + "]", "invalid_metadata",
				fmt.Sprintf("metadata keys must be 1 to %d printable characters, and values at most %d characters without NUL", maxMetadataKeyLen, maxMetadataValLen)}
		}
	}
	return &req, nil
}

func isCurrency(c string) bool {
	for _, known := range currencies {
		if c == known {
			return true
		}
	}
	return false
}

func printable(s string, max int) bool {
	if s == "" || utf8.RuneCountInString(s) > max || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

func checkCharge(body []byte) error {
	_, err := parseCharge(body)
	return err
}

// createCharge inserts the payment, under the idempotency middleware: in
// the same transaction as the response it answers with, 202 and the charge.
func (s *server) createCharge() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			fail(w, http.StatusBadRequest, "unreadable_body", "", unreadableBody)
			return
		}
		req, err := parseCharge(body)
		if err != nil { // validateCharge let it through: a bug
			s.log.ErrorContext(r.Context(), "payd: a charge request passed validation once and failed it again", slog.Any("error", err))
			internalError(w)
			return
		}
		np := payments.NewPayment{
			AccountID:   accountFrom(r.Context()),
			Amount:      *req.Amount,
			Currency:    req.Currency,
			Reference:   req.Reference,
			Description: req.Description,
			Metadata:    req.Metadata,
		}
		if s.processor != nil {
			np.Reserve = payments.DispatchReserve // preferWait dispatches it
		}
		p, err := s.store.Create(r.Context(), np)
		if err != nil {
			s.failed(r, "payd: creating a payment failed", err)
			internalError(w)
			return
		}
		s.accept(r.Context(), p.ID)
		s.hit(FailpointInAccept)
		w.Header().Set("Location", "/v1/charges/"+p.ID)
		encode(w, http.StatusAccepted, p.Charge())
	})
}

// chargeWithRefunds is GET /v1/charges/{id}'s answer: the charge and its
// refunds.
type chargeWithRefunds struct {
	payments.Charge
	Refunds []payments.RefundView `json:"refunds"`
}

// getCharge answers GET /v1/charges/{id}.
func (s *server) getCharge() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := s.store.Get(r.Context(), accountFrom(r.Context()), r.PathValue("id"))
		var refunds []*payments.Refund
		if err == nil {
			refunds, err = s.store.Refunds(r.Context(), p.ID)
		}
		switch {
		case errors.Is(err, payments.ErrNotFound):
			fail(w, http.StatusNotFound, "not_found", "id", noSuchCharge)
			return
		case err != nil:
			s.failed(r, "payd: reading a payment failed", err)
			internalError(w)
			return
		}
		out := chargeWithRefunds{Charge: p.Charge(), Refunds: make([]payments.RefundView, 0, len(refunds))}
		for _, ref := range refunds {
			out.Refunds = append(out.Refunds, ref.View())
		}
		encode(w, http.StatusOK, out)
	})
}
