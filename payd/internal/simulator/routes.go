package simulator

import "net/http"

// addRoutes maps the simulator's API. The provider API draws faults; the
// control routes, prefixed with an underscore, never do.
func addRoutes(mux *http.ServeMux, s *Sim) {
	mux.Handle("POST /charges", s.withFaults(chargeKeys, handleCreateCharge(s)))
	mux.Handle("GET /charges", s.withFaults("", handleListCharges(s)))
	mux.Handle("GET /charges/{id}", s.withFaults("", handleGetCharge(s)))
	mux.Handle("POST /refunds", s.withFaults(refundKeys, handleCreateRefund(s)))
	mux.Handle("GET /refunds", s.withFaults("", handleListRefunds(s)))

	mux.Handle("GET /_faults", handleGetFaults(s))
	mux.Handle("POST /_faults", handleSetFaults(s))
	mux.Handle("GET /_stats", handleStats(s))
	mux.Handle("/", handleNoRoute())
}
