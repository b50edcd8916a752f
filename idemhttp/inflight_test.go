package idemhttp_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"testing/synctest"
	"time"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/idemhttp"
	"github.com/idemhq/idem/memstore"
)

// blocking is a handler that runs until release is closed.
type blocking struct {
	runs    int
	release chan struct{}
}

func (b *blocking) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.runs++
	<-b.release
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	w.Write([]byte(`{"id":"ch_1"}`))
}

// twoInstances returns the middleware on h twice, each with its own engine,
// sharing one store: two processes of one service.
func twoInstances(t *testing.T, h http.Handler, cfg *idemhttp.Config) (a, b http.Handler) {
	t.Helper()
	store := memstore.New()
	mk := func() http.Handler {
		engine, err := idem.New(store, nil)
		if err != nil {
			t.Fatal(err)
		}
		mw, err := idemhttp.Middleware(engine, userPrincipal, cfg)
		if err != nil {
			t.Fatal(err)
		}
		return mw(h)
	}
	return mk(), mk()
}

// TestInFlight is row S6: a request whose key is in flight gets 409 with
// Retry-After at once, by default, or waits up to Config.Wait for the
// first request's response.
func TestInFlight(t *testing.T) {
	tests := []struct {
		name       string
		cfg        *idemhttp.Config
		sameEngine bool          // else two engines on one store
		holdFor    time.Duration // how long the first request runs
		want       int           // the second request's status
		replayed   bool
		waited     time.Duration // how long the second request took
	}{
		{name: "409 at once, same instance", sameEngine: true, holdFor: time.Minute, want: 409},
		{name: "409 at once, other instance", holdFor: time.Minute, want: 409},
		{name: "wait, then replay, same instance", sameEngine: true, cfg: &idemhttp.Config{MaxWait: 5 * time.Second}, holdFor: 3 * time.Second, want: 201, replayed: true, waited: 3 * time.Second},
		{name: "wait, then replay, other instance", cfg: &idemhttp.Config{MaxWait: 5 * time.Second}, holdFor: 3 * time.Second, want: 201, replayed: true, waited: 3 * time.Second},
		{name: "wait is bounded, same instance", sameEngine: true, cfg: &idemhttp.Config{MaxWait: 2 * time.Second, RetryAfter: 1500 * time.Millisecond}, holdFor: time.Minute, want: 409, waited: 2 * time.Second},
		{name: "wait is bounded, other instance", cfg: &idemhttp.Config{MaxWait: 2 * time.Second}, holdFor: time.Minute, want: 409, waited: 2 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := &blocking{release: make(chan struct{})}
				first, second := twoInstances(t, h, tt.cfg)
				if tt.sameEngine {
					second = first
				}
				q := req{keys: []string{`"order-1"`}, body: `{"amount":1}`}
				firstDone := make(chan *httptest.ResponseRecorder)
				go func() {
					w := httptest.NewRecorder()
					first.ServeHTTP(w, q.build())
					firstDone <- w
				}()
				synctest.Wait() // the first request is in the handler
				go func() {
					time.Sleep(tt.holdFor)
					close(h.release)
				}()

				start := time.Now()
				w := httptest.NewRecorder()
				second.ServeHTTP(w, q.build())
				if got := time.Since(start); got != tt.waited {
					t.Errorf("second request took %s, want %s", got, tt.waited)
				}
				if w.Code != tt.want {
					t.Fatalf("second request: status %d, want %d; %s", w.Code, tt.want, w.Body)
				}
				if tt.want == 409 {
					if code := problemCode(t, w); code != "request_in_flight" {
						t.Errorf("problem code %q, want request_in_flight", code)
					}
					want := "1"
					if tt.cfg != nil && tt.cfg.RetryAfter > time.Second {
						want = "2" // rounded up
					}
					if got := w.Header().Get("Retry-After"); got != want {
						t.Errorf("Retry-After %q, want %q", got, want)
					}
				}
				if got := w.Header().Get("Idempotent-Replayed") == "true"; got != tt.replayed {
					t.Errorf("replayed %t, want %t", got, tt.replayed)
				}
				fw := <-firstDone
				if fw.Code != 201 || fw.Header().Get("Idempotent-Replayed") != "" {
					t.Errorf("first request: %d %v, want a live 201", fw.Code, fw.Header())
				}
				if tt.replayed && w.Body.String() != fw.Body.String() {
					t.Errorf("replay %q, want %q", w.Body, fw.Body)
				}
				if h.runs != 1 {
					t.Errorf("handler ran %d times, want 1", h.runs)
				}
			})
		})
	}
}
