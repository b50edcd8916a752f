package payments

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/idemhq/idem/payd/internal/database"
)

// Account is a merchant: its payments, refunds, balances, idempotency
// keys and mismatches are its own.
type Account struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	// LiveKeys counts the account's API keys not revoked.
	LiveKeys int `json:"live_keys"`
}

// APIKey is what payd keeps of an API key: never the key itself, which is
// shown once when it is made, only its hash and its first characters.
type APIKey struct {
	ID        string     `json:"id"`
	AccountID string     `json:"account_id"`
	Hint      string     `json:"hint"` // the key's first characters, or "" for a key made before keys had hints
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

// Errors of accounts and keys.
var (
	ErrAccountExists = errors.New("payments: an account with this id exists")
	ErrKeyRevoked    = errors.New("payments: the API key was revoked")
	ErrKeyTaken      = errors.New("payments: the API key belongs to another account")
)

// NewAPIKey returns a new random API key: "sk_" and 130 random bits.
func NewAPIKey() string { return "sk_" + strings.ToLower(rand.Text()) }

// NewAccountID returns a new random account id.
func NewAccountID() string { return "acct_" + strings.ToLower(rand.Text()) }

// hashKey is how API keys are stored: SHA-256, hex. Keys are random and
// long, so a fast hash is enough.
func hashKey(apiKey string) string {
	sum := sha256.Sum256([]byte(apiKey))
	return hex.EncodeToString(sum[:])
}

// keyHintLen is how much of a key a listing shows: "sk_" and 4 of its 26
// random characters, enough to tell keys apart and too few to matter.
const keyHintLen = 7

const keyColumns = `id, account_id, hint, created_at, coalesce(revoked_at, 0)`

// CheckAccountName returns an error saying what is wrong with name, if
// anything: an account's name is 1 to 100 bytes of UTF-8, not blank,
// without control or formatting characters (a bidirectional override
// could make one name print as another).
func CheckAccountName(name string) error {
	switch {
	case strings.TrimSpace(name) == "" || len(name) > 100:
		return errors.New("an account name is 1 to 100 bytes, not blank")
	case !utf8.ValidString(name):
		return errors.New("an account name must be UTF-8")
	case strings.ContainsFunc(name, func(r rune) bool { return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) }):
		return errors.New("an account name must not hold control or formatting characters")
	}
	return nil
}

// CheckAPIKey returns an error saying what is wrong with an API key an
// operator gives, if anything: 16 to 200 printable ASCII characters, no
// space, as a Bearer token can carry them.
func CheckAPIKey(key string) error {
	if len(key) < 16 || len(key) > 200 || strings.ContainsFunc(key, func(r rune) bool { return r <= ' ' || r > '~' }) {
		return errors.New("an API key is 16 to 200 printable ASCII characters without spaces")
	}
	return nil
}

// CreateAccount creates the account id, or returns ErrAccountExists.
func (s *Store) CreateAccount(ctx context.Context, id, name string) error {
	if err := CheckAccountName(name); err != nil {
		return err
	}
	var n int64
	err := s.db.Write(ctx, func(ctx context.Context) error {
		var err error
		n, err = s.db.Exec(ctx, s.sql.insertAccount, id, name, "retired:"+id)
		return err
	})
	if err == nil && n == 0 {
		return ErrAccountExists
	}
	return wrap("create account", err)
}

// Accounts returns every account, oldest first.
func (s *Store) Accounts(ctx context.Context) ([]Account, error) {
	rs, err := s.db.Query(ctx, s.sql.listAccounts)
	if err != nil {
		return nil, wrap("list accounts", err)
	}
	defer rs.Close()
	out := []Account{}
	for rs.Next() {
		var (
			a       Account
			created int64
		)
		if err := rs.Scan(&a.ID, &a.Name, &created, &a.LiveKeys); err != nil {
			return nil, wrap("list accounts", err)
		}
		a.CreatedAt = fromMillis(created)
		out = append(out, a)
	}
	return out, wrap("list accounts", rs.Err())
}

// AddKey makes secret a live API key of account, and returns what is kept
// of it. A key that already is one is returned as it is, without a write.
// It returns ErrNotFound for an account that does not exist, ErrKeyRevoked
// for a key that was revoked (a revoked key is never live again) and
// ErrKeyTaken for another account's key (TestKeysOfTwoAccounts).
func (s *Store) AddKey(ctx context.Context, account, secret string) (APIKey, error) {
	if err := CheckAPIKey(secret); err != nil {
		return APIKey{}, fmt.Errorf("payments: %w", err)
	}
	hash := hashKey(secret)
	if k, err := s.keyByHash(ctx, account, hash); !errors.Is(err, ErrNotFound) {
		return k, err
	}
	var n int
	if err := s.db.QueryRow(ctx, s.sql.accountExists, account).Scan(&n); err != nil || n == 0 {
		if err == nil {
			err = ErrNotFound
		}
		return APIKey{}, wrap("add key", err)
	}
	err := s.execWrite(ctx, s.sql.insertKey, newID("key_"), account, hash, secret[:min(keyHintLen, len(secret))])
	if err != nil {
		return APIKey{}, wrap("add key", err)
	}
	return s.keyByHash(ctx, account, hash) // the key written, or a twin's made at once by another process
}

