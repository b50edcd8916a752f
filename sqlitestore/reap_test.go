package sqlitestore

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/idemhq/idem/store"
)

// newTestStore returns a migrated Store on a file of the test's own.
func newTestStore(t *testing.T, cfg *Config) *Store {
	t.Helper()
	db, err := OpenDB(t.Context(), filepath.Join(t.TempDir(), "reap.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s, err := New(db, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	return s
}

// plant writes a record as it would be in the given state, times relative
// to now.
func plant(t *testing.T, s *Store, key string, state int, leaseUntil, expiresAt time.Duration) {
	t.Helper()
	n := now()
	_, err := s.db.ExecContext(t.Context(), `INSERT INTO idem_records
		(key, state, fence, owner, fingerprint, lease_ms, retention_ms, lease_until, expires_at, outcome)
		VALUES (?, ?, 7, 'o', 'fp', 1000, 1000, ?, ?, x'01')`,
		key, state, n+leaseUntil.Milliseconds(), n+expiresAt.Milliseconds())
	if err != nil {
		t.Fatal(err)
	}
}

func keys(t *testing.T, s *Store) map[string]bool {
	t.Helper()
	rows, err := s.db.QueryContext(t.Context(), "SELECT key FROM idem_records")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	got := map[string]bool{}
	for rows.Next() {
		var k string
		rows.Scan(&k)
		got[k] = true
	}
	return got
}

// TestReapDeletesExpiredInBatches injects records in every state, expired
// and not, and reaps them in batches smaller than the backlog.
func TestReapDeletesExpiredInBatches(t *testing.T) {
	s := newTestStore(t, &Config{ReapInterval: -1, ReapBatch: 2})
	for _, r := range []struct {
		key               string
		state             int
		lease, expiration time.Duration
	}{
		{"expired/completed", stateCompleted, -time.Hour, -time.Minute},
		{"expired/free", stateFree, -time.Hour, -time.Second},
		{"expired/abandoned", stateInProgress, -2 * time.Hour, -time.Hour},
		{"expired/completed2", stateCompleted, -time.Hour, -time.Millisecond},
		{"expired/completed3", stateCompleted, -time.Hour, -time.Hour},
		{"kept/completed", stateCompleted, -time.Hour, time.Hour},
		{"kept/free", stateFree, -time.Hour, time.Minute},
		{"kept/live-lease", stateInProgress, time.Minute, time.Hour},
		{"kept/expired-lease", stateInProgress, -time.Second, time.Hour},
	} {
		plant(t, s, r.key, r.state, r.lease, r.expiration)
	}
	n, err := s.Reap(t.Context())
	if err != nil || n != 5 {
		t.Fatalf("reap = %d, %v; want 5 deleted", n, err)
	}
	got := keys(t, s)
	for _, k := range []string{"kept/completed", "kept/free", "kept/live-lease", "kept/expired-lease"} {
		if !got[k] {
			t.Errorf("%s was deleted", k)
		}
	}
	if len(got) != 4 {
		t.Errorf("records left: %v, want the 4 kept ones", got)
	}
	if n, err := s.Reap(t.Context()); err != nil || n != 0 {
		t.Fatalf("second reap = %d, %v; want nothing to do", n, err)
	}
	// A reaped key is new again.
	cr, err := s.Claim(t.Context(), store.ClaimParams{Key: "expired/completed", Owner: "a", Fingerprint: "other", LeaseTTL: time.Minute, Retention: time.Hour})
	if err != nil || cr.Status != store.ClaimAcquired || cr.Lease.Fence != 1 {
		t.Fatalf("Claim of a reaped key = %v (fence %d), %v; want acquired with fence 1", cr.Status, cr.Lease.Fence, err)
	}
}

// TestReaperRuns: the reaper deletes expired records on its own.
func TestReaperRuns(t *testing.T) {
	s := newTestStore(t, &Config{ReapInterval: 10 * time.Millisecond})
	plant(t, s, "expired", stateCompleted, -time.Hour, -time.Minute)
	plant(t, s, "kept", stateCompleted, -time.Hour, time.Hour)
	deadline := time.Now().Add(10 * time.Second)
	for keys(t, s)["expired"] {
		if time.Now().After(deadline) {
			t.Fatal("the reaper never deleted the expired record")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !keys(t, s)["kept"] {
		t.Fatal("the reaper deleted a live record")
	}
}
