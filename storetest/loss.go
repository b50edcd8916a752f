package storetest

import (
	"testing"
	"time"

	"github.com/idemhq/idem/store"
)

// RunNotificationLoss checks how a store that wakes waiters by notification
// recovers when its notification channel drops. A waiter blocked on a held
// key must be woken when drop breaks the channel, since a notification may
// have been lost meanwhile; a waiter whose key completes while the channel
// is down must be woken once it is back; and after that a completion must
// wake the next waiter. drop returns once the channel is broken; back
// reports true only for a channel opened since. The store must poll no
// more often than Run requires (see the package documentation), or the
// test proves nothing.
func RunNotificationLoss(t *testing.T, s store.Store, drop func(t *testing.T), back func(t *testing.T) bool) {
	t.Helper()
	_, woken, err := blockedWaiter(t, s)
	if err != nil {
		t.Fatalf("Wait returned %v before anything changed", err)
	}
	drop(t)
	wantWoken(t, woken, "the notification channel dropping")

	// A change made at once, while the channel is likely still down: its
	// notification may be lost, so the store must wake the waiter when the
	// channel comes back. (A waiter slower to register than the pause here
	// finds the change and returns at once, which proves nothing but fails
	// nothing.)
	a := acquire(t, s, params(newKey(t), "a", "fp", longLease))
	woken = waitAsync(t.Context(), s, a.Key, a.Fence)
	time.Sleep(10 * time.Millisecond)
	complete(t, s, a, []byte("done"))

	deadline := time.Now().Add(patience)
	for !back(t) {
		if time.Now().After(deadline) {
			t.Fatalf("notification channel not back within %s", patience)
		}
		time.Sleep(pollEvery)
	}
	wantWoken(t, woken, "the channel coming back after a change it missed")
	// The store may wake its waiters once more as the channel comes back
	// (Wait may return nil after its channel dropped): start waiters until
	// one stays blocked.
	for tries := 1; ; tries++ {
		a, woken, err := blockedWaiter(t, s)
		if err != nil {
			if tries == 3 {
				t.Fatalf("Wait keeps returning (%v) with nothing changed after the channel came back", err)
			}
			continue
		}
		complete(t, s, a, []byte("done"))
		wantWoken(t, woken, "a completion after the channel came back")
		return
	}
}
