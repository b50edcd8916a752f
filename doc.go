// Package idem runs a function at most once per key across every process
// that shares a store, records its outcome, value or error, and replays it to
// every later or concurrent caller.
//
//	engine, err := idem.New(memstore.New(), nil)
//	...
//	res, err := idem.Do(ctx, engine, "order-1234", chargeCard, nil)
//	// res.Value is the charge; res.Replayed is true when it came from an
//	// earlier or concurrent call.
//
// A call derives a store key from its key (the namespace and a SHA-256 of
// the key; raw keys never reach the store, logs or metrics) and claims it.
// The claim either acquires a lease with a fence, finds a recorded outcome
// and replays it, finds another holder and waits, or finds the key bound to
// a different request and returns ErrMismatch. The holder runs fn while renewing its
// lease, then records the outcome with a compare-and-set on its fence.
// Every store step is one atomic operation in one round trip: a replay costs
// one round trip, a first execution two.
//
// The root package imports only the standard library, and its own store
// (the contract a store implements) and observe (the events an Observer
// gets). Stores live in their own packages: memstore (one process), and the
// durable ones. storetest is the conformance suite they all pass.
//
// # Guarantees
//
// Each guarantee names the test that checks it: a storetest subtest, run
// against every store, or a test of this package.
//
//  1. At most one live holder per key. Of concurrent claims exactly one
//     acquires (ConcurrentClaimsOneWinner); a key under a live lease is in
//     flight to everyone else, its holder included (ClaimLiveLeaseInFlight).
//     Every claim gets a fence strictly greater than any earlier one for the
//     key, across release and takeover (FencesStrictlyIncrease), and only
//     the holder of the current fence can renew, complete or release
//     (StaleHolderRefused, WrongOwnerRefused).
//  2. Replay. Once recorded, an outcome is returned to every call within
//     Retention without running fn (ClaimCompletedReplays, EngineStorm:
//     64 goroutines over 100 keys through four engines run fn exactly 100
//     times). Errors are outcomes too: they replay with message and code,
//     and registered errors still match errors.Is (EngineErrorReplayed,
//     EngineErrorCodeReplayed). An error marked transient by
//     RunOptions.Retryable releases the claim, so the next call runs fn
//     (EngineTransientErrorReleases); so does an error returned after the
//     caller's context is done (TestCallerGivingUpReleases). A value returned
//     while the caller is gone is still recorded
//     (TestSuccessAfterCallerGaveUpIsRecorded). A panic or runtime.Goexit in
//     fn releases the claim and goes on (TestPanicReleasesTheClaim,
//     TestGoexitReleasesTheClaim). Past Retention a key is new
//     (RetentionExpires).
//  3. Waiting. A concurrent caller waits for the holder's outcome and is
//     woken when it is recorded or released, not when a poll comes round
//     (WaitWokenOnComplete, WaitWokenOnRelease, EngineWaiterGetsOutcome). It
//     takes the key over once the holder's lease expires
//     (TakeoverAfterLeaseExpiry, EngineTakeoverAfterCrash). It gives up with
//     ErrInFlight after MaxWait, or at once with FailFast
//     (TestMaxWaitBoundsTheWait, TestFailFast). Concurrent calls in one
//     process with the same key and fingerprint make one store claim
//     (TestCoalescingMakesOneClaim), and never share an outcome across
//     fingerprints (TestCoalescingKeepsFingerprintsApart).
//  4. Fail closed. Without a confirmed claim fn does not run: a store error
//     before fn is a *StoreError with Executed false (TestStoreFailureBeforeFnFailsClosed,
//     CancelledClaimFailsClosed). A store error after fn ran is a
//     *StoreError with Executed true that matches ErrNotRecorded, logged at
//     ERROR and reported as observe.NotRecorded (TestLostRecordIsLoud,
//     EngineTakeoverAfterCrash).
//  5. Fingerprints. A key reused with a different fingerprint never runs fn
//     and never returns the other request's outcome, whether that request is
//     in flight, completed or abandoned (MismatchWhileInFlight,
//     MismatchAfterCompleted, MismatchAfterLeaseExpiry,
//     MismatchEmptyFingerprint, EngineMismatch).
//  6. Leases. The lease is renewed every LeaseTTL/3 while fn runs, for as
//     long as fn runs (RenewKeepsLeasePastRetention,
//     TestRenewalKeepsALongFnAlive). If no renewal is confirmed by a local
//     deadline on the monotonic clock (90% of LeaseTTL after the last
//     confirmed request was sent), or the store refuses one, fn's context is
//     cancelled with cause ErrLeaseLost and its outcome is refused
//     (TestLeaseLostAtLocalDeadline, TestRenewRefusedCancelsAtOnce). A
//     holder paused past its lease cannot record its outcome, and the newer
//     holder's outcome stands (EnginePausedHolderCannotComplete,
//     StaleHolderRefused). Expiry is judged by the store's clock, never a
//     key TTL: an in-progress record outlives its retention while its lease
//     is live (RenewKeepsLeasePastRetention).
//  7. The lease reaches fn. LeaseFrom returns the store key and fence inside
//     fn (EngineFenceReachesFn), for fencing the side effect itself.
//
// # Exactly once, and what it needs from fn
//
// The engine guarantees that at most one holder runs fn at a time and that
// one outcome per key is recorded and replayed. The side effect inside fn is
// another matter. If the process dies after fn's effect but before the
// outcome is recorded, the key's lease expires and a later call runs fn
// again. Effects happen exactly once only when the effect itself is
// idempotent or fenced:
//
//   - pass LeaseFrom(ctx).ProviderKey() downstream as the idempotency key
//     of the external call (a payment provider returns the same charge for
//     the same key), so a rerun repeats nothing;
//   - write business rows with the fence, "... WHERE fence <= $fence", so a
//     holder that lost its lease cannot overwrite a newer one's work (a key
//     reused after its record expired starts again from fence 1: see the
//     caveats);
//   - or use a SQL store's transactional mode, which commits the outcome in
//     the same transaction as the business writes.
//
// fn must also honour its context: cancellation on lease loss is how the
// engine stops a holder it can no longer vouch for.
//
// # Failure modes
//
//   - The store is unreachable before fn: *StoreError, Executed false. fn did
//     not run; retrying is safe.
//   - The store fails after fn: *StoreError, Executed true, matches
//     ErrNotRecorded. The effect happened and the record is missing; the key
//     stays in flight until the lease expires, then the next call runs fn
//     again. Alert on it.
//   - The lease is lost while fn runs (renewals failing, process paused):
//     ErrLeaseLost. fn's context was cancelled; whatever fn did is not
//     recorded; the holder that takes over decides the key.
//   - Another holder is running: the call waits up to MaxWait, then
//     ErrInFlight. fn did not run.
//   - A stored record is unreadable: *StoreError, Executed false. fn did not
//     run.
//
// # Caveats
//
//   - Outcomes are kept for Retention (24h by default). A key reused after
//     that runs fn again.
//   - Fences increase for as long as the store holds any record of the key;
//     once a record has expired, a new one may start again from 1. The owner
//     token still tells holders apart in the store.
//   - A store is only as durable as its backend. memstore forgets everything
//     when the process exits. A Redis store can lose acknowledged writes on
//     failover; money must not rest on it alone.
//   - Replayed errors carry message and code, not the original error value:
//     register the values callers test with errors.Is in Config.Errors.
package idem
