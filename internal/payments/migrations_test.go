package payments

import (
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/idemhq/idem/internal/testenv"
)

// TestBalanceSlotsMigration: a database whose ledger keeps one balance row
// per account (migration 0002) keeps every balance when 0003 spreads them
// over slots, and postings after it add to the same balances.
func TestBalanceSlotsMigration(t *testing.T) {
	eachUnmigrated(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		// The schema as it stood at 0002, with balances in it.
		err := s.inTx(ctx, func(q querier) error {
			if _, err := q.exec(ctx, `CREATE TABLE payd_migrations (name text PRIMARY KEY, applied_at bigint NOT NULL)`); err != nil {
				return err
			}
			names, err := s.migrationNames()
			if err != nil {
				return err
			}
			for _, name := range names {
				base := name[strings.LastIndex(name, "/")+1:]
				if base >= "0003" {
					break
				}
				body, err := migrations.ReadFile(name)
				if err != nil {
					return err
				}
				if _, err := q.exec(ctx, string(body)); err != nil {
					return err
				}
				if _, err := q.exec(ctx, s.dialect.sql(`INSERT INTO payd_migrations (name, applied_at) VALUES ($1, 0)`), base); err != nil {
					return err
				}
			}
			_, err = q.exec(ctx, `INSERT INTO ledger_balances (account, currency, balance) VALUES
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
			err := s.inTx(ctx, func(q querier) error {
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
		if err := s.pool.queryRow(ctx, `SELECT count(*) FROM ledger_balances WHERE account = 'merchant:acct_test' AND currency = 'usd'`).Scan(&slots); err != nil {
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

// eachUnmigrated runs test on a new SQLite file and a new PostgreSQL
// database, opened with no migration applied.
func eachUnmigrated(t *testing.T, test func(t *testing.T, s *Store)) {
	for _, database := range []string{"sqlite", "postgres"} {
		t.Run(database, func(t *testing.T) {
			url := filepath.Join(t.TempDir(), "payd.db")
			if database == "postgres" {
				url = testenv.PostgresDatabase(t)
			}
			s, err := Open(t.Context(), url, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(s.Close)
			test(t, s)
		})
	}
}
