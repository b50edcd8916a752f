package api

import "net/http"

// routes is the map of the API.
func (s *server) routes(mux *http.ServeMux) {
	mux.Handle("POST /v1/charges", s.authenticate(s.validate(checkCharge, s.preferWait(s.idempotent(s.createCharge())))))
	mux.Handle("GET /v1/charges/{id}", s.authenticate(s.getCharge()))
	mux.Handle("GET /v1/charges", s.authenticate(s.listCharges()))
	mux.Handle("POST /v1/charges/{id}/refunds", s.authenticate(s.validate(checkRefund, s.notifyRefunds(s.idempotent(s.createRefund())))))
	mux.Handle("GET /v1/balance", s.authenticate(s.getBalance()))
	mux.Handle("GET /v1/reconciliation", s.authenticate(s.getReconciliation()))
	mux.Handle("POST /v1/provider/webhooks", s.webhooks)
	mux.Handle("GET /healthz", healthz())
	mux.Handle("GET /readyz", s.readyz())
}
