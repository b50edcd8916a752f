package api

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/idemhq/idem/payd/internal/payments"
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

// bearerToken returns the token of an "Authorization: Bearer <token>"
// header; the scheme is matched in any case, as RFC 9110 says
// (TestBearerSchemeInAnyCase).
func bearerToken(header string) (string, bool) {
	scheme, token, ok := strings.Cut(header, " ")
	token = strings.TrimLeft(token, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" || strings.ContainsAny(token, " \t") {
		return "", false
	}
	return token, true
}

// authenticate resolves "Authorization: Bearer <api key>" to an account.
func (s *server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key, ok := bearerToken(r.Header.Get("Authorization"))
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="payd"`)
			fail(w, http.StatusUnauthorized, "unauthenticated", "", "an API key is required; send it as Authorization: Bearer <key>")
			return
		}
		account, err := s.accounts.lookup(r.Context(), key, s.store.AccountByKey)
		switch {
		case errors.Is(err, payments.ErrNotFound):
			w.Header().Set("WWW-Authenticate", `Bearer realm="payd", error="invalid_token"`)
			fail(w, http.StatusUnauthorized, "invalid_api_key", "", "the API key is not known or was revoked; check it, or ask for a new one")
			return
		case err != nil:
			s.failed(r, "payd: looking up an API key failed", err)
			w.Header().Set("Retry-After", "1")
			fail(w, http.StatusServiceUnavailable, "unavailable", "", "payd cannot reach its database; retry shortly")
			return
		}
		noteAccount(r.Context(), account)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), accountKey{}, account)))
	})
}

// accountCache remembers which account an API key belongs to for a few
// seconds, sparing the database a query per request. A key revoked keeps
// working until its entry expires, accountTTL at most
// (TestRevokedKeyIsRefused).
type accountCache struct {
	mu      sync.Mutex
	entries map[string]cachedAccount
}

type cachedAccount struct {
	id      string
	expires time.Time
}

const (
	accountTTL       = 5 * time.Second
	maxCachedAccount = 10_000
)

func (c *accountCache) lookup(ctx context.Context, key string, find func(context.Context, string) (string, error)) (string, error) {
	now := time.Now()
	c.mu.Lock()
	e, ok := c.entries[key]
	c.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.id, nil
	}
	id, err := find(ctx, key)
	if err != nil {
		return "", err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil || len(c.entries) >= maxCachedAccount {
		c.entries = make(map[string]cachedAccount) // crude, and enough: keys are few
	}
	c.entries[key] = cachedAccount{id: id, expires: now.Add(accountTTL)}
	return id, nil
}
