package api

import (
	"net/http"

	"github.com/idemhq/idem/payd/internal/payments"
)

// getReconciliation answers GET /v1/reconciliation: the last run and the
// open mismatches.
func (s *server) getReconciliation() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		run, err := s.store.LastRun(r.Context())
		var open []payments.Mismatch
		if err == nil {
			open, err = s.store.OpenMismatches(r.Context())
		}
		if err != nil {
			s.failed(r, "payd: reading reconciliation failed", err)
			internalError(w)
			return
		}
		encode(w, http.StatusOK, struct {
			Object     string                      `json:"object"`
			LastRun    *payments.ReconciliationRun `json:"last_run"`
			Mismatches []payments.Mismatch         `json:"open_mismatches"`
		}{"reconciliation", run, open})
	})
}
