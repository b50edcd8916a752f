package api

import "net/http"

// route is one entry of the API's map: a method, a ServeMux path pattern
// and what serves them.
type route struct {
	method, path string
	handler      http.Handler
}

// pattern is the route's ServeMux pattern.
func (rt route) pattern() string { return rt.method + " " + rt.path }

// routes is the map of the public API. Each route is in the OpenAPI
// document, and each operation of the document is here
// (TestEveryRouteIsDocumented).
func (s *server) routes() []route {
	return []route{
		{"POST", "/v1/charges", s.authenticate(s.validate(checkCharge, s.preferWait(s.idempotent(s.createCharge()))))},
		{"GET", "/v1/charges/{id}", s.authenticate(s.getCharge())},
		{"GET", "/v1/charges", s.authenticate(s.listCharges())},
		{"POST", "/v1/charges/{id}/refunds", s.authenticate(s.validate(checkRefund, s.notifyRefunds(s.idempotent(s.createRefund()))))},
		{"GET", "/v1/balance", s.authenticate(s.getBalance())},
		{"GET", "/v1/reconciliation", s.authenticate(s.getReconciliation())},
		{"POST", "/v1/provider/webhooks", s.webhooks},
		{"GET", "/healthz", healthz()},
		{"GET", "/readyz", s.readyz()},
		{"GET", "/openapi.json", openAPI()},
	}
}

// mux serves the routes, and a problem+json answer for everything else
// (answerUnrouted). /metrics is the admin listener's (NewAdmin).
func (s *server) mux() http.Handler {
	mux := http.NewServeMux()
	for _, rt := range s.routes() {
		mux.Handle(rt.pattern(), rt.handler)
	}
	return answerUnrouted(mux)
}