// keyByHash returns the key of hash if it is a live key of account,
// ErrNotFound if there is none, and ErrKeyRevoked or ErrKeyTaken.
func (s *Store) keyByHash(ctx context.Context, account, hash string) (APIKey, error) {
	k, err := scanKey(s.db.QueryRow(ctx, s.sql.keyByHash, hash))
	switch {
	case errors.Is(err, database.ErrNoRows):
		return APIKey{}, ErrNotFound
	case err != nil:
		return APIKey{}, wrap("find key", err)
	case k.AccountID != account:
		return APIKey{}, ErrKeyTaken
	case k.RevokedAt != nil:
		return APIKey{}, ErrKeyRevoked
	}
	return k, nil
}

// Keys returns account's API keys, revoked ones too, oldest first.
func (s *Store) Keys(ctx context.Context, account string) ([]APIKey, error) {
	rs, err := s.db.Query(ctx, s.sql.keysOf, account)
	if err != nil {
		return nil, wrap("list keys", err)
	}
	defer rs.Close()
	out := []APIKey{}
	for rs.Next() {
		k, err := scanKey(rs)
		if err != nil {
			return nil, wrap("list keys", err)
		}
		out = append(out, k)
	}
	return out, wrap("list keys", rs.Err())
}

// RevokeKey revokes account's key id: requests with it are refused within
// the API's cache lifetime, a few seconds (TestRevokedKeyIsRefused). A key
// already revoked stays as it was; one that is not account's is
// ErrNotFound.
func (s *Store) RevokeKey(ctx context.Context, account, id string) error {
	var n int64
	err := s.db.Write(ctx, func(ctx context.Context) error {
		var err error
		n, err = s.db.Exec(ctx, s.sql.revokeKey, id, account)
		return err
	})
	if err != nil || n == 1 {
		return wrap("revoke key", err)
	}
	var found int
	if err := s.db.QueryRow(ctx, s.sql.keyOf, id, account).Scan(&found); err != nil {
		return wrap("revoke key", err)
	}
	if found == 0 {
		return ErrNotFound
	}
	return nil
}

// AccountByKey returns the account a live API key belongs to, or
// ErrNotFound.
func (s *Store) AccountByKey(ctx context.Context, apiKey string) (string, error) {
	var id string
	err := s.db.QueryRow(ctx, s.sql.accountByKey, hashKey(apiKey)).Scan(&id)
	if errors.Is(err, database.ErrNoRows) {
		return "", ErrNotFound
	}
	return id, wrap("find account", err)
}

// EnsureAccount makes sure, at startup, that the account id exists (named
// name if it is created) and that apiKey is one of its live keys. It never
// changes an existing account or key: a key revoked, or another account's,
// is an error (TestStartupNeverChangesAKey). An account already so, as on
// every restart, is not written. It is bounded by ctx alone: while SQLite
// stays busy past the write queue's bound (another process holds its
// write lock, perhaps one stopped mid-write), it logs and tries again
// (TestEnsureAccountWaitsOutABusyDatabase).
func (s *Store) EnsureAccount(ctx context.Context, id, name, apiKey string) error {
	if _, err := s.keyByHash(ctx, id, hashKey(apiKey)); !errors.Is(err, ErrNotFound) {
		return keyRefused(err)
	}
	for {
		err := s.CreateAccount(ctx, id, name)
		if errors.Is(err, ErrAccountExists) {
			err = nil
		}
		if err == nil {
			_, err = s.AddKey(ctx, id, apiKey)
		}
		if err == nil || !s.db.Busy(err) || ctx.Err() != nil {
			return keyRefused(err)
		}
		s.log.WarnContext(ctx, "payments: database busy, another process holds its write lock; trying again to write the account",
			"account", id, "err", err)
	}
}

// keyRefused says what to do about a key startup may not use.
func keyRefused(err error) error {
	switch {
	case errors.Is(err, ErrKeyRevoked):
		return fmt.Errorf("the API key given was revoked, and payd never makes a revoked key live again: give another: %w", err)
	case errors.Is(err, ErrKeyTaken):
		return fmt.Errorf("the API key given is another account's: give another: %w", err)
	}
	return wrap("ensure account", err)
}

func scanKey(row database.Row) (APIKey, error) {
	var (
		k                APIKey
		created, revoked int64
	)
	if err := row.Scan(&k.ID, &k.AccountID, &k.Hint, &created, &revoked); err != nil {
		return APIKey{}, err
	}
	k.CreatedAt = fromMillis(created)
	if revoked != 0 {
		t := fromMillis(revoked)
		k.RevokedAt = &t
	}
	return k, nil
}
