package integration_test

import (
	"errors"
	"net/http"
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks for leaked goroutines, but one of toxiproxy's own: its
// latency fault can be left sending a delayed chunk down a link whose
// connection TestFaultsFailClosed has closed. It belongs to the test's
// proxy, not to a store, and holds no connection.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/Shopify/toxiproxy/v2/toxics.(*LatencyToxic).Pipe"))
}

// userPrincipal names the principal by the X-User request header, standing
// in for what an authentication middleware would provide.
func userPrincipal(r *http.Request) (string, error) {
	u := r.Header.Get("X-User")
	if u == "" {
		return "", errors.New("no user")
	}
	return u, nil
}
