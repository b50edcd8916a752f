package api

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// routes is the map of the API.
func (s *server) routes(mux *http.ServeMux) {
	mux.Handle("POST /v1/charges", s.authenticate(s.validateCharge(s.preferWait(s.idempotent(s.createCharge())))))
	mux.Handle("GET /v1/charges/{id}", s.authenticate(s.getCharge()))
	mux.Handle("GET /v1/charges", s.authenticate(s.listCharges()))
	mux.Handle("GET /healthz", healthz())
	mux.Handle("GET /readyz", s.readyz())
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{}))
}
