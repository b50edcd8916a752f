package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// AdminConfig is what the operator's endpoints need.
type AdminConfig struct {
	// Registry is served at GET /metrics. Required.
	Registry *prometheus.Registry
	// Key, if set, is required of every admin request, as
	// Authorization: Bearer <Key>. Without it, the admin endpoints are
	// open to whoever reaches their address: keep that loopback.
	Key    string
	Logger *slog.Logger
}

// NewAdmin returns the operator's endpoints, which payd serves on an
// address of its own, apart from the API: GET /metrics, and a
// problem+json 404 for anything else. With a Key, a request without it
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
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fail(w, http.StatusNotFound, "not_found", "", "the admin endpoints are GET /metrics")
	}))
	if cfg.Key == "" {
		return mux, nil
	}
	want := sha256.Sum256([]byte(cfg.Key))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		got := sha256.Sum256([]byte(key)) // equal lengths: the compare tells nothing of the key's
		if !ok || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			log.LogAttrs(r.Context(), slog.LevelWarn, "payd: admin request refused: no admin key, or the wrong one",
				slog.String("method", methodLabel(r.Method)), slog.String("remote", r.RemoteAddr))
			w.Header().Set("WWW-Authenticate", `Bearer realm="payd admin"`)
			fail(w, http.StatusUnauthorized, "unauthenticated", "", "send the admin key as Authorization: Bearer <key>")
			return
		}
		mux.ServeHTTP(w, r)
	}), nil
}
