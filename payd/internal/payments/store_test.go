package payments

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/idemhq/idem/payd/internal/database/dbtest"
	"github.com/idemhq/idem/payd/internal/pgtest"
	"github.com/idemhq/idem/sqlitestore"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// eachDatabase runs test on a migrated Store on a new SQLite file and on a
// new PostgreSQL database.
func eachDatabase(t *testing.T, test func(t *testing.T, s *Store)) {
	eachURL(t, func(t *testing.T, url string) { test(t, openStore(t, url)) })
}

// eachURL runs test, in parallel, on the URL of a new SQLite file and of a
// new PostgreSQL database, for a test that opens several Stores on one
// database, as several processes would.
func eachURL(t *testing.T, test func(t *testing.T, url string)) {
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		test(t, filepath.Join(t.TempDir(), "payd.db"))
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		test(t, pgtest.Database(t))
	})
}

// openStore opens a Store on url as payd does, both schemas applied, with
// the account acct_test reached with sk_test_0123456789.
func openStore(t *testing.T, url string) *Store {
	t.Helper()
	d := dbtest.Open(t, url)
	if err := d.Idem.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	s := New(d.DB, nil)
	if err := s.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := s.Ready(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureAccount(t.Context(), "acct_test", "test", "sk_test_0123456789"); err != nil {
		t.Fatal(err)
	}
	return s
}

func newPayment(t *testing.T, s *Store, reference string) *Payment {
	t.Helper()
	p, err := s.Create(t.Context(), NewPayment{AccountID: "acct_test", Amount: 1999, Currency: "usd", Reference: reference,
		Metadata: map[string]string{"order": reference}})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMigrateTwice(t *testing.T) {
	eachDatabase(t, func(t *testing.T, s *Store) {
		if err := s.Migrate(t.Context()); err != nil {
			t.Fatalf("second Migrate: %v", err)
		}
	})
}

func TestAccounts(t *testing.T) {
	eachDatabase(t, func(t *testing.T, s *Store) {
		if id, err := s.AccountByKey(t.Context(), "sk_test_0123456789"); err != nil || id != "acct_test" {
			t.Fatalf("AccountByKey(sk_test_0123456789) = (%q, %v), want acct_test", id, err)
		}
		if _, err := s.AccountByKey(t.Context(), "sk_wrong_0123456789"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("AccountByKey(unknown) = %v, want ErrNotFound", err)
		}
	})
}

// TestEnsureAccountWaitsOutABusyDatabase: while another process holds
// SQLite's write lock past the write queue's bound (a replica stopped
// mid-write), a restart with the same key writes nothing and goes on, and
// a new key waits for the lock instead of failing payd's start.
func TestEnsureAccountWaitsOutABusyDatabase(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "payd.db")
	s := openStore(t, path)
	other, err := sqlitestore.OpenDB(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	conn, err := other.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(t.Context(), "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	held := sqlitestore.DefaultBusyTimeout + time.Second
	released := time.AfterFunc(held, func() {
		if _, err := conn.ExecContext(context.Background(), "ROLLBACK"); err != nil {
			t.Errorf("release the write lock: %v", err)
		}
	})
	defer released.Stop()

	// Shorter than the queue's bound: a write would fail.
	short, cancel := context.WithTimeout(t.Context(), sqlitestore.DefaultBusyTimeout/5)
	defer cancel()
	if err := s.EnsureAccount(short, "acct_test", "test", "sk_test_0123456789"); err != nil {
		t.Fatalf("EnsureAccount of an account already so, while the lock is held = %v, want nil without a write", err)
	}

	start := time.Now()
	if err := s.EnsureAccount(t.Context(), "acct_test", "test", "sk_rotated_0123456789"); err != nil {
		t.Fatalf("EnsureAccount with a new key while the lock is held for %s = %v, want it written once the lock is free", held, err)
	}
	if d := time.Since(start); d < sqlitestore.DefaultBusyTimeout {
		t.Fatalf("EnsureAccount returned after %s, before the lock was released", d)
	}
	if id, err := s.AccountByKey(t.Context(), "sk_rotated_0123456789"); err != nil || id != "acct_test" {
		t.Fatalf("AccountByKey(sk_rotated_0123456789) = (%q, %v), want acct_test", id, err)
	}
}

func TestCreateGetAndList(t *testing.T) {
	eachDatabase(t, func(t *testing.T, s *Store) {
		p := newPayment(t, s, "order-1")
		if p.State != StatePending || p.ProviderKey != "payd_"+p.ID || p.Metadata["order"] != "order-1" {
			t.Fatalf("created %+v, want pending with its provider key and metadata", p)
		}
		got, err := s.Get(t.Context(), "acct_test", p.ID)
		if err != nil || got.ID != p.ID || got.Amount != 1999 {
			t.Fatalf("Get = (%+v, %v)", got, err)
		}
		if _, err := s.Get(t.Context(), "acct_other", p.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get by another account = %v, want ErrNotFound", err)
		}
		for range 4 {
			newPayment(t, s, "order-2")
		}
		var seen []string
		page := Page{Limit: 2}
		for {
			ps, more, err := s.List(t.Context(), "acct_test", Filter{Reference: "order-2"}, page)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range ps {
				seen = append(seen, p.ID)
			}
			if !more {
				break
			}
			page.After = ps[len(ps)-1].ID
		}
		if len(seen) != 4 {
			t.Fatalf("listed %d payments with reference order-2 in pages of 2, want 4: %v", len(seen), seen)
		}
	})
}

// TestClaimIsFenced: a claim raises the fence; an outcome from an older
// fence is refused, and the newer one's stands.
func TestClaimIsFenced(t *testing.T) {
	eachDatabase(t, func(t *testing.T, s *Store) {
		p := newPayment(t, s, "order-1")
		const lease = 500 * time.Millisecond
		claimed := time.Now()
		first, err := s.ClaimDue(t.Context(), lease)
		if err != nil || first == nil || first.ID != p.ID || first.From != StatePending || first.Fence != 1 {
			t.Fatalf("ClaimDue = (%+v, %v), want the pending payment at fence 1", first, err)
		}
		// Only a claim made within the lease proves it held: on a stalled
		// machine the second call can come after it expired, and is then
		// the re-claim.
		var second *Claim
		switch again, err := s.ClaimDue(t.Context(), time.Minute); {
		case err != nil:
			t.Fatal(err)
		case again != nil && time.Since(claimed) < lease:
			t.Fatalf("ClaimDue while leased = %+v, want nothing due", again)
		case again != nil:
			t.Logf("the second claim came %s after the first, past the lease, and re-claimed", time.Since(claimed))
			second = again
		}
		for deadline := time.Now().Add(10 * time.Second); second == nil; {
			if time.Now().After(deadline) {
				t.Fatal("the expired lease was never claimed again")
			}
			time.Sleep(20 * time.Millisecond)
			if second, err = s.ClaimDue(t.Context(), time.Minute); err != nil {
				t.Fatal(err)
			}
		}
		if second.Fence != 2 || second.From != StateProcessing || second.Attempts != 2 {
			t.Fatalf("re-claim = fence %d from %s after %d attempts, want fence 2 from processing after 2", second.Fence, second.From, second.Attempts)
		}
		if _, err := s.Settle(t.Context(), first, Outcome{State: StateFailed, FailureCode: "stale"}); !errors.Is(err, ErrFenced) {
			t.Fatalf("Settle by the stale claim = %v, want ErrFenced", err)
		}
		settled, err := s.Settle(t.Context(), second, Outcome{State: StateSucceeded, ProviderID: "pch_1"})
		if err != nil {
			t.Fatalf("Settle by the current claim = %v", err)
		}
		got, _ := s.Get(t.Context(), "acct_test", p.ID)
		if got.State != StateSucceeded || got.ProviderChargeID != "pch_1" || got.FailureCode != "" {
			t.Fatalf("payment = %s %q %q, want succeeded with pch_1 and no failure", got.State, got.ProviderChargeID, got.FailureCode)
		}
		if !reflect.DeepEqual(settled, got) {
			t.Fatalf("Settle returned %+v, but the payment reads %+v", settled, got)
		}
		if c, _ := s.ClaimDue(t.Context(), time.Minute); c != nil {
			t.Fatalf("a succeeded payment was claimed again: %+v", c)
		}
	})
}

// TestRetryIsDueLater: a retry_scheduled payment is not claimed before it
// is due, and is claimed after.
func TestRetryIsDueLater(t *testing.T) {
	eachDatabase(t, func(t *testing.T, s *Store) {
		newPayment(t, s, "order-1")
		c, _ := s.ClaimDue(t.Context(), time.Minute)
		if _, err := s.Settle(t.Context(), c, Outcome{State: StateRetryScheduled, Due: 300 * time.Millisecond}); err != nil {
			t.Fatal(err)
		}
		if early, _ := s.ClaimDue(t.Context(), time.Minute); early != nil {
			t.Fatal("claimed a retry before it was due")
		}
		time.Sleep(400 * time.Millisecond)
		later, err := s.ClaimDue(t.Context(), time.Minute)
		if err != nil || later == nil || later.From != StateRetryScheduled {
			t.Fatalf("ClaimDue after the retry was due = (%+v, %v), want it claimed from retry_scheduled", later, err)
		}
		if n, err := s.Backlog(t.Context()); err != nil || n != 1 {
			t.Fatalf("Backlog = (%d, %v), want 1", n, err)
		}
	})
}

func TestManyPaymentsEachClaimedOnce(t *testing.T) {
	eachDatabase(t, func(t *testing.T, s *Store) {
		const n = 20
		for i := range n {
			newPayment(t, s, fmt.Sprint("order-", i))
		}
		seen := map[string]bool{}
		for {
			c, err := s.ClaimDue(t.Context(), time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			if c == nil {
				break
			}
			if seen[c.ID] {
				t.Fatalf("payment %s claimed twice under a live lease", c.ID)
			}
			seen[c.ID] = true
		}
		if len(seen) != n {
			t.Fatalf("claimed %d payments, want %d", len(seen), n)
		}
	})
}

// TestReservedPaymentsAreClaimedByID: a payment accepted with a reserve is
// not due to any poll until the reserve is over, but the worker it is
// handed to claims it by id, once.
func TestReservedPaymentsAreClaimedByID(t *testing.T) {
	eachDatabase(t, func(t *testing.T, s *Store) {
		p, err := s.Create(t.Context(), NewPayment{AccountID: "acct_test", Amount: 1999, Currency: "usd", Reference: "order-1", Reserve: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		if c, err := s.ClaimDue(t.Context(), time.Minute); err != nil || c != nil {
			t.Fatalf("ClaimDue during the reserve = (%+v, %v), want nothing due", c, err)
		}
		c, err := s.ClaimPending(t.Context(), p.ID, time.Minute)
		if err != nil || c == nil || c.ID != p.ID || c.Fence != 1 || c.From != StatePending || c.MoreDue {
			t.Fatalf("ClaimPending = (%+v, %v), want %s at fence 1, from pending", c, err, p.ID)
		}
		if again, err := s.ClaimPending(t.Context(), p.ID, time.Minute); err != nil || again != nil {
			t.Fatalf("ClaimPending again = (%+v, %v), want nothing: it is processing", again, err)
		}
	})
}

// TestClaimSaysWhenMoreIsDue: a claim reports whether another payment was
// due, so a worker knows whether to claim again.
func TestClaimSaysWhenMoreIsDue(t *testing.T) {
	eachDatabase(t, func(t *testing.T, s *Store) {
		newPayment(t, s, "order-1")
		newPayment(t, s, "order-2")
		first, err := s.ClaimDue(t.Context(), time.Minute)
		if err != nil || first == nil || !first.MoreDue {
			t.Fatalf("first ClaimDue = (%+v, %v), want a claim with more due", first, err)
		}
		second, err := s.ClaimDue(t.Context(), time.Minute)
		if err != nil || second == nil || second.MoreDue {
			t.Fatalf("second ClaimDue = (%+v, %v), want a claim with nothing more due", second, err)
		}
	})
}
