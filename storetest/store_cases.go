package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/idemhq/idem/store"
)

func testClaimAbsentAcquires(t *testing.T, s store.Store) {
	k := newKey(t)
	cr := claim(t, s, params(k, "a", "fp", longLease))
	if cr.Status != store.ClaimAcquired || cr.TookOver {
		t.Fatalf("Claim(absent key) = %v (took over %t), want acquired, no takeover", cr.Status, cr.TookOver)
	}
	if cr.Lease.Key != k || cr.Lease.Owner != "a" || cr.Lease.Fence <= 0 {
		t.Fatalf("Claim(absent key) lease = %+v, want key %s, owner a, positive fence", cr.Lease, k)
	}
}

func testClaimLiveLeaseInFlight(t *testing.T, s store.Store) {
	k := newKey(t)
	a := acquire(t, s, params(k, "a", "fp", longLease))
	cr := wantStatus(t, s, params(k, "b", "fp", longLease), store.ClaimInFlight)
	if cr.Lease.Fence != a.Fence {
		t.Errorf("in-flight fence = %d, want the holder's %d", cr.Lease.Fence, a.Fence)
	}
	if cr.RetryAfter <= 0 || cr.RetryAfter > longLease {
		t.Errorf("RetryAfter = %s, want within (0, %s]", cr.RetryAfter, longLease)
	}
	// The holder itself is refused a second claim too: a lease is not re-entrant.
	wantStatus(t, s, params(k, "a", "fp", longLease), store.ClaimInFlight)
}

func testClaimCompletedReplays(t *testing.T, s store.Store) {
	big := make([]byte, 1<<20)
	rand.Read(big)
	for _, tc := range []struct {
		name    string
		outcome []byte
	}{
		{"Empty", []byte{}},
		{"Binary", []byte{0, 1, 0xff, 0, '\n', '"', '\\'}},
		{"Text", []byte(`{"id":"ch_1","amount":1999}`)},
		{"OneMiB", big},
	} {
		k := newKey(t)
		a := acquire(t, s, params(k, "a", "fp", longLease))
		complete(t, s, a, tc.outcome)
		for _, owner := range []string{"b", "c"} {
			cr := wantStatus(t, s, params(k, owner, "fp", longLease), store.ClaimCompleted)
			if !bytes.Equal(cr.Outcome, tc.outcome) {
				t.Fatalf("%s: replayed outcome (%d bytes) differs from the recorded one (%d bytes)", tc.name, len(cr.Outcome), len(tc.outcome))
			}
			// The caller owns the returned bytes: scribbling on them must
			// not change the record.
			for i := range cr.Outcome {
				cr.Outcome[i] ^= 0xff
			}
		}
	}
}

