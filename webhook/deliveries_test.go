package webhook_test

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/idemhq/idem/memstore"
	"github.com/idemhq/idem/webhook"
)

// instances starts n servers, each a handler with its own engine, sharing
// one store: n instances of one service.
func instances(t *testing.T, n int, l *ledger) []string {
	store := memstore.New()
	urls := make([]string, n)
	for i := range urls {
		srv := httptest.NewServer(newHandler(t, store, l))
		t.Cleanup(srv.Close)
		urls[i] = srv.URL
	}
	return urls
}

func post(t *testing.T, client *http.Client, url string, d delivery) int {
	r, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url+"/webhooks", bytes.NewReader(d.body))
	if err != nil {
		t.Error(err)
		return 0
	}
	if d.header != "" {
		r.Header.Set(webhook.DefaultHeader, d.header)
	}
	resp, err := client.Do(r)
	if err != nil {
		t.Error(err)
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func newClient(t *testing.T) *http.Client {
	transport := &http.Transport{MaxIdleConnsPerHost: 32}
	t.Cleanup(transport.CloseIdleConnections)
	return &http.Client{Transport: transport, Timeout: time.Minute}
}

// TestDeliveries is scenario 23: 1,000 signed events, each delivered three
// times, shuffled, concurrently across four instances sharing one store.
// Every delivery gets 2xx and every event is applied exactly once.
func TestDeliveries(t *testing.T) {
	const events, copies, servers, senders = 1000, 3, 4, 32
	l := newLedger()
	urls := instances(t, servers, l)
	client := newClient(t)

	now := time.Now()
	var all []delivery
	for i := range events {
		b := event(fmt.Sprintf("evt_%d", i))
		for range copies {
			all = append(all, delivery{body: b, header: webhook.Sign(secret, now, b)})
		}
	}
	rng := rand.New(rand.NewPCG(3, 4))
	rng.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })

	work := make(chan int)
	var wg sync.WaitGroup
	for range senders {
		wg.Go(func() {
			for i := range work {
				if status := post(t, client, urls[spread(i, servers)], all[i]); status/100 != 2 {
					t.Errorf("delivery %d: status %d, want 2xx", i, status)
				}
			}
		})
	}
	for i := range all {
		work <- i
	}
	close(work)
	wg.Wait()

	l.mu.Lock()
	defer l.mu.Unlock()
	total := 0
	for id, n := range l.applied {
		if n != 1 {
			t.Errorf("%s applied %d times, want 1", id, n)
		}
		total += n
	}
	if total != events || len(l.applied) != events {
		t.Errorf("side effects %d over %d events, want %d", total, len(l.applied), events)
	}
}

// spread spreads deliveries over instances without shared random state.
func spread(i, n int) int { return int(uint64(i) * 0x9e3779b97f4a7c15 >> 32 % uint64(n)) }

// TestPoisoning is scenario 24, 100 times over: an unsigned and a badly
// signed event carrying a real event's id arrive first, at any instance;
// both get 400 and write nothing, and the genuine event, when it comes, is
// applied exactly once.
func TestPoisoning(t *testing.T) {
	const events, servers = 100, 4
	l := newLedger()
	store := &spyStore{Store: memstore.New()}
	urls := make([]string, servers)
	for i := range urls {
		srv := httptest.NewServer(newHandler(t, store, l))
		t.Cleanup(srv.Close)
		urls[i] = srv.URL
	}
	client := newClient(t)
	now := time.Now()
	for i := range events {
		id := fmt.Sprintf("evt_real_%d", i)
		genuine := event(id)
		forged := []byte(fmt.Sprintf(`{"id":%q,"type":"charge.refunded"}`, id))
		for j, d := range []delivery{
			{body: forged},
			{body: forged, header: webhook.Sign([]byte("attacker"), now, forged)},
			{body: forged, header: webhook.Sign(secret, now, genuine)}, // a real signature, another body
		} {
			if status := post(t, client, urls[(i+j)%servers], d); status != http.StatusBadRequest {
				t.Fatalf("event %d: forged delivery %d got %d, want 400", i, j, status)
			}
		}
		if got := store.claims.Load(); got != int64(i) {
			t.Fatalf("event %d: forged deliveries reached the store (%d claims, want %d)", i, got, i)
		}
		if status := post(t, client, urls[(i+3)%servers], delivery{body: genuine, header: webhook.Sign(secret, now, genuine)}); status != http.StatusNoContent {
			t.Fatalf("event %d: genuine delivery got %d, want 204", i, status)
		}
		if n := l.count("provider/" + id); n != 1 {
			t.Fatalf("event %d applied %d times, want 1", i, n)
		}
	}
}
