package idemhttp_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/idemhttp"
	"github.com/idemhq/idem/memstore"
)

// TestStreaming pins the documented Flusher behaviour: a flush while the
// response is held does nothing, so the client gets the response whole
// when the handler returns, and it replays; once the body outgrows
// MaxResponseBytes the response passes through, flushes included, and is
// not replayed. The handler never gets a Hijacker.
func TestStreaming(t *testing.T) {
	tests := []struct {
		name        string
		chunk       int
		wantFlushed bool // the client's writer saw a flush
		wantReplay  int  // the replay's status
	}{
		{name: "held while small", chunk: 10, wantFlushed: false, wantReplay: 200},
		{name: "passes through once large", chunk: 600, wantFlushed: true, wantReplay: 500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			engine, err := idem.New(memstore.New(), nil)
			if err != nil {
				t.Fatal(err)
			}
			mw, err := idemhttp.Middleware(engine, userPrincipal, &idemhttp.Config{MaxResponseBytes: 1000})
			if err != nil {
				t.Fatal(err)
			}
			h := mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if _, ok := w.(http.Hijacker); ok {
					t.Error("the handler's writer is a Hijacker")
				}
				for range 2 {
					io.WriteString(w, strings.Repeat("x", tt.chunk))
					if err := http.NewResponseController(w).Flush(); err != nil {
						t.Errorf("Flush: %v", err)
					}
				}
			}))
			q := req{keys: []string{"stream-1"}}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, q.build())
			if w.Flushed != tt.wantFlushed || w.Body.Len() != 2*tt.chunk {
				t.Errorf("first response: flushed %t with %d bytes, want flushed %t with %d", w.Flushed, w.Body.Len(), tt.wantFlushed, 2*tt.chunk)
			}
			w = httptest.NewRecorder()
			h.ServeHTTP(w, q.build())
			if w.Code != tt.wantReplay || w.Header().Get("Idempotent-Replayed") != "true" {
				t.Errorf("replay: %d %v, want %d replayed", w.Code, w.Header(), tt.wantReplay)
			}
		})
	}
}

// TestConfigRefused checks that Middleware refuses what it cannot honour.
func TestConfigRefused(t *testing.T) {
	engine, err := idem.New(memstore.New(), nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		engine    *idem.Engine
		principal func(*http.Request) (string, error)
		cfg       *idemhttp.Config
	}{
		{name: "no engine", principal: userPrincipal},
		{name: "no principal", engine: engine},
		{name: "Set-Cookie replayed", engine: engine, principal: userPrincipal, cfg: &idemhttp.Config{ReplayHeaders: []string{"set-cookie"}}},
		{name: "Authorization replayed", engine: engine, principal: userPrincipal, cfg: &idemhttp.Config{ReplayHeaders: []string{"Authorization"}}},
		{name: "Proxy-* replayed", engine: engine, principal: userPrincipal, cfg: &idemhttp.Config{ReplayHeaders: []string{"Proxy-Authenticate"}}},
		{name: "hop-by-hop replayed", engine: engine, principal: userPrincipal, cfg: &idemhttp.Config{ReplayHeaders: []string{"Transfer-Encoding"}}},
		{name: "bad header name", engine: engine, principal: userPrincipal, cfg: &idemhttp.Config{FingerprintHeaders: []string{"a b"}}},
		{name: "1xx retry status", engine: engine, principal: userPrincipal, cfg: &idemhttp.Config{RetryStatuses: []int{100}}},
		{name: "negative wait", engine: engine, principal: userPrincipal, cfg: &idemhttp.Config{MaxWait: -1}},
		{name: "negative body cap", engine: engine, principal: userPrincipal, cfg: &idemhttp.Config{MaxRequestBytes: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := idemhttp.Middleware(tt.engine, tt.principal, tt.cfg); err == nil {
				t.Errorf("Middleware accepted it, want an error")
			}
		})
	}
	if _, err := idemhttp.Middleware(engine, userPrincipal, nil); err != nil {
		t.Errorf("Middleware with a nil Config = %v, want nil", err)
	}
}
