package integration_test

import (
	"context"
	"database/sql"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/idemhttp"
	"github.com/idemhq/idem/sqlitestore"
	"github.com/idemhq/idem/store"
)

// TestMiddlewareTx: the handler's write and its recorded response commit
// together; a released status rolls the write back with the claim; a
// replay writes nothing.
func TestMiddlewareTx(t *testing.T) {
	db, s := openSQLite(t)
	if _, err := db.ExecContext(t.Context(), "CREATE TABLE orders (key TEXT NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	engine, err := idem.New(s, nil)
	if err != nil {
		t.Fatal(err)
	}
	mw, err := idemhttp.MiddlewareTx[*sql.Tx](engine, userPrincipal, &idemhttp.Config{RetryStatuses: []int{http.StatusBadRequest}})
	if err != nil {
		t.Fatal(err)
	}
	runs := 0
	h := mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runs++
		tx, ok := idemhttp.TxFrom[*sql.Tx](r.Context())
		if !ok {
			t.Error("no transaction in the handler's context")
			return
		}
		if _, err := tx.ExecContext(r.Context(), "INSERT INTO orders (key) VALUES (?)", r.Header.Get("Idempotency-Key")); err != nil {
			t.Error(err)
		}
		if r.URL.Query().Get("invalid") != "" {
			http.Error(w, "invalid", http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, "created")
	}))
	send := func(key, query string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, "/orders"+query, strings.NewReader("{}"))
		r.Header.Set("X-User", "alice")
		r.Header.Set("Idempotency-Key", key)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	rows := func(key string) (n int) {
		if err := db.QueryRowContext(t.Context(), "SELECT count(*) FROM orders WHERE key = ?", key).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	if w := send("a", "?invalid=1"); w.Code != http.StatusBadRequest || rows("a") != 0 {
		t.Fatalf("released 400: status %d, %d rows; want 400 and the write rolled back", w.Code, rows("a"))
	}
	for i, want := range []string{"", "true", "true"} {
		w := send("a", "")
		if w.Code != http.StatusCreated || w.Body.String() != "created" || w.Header().Get("Idempotent-Replayed") != want {
			t.Fatalf("call %d: %d %q replayed %q, want 201 created replayed %q", i, w.Code, w.Body.String(), w.Header().Get("Idempotent-Replayed"), want)
		}
	}
	if n := rows("a"); n != 1 {
		t.Fatalf("rows = %d, want 1: the write committed once with its response", n)
	}
	if runs != 2 {
		t.Fatalf("handler ran %d times, want 2 (the released 400, then the recorded 201)", runs)
	}
}

// failingCommit is a SQLite store whose next Commit fails after rolling
// its transaction back, as a connection lost at COMMIT would.
type failingCommit struct {
	*sqlitestore.Store
	fail bool
}

func (s *failingCommit) Commit(ctx context.Context, tx *sql.Tx, l store.Lease, outcome []byte, discardWrites bool) error {
	if s.fail {
		s.fail = false
		if err := s.Store.Rollback(ctx, tx); err != nil {
			return err
		}
		return errors.New("connection lost at COMMIT")
	}
	return s.Store.Commit(ctx, tx, l, outcome, discardWrites)
}

// TestMiddlewareTxCommitFails: when the transaction holding the handler's
// write and its response does not commit, the client is told 503 to retry,
// not the handler's 201 about a row that does not exist; the retry with the
// same key runs the handler again and commits.
func TestMiddlewareTxCommitFails(t *testing.T) {
	db, s := openSQLite(t)
	if _, err := db.ExecContext(t.Context(), "CREATE TABLE orders (key TEXT NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	store := &failingCommit{Store: s, fail: true}
	engine, err := idem.New(store, nil)
	if err != nil {
		t.Fatal(err)
	}
	mw, err := idemhttp.MiddlewareTx[*sql.Tx](engine, userPrincipal, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tx, _ := idemhttp.TxFrom[*sql.Tx](r.Context())
		if _, err := tx.ExecContext(r.Context(), "INSERT INTO orders (key) VALUES ('k1')"); err != nil {
			t.Error(err)
		}
		w.WriteHeader(http.StatusCreated)
	}))
	send := func() *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, "/orders", strings.NewReader("{}"))
		r.Header.Set("X-User", "alice")
		r.Header.Set("Idempotency-Key", "k1")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	rows := func() (n int) {
		if err := db.QueryRowContext(t.Context(), "SELECT count(*) FROM orders").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if w := send(); w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), "outcome_unsettled") || w.Header().Get("Retry-After") == "" {
		t.Fatalf("failed commit = %d %s, want 503 outcome_unsettled with Retry-After", w.Code, w.Body)
	}
	if n := rows(); n != 0 {
		t.Fatalf("%d rows after the failed commit, want 0", n)
	}
	if w := send(); w.Code != http.StatusCreated || w.Header().Get("Idempotent-Replayed") != "" {
		t.Fatalf("retry = %d replayed %q, want a fresh 201", w.Code, w.Header().Get("Idempotent-Replayed"))
	}
	if n := rows(); n != 1 {
		t.Fatalf("%d rows after the retry, want 1", n)
	}
}
