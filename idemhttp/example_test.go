package idemhttp_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/idemhttp"
	"github.com/idemhq/idem/memstore"
)

// principal names the caller. Here it is the Basic auth user name, which an
// authentication middleware in front has checked; in a real service it is
// whatever that middleware put in the request's context.
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

// The middleware on a ServeMux route: the retry gets the recorded response,
// and the same key with another body is refused.
func Example() {
	engine, err := idem.New(memstore.New(), &idem.Config{Namespace: "api"})
	if err != nil {
		panic(err)
	}
	protect, err := idemhttp.Middleware(engine, principal, nil)
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.Handle("POST /charges", protect(http.HandlerFunc(createCharge)))

	send(mux, "/charges", `"8e03978e-40d5-43e8-bc93-6894a57f9324"`, `{"amount":1999}`)
	send(mux, "/charges", `"8e03978e-40d5-43e8-bc93-6894a57f9324"`, `{"amount":1999}`)
	send(mux, "/charges", `"8e03978e-40d5-43e8-bc93-6894a57f9324"`, `{"amount":5}`)
	// Output:
	// charging the card
	// 201 replayed=false {"id":"ch_1","amount":1999}
	// 201 replayed=true {"id":"ch_1","amount":1999}
	// 422 replayed=false {"type":"about:blank","title":"Unprocessable Entity","status":422,"detail":"this Idempotency-Key was used with a different request; use a new key for a new request","code":"idempotency_key_reused"}
}

// A Config for an API that versions its requests by header, replays a
// rate-limit header, waits briefly for a concurrent duplicate, and keeps
// validation failures from being recorded: a client that fixes its request
// may use the same key again.
func ExampleConfig() {
	engine, err := idem.New(memstore.New(), &idem.Config{Namespace: "api"})
	if err != nil {
		panic(err)
	}
	protect, err := idemhttp.Middleware(engine, principal, &idemhttp.Config{
		FingerprintHeaders: []string{"Api-Version"},
		ReplayHeaders:      []string{"X-Request-Id"},
		RetryStatuses:      []int{http.StatusBadRequest, http.StatusTooManyRequests, http.StatusServiceUnavailable},
		MaxWait:            2 * time.Second,
	})
	if err != nil {
		panic(err)
	}
	validate := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Println("validating")
		http.Error(w, "amount is missing", http.StatusBadRequest)
	})
	h := protect(validate)
	send(h, "/charges", "k1", `{}`)
	send(h, "/charges", "k1", `{}`)
	// Output:
	// validating
	// 400 replayed=false amount is missing
	// validating
	// 400 replayed=false amount is missing
}
