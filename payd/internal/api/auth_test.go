package api

import (
	"net/http"
	"testing"
	"time"

	"github.com/idemhq/idem/payd/internal/payments"
)

// TestBearerSchemeInAnyCase: the auth scheme is case-insensitive (RFC
// 9110 §11.1); the key is not, and a header that is not one Bearer token
// is refused.
func TestBearerSchemeInAnyCase(t *testing.T) {
	f := newFixture(t)
	for header, want := range map[string]int{
		"Bearer " + key:           http.StatusOK,
		"bearer " + key:           http.StatusOK,
		"BEARER " + key:           http.StatusOK,
		"Bearer   " + key:         http.StatusOK,
		"Bearer":                  http.StatusUnauthorized,
		"Bearer ":                 http.StatusUnauthorized,
		"Basic " + key:            http.StatusUnauthorized,
		"Bearer " + key + " junk": http.StatusUnauthorized,
		"Bearer\t" + key:          http.StatusUnauthorized,
		key:                       http.StatusUnauthorized,
	} {
		r := f.do(t, http.MethodGet, "/v1/balance", "", "", "", "Authorization", header)
		if r.status != want {
			t.Errorf("Authorization %q: %d %s, want %d", header, r.status, r.body, want)
		}
	}
}

// TestRevokedKeyIsRefused: an account with two keys keeps working on the
// second when the first is revoked, and the revoked one is refused once
// the API's cache of it expires.
func TestRevokedKeyIsRefused(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	second := payments.NewAPIKey()
	if _, err := f.store.AddKey(t.Context(), "acct_a", second); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{key, second} {
		if r := f.do(t, http.MethodGet, "/v1/balance", k, "", ""); r.status != http.StatusOK {
			t.Fatalf("before the revocation: %d %s", r.status, r.body)
		}
	}
	keys, err := f.store.Keys(t.Context(), "acct_a")
	if err != nil || len(keys) != 2 {
		t.Fatalf("keys = %+v, %v", keys, err)
	}
	if err := f.store.RevokeKey(t.Context(), "acct_a", keys[0].ID); err != nil {
		t.Fatal(err)
	}
	time.Sleep(accountTTL + 100*time.Millisecond)
	if r := f.do(t, http.MethodGet, "/v1/balance", key, "", ""); r.status != http.StatusUnauthorized {
		t.Fatalf("the revoked key after %s: %d %s, want 401", accountTTL, r.status, r.body)
	}
	if r := f.do(t, http.MethodGet, "/v1/balance", second, "", ""); r.status != http.StatusOK {
		t.Fatalf("the live key: %d %s, want 200", r.status, r.body)
	}
}