func testConcurrentClaimsOneWinner(t *testing.T, s store.Store) {
	const n = 32
	k := newKey(t)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		acquired int
		statuses = map[store.ClaimStatus]int{}
	)
	for i := range n {
		wg.Go(func() {
			cr, err := s.Claim(t.Context(), params(k, fmt.Sprint("owner-", i), "fp", longLease))
			if err != nil {
				t.Errorf("Claim: %v", err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			statuses[cr.Status]++
			if cr.Status == store.ClaimAcquired {
				acquired++
			}
		})
	}
	wg.Wait()
	if acquired != 1 || statuses[store.ClaimInFlight] != n-1 {
		t.Fatalf("%d concurrent claims: %v, want 1 acquired and %d in flight", n, statuses, n-1)
	}
}

func testCancelledClaimFailsClosed(t *testing.T, s store.Store) {
	k := newKey(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if cr, err := s.Claim(ctx, params(k, "a", "fp", longLease)); err == nil {
		t.Fatalf("Claim(cancelled context) = %v, nil; want an error", cr.Status)
	}
	// Nothing was taken: another caller acquires the key at once.
	acquire(t, s, params(k, "b", "fp", longLease))
}

func testKeysIndependent(t *testing.T, s store.Store) {
	k1, k2 := newKey(t), newKey(t)
	a := acquire(t, s, params(k1, "a", "fp", longLease))
	b := acquire(t, s, params(k2, "b", "other", longLease))
	complete(t, s, a, []byte("one"))
	wantStatus(t, s, params(k1, "c", "fp", longLease), store.ClaimCompleted)
	wantStatus(t, s, params(k2, "c", "other", longLease), store.ClaimInFlight)
	complete(t, s, b, []byte("two"))
	if cr := wantStatus(t, s, params(k2, "c", "other", longLease), store.ClaimCompleted); string(cr.Outcome) != "two" {
		t.Fatalf("key 2 outcome = %q, want %q", cr.Outcome, "two")
	}
}

func testFencesStrictlyIncrease(t *testing.T, s store.Store) {
	k := newKey(t)
	first := acquire(t, s, params(k, "a", "fp", longLease))
	release(t, s, first)
	afterRelease := acquire(t, s, params(k, "b", "fp", shortLease))
	if afterRelease.Fence <= first.Fence {
		t.Fatalf("fence after release = %d, want > %d", afterRelease.Fence, first.Fence)
	}
	afterTakeover := awaitAcquire(t, s, params(k, "c", "fp", longLease))
	if afterTakeover.Lease.Fence <= afterRelease.Fence {
		t.Fatalf("fence after takeover = %d, want > %d", afterTakeover.Lease.Fence, afterRelease.Fence)
	}
	complete(t, s, afterTakeover.Lease, []byte("done"))
	wantStatus(t, s, params(k, "d", "fp", longLease), store.ClaimCompleted)
}

func testTakeoverAfterLeaseExpiry(t *testing.T, s store.Store) {
	k := newKey(t)
	start := time.Now()
	a := acquire(t, s, params(k, "a", "fp", shortLease))
	// The lease is surely live only if the second claim ran within
	// shortLease of the first's start; on a machine too loaded for that,
	// the claim may already take over, and must do it properly.
	cr, err := s.Claim(t.Context(), params(k, "b", "fp", longLease))
	switch {
	case err != nil:
		t.Fatalf("Claim(owner \"b\") = %v", err)
	case cr.Status == store.ClaimInFlight:
		cr = awaitAcquire(t, s, params(k, "b", "fp", longLease))
	case time.Since(start) < shortLease:
		t.Fatalf("Claim(owner \"b\") while the lease is live = %v, want in flight", cr.Status)
	case cr.Status != store.ClaimAcquired:
		t.Fatalf("Claim(owner \"b\") %s after the first = %v, want in flight or, past the lease, acquired", time.Since(start), cr.Status)
	}
	if !cr.TookOver {
		t.Errorf("claim after lease expiry: TookOver = false, want true")
	}
	if cr.Lease.Fence <= a.Fence {
		t.Errorf("takeover fence = %d, want > %d", cr.Lease.Fence, a.Fence)
	}
}

func testRenewKeepsLeasePastRetention(t *testing.T, s store.Store) {
	const (
		lease = 500 * time.Millisecond
		every = 100 * time.Millisecond
		hold  = 1500 * time.Millisecond
	)
	k := newKey(t)
	p := params(k, "a", "fp", lease)
	p.Retention = 50 * time.Millisecond // shorter than the lease: only the lease may keep the record
	a := acquire(t, s, p)
	for start := time.Now(); time.Since(start) < hold; {
		time.Sleep(every)
		if err := s.Renew(t.Context(), a); err != nil {
			t.Fatalf("Renew after %s: %v", time.Since(start).Round(time.Millisecond), err)
		}
		wantStatus(t, s, params(k, "b", "fp", longLease), store.ClaimInFlight)
	}
	// Renewals stop: the lease runs out and b takes over.
	cr := awaitAcquire(t, s, params(k, "b", "fp", longLease))
	if cr.Lease.Fence <= a.Fence {
		t.Fatalf("takeover fence = %d, want > %d", cr.Lease.Fence, a.Fence)
	}
}

func testStaleHolderRefused(t *testing.T, s store.Store) {
	k := newKey(t)
	stale := acquire(t, s, params(k, "a", "fp", shortLease))
	fresh := awaitAcquire(t, s, params(k, "b", "fp", longLease)).Lease
	wantLeaseLost(t, s, stale)
	complete(t, s, fresh, []byte("fresh"))
	// Still refused once the newer holder has completed, and the newer
	// holder's outcome stands.
	wantLeaseLost(t, s, stale)
	if cr := wantStatus(t, s, params(k, "c", "fp", longLease), store.ClaimCompleted); string(cr.Outcome) != "fresh" {
		t.Fatalf("outcome = %q, want the newer holder's %q", cr.Outcome, "fresh")
	}
	// The completed holder cannot write twice either.
	wantLeaseLost(t, s, fresh)
}

func testWrongOwnerRefused(t *testing.T, s store.Store) {
	k := newKey(t)
	a := acquire(t, s, params(k, "a", "fp", longLease))
	wantLeaseLost(t, s, store.Lease{Key: k, Owner: "impostor", Fence: a.Fence})
	wantLeaseLost(t, s, store.Lease{Key: k, Owner: "a", Fence: a.Fence + 1})
	wantLeaseLost(t, s, store.Lease{Key: newKey(t), Owner: "a", Fence: a.Fence})
	// The holder is unaffected.
	if err := s.Renew(t.Context(), a); err != nil {
		t.Fatalf("Renew by the holder after refused impostors: %v", err)
	}
	complete(t, s, a, []byte("a"))
}

func testExpiredHolderCompletesUntilTakenOver(t *testing.T, s store.Store) {
	k := newKey(t)
	a := acquire(t, s, params(k, "a", "fp", shortLease))
	time.Sleep(2 * shortLease)
	// Nobody took over, so a's fence is still current: the outcome it
	// reports is the only one there is.
	complete(t, s, a, []byte("late"))
	if cr := wantStatus(t, s, params(k, "b", "fp", longLease), store.ClaimCompleted); string(cr.Outcome) != "late" {
		t.Fatalf("outcome = %q, want %q", cr.Outcome, "late")
	}
}

func testMismatchWhileInFlight(t *testing.T, s store.Store) {
	k := newKey(t)
	a := acquire(t, s, params(k, "a", "fp-a", longLease))
	wantStatus(t, s, params(k, "b", "fp-b", longLease), store.ClaimMismatch)
	complete(t, s, a, []byte("a"))
}

func testMismatchAfterCompleted(t *testing.T, s store.Store) {
	k := newKey(t)
	a := acquire(t, s, params(k, "a", "fp-a", longLease))
	complete(t, s, a, []byte("a"))
	if cr := wantStatus(t, s, params(k, "b", "fp-b", longLease), store.ClaimMismatch); len(cr.Outcome) != 0 {
		t.Fatalf("mismatch returned the other request's outcome %q", cr.Outcome)
	}
}

// testMismatchAfterLeaseExpiry checks that a different request never takes
// over: the key stays bound to the first request's fingerprint.
func testMismatchAfterLeaseExpiry(t *testing.T, s store.Store) {
	k := newKey(t)
	acquire(t, s, params(k, "a", "fp-a", shortLease))
	time.Sleep(2 * shortLease)
	wantStatus(t, s, params(k, "b", "fp-b", longLease), store.ClaimMismatch)
}

func testMismatchEmptyFingerprint(t *testing.T, s store.Store) {
	k := newKey(t)
	acquire(t, s, params(k, "a", "", longLease))
	wantStatus(t, s, params(k, "b", "fp", longLease), store.ClaimMismatch)
}

func testReleaseFreesKey(t *testing.T, s store.Store) {
	k := newKey(t)
	a := acquire(t, s, params(k, "a", "fp-a", longLease))
	release(t, s, a)
	// Released means absent: any request may claim the key, a different
	// fingerprint included, with a greater fence.
	b := acquire(t, s, params(k, "b", "fp-b", longLease))
	if b.Fence <= a.Fence {
		t.Fatalf("fence after release = %d, want > %d", b.Fence, a.Fence)
	}
	wantLeaseLost(t, s, a)
}

func testRetentionExpires(t *testing.T, s store.Store) {
	k := newKey(t)
	p := params(k, "a", "fp", longLease)
	p.Retention = 300 * time.Millisecond
	a := acquire(t, s, p)
	complete(t, s, a, []byte("done"))
	wantStatus(t, s, params(k, "b", "fp", longLease), store.ClaimCompleted)
	// Past retention the key is new again, for any fingerprint.
	deadline := time.Now().Add(patience)
	for {
		cr := claim(t, s, params(k, "c", "other", longLease))
		if cr.Status == store.ClaimAcquired {
			return
		}
		if cr.Status != store.ClaimMismatch {
			t.Fatalf("Claim during retention = %v, want mismatch until it expires", cr.Status)
		}
		if time.Now().After(deadline) {
			t.Fatalf("completed record still present %s after a 300ms retention", patience)
		}
		time.Sleep(pollEvery)
	}
}

func testWaitWokenOnComplete(t *testing.T, s store.Store) {
	testWaitWoken(t, s, func(l store.Lease) { complete(t, s, l, []byte("done")) })
}

func testWaitWokenOnRelease(t *testing.T, s store.Store) {
	testWaitWoken(t, s, func(l store.Lease) { release(t, s, l) })
}

// testWaitWoken checks that a waiter on a long lease returns promptly once
// end is applied to the lease, long before the lease would expire.
func testWaitWoken(t *testing.T, s store.Store, end func(store.Lease)) {
	a, woken, err := blockedWaiter(t, s)
	if err != nil {
		t.Fatalf("Wait returned %v before the record changed", err)
	}
	end(a)
	wantWoken(t, woken, "the change")
}

func testWaitReturnsAtOnceWhenChanged(t *testing.T, s store.Store) {
	k := newKey(t)
	a := acquire(t, s, params(k, "a", "fp", longLease))
	complete(t, s, a, []byte("done"))
	for _, tc := range []struct {
		name  string
		key   string
		fence int64
	}{
		{"Completed", k, a.Fence},
		{"OlderFence", k, a.Fence - 1},
		{"Absent", newKey(t), 1},
	} {
		ctx, cancel := context.WithTimeout(t.Context(), patience)
		start := time.Now()
		err := s.Wait(ctx, tc.key, tc.fence)
		cancel()
		if err != nil {
			t.Errorf("%s: Wait = %v, want nil at once", tc.name, err)
		}
		if d := time.Since(start); d > prompt {
			t.Errorf("%s: Wait took %s, want at once", tc.name, d)
		}
	}
}

func testWaitHonoursContext(t *testing.T, s store.Store) {
	k := newKey(t)
	a := acquire(t, s, params(k, "a", "fp", longLease))
	const timeout = 200 * time.Millisecond
	start := time.Now() // before the deadline is set, so that it bounds d from below
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	err := s.Wait(ctx, k, a.Fence)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait on a held key = %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d < timeout || d > timeout+patience {
		t.Fatalf("Wait returned after %s, want about %s", d, timeout)
	}
}
