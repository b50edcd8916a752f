package payments

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"

	"github.com/idemhq/idem/payd/internal/database"
)

// hashKey is how API keys are stored: SHA-256, hex. Keys are random and
// long, so a fast hash is enough.
func hashKey(apiKey string) string {
	sum := sha256.Sum256([]byte(apiKey))
	return hex.EncodeToString(sum[:])
}

// EnsureAccount creates or updates the account id, reached with apiKey.
// An account already so, as on every restart with the same key, is not
// written. It is startup work, bounded by ctx alone: while SQLite stays
// busy past the write queue's bound (another process holds its write
// lock, perhaps one stopped mid-write), it logs and tries again
// (TestEnsureAccountWaitsOutABusyDatabase).
func (s *Store) EnsureAccount(ctx context.Context, id, name, apiKey string) error {
	hash := hashKey(apiKey)
	var n int
	if err := s.db.QueryRow(ctx, s.sql.accountIs, id, name, hash).Scan(&n); err != nil || n == 1 {
		return wrap("ensure account", err)
	}
	for {
		err := s.execWrite(ctx, s.sql.upsertAccount, id, name, hash)
		if err == nil || !s.db.Busy(err) || ctx.Err() != nil {
			return wrap("ensure account", err)
		}
		s.log.WarnContext(ctx, "payments: database busy, another process holds its write lock; trying again to write the account",
			"account", id, "err", err)
	}
}

// AccountByKey returns the account an API key belongs to, or ErrNotFound.
func (s *Store) AccountByKey(ctx context.Context, apiKey string) (string, error) {
	var id string
	err := s.db.QueryRow(ctx, s.sql.accountByKey, hashKey(apiKey)).Scan(&id)
	if errors.Is(err, database.ErrNoRows) {
		return "", ErrNotFound
	}
	return id, wrap("find account", err)
}
