package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/idemhq/idem/payd/internal/payments"
)

// AdminConfig is what the operator's endpoints need.
type AdminConfig struct {
	// Registry is served at GET /metrics. Required.
	Registry *prometheus.Registry
	// Store, if set, serves GET /reconciliation: the last run and every
	// account's open mismatches, which merchants do not see.
	Store *payments.Store
	// Key, if set, is required of every admin request, as
	// Authorization: Bearer <Key>. Without it, the admin endpoints are
	// open to whoever reaches their address: keep that loopback.
	Key    string
	Logger *slog.Logger
}

// NewAdmin returns the operator's endpoints, which payd serves on an
// address of its own, apart from the API: GET /metrics, GET
// /reconciliation (TestReconciliationEndpoint), and a problem+json 404
// for anything else. With a Key, a request without it
// is refused with 401 and logged, the key compared in constant time and
// never logged (TestAdminKey).
func NewAdmin(cfg AdminConfig) (http.Handler, error) {
	if cfg.Registry == nil {
		return nil, errors.New("api: NewAdmin needs a Registry")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Registry, promhttp.HandlerOpts{}))
	routes := "GET /metrics"
	if cfg.Store != nil {
		mux.Handle("GET /reconciliation", operatorReconciliation(cfg.Store, log))
		routes += " and GET /reconciliation"
	}
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fail(w, http.StatusNotFound, "not_found", "", fmt.Sprintf("no such admin endpoint; they are %s", routes))
	}))
	if cfg.Key == "" {
		return mux, nil
	}
	want := sha256.Sum256([]byte(cfg.Key))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key, ok := bearerToken(r.Header.Get("Authorization"))
		got := sha256.Sum256([]byte(key)) // equal lengths: the compare tells nothing of the key's
		if !ok || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			log.LogAttrs(r.Context(), slog.LevelWarn, "payd: admin request refused: no admin key, or the wrong one",
				slog.String("method", methodLabel(r.Method)), slog.String("remote", r.RemoteAddr))
			w.Header().Set("WWW-Authenticate", `Bearer realm="payd admin"`)
			fail(w, http.StatusUnauthorized, "unauthenticated", "", "the admin key is required; send it as Authorization: Bearer <key>")
			return
		}
		mux.ServeHTTP(w, r)
	}), nil
}

// operatorReconciliation answers the admin's GET /reconciliation: the
// last run and the open mismatches of every account, each with its
// account, or none for a provider record no account asked for.
func operatorReconciliation(store *payments.Store, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		run, err := store.LastRun(r.Context())
		var open []payments.Mismatch
		if err == nil {
			open, err = store.OpenMismatches(r.Context())
		}
		if err != nil {
			log.LogAttrs(r.Context(), slog.LevelError, "payd: reading reconciliation failed", slog.Any("error", err))
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
