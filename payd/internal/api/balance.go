package api

import (
	"net/http"

	"github.com/idemhq/idem/payd/internal/payments"
)

// getBalance answers GET /v1/balance: the account's balance per currency,
// from the ledger.
func (s *server) getBalance() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bs, err := s.store.Balances(r.Context(), accountFrom(r.Context()))
		if err != nil {
			s.failed(r, "payd: reading balances failed", err)
			internalError(w)
			return
		}
		encode(w, http.StatusOK, struct {
			Object   string             `json:"object"`
			Balances []payments.Balance `json:"balances"`
		}{"balance", bs})
	})
}
