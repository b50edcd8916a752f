package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/idemhq/idem/internal/payments"
)

type accountKey struct{}

// accountFrom returns the account authenticate put in the context.
func accountFrom(ctx context.Context) string {
	id, _ := ctx.Value(accountKey{}).(string)
	return id
}

// principal names the account for idemhttp: idempotency keys are scoped
// to it.
func principal(r *http.Request) (string, error) {
	id := accountFrom(r.Context())
	if id == "" {
		return "", errors.New("no account")
	}
	return id, nil
}

// authenticate resolves "Authorization: Bearer <api key>" to an account.
func (s *server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || key == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="payd"`)
			fail(w, http.StatusUnauthorized, "unauthenticated", "", "send your API key as Authorization: Bearer <key>")
			return
		}
		account, err := s.store.AccountByKey(r.Context(), key)
		switch {
		case errors.Is(err, payments.ErrNotFound):
			w.Header().Set("WWW-Authenticate", `Bearer realm="payd", error="invalid_token"`)
			fail(w, http.StatusUnauthorized, "invalid_api_key", "", "the API key is not known")
			return
		case err != nil:
			s.log.Error("payd: looking up an API key failed", slog.Any("error", err))
			w.Header().Set("Retry-After", "1")
			fail(w, http.StatusServiceUnavailable, "unavailable", "", "payd cannot reach its database; retry shortly")
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), accountKey{}, account)))
	})
}
