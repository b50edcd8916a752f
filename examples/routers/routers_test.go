// Package routers_test shows idemhttp's middleware on chi, gin and echo
// routes. It is a module of its own, so the library requires no router.
package routers_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/gin-gonic/gin"
	"github.com/go-chi/chi/v5"
	"github.com/labstack/echo/v4"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/idemhttp"
	"github.com/idemhq/idem/memstore"
)

// principal names the caller by HTTP basic auth, standing in for what an
// authentication middleware would provide.
func principal(r *http.Request) (string, error) {
	user, _, ok := r.BasicAuth()
	if !ok {
		return "", errors.New("not authenticated")
	}
	return user, nil
}

// createCharge stands in for a handler with a side effect.
func createCharge(w http.ResponseWriter, r *http.Request) {
	fmt.Println("charging the card")
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Location", "/charges/ch_1")
	w.WriteHeader(http.StatusCreated)
	fmt.Fprint(w, `{"id":"ch_1","amount":1999}`)
}

// send posts body with key to h as alice and prints the response.
func send(h http.Handler, path, key, body string) {
	r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	r.SetBasicAuth("alice", "secret")
	r.Header.Set("Idempotency-Key", key)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	fmt.Printf("%d replayed=%t %s\n", w.Code, w.Header().Get("Idempotent-Replayed") == "true", strings.TrimSpace(w.Body.String()))
}

// With chi, which is net/http native. Middleware added with With runs once
// the route has matched, so Route can name chi's pattern: one record scope
// for every charge's refunds, and the path in the fingerprint keeps two
// charges apart.
func Example_chi() {
	engine, err := idem.New(memstore.New(), &idem.Config{Namespace: "api"})
	if err != nil {
		panic(err)
	}
	protect, err := idemhttp.Middleware(engine, principal, &idemhttp.Config{
		Route: func(r *http.Request) string { return chi.RouteContext(r.Context()).RoutePattern() },
	})
	if err != nil {
		panic(err)
	}
	r := chi.NewRouter()
	r.With(protect).Post("/charges/{id}/refunds", func(w http.ResponseWriter, r *http.Request) {
		fmt.Println("refunding", chi.URLParam(r, "id"))
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"charge":%q}`, chi.URLParam(r, "id"))
	})

	send(r, "/charges/ch_1/refunds", "refund-1", `{}`)
	send(r, "/charges/ch_1/refunds", "refund-1", `{}`)
	send(r, "/charges/ch_2/refunds", "refund-1", `{}`)
	// Output:
	// refunding ch_1
	// 201 replayed=false {"charge":"ch_1"}
	// 201 replayed=true {"charge":"ch_1"}
	// 422 replayed=false {"type":"about:blank","title":"Unprocessable Entity","status":422,"detail":"this Idempotency-Key was used with a different request; use a new key for a new request","code":"idempotency_key_reused"}
}

// With gin, through gin.WrapH: the protected handler is a plain
// http.Handler. Gin's route pattern is not visible to it, so records are
// scoped by path, the default.
func Example_gin() {
	gin.SetMode(gin.ReleaseMode)
	engine, err := idem.New(memstore.New(), &idem.Config{Namespace: "api"})
	if err != nil {
		panic(err)
	}
	protect, err := idemhttp.Middleware(engine, principal, nil)
	if err != nil {
		panic(err)
	}
	router := gin.New()
	router.POST("/charges", gin.WrapH(protect(http.HandlerFunc(createCharge))))

	send(router, "/charges", "order-1", `{"amount":1999}`)
	send(router, "/charges", "order-1", `{"amount":1999}`)
	// Output:
	// charging the card
	// 201 replayed=false {"id":"ch_1","amount":1999}
	// 201 replayed=true {"id":"ch_1","amount":1999}
}

// With echo, through echo.WrapMiddleware. Echo writes the errors handlers
// return after the middleware chain has returned, too late to be recorded:
// handlers behind the middleware must write their responses, errors
// included, which writeErrors does.
func Example_echo() {
	engine, err := idem.New(memstore.New(), &idem.Config{Namespace: "api"})
	if err != nil {
		panic(err)
	}
	protect, err := idemhttp.Middleware(engine, principal, nil)
	if err != nil {
		panic(err)
	}
	e := echo.New()
	charge := func(c echo.Context) error {
		fmt.Println("charging the card")
		return echo.NewHTTPError(http.StatusPaymentRequired, "card declined")
	}
	e.POST("/charges", writeErrors(charge), echo.WrapMiddleware(protect))

	send(e, "/charges", "order-1", `{"amount":1999}`)
	send(e, "/charges", "order-1", `{"amount":1999}`)
	// Output:
	// charging the card
	// 402 replayed=false {"message":"card declined"}
	// 402 replayed=true {"message":"card declined"}
}

// writeErrors has echo write a handler's error inside the handler, where
// the middleware records it.
func writeErrors(h echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if err := h(c); err != nil {
			c.Echo().HTTPErrorHandler(err, c)
		}
		return nil
	}
}
