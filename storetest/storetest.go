// Package storetest is the conformance suite for store.Store. A store is
// correct when it passes Run; every store in this module does, against a
// real server where it has one.
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store { return newStoreForTest(t) })
//	}
//
// Subtests run in parallel and each uses its own keys, so newStore may
// return the same store every time. Waiters must be woken by notification:
// a store with a polling fallback should poll no more often than every ten
// seconds under the suite (this module's stores poll once a minute there),
// or the wake-up subtests prove nothing. Timing subtests use short real leases
// (a few hundred milliseconds) and poll with deadlines, because a store
// judges time by its own clock. In-process stores whose clock is time.Now
// also run RunSynctest, where the same subtests run in testing/synctest
// bubbles on a fake clock.
//
// A store that wakes waiters through a notification channel can also run
// RunNotificationLoss, with a way to break that channel: it checks that
// waiters are woken when the channel drops and that notifications work
// again once it is back.
//
// The package imports only the standard library and idem, so a third-party
// store can use it without inheriting dependencies.
package storetest

import (
	"testing"
	"testing/synctest"

	"github.com/idemhq/idem/store"
)

// Run runs every conformance subtest against stores from newStore, in real
// time.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	t.Helper()
	for _, c := range cases() {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.run(t, newStore(t))
		})
	}
}

// RunSynctest runs every conformance subtest inside its own
// testing/synctest bubble, so lease expiry and retention take no real time.
// newStore is called inside the bubble. Only stores whose clock is this
// process's time.Now can use it.
func RunSynctest(t *testing.T, newStore func(t *testing.T) store.Store) {
	t.Helper()
	for _, c := range cases() {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				c.run(t, newStore(t))
			})
		})
	}
}

type testCase struct {
	name string
	run  func(t *testing.T, s store.Store)
}

// cases lists the suite. Subtests must not call t.Run: RunSynctest runs
// them inside bubbles, where it is not allowed. Names are cited by idem's package documentation;
// keep the two in step.
func cases() []testCase {
	return []testCase{
		// Claim.
		{"ClaimAbsentAcquires", testClaimAbsentAcquires},
		{"ClaimLiveLeaseInFlight", testClaimLiveLeaseInFlight},
		{"ClaimCompletedReplays", testClaimCompletedReplays},
		{"ConcurrentClaimsOneWinner", testConcurrentClaimsOneWinner},
		{"CancelledClaimFailsClosed", testCancelledClaimFailsClosed},
		{"KeysIndependent", testKeysIndependent},

		// Leases and fences.
		{"FencesStrictlyIncrease", testFencesStrictlyIncrease},
		{"TakeoverAfterLeaseExpiry", testTakeoverAfterLeaseExpiry},
		{"RenewKeepsLeasePastRetention", testRenewKeepsLeasePastRetention},
		{"StaleHolderRefused", testStaleHolderRefused},
		{"WrongOwnerRefused", testWrongOwnerRefused},
		{"ExpiredHolderCompletesUntilTakenOver", testExpiredHolderCompletesUntilTakenOver},

		// Fingerprints, release, retention.
		{"MismatchWhileInFlight", testMismatchWhileInFlight},
		{"MismatchAfterCompleted", testMismatchAfterCompleted},
		{"MismatchAfterLeaseExpiry", testMismatchAfterLeaseExpiry},
		{"MismatchEmptyFingerprint", testMismatchEmptyFingerprint},
		{"ReleaseFreesKey", testReleaseFreesKey},
		{"RetentionExpires", testRetentionExpires},

		// Waiting.
		{"WaitWokenOnComplete", testWaitWokenOnComplete},
		{"WaitWokenOnRelease", testWaitWokenOnRelease},
		{"WaitReturnsAtOnceWhenChanged", testWaitReturnsAtOnceWhenChanged},
		{"WaitHonoursContext", testWaitHonoursContext},

		// Through the engine.
		{"EngineStorm", testEngineStorm},
		{"EngineErrorReplayed", testEngineErrorReplayed},
		{"EngineErrorCodeReplayed", testEngineErrorCodeReplayed},
		{"EngineTransientErrorReleases", testEngineTransientErrorReleases},
		{"EngineMismatch", testEngineMismatch},
		{"EngineWaiterGetsOutcome", testEngineWaiterGetsOutcome},
		{"EngineTakeoverAfterCrash", testEngineTakeoverAfterCrash},
		{"EnginePausedHolderCannotComplete", testEnginePausedHolderCannotComplete},
		{"EngineFenceReachesFn", testEngineFenceReachesFn},
	}
}
