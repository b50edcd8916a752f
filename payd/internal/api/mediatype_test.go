package api

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestContentTypeIsJSON: a body is read as JSON only when it is sent as
// JSON. One sent as a form (what curl -d says) or as text, which a proxy or
// a firewall would read as such, is refused with 415 before anything is
// recorded, and the same key then takes the body sent right.
func TestContentTypeIsJSON(t *testing.T) {
	f := newFixture(t)
	const body = `{"amount":1999,"currency":"usd","reference":"r"}`
	for i, tc := range []struct {
		contentType string
		status      int
	}{
		{"application/x-www-form-urlencoded", http.StatusUnsupportedMediaType},
		{"text/plain", http.StatusUnsupportedMediaType},
		{"application/json; charset=latin1", http.StatusUnsupportedMediaType},
		{"application/json; charset=utf-8; x=1", http.StatusUnsupportedMediaType},
		{"application/jsonx", http.StatusUnsupportedMediaType},
		{"application/json; charset=UTF-8", http.StatusAccepted},
		{"Application/JSON", http.StatusAccepted},
	} {
		idemKey := fmt.Sprint("media-", i)
		r := f.do(t, http.MethodPost, "/v1/charges", key, idemKey, body, "Content-Type", tc.contentType)
		if r.status != tc.status || tc.status == http.StatusUnsupportedMediaType && !strings.Contains(r.body, `"code":"unsupported_media_type"`) {
			t.Errorf("Content-Type %q: %d %s, want %d", tc.contentType, r.status, r.body, tc.status)
			continue
		}
		if tc.status == http.StatusUnsupportedMediaType {
			if again := f.do(t, http.MethodPost, "/v1/charges", key, idemKey, body); again.status != http.StatusAccepted {
				t.Errorf("Content-Type %q, then the same key as JSON: %d %s, want 202", tc.contentType, again.status, again.body)
			}
		}
	}
}

// TestTwoContentTypes: a body with two Content-Type headers is refused,
// whichever comes first: one reader could take the first, another the
// last.
func TestTwoContentTypes(t *testing.T) {
	f := newFixture(t)
	const body = `{"amount":1999,"currency":"usd","reference":"r"}`
	for i, types := range [][2]string{{"application/json", "text/plain"}, {"text/plain", "application/json"}} {
		req, _ := http.NewRequest(http.MethodPost, f.url+"/v1/charges", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Idempotency-Key", fmt.Sprint("two-types-", i))
		req.Header.Add("Content-Type", types[0])
		req.Header.Add("Content-Type", types[1])
		resp, err := f.client(t).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnsupportedMediaType {
			t.Errorf("Content-Type %q then %q = %d, want 415", types[0], types[1], resp.StatusCode)
		}
	}
}

// TestWaitEndsWhenDraining: a request waiting on Prefer: wait is answered
// with the charge as it is soon after the process starts stopping, so
// that a stop need not wait out the longest wait.
func TestWaitEndsWhenDraining(t *testing.T) {
	f := newFixture(t) // no workers: the charge stays pending
	var draining atomic.Bool
	f.api.draining = draining.Load
	time.AfterFunc(300*time.Millisecond, func() { draining.Store(true) })
	start := time.Now()
	r := f.do(t, http.MethodPost, "/v1/charges", key, "drain", `{"amount":1999,"currency":"usd","reference":"r"}`, "Prefer", "wait=20")
	if took := time.Since(start); r.status != http.StatusAccepted || took > 5*time.Second {
		t.Fatalf("a wait of 20s while draining = %d after %s, want 202 within a moment of the drain", r.status, took)
	}
}
