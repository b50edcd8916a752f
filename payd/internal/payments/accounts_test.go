package payments

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/idemhq/idem/payd/internal/database"
)

// TestKeysOfTwoAccounts: an account has as many live keys as it is given,
// each reaching it alone; a revoked key reaches nothing and is never live
// again; one account's key cannot be given to another.
func TestKeysOfTwoAccounts(t *testing.T) {
	eachDatabase(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		if err := s.CreateAccount(ctx, "acct_b", "Bee"); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateAccount(ctx, "acct_b", "Bee again"); !errors.Is(err, ErrAccountExists) {
			t.Fatalf("CreateAccount of an id taken = %v, want ErrAccountExists", err)
		}
		for _, bad := range []string{"bad\x00name", "\u202eevil", "esc\u009b[2J", " ", strings.Repeat("n", 101)} {
			if err := s.CreateAccount(ctx, "acct_c", bad); err == nil {
				t.Fatalf("CreateAccount named %q succeeded", bad)
			}
		}
		second := NewAPIKey()
		k, err := s.AddKey(ctx, "acct_test", second)
		if err != nil {
			t.Fatal(err)
		}
		if k.Hint != second[:keyHintLen] || k.AccountID != "acct_test" || k.RevokedAt != nil {
			t.Fatalf("AddKey = %+v", k)
		}
		if again, err := s.AddKey(ctx, "acct_test", second); err != nil || again.ID != k.ID {
			t.Fatalf("AddKey of a live key again = (%+v, %v), want the same key", again, err)
		}
		bee := NewAPIKey()
		if _, err := s.AddKey(ctx, "acct_b", bee); err != nil {
			t.Fatal(err)
		}
		if _, err := s.AddKey(ctx, "acct_b", second); !errors.Is(err, ErrKeyTaken) {
			t.Fatalf("AddKey of acct_test's key to acct_b = %v, want ErrKeyTaken", err)
		}
		if _, err := s.AddKey(ctx, "acct_nobody", NewAPIKey()); !errors.Is(err, ErrNotFound) {
			t.Fatalf("AddKey to no account = %v, want ErrNotFound", err)
		}
		for _, bad := range []string{"short", "sk_with space and more", "sk_with_a_newline\n_0123", "sk_" + strings.Repeat("k", 200)} {
			if _, err := s.AddKey(ctx, "acct_b", bad); err == nil {
				t.Fatalf("AddKey of %q succeeded", bad)
			}
		}
		for key, want := range map[string]string{"sk_test_0123456789": "acct_test", second: "acct_test", bee: "acct_b"} {
			if got, err := s.AccountByKey(ctx, key); err != nil || got != want {
				t.Fatalf("AccountByKey(%s…) = (%q, %v), want %s", key[:6], got, err, want)
			}
		}

		if err := s.RevokeKey(ctx, "acct_b", k.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("RevokeKey of acct_test's key as acct_b = %v, want ErrNotFound", err)
		}
		if err := s.RevokeKey(ctx, "acct_test", k.ID); err != nil {
			t.Fatal(err)
		}
		if err := s.RevokeKey(ctx, "acct_test", k.ID); err != nil {
			t.Fatalf("RevokeKey again = %v, want nil", err)
		}
		if _, err := s.AccountByKey(ctx, second); !errors.Is(err, ErrNotFound) {
			t.Fatalf("AccountByKey(revoked) = %v, want ErrNotFound", err)
		}
		if _, err := s.AddKey(ctx, "acct_test", second); !errors.Is(err, ErrKeyRevoked) {
			t.Fatalf("AddKey of a revoked key = %v, want ErrKeyRevoked", err)
		}
		if got, err := s.AccountByKey(ctx, "sk_test_0123456789"); err != nil || got != "acct_test" {
			t.Fatalf("the first key after the second's revocation: (%q, %v)", got, err)
		}
		keys, err := s.Keys(ctx, "acct_test")
		if err != nil || len(keys) != 2 || keys[0].RevokedAt != nil || keys[1].ID != k.ID || keys[1].RevokedAt == nil {
			t.Fatalf("Keys = %+v, %v; want the first live, the second revoked", keys, err)
		}
		accounts, err := s.Accounts(ctx)
		if err != nil || len(accounts) != 2 || accounts[0].ID != "acct_test" || accounts[0].LiveKeys != 1 || accounts[1].Name != "Bee" || accounts[1].LiveKeys != 1 {
			t.Fatalf("Accounts = %+v, %v", accounts, err)
		}
	})
}

// TestStartupNeverChangesAKey: EnsureAccount adds a key and never takes
// one away, and refuses a key revoked or another account's instead of
// changing it.
func TestStartupNeverChangesAKey(t *testing.T) {
	eachDatabase(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		if err := s.EnsureAccount(ctx, "acct_test", "renamed", "sk_another_0123456789"); err != nil {
			t.Fatal(err)
		}
		for _, key := range []string{"sk_test_0123456789", "sk_another_0123456789"} {
			if got, err := s.AccountByKey(ctx, key); err != nil || got != "acct_test" {
				t.Fatalf("AccountByKey(%s) = (%q, %v), want acct_test: a start must not take a key away", key, got, err)
			}
		}
		if a, _ := s.Accounts(ctx); len(a) != 1 || a[0].Name != "test" {
			t.Fatalf("accounts = %+v, want acct_test's name unchanged", a)
		}
		keys, _ := s.Keys(ctx, "acct_test")
		if err := s.RevokeKey(ctx, "acct_test", keys[1].ID); err != nil {
			t.Fatal(err)
		}
		if err := s.EnsureAccount(ctx, "acct_test", "test", "sk_another_0123456789"); !errors.Is(err, ErrKeyRevoked) {
			t.Fatalf("EnsureAccount with a revoked key = %v, want ErrKeyRevoked", err)
		}
		if err := s.EnsureAccount(ctx, "acct_other", "other", "sk_test_0123456789"); !errors.Is(err, ErrKeyTaken) {
			t.Fatalf("EnsureAccount with acct_test's key for another account = %v, want ErrKeyTaken", err)
		}
	})
}

// TestKeysMigration: an account made before 0005, with its one key in
// accounts.api_key_hash, is reached with that key after it.
func TestKeysMigration(t *testing.T) {
	eachUnmigrated(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		err := s.db.InTx(ctx, func(q database.Querier) error {
			if err := s.applyMigrations(ctx, q, "0005"); err != nil {
				return err
			}
			_, err := q.Exec(ctx, s.dialect.sql(`INSERT INTO accounts (id, name, api_key_hash, created_at) VALUES ('acct_old', 'old', $1, 0)`),
				hashKey("sk_made_before_keys"))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		if got, err := s.AccountByKey(ctx, "sk_made_before_keys"); err != nil || got != "acct_old" {
			t.Fatalf("AccountByKey(the key from before 0005) = (%q, %v), want acct_old", got, err)
		}
		if keys, err := s.Keys(context.Background(), "acct_old"); err != nil || len(keys) != 1 || keys[0].ID != "key_acct_old" {
			t.Fatalf("Keys(acct_old) = %+v, %v", keys, err)
		}
	})
}
