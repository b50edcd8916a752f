package integration_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/rueidis"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/idemhttp"
	"github.com/idemhq/idem/internal/testenv"
	"github.com/idemhq/idem/memstore"
	"github.com/idemhq/idem/pgstore"
	"github.com/idemhq/idem/redisstore"
	"github.com/idemhq/idem/sqlitestore"
	"github.com/idemhq/idem/store"
)

// The durable stores of the storm, each on the server the tests use.

func redisStore(t *testing.T) store.Store {
	opt, err := rueidis.ParseURL(testenv.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	client, err := rueidis.NewClient(opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	s, err := redisstore.New(t.Context(), client, &redisstore.Config{Prefix: "idemhttp-storm:" + rand.Text()[:10] + ":"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func sqliteStore(t *testing.T) store.Store {
	_, s := openSQLite(t)
	return s
}

// openSQLite opens a migrated SQLite store on a new file.
func openSQLite(t *testing.T) (*sql.DB, *sqlitestore.Store) {
	db, err := sqlitestore.OpenDB(t.Context(), filepath.Join(t.TempDir(), "storm.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s, err := sqlitestore.New(db, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	return db, s
}

func postgresStore(t *testing.T) store.Store {
	pool, err := pgxpool.New(t.Context(), testenv.DatabaseURL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	schema := "idemtest_storm_" + strings.ToLower(rand.Text()[:10])
	s, err := pgstore.New(t.Context(), pool, &pgstore.Config{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Close()
		pool.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
	})
	if err := s.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestStorm sends 1,000 concurrent requests with one key to 4 servers, each
// with its own engine, sharing one store: the handler runs once, and every
// other request gets a byte-identical replay or a 409. It runs on every
// store below; a store joins with one line.
func TestStorm(t *testing.T) {
	stores := []struct {
		name string
		new  func(t *testing.T) store.Store
	}{
		{"memstore", func(*testing.T) store.Store { return memstore.New() }},
		{"redis", redisStore},
		{"sqlite", sqliteStore},
		{"postgres", postgresStore},
	}
	for _, s := range stores {
		t.Run(s.name, func(t *testing.T) { storm(t, s.new(t), 1000, 4) })
	}
}

func storm(t *testing.T, store store.Store, requests, servers int) {
	// A namespace per run keeps durable stores' records apart between runs.
	var nonce [6]byte
	rand.Read(nonce[:])
	namespace := "storm-" + hex.EncodeToString(nonce[:])

	// The handler holds its response until a quarter of the requests have
	// been turned away, so that the rest race it, and its body is random,
	// so that a replay cannot match by chance.
	var runs, conflicts atomic.Int64
	gate := make(chan struct{})
	var gateOnce sync.Once
	payload := make([]byte, 2048)
	rand.Read(payload)
	body := hex.EncodeToString(payload)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runs.Add(1)
		io.Copy(io.Discard, r.Body)
		select {
		case <-gate:
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Location", "/charges/ch_storm")
		w.Header().Set("Set-Cookie", "session=1")
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"id":"ch_storm","noise":%q}`, body)
	})

	urls := make([]string, servers)
	for i := range servers {
		engine, err := idem.New(store, &idem.Config{Namespace: namespace})
		if err != nil {
			t.Fatal(err)
		}
		mw, err := idemhttp.Middleware(engine, userPrincipal, nil)
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(mw(handler))
		t.Cleanup(srv.Close)
		urls[i] = srv.URL
	}
	transport := &http.Transport{MaxConnsPerHost: 64, MaxIdleConnsPerHost: 64}
	t.Cleanup(transport.CloseIdleConnections)
	client := &http.Client{Transport: transport, Timeout: time.Minute}

	type response struct {
		status int
		header http.Header
		body   []byte
	}
	responses := make([]response, requests)
	var wg sync.WaitGroup
	for i := range requests {
		wg.Go(func() {
			r, err := http.NewRequestWithContext(t.Context(), http.MethodPost, urls[i%servers]+"/charges", strings.NewReader(`{"amount":1999}`))
			if err != nil {
				t.Error(err)
				return
			}
			r.Header.Set("X-User", "alice")
			r.Header.Set("Idempotency-Key", `"storm-1"`)
			resp, err := client.Do(r)
			if err != nil {
				t.Error(err)
				return
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Error(err)
				return
			}
			responses[i] = response{resp.StatusCode, resp.Header, b}
			if resp.StatusCode == http.StatusConflict && conflicts.Add(1) == int64(requests/4) {
				gateOnce.Do(func() { close(gate) })
			}
		})
	}
	wg.Wait()
	gateOnce.Do(func() { close(gate) })
	if t.Failed() {
		return
	}

	var live, replays int
	var first *response
	for i := range responses {
		r := &responses[i]
		switch {
		case r.status == http.StatusConflict:
			if r.header.Get("Retry-After") == "" {
				t.Errorf("request %d: 409 without Retry-After", i)
			}
		case r.header.Get("Idempotent-Replayed") == "true":
			replays++
			if r.header.Get("Set-Cookie") != "" {
				t.Errorf("request %d: replay carries Set-Cookie", i)
			}
		case r.status == http.StatusCreated:
			live++
		default:
			t.Fatalf("request %d: status %d %s", i, r.status, r.body)
		}
		if r.status != http.StatusCreated {
			continue
		}
		if first == nil {
			first = r
			continue
		}
		if !bytes.Equal(r.body, first.body) || r.header.Get("Location") != first.header.Get("Location") ||
			r.header.Get("Content-Type") != first.header.Get("Content-Type") {
			t.Errorf("request %d: response differs from the first 201", i)
		}
	}
	if got := runs.Load(); got != 1 {
		t.Errorf("handler ran %d times, want 1", got)
	}
	if live != 1 {
		t.Errorf("%d live responses, want 1", live)
	}
	t.Logf("%d requests over %d servers: 1 run, %d replays, %d conflicts", requests, servers, replays, conflicts.Load())
}
