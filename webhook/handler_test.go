package webhook_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/memstore"
	"github.com/idemhq/idem/store"
	"github.com/idemhq/idem/webhook"
)

// spyStore counts claims, to show which requests reach the store.
type spyStore struct {
	store.Store
	claims atomic.Int64
}

func (s *spyStore) Claim(ctx context.Context, p store.ClaimParams) (store.ClaimResult, error) {
	s.claims.Add(1)
	return s.Store.Claim(ctx, p)
}

// ledger is an apply function that counts applications per event, and
// fails events named in failing.
type ledger struct {
	mu      sync.Mutex
	applied map[string]int
	failing map[string]bool
}

func newLedger() *ledger { return &ledger{applied: map[string]int{}, failing: map[string]bool{}} }

func (l *ledger) apply(ctx context.Context, e webhook.Event) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failing[e.ID] {
		return errors.New("ledger unavailable")
	}
	l.applied[e.Source+"/"+e.ID]++
	return nil
}

func (l *ledger) count(key string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.applied[key]
}

func newHandler(t *testing.T, store store.Store, l *ledger) http.Handler {
	t.Helper()
	engine, err := idem.New(store, &idem.Config{Namespace: "webhooks"})
	if err != nil {
		t.Fatal(err)
	}
	h, err := webhook.NewHandler(engine, &webhook.Verifier{Secrets: [][]byte{secret}}, l.apply, &webhook.Config{Source: "provider"})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func event(id string) []byte {
	return fmt.Appendf(nil, `{"id":%q,"type":"charge.succeeded"}`, id)
}

// delivery is one request to a webhook handler.
type delivery struct {
	method string // default POST
	body   []byte
	header string // signature; "" for none
}

func (d delivery) send(h http.Handler) *httptest.ResponseRecorder {
	method := d.method
	if method == "" {
		method = http.MethodPost
	}
	r := httptest.NewRequest(method, "/webhooks", strings.NewReader(string(d.body)))
	if d.header != "" {
		r.Header.Set(webhook.DefaultHeader, d.header)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// TestHandler runs each row's deliveries in order on a fresh handler and
// store, and checks statuses, store access and applications.
func TestHandler(t *testing.T) {
	now := time.Now()
	signed := func(b []byte) delivery { return delivery{body: b, header: webhook.Sign(secret, now, b)} }
	tests := []struct {
		name       string
		failing    string // an event id whose apply fails
		deliveries []delivery
		want       []int
		replayed   []bool
		claims     int64
		applied    int // applications of evt_1
	}{
		{name: "applied once, then acknowledged", claims: 2, applied: 1,
			deliveries: []delivery{signed(event("evt_1")), signed(event("evt_1"))},
			want:       []int{204, 204}, replayed: []bool{false, true}},
		{name: "S16 unsigned", deliveries: []delivery{{body: event("evt_1")}}, want: []int{400}},
		{name: "S17 wrong secret", deliveries: []delivery{{body: event("evt_1"), header: webhook.Sign([]byte("guess"), now, event("evt_1"))}}, want: []int{400}},
		{name: "S17 tampered body", deliveries: []delivery{{body: event("evt_2"), header: webhook.Sign(secret, now, event("evt_1"))}}, want: []int{400}},
		{name: "S18 stale", deliveries: []delivery{{body: event("evt_1"), header: webhook.Sign(secret, now.Add(-time.Hour), event("evt_1"))}}, want: []int{400}},
		{name: "S19 replayed within tolerance", claims: 3, applied: 1,
			deliveries: []delivery{signed(event("evt_1")), signed(event("evt_1")), signed(event("evt_1"))},
			want:       []int{204, 204, 204}, replayed: []bool{false, true, true}},
		{name: "S21 forged event first, genuine one applied", claims: 2, applied: 1,
			deliveries: []delivery{{body: event("evt_1")}, {body: event("evt_1"), header: webhook.Sign([]byte("guess"), now, event("evt_1"))}, signed(event("evt_1")), signed(event("evt_1"))},
			want:       []int{400, 400, 204, 204}, replayed: []bool{false, false, false, true}},
		{name: "not POST", deliveries: []delivery{{method: http.MethodGet}}, want: []int{405}},
		{name: "body over the cap", deliveries: []delivery{signed(make([]byte, webhook.DefaultMaxBodyBytes+1))}, want: []int{413}},
		{name: "signed but no id", deliveries: []delivery{signed([]byte(`{"type":"ping"}`))}, want: []int{400}},
		{name: "signed but not JSON", deliveries: []delivery{signed([]byte(`ping`))}, want: []int{400}},
		{name: "apply fails: 500, and the retry applies", failing: "evt_1", claims: 2, applied: 1,
			deliveries: []delivery{signed(event("evt_1")), signed(event("evt_1"))},
			want:       []int{500, 204}, replayed: []bool{false, false}},
		{name: "same id, different body", claims: 2, applied: 1,
			deliveries: []delivery{signed(event("evt_1")), signed([]byte(`{"id":"evt_1","type":"charge.refunded"}`))},
			want:       []int{204, 422}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := &spyStore{Store: memstore.New()}
			l := newLedger()
			if tt.failing != "" {
				l.failing[tt.failing] = true
			}
			h := newHandler(t, store, l)
			for i, d := range tt.deliveries {
				w := d.send(h)
				if w.Code != tt.want[i] {
					t.Fatalf("delivery %d: status %d, want %d: %s", i, w.Code, tt.want[i], w.Body)
				}
				if tt.replayed != nil && (w.Header().Get("Idempotent-Replayed") == "true") != tt.replayed[i] {
					t.Errorf("delivery %d: replayed %q, want %t", i, w.Header().Get("Idempotent-Replayed"), tt.replayed[i])
				}
				if w.Code == 500 {
					l.mu.Lock()
					clear(l.failing) // the ledger recovers
					l.mu.Unlock()
				}
			}
			if got := store.claims.Load(); got != tt.claims {
				t.Errorf("store claims %d, want %d", got, tt.claims)
			}
			if got := l.count("provider/evt_1"); got != tt.applied {
				t.Errorf("evt_1 applied %d times, want %d", got, tt.applied)
			}
		})
	}
}
