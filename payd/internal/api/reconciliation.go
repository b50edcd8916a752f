package api

import (
	"net/http"

	"github.com/idemhq/idem/payd/internal/payments"
)

// getReconciliation answers GET /v1/reconciliation: the open mismatches
// about the caller's own payments and refunds. The runs, which span every
// account, are the operator's to see (TestReconciliationEndpoint, TestTwoMerchants).
func (s *server) getReconciliation() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		open, err := s.store.OpenMismatchesOf(r.Context(), accountFrom(r.Context()))
		if err != nil {
			s.failed(r, "payd: reading reconciliation failed", err)
			internalError(w)
			return
		}
		encode(w, http.StatusOK, struct {
			Object     string              `json:"object"`
			Mismatches []payments.Mismatch `json:"open_mismatches"`
		}{"reconciliation", open})
	})
}
