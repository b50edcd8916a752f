package memstore_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/idemhttp"
	"github.com/idemhq/idem/memstore"
)

// TestLimits: a store at its cap of records, or of bytes, refuses new keys
// with ErrFull, reported by the engine as a StoreError, while the keys it
// holds still replay; once records expire, new keys claim again.
func TestLimits(t *testing.T) {
	for name, limits := range map[string]memstore.Limits{
		"records": {MaxRecords: 10, MaxBytes: -1},
		"bytes":   {MaxRecords: -1, MaxBytes: 10 * (1024 + 300)},
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e, err := idem.New(memstore.NewWithLimits(limits), &idem.Config{Retention: time.Hour})
				if err != nil {
					t.Fatal(err)
				}
				value := []byte(strings.Repeat("v", 1024))
				fn := func(context.Context) ([]byte, error) { return value, nil }
				held := 0
				for ; held < 100; held++ {
					if _, err := e.Run(t.Context(), fmt.Sprint("key-", held), fn, nil); err != nil {
						if se, ok := errors.AsType[*idem.StoreError](err); !ok || !errors.Is(se, memstore.ErrFull) {
							t.Fatalf("a claim over the limits = %v, want a StoreError wrapping ErrFull", err)
						}
						break
					}
				}
				if held < 5 || held > 12 {
					t.Fatalf("the store took %d keys, want about 10", held)
				}
				if res, err := e.Run(t.Context(), "key-0", fn, nil); err != nil || !res.Replayed {
					t.Fatalf("a key held, while full = (%v, %v), want a replay", res.Replayed, err)
				}
				time.Sleep(2 * time.Hour)
				if _, err := e.Run(t.Context(), "after", fn, nil); err != nil {
					t.Fatalf("a new key once the records expired = %v", err)
				}
			})
		})
	}
}

// TestFullStoreAnswers503: idemhttp answers a request that a full store
// cannot claim 503 with Retry-After, without running the handler.
func TestFullStoreAnswers503(t *testing.T) {
	e, err := idem.New(memstore.NewWithLimits(memstore.Limits{MaxRecords: 1}), nil)
	if err != nil {
		t.Fatal(err)
	}
	ran := 0
	h, err := idemhttp.Middleware(e, func(*http.Request) (string, error) { return "", nil }, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { ran++ })))
	defer srv.Close()
	for i, want := range []int{http.StatusOK, http.StatusServiceUnavailable} {
		req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader("{}"))
		req.Header.Set("Idempotency-Key", fmt.Sprint("k", i))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want || want == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") == "" {
			t.Fatalf("request %d = %d (Retry-After %q), want %d", i, resp.StatusCode, resp.Header.Get("Retry-After"), want)
		}
	}
	if ran != 1 {
		t.Fatalf("the handler ran %d times, want once", ran)
	}
}
