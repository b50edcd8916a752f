package memstore

import (
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	"github.com/idemhq/idem/store"
)

// TestSweepBoundsMemory adds a record every 10ms, each kept for 1s: about
// 100 are live at any time. Without a sweep that keeps up with the inserts,
// the expired ones pile up without bound.
func TestSweepBoundsMemory(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := New()
		const keys, live = 20_000, 100
		most := 0
		for i := range keys {
			p := store.ClaimParams{Key: "k" + strconv.Itoa(i), Owner: "o", LeaseTTL: time.Second, Retention: time.Second}
			cr, err := s.Claim(t.Context(), p)
			if err != nil || cr.Status != store.ClaimAcquired {
				t.Fatalf("Claim(%s) = %v, %v; want acquired", p.Key, cr.Status, err)
			}
			if err := s.Complete(t.Context(), cr.Lease, []byte("v")); err != nil {
				t.Fatalf("Complete(%s): %v", p.Key, err)
			}
			time.Sleep(10 * time.Millisecond)
			s.mu.Lock()
			most = max(most, len(s.records))
			s.mu.Unlock()
		}
		// Live records plus the expired quarter, with room for chance.
		if limit := 2 * live * 4 / 3; most > limit {
			t.Fatalf("the store held up to %d records, want at most %d (about %d live)", most, limit, live)
		}
		t.Logf("at most %d records held, about %d live", most, live)
	})
}
