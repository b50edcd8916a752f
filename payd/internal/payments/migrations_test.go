package payments

import (
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/idemhq/idem/payd/internal/database"
	"github.com/idemhq/idem/payd/internal/database/dbtest"
	"github.com/idemhq/idem/payd/internal/pgtest"
)

// TestBalanceSlotsMigration: a database whose ledger keeps one balance row
// per account (migration 0002) keeps every balance when 0003 spreads them
// over slots, and postings after it add to the same balances.
func TestBalanceSlotsMigration(t *testing.T) {
	eachUnmigrated(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		// The schema as it stood at 0002, with balances in it.
		err := s.db.InTx(ctx, func(q database.Querier) error {
			if err := s.applyMigrations(ctx, q, "0003"); err != nil {
				return err
			}
			_, err := q.Exec(ctx, `INSERT INTO ledger_balances (account, currency, balance) VALUES
					('merchant:acct_test', 'usd', -5000), ('refunds_payable:acct_test', 'usd', -700), ('merchant:acct_test', 'eur', -1200)`)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		want := []Balance{{Currency: "eur", Available: 1200}, {Currency: "usd", Available: 5000, RefundsPending: 700}}
		if got := mustBalances(t, s); !slices.Equal(got, want) {
			t.Fatalf("balances after 0003: %+v, want %+v", got, want)
		}
		// Forty postings land in several slots and add to the balance.
		for i := range 40 {
			err := s.db.InTx(ctx, func(q database.Querier) error {
				return s.postCharge(ctx, q, "pay_"+strconv.Itoa(i), "acct_test", "usd", 100)
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		want[1].Available += 40 * 100
		if got := mustBalances(t, s); !slices.Equal(got, want) {
			t.Fatalf("balances after 40 postings of 100: %+v, want %+v", got, want)
		}
		var slots int
		if err := s.db.QueryRow(ctx, `SELECT count(*) FROM ledger_balances WHERE account = 'merchant:acct_test' AND currency = 'usd'`).Scan(&slots); err != nil {
			t.Fatal(err)
		}
		if slots < 2 {
			t.Fatalf("40 postings used %d balance slot(s), want them spread", slots)
		}
	})
}

func mustBalances(t *testing.T, s *Store) []Balance {
	t.Helper()
	bs, err := s.Balances(t.Context(), "acct_test")
	if err != nil {
		t.Fatal(err)
	}
	return bs
}

// TestReadyNamesWhatIsMissing: before Migrate, Ready says no migrations
// are applied and how to apply them; after it, Ready passes.
func TestReadyNamesWhatIsMissing(t *testing.T) {
	eachUnmigrated(t, func(t *testing.T, s *Store) {
		if err := s.Ready(t.Context()); err == nil || !strings.Contains(err.Error(), "no migrations applied (run payd migrate") {
			t.Fatalf("Ready before Migrate = %v, want no migrations applied, with what to run", err)
		}
		if err := s.Migrate(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := s.Ready(t.Context()); err != nil {
			t.Fatalf("Ready after Migrate = %v", err)
		}
	})
}

// TestOutcomesMigration: a database at 0003 with postings and an open
// mismatch keeps them through 0004, which on SQLite builds the ledger's
// tables again: every row, the append-only triggers, postings after it,
// and the mismatch, now keyed by its payment's provider key (two old rows
// for one new key keep the open one). A payment the old code may have
// sent counts as sent, so a "not found" does not fail it at once.
func TestOutcomesMigration(t *testing.T) {
	eachUnmigrated(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		err := s.db.InTx(ctx, func(q database.Querier) error {
			if err := s.applyMigrations(ctx, q, "0004"); err != nil {
				return err
			}
			for _, stmt := range []string{
				`INSERT INTO accounts (id, name, api_key_hash, created_at) VALUES ('acct_test', 'test', 'h', 0)`,
				`INSERT INTO payments (id, account_id, amount, currency, reference, state, next_attempt_at, provider_key, created_at, updated_at)
					VALUES ('ch_old', 'acct_test', 700, 'usd', 'r', 'succeeded', 0, 'payd_ch_old', 5, 5)`,
				`INSERT INTO reconciliation_mismatches (id, kind, payment_id, provider_charge_id, detail, subject_at, found_at)
					VALUES ('mm_old', 'amount_mismatch', 'ch_old', 'ch_000001', 'old', 5, 6)`,
				// Two rows of one kind for one payment, which the new key
				// makes one: the open one is kept.
				`INSERT INTO reconciliation_mismatches (id, kind, payment_id, provider_charge_id, detail, subject_at, found_at, resolved_at)
					VALUES ('mm_gone', 'amount_mismatch', 'ch_old', '', 'resolved', 5, 4, 5)`,
				// Sent by the code before 0004, its response lost.
				`INSERT INTO payments (id, account_id, amount, currency, reference, state, next_attempt_at, provider_key, attempts, created_at, updated_at)
					VALUES ('ch_inflight', 'acct_test', 700, 'usd', 'r', 'unknown', 0, 'payd_ch_inflight', 8, 5, 9)`,
			} {
				if _, err := q.Exec(ctx, stmt); err != nil {
					return err
				}
			}
			return s.postCharge(ctx, q, "ch_old", "acct_test", "usd", 700)
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		if got := mustBalances(t, s); len(got) != 1 || got[0].Available != 700 {
			t.Fatalf("balances after 0004: %+v, want the 700 posted before it", got)
		}
		var entries int
		if err := s.db.QueryRow(ctx, `SELECT count(*) FROM ledger_entries`).Scan(&entries); err != nil || entries != 2 {
			t.Fatalf("%d ledger entries (%v), want the 2 posted before 0004", entries, err)
		}
		if _, err := s.db.Exec(ctx, `UPDATE ledger_entries SET amount = amount + 1`); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Fatalf("updating an entry after 0004: %v, want refused as append-only", err)
		}
		if _, err := s.db.Exec(ctx, `DELETE FROM ledger_transactions`); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Fatalf("deleting a transaction after 0004: %v, want refused as append-only", err)
		}
		err = s.db.InTx(ctx, func(q database.Querier) error {
			return s.post(ctx, q, txnChargeReversal, "ch_old", "usd", merchantAccount("acct_test"), clearingAccount, 700)
		})
		if err != nil {
			t.Fatalf("posting a correction kind after 0004: %v", err)
		}
		if got := mustBalances(t, s); got[0].Available != 0 {
			t.Fatalf("balances after a reversal: %+v, want 0", got)
		}
		c, err := s.ClaimDue(ctx, time.Minute)
		if err != nil || c == nil || c.ID != "ch_inflight" || c.SinceSent < 0 {
			t.Fatalf("claim after 0004: %+v %v, want ch_inflight, counted as sent", c, err)
		}
		open, err := s.OpenMismatches(ctx)
		if err != nil || len(open) != 1 || open[0].ID != "mm_old" || open[0].ProviderKey != "payd_ch_old" || open[0].AccountID != "acct_test" || open[0].ProviderID != "ch_000001" {
			t.Fatalf("mismatches after 0004: %+v (%v), want mm_old keyed by payd_ch_old", open, err)
		}
	})
}

// eachUnmigrated runs test on a new SQLite file and a new PostgreSQL
// database, opened with no migration applied.
func eachUnmigrated(t *testing.T, test func(t *testing.T, s *Store)) {
	for _, database := range []string{"sqlite", "postgres"} {
		t.Run(database, func(t *testing.T) {
			url := filepath.Join(t.TempDir(), "payd.db")
			if database == "postgres" {
				url = pgtest.Database(t)
			}
			test(t, New(dbtest.Open(t, url).DB, nil))
		})
	}
}
