package pgstore_test

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/internal/testenv"
	"github.com/idemhq/idem/pgstore"
)

// TestClaimLockTimeoutStaysInTheClaim: BeginClaim bounds its own wait for
// the key's lock with lock_timeout, and fn's statements run with the
// connection's lock_timeout again, not the claim's (here 1 ms, what
// idemhttp.MiddlewareTx asks for): a lock wait of fn's is not cut short
// and recorded as the key's outcome.
func TestClaimLockTimeoutStaysInTheClaim(t *testing.T) {
	cfg, err := pgxpool.ParseConfig(testenv.DatabaseURL(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.RuntimeParams["lock_timeout"] = "5s"
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close) // after newStore's cleanup, which uses it
	s := newStore(t, pool, pgstore.Config{})
	e, err := idem.New(s, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := idem.RunTx(t.Context(), e, "order-1", func(ctx context.Context, tx pgx.Tx) ([]byte, error) {
		var v string
		err := tx.QueryRow(ctx, "SELECT current_setting('lock_timeout')").Scan(&v)
		return []byte(v), err
	}, &idem.RunOptions{FailFast: true})
	if err != nil || string(res.Value) != "5s" {
		t.Fatalf("lock_timeout inside fn = (%q, %v), want the connection's 5s", res.Value, err)
	}
}

// TestAbortedTransactionErrorIsRecorded: an error of fn's that aborted
// its transaction is recorded, without fn's writes, and replayed, on a
// connection whose statement cache is cold as on one that is warm.
func TestAbortedTransactionErrorIsRecorded(t *testing.T) {
	pool := newPool(t)
	s := newStore(t, pool, pgstore.Config{})
	e, err := idem.New(s, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"cold", "warm"} {
		if key == "cold" {
			pool.Reset() // every connection new: no statement prepared on it yet
		}
		ran := 0
		fn := func(ctx context.Context, tx pgx.Tx) ([]byte, error) {
			ran++
			_, err := tx.Exec(ctx, "SELECT 1/0")
			return nil, err
		}
		for range 2 {
			_, err := idem.RunTx(t.Context(), e, key, fn, nil)
			if errors.Is(err, idem.ErrNotRecorded) || err == nil {
				t.Fatalf("%s: RunTx = %v, want fn's error, recorded", key, err)
			}
		}
		if ran != 1 {
			t.Fatalf("%s: fn ran %d times, want once, then its error replayed", key, ran)
		}
	}
}

// TestDatabaseFailuresInFnAreNotRecorded: a statement of fn's cut short by
// a lock or statement timeout, or by its connection's end, is the database
// failing, not fn's answer: nothing is recorded, and the next call of the
// key runs fn again.
func TestDatabaseFailuresInFnAreNotRecorded(t *testing.T) {
	pool := newPool(t)
	s := newStore(t, pool, pgstore.Config{})
	e, err := idem.New(s, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(t.Context(), `DROP TABLE IF EXISTS idem_locked; CREATE TABLE idem_locked (id int PRIMARY KEY); INSERT INTO idem_locked VALUES (1)`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pool.Exec(context.Background(), `DROP TABLE IF EXISTS idem_locked`) })
	holder, err := pool.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Rollback(context.Background())
	if _, err := holder.Exec(t.Context(), `SELECT id FROM idem_locked FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	for name, fail := range map[string]func(ctx context.Context, tx pgx.Tx) error{
		"lock timeout": func(ctx context.Context, tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '20ms'; UPDATE idem_locked SET id = 1`)
			return err
		},
		"statement timeout": func(ctx context.Context, tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `SET LOCAL statement_timeout = '20ms'; SELECT pg_sleep(5)`)
			return err
		},
		"connection terminated": func(ctx context.Context, tx pgx.Tx) error {
			var pid int
			if err := tx.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
				return err
			}
			if _, err := pool.Exec(ctx, `SELECT pg_terminate_backend($1)`, pid); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `SELECT 1`)
			return err
		},
	} {
		ran := 0
		fn := func(ctx context.Context, tx pgx.Tx) ([]byte, error) {
			if ran++; ran == 1 {
				return nil, fail(ctx, tx)
			}
			return []byte("ok"), nil
		}
		if _, err := idem.RunTx(t.Context(), e, name, fn, nil); err == nil {
			t.Fatalf("%s: RunTx succeeded, want the database's error", name)
		}
		res, err := idem.RunTx(t.Context(), e, name, fn, nil)
		if err != nil || res.Replayed || string(res.Value) != "ok" || ran != 2 {
			t.Fatalf("%s: the call after = (%q, replayed %t, %v), fn ran %d times; want fn run again: the failure was recorded", name, res.Value, res.Replayed, err, ran)
		}
	}
}
