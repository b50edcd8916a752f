package pgstore_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/pgstore"
	"github.com/idemhq/idem/store"
	"github.com/idemhq/idem/storetest"
)

// The statements over arrays keep the contract, one call at a time.
func TestConformanceArrays(t *testing.T) {
	pool := newPool(t)
	s := newStore(t, pool, pgstore.Config{})
	storetest.Run(t, func(*testing.T) store.Store { return pgstore.Arrays{Store: s} })
}

func claimParams(key, owner, fingerprint string) store.ClaimParams {
	return store.ClaimParams{Key: key, Owner: owner, Fingerprint: fingerprint, LeaseTTL: time.Minute, Retention: time.Hour}
}

// acquire claims each key for "me" and returns the leases by key.
func acquire(t *testing.T, s *pgstore.Store, keys ...string) map[string]store.Lease {
	t.Helper()
	leases := map[string]store.Lease{}
	for _, k := range keys {
		cr, err := s.Claim(t.Context(), claimParams(k, "me", "fp"))
		if err != nil || cr.Status != store.ClaimAcquired {
			t.Fatalf("claim %s = %+v, %v", k, cr, err)
		}
		leases[k] = cr.Lease
	}
	return leases
}

// Claims of one key in one batch see each other: the first claims it, the
// rest find it in flight under the first's fence.
func TestBatchClaimsOfOneKey(t *testing.T) {
	s := newStore(t, newPool(t), pgstore.Config{})
	ps := make([]store.ClaimParams, 5)
	for i := range ps {
		ps[i] = claimParams("same", "owner"+string(rune('a'+i)), "fp")
	}
	got, errs := s.ClaimBatch(t.Context(), ps)
	for i := range ps {
		if errs[i] != nil {
			t.Fatalf("claim %d: %v", i, errs[i])
		}
	}
	if got[0].Status != store.ClaimAcquired || got[0].Lease.Owner != "ownera" {
		t.Fatalf("first claim = %+v, want acquired by ownera", got[0])
	}
	for i, cr := range got[1:] {
		if cr.Status != store.ClaimInFlight || cr.Lease.Fence != got[0].Lease.Fence {
			t.Errorf("claim %d = %+v, want in flight under fence %d", i+1, cr, got[0].Lease.Fence)
		}
	}
}

// A batch answers each call by its position, whatever order it ran them in.
func TestBatchAnswersEachCall(t *testing.T) {
	ctx := t.Context()
	s := newStore(t, newPool(t), pgstore.Config{})
	complete := func(key, fingerprint, outcome string) {
		cr, err := s.Claim(ctx, claimParams(key, "setup", fingerprint))
		if err != nil || cr.Status != store.ClaimAcquired {
			t.Fatalf("setup claim of %s = %+v, %v", key, cr, err)
		}
		if err := s.Complete(ctx, cr.Lease, []byte(outcome)); err != nil {
			t.Fatalf("setup completion of %s: %v", key, err)
		}
	}
	complete("b-done", "fp", "outcome b")
	complete("a-other", "their-fp", "outcome a")
	if cr, err := s.Claim(ctx, claimParams("c-held", "holder", "fp")); err != nil || cr.Status != store.ClaimAcquired {
		t.Fatalf("setup claim of c-held = %+v, %v", cr, err)
	}

	got, errs := s.ClaimBatch(ctx, []store.ClaimParams{
		claimParams("d-new", "me", "fp"),
		claimParams("b-done", "me", "fp"),
		claimParams("a-other", "me", "fp"),
		claimParams("c-held", "me", "fp"),
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("claim %d: %v", i, err)
		}
	}
	if got[0].Status != store.ClaimAcquired || got[0].Lease != (store.Lease{Key: "d-new", Owner: "me", Fence: 1}) {
		t.Errorf("new key: %+v", got[0])
	}
	if got[1].Status != store.ClaimCompleted || !bytes.Equal(got[1].Outcome, []byte("outcome b")) {
		t.Errorf("completed key: %+v", got[1])
	}
	if got[2].Status != store.ClaimMismatch {
		t.Errorf("key with another fingerprint: %+v", got[2])
	}
	if got[3].Status != store.ClaimInFlight || got[3].RetryAfter <= 0 {
		t.Errorf("held key: %+v", got[3])
	}
}

// A batch of completions ends each lease it holds, reports the one it does
// not, and wakes the waiters of the records it completes.
func TestBatchCompletions(t *testing.T) {
	ctx := t.Context()
	pool := newPool(t)
	schema := "idemtest_" + strings.ToLower(rand.Text()[:12])
	s := newStore(t, pool, pgstore.Config{Schema: schema})
	keys := []string{"z", "x", "y"}
	byKey := acquire(t, s, keys...)
	leases := []store.Lease{byKey["z"], byKey["x"], byKey["y"]}
	woken := make(chan error, 1)
	go func() { woken <- s.Wait(ctx, "z", leases[0].Fence) }()
	eventually(t, "the waiter marked the record", func() bool {
		var waited bool
		err := pool.QueryRow(ctx, "SELECT waited FROM "+schema+".idem_records WHERE key = 'z'").Scan(&waited)
		if err != nil {
			t.Fatal(err)
		}
		return waited
	})

	stale := leases[1]
	stale.Fence++
	errs := s.CompleteBatch(ctx, []store.Lease{leases[0], stale, leases[2]},
		[][]byte{[]byte("out z"), []byte("out x"), []byte("out y")})
	if errs[0] != nil || errs[2] != nil {
		t.Fatalf("completions of held leases: %v, %v", errs[0], errs[2])
	}
	if !errors.Is(errs[1], idem.ErrLeaseLost) {
		t.Fatalf("completion under a stale fence = %v, want ErrLeaseLost", errs[1])
	}
	select {
	case err := <-woken:
		if err != nil {
			t.Fatalf("Wait = %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the waiter on a completed record was not woken")
	}
	for i, want := range []string{"out z", "", "out y"} {
		cr, err := s.Claim(ctx, claimParams(keys[i], "later", "fp"))
		switch {
		case err != nil:
			t.Fatalf("claim %s: %v", keys[i], err)
		case want == "" && cr.Status != store.ClaimInFlight:
			t.Errorf("%s, never completed: %+v", keys[i], cr)
		case want != "" && (cr.Status != store.ClaimCompleted || string(cr.Outcome) != want):
			t.Errorf("%s: %+v, want outcome %q", keys[i], cr, want)
		}
	}
}

// A batch of claims and completions runs the claims first, so a claim of
// a key completed beside it finds it in flight, and commits them all in
// one transaction; a bad call sends them all off alone, with none of them
// done.
func TestBatchMixesClaimsAndCompletions(t *testing.T) {
	ctx := t.Context()
	pool := newPool(t)
	schema := "idemtest_" + strings.ToLower(rand.Text()[:12])
	s := newStore(t, pool, pgstore.Config{Schema: schema})
	leases := acquire(t, s, "a", "b", "e")
	stale := leases["b"]
	stale.Fence++
	claim := func(key, owner string) *store.ClaimParams { p := claimParams(key, owner, "fp"); return &p }

	got, errs := s.Batch(ctx, []pgstore.Write{
		{Claim: claim("c", "me")},
		{Lease: leases["a"], Outcome: []byte("out a")},
		{Claim: claim("a", "other")},
		{Lease: stale, Outcome: []byte("out b")},
		{Claim: claim("d", "me")},
	})
	for _, i := range []int{0, 1, 2, 4} {
		if errs[i] != nil {
			t.Fatalf("call %d: %v", i, errs[i])
		}
	}
	if got[0].Status != store.ClaimAcquired || got[4].Status != store.ClaimAcquired {
		t.Errorf("claims of new keys = %+v, %+v; want acquired", got[0], got[4])
	}
	if got[2].Status != store.ClaimInFlight || got[2].Lease.Fence != leases["a"].Fence {
		t.Errorf("claim of the key completed in the batch = %+v, want in flight under fence %d", got[2], leases["a"].Fence)
	}
	if cr, err := s.Claim(ctx, claimParams("a", "other", "fp")); err != nil || cr.Status != store.ClaimCompleted || string(cr.Outcome) != "out a" {
		t.Errorf("claim of a after the batch = %+v, %v; want its outcome", cr, err)
	}
	if !errors.Is(errs[3], idem.ErrLeaseLost) {
		t.Errorf("completion under a stale fence = %v, want ErrLeaseLost", errs[3])
	}
	var txs int
	err := pool.QueryRow(ctx, "SELECT count(DISTINCT xmin::text) FROM "+schema+".idem_records WHERE key IN ('a', 'c', 'd')").Scan(&txs)
	if err != nil {
		t.Fatal(err)
	}
	if txs != 1 {
		t.Errorf("the batch's writes were made by %d transactions, want 1", txs)
	}

	// The claims go first, so a bad completion fails the batch after they
	// ran: none of them may stay.
	_, errs = s.Batch(ctx, []pgstore.Write{
		{Claim: claim("f", "me")},
		{Lease: store.Lease{Key: "bad\x00key", Owner: "me", Fence: 1}, Outcome: []byte("out")},
		{Lease: leases["e"], Outcome: []byte("out e")},
	})
	for i, err := range errs {
		if !errors.Is(err, pgstore.ErrAlone) {
			t.Errorf("call %d beside a bad completion = %v, want to run alone", i, err)
		}
	}
	if cr, err := s.Claim(ctx, claimParams("f", "other", "fp")); err != nil || cr.Status != store.ClaimAcquired || cr.Lease.Owner != "other" {
		t.Errorf("claim of f after its batch failed = %+v, %v; want acquired by other: the batch committed part of itself", cr, err)
	}
	if cr, err := s.Claim(ctx, claimParams("e", "other", "fp")); err != nil || cr.Status != store.ClaimInFlight {
		t.Errorf("claim of e after its batch failed = %+v, %v; want still in flight: the batch committed part of itself", cr, err)
	}
}

// Two batches that each complete a record the other claims again, as
// duplicate requests do, do not wait for each other: the claims go first,
// and a claim of a live lease locks nothing. With the completions first,
// 17 to 27 rounds of 40 waited until the lock timeout sent their calls
// off alone; a round or two may still do so here when a commit the
// other batch's claim waits for takes longer than the timeout.
func TestCrossingBatchesDoNotWaitForEachOther(t *testing.T) {
	ctx := t.Context()
	s := newStore(t, newPool(t), pgstore.Config{})
	alone := 0
	for round := range 40 {
		k1, k2 := fmt.Sprint("one-", round), fmt.Sprint("two-", round)
		leases := acquire(t, s, k1, k2)
		crossing := func(done, again string) []pgstore.Write {
			p := claimParams(again, "duplicate", "fp")
			return []pgstore.Write{{Lease: leases[done], Outcome: []byte("out")}, {Claim: &p}}
		}
		var wg sync.WaitGroup
		errs := make([][]error, 2)
		for i, ws := range [][]pgstore.Write{crossing(k1, k2), crossing(k2, k1)} {
			wg.Go(func() { _, errs[i] = s.Batch(ctx, ws) })
		}
		wg.Wait()
		sentOff := false
		for i, es := range errs {
			for j, err := range es {
				switch {
				case errors.Is(err, pgstore.ErrAlone):
					sentOff = true
				case err != nil:
					t.Fatalf("round %d, batch %d, call %d: %v", round, i, j, err)
				}
			}
		}
		if sentOff {
			alone++
		}
	}
	if alone > 4 {
		t.Fatalf("%d rounds of 40 waited for each other until the lock timeout", alone)
	}
}

// A batch that loses a race (here, a trigger's serialization failure in
// its first attempt's completions, after its claims have been answered)
// runs again, whole, in a new pipeline, and answers each call as the
// attempt that committed did.
func TestBatchRetriesLostRaces(t *testing.T) {
	ctx := t.Context()
	pool := newPool(t)
	schema := "idemtest_" + strings.ToLower(rand.Text()[:12])
	s := newStore(t, pool, pgstore.Config{Schema: schema})
	leases := acquire(t, s, "x", "y")
	// A sequence, not a table, counts the attempts: nextval survives the
	// rollback of the attempt that fails.
	_, err := pool.Exec(ctx, `
CREATE SEQUENCE `+schema+`.attempts;
CREATE FUNCTION `+schema+`.fail_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF nextval('`+schema+`.attempts') = 1 THEN
		RAISE EXCEPTION 'lost a race' USING ERRCODE = '40001';
	END IF;
	RETURN NEW;
END $$;
CREATE TRIGGER fail_once BEFORE UPDATE ON `+schema+`.idem_records FOR EACH STATEMENT EXECUTE FUNCTION `+schema+`.fail_once();`)
	if err != nil {
		t.Fatal(err)
	}
	claim := claimParams("z", "me", "fp")
	got, errs := s.Batch(ctx, []pgstore.Write{
		{Lease: leases["x"], Outcome: []byte("out x")},
		{Claim: &claim},
		{Lease: leases["y"], Outcome: []byte("out y")},
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if got[1].Status != store.ClaimAcquired || got[1].Lease.Fence != 1 {
		t.Errorf("claim of z = %+v, want acquired with fence 1", got[1])
	}
	var attempts int64
	if err := pool.QueryRow(ctx, "SELECT last_value FROM "+schema+".attempts").Scan(&attempts); err != nil {
		t.Fatal(err)
	}
	if attempts < 2 {
		t.Fatalf("the batch's statements updated records %d times: the failure never happened", attempts)
	}
	for _, k := range []string{"x", "y"} {
		cr, err := s.Claim(ctx, claimParams(k, "later", "fp"))
		if err != nil || cr.Status != store.ClaimCompleted || string(cr.Outcome) != "out "+k {
			t.Errorf("claim of %s after the batch = %+v, %v; want its outcome", k, cr, err)
		}
	}
}

// A claim run again after its batch failed is acquired when the batch
// committed it after all: the record is in progress under its owner. A
// claim under another owner still finds it in flight.
func TestClaimAfterItsBatchFailed(t *testing.T) {
	ctx := t.Context()
	pool := newPool(t)
	schema := "idemtest_" + strings.ToLower(rand.Text()[:12])
	s := newStore(t, pool, pgstore.Config{Schema: schema})
	// What a batch cut short after its COMMIT leaves: the claim.
	var fence int64
	if err := pool.QueryRow(ctx, "SELECT fence FROM "+schema+".idem_claim('k', 'me', 'fp', 60000, 3600000)").Scan(&fence); err != nil {
		t.Fatal(err)
	}
	if cr, err := s.ClaimAlone(ctx, claimParams("k", "other", "fp")); err != nil || cr.Status != store.ClaimInFlight {
		t.Errorf("claim under another owner = %+v, %v; want in flight", cr, err)
	}
	cr, err := s.ClaimAlone(ctx, claimParams("k", "me", "fp"))
	if err != nil || cr.Status != store.ClaimAcquired || cr.Lease != (store.Lease{Key: "k", Owner: "me", Fence: fence}) {
		t.Fatalf("claim its batch committed = %+v, %v; want acquired under fence %d", cr, err, fence)
	}
	if err := s.Complete(ctx, cr.Lease, []byte("out")); err != nil {
		t.Fatalf("completion under the recovered lease: %v", err)
	}
}

// A completion run again after its batch failed succeeds when the batch
// committed it after all, and wakes the waiters the batch did not; a
// completion whose owner, fence or outcome is not the record's is still
// refused.
func TestCompletionAfterItsBatchFailed(t *testing.T) {
	ctx := t.Context()
	pool := newPool(t)
	schema := "idemtest_" + strings.ToLower(rand.Text()[:12])
	// Only a notification can wake a waiter in time.
	s := newStore(t, pool, pgstore.Config{Schema: schema, PollInterval: time.Hour})
	lease := acquire(t, s, "k")["k"]
	woken := make(chan error, 1)
	go func() { woken <- s.Wait(ctx, "k", lease.Fence) }()
	eventually(t, "the waiter marked the record", func() bool {
		var waited bool
		if err := pool.QueryRow(ctx, "SELECT waited FROM "+schema+".idem_records WHERE key = 'k'").Scan(&waited); err != nil {
			t.Fatal(err)
		}
		return waited
	})
	// What a batch cut short after its COMMIT leaves: the outcome, and no
	// notification.
	if _, err := pool.Exec(ctx, "SELECT "+schema+".idem_complete('k', 'me', $1, 'out')", lease.Fence); err != nil {
		t.Fatal(err)
	}

	if err := s.CompleteAlone(ctx, lease, []byte("other")); !errors.Is(err, idem.ErrLeaseLost) {
		t.Errorf("completion with another outcome = %v, want ErrLeaseLost", err)
	}
	stale := lease
	stale.Fence--
	if err := s.CompleteAlone(ctx, stale, []byte("out")); !errors.Is(err, idem.ErrLeaseLost) {
		t.Errorf("completion under an older fence = %v, want ErrLeaseLost", err)
	}
	if err := s.CompleteAlone(ctx, lease, []byte("out")); err != nil {
		t.Fatalf("completion its batch committed = %v, want success", err)
	}
	select {
	case err := <-woken:
		if err != nil {
			t.Fatalf("Wait = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the waiter was not woken")
	}

	// An outcome of nil, stored as NULL, is found all the same.
	lease = acquire(t, s, "nil")["nil"]
	if _, err := pool.Exec(ctx, "SELECT "+schema+".idem_complete('nil', 'me', $1, NULL)", lease.Fence); err != nil {
		t.Fatal(err)
	}
	if err := s.CompleteAlone(ctx, lease, nil); err != nil {
		t.Errorf("completion of nil its batch committed = %v, want success", err)
	}

	// A record reaped and claimed anew starts its fences again. A stale
	// holder with the new holder's fence and outcome is still refused:
	// the owner tells them apart.
	old, err := s.Claim(ctx, store.ClaimParams{Key: "reaped", Owner: "old", Fingerprint: "fp",
		LeaseTTL: 10 * time.Millisecond, Retention: 10 * time.Millisecond})
	if err != nil || old.Status != store.ClaimAcquired {
		t.Fatalf("claim = %+v, %v", old, err)
	}
	eventually(t, "the expired record was reaped", func() bool {
		n, err := s.Reap(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return n > 0
	})
	newer, err := s.Claim(ctx, claimParams("reaped", "new", "fp"))
	if err != nil || newer.Status != store.ClaimAcquired || newer.Lease.Fence != old.Lease.Fence {
		t.Fatalf("claim of the reaped record = %+v, %v; want acquired under fence %d again", newer, err, old.Lease.Fence)
	}
	if err := s.Complete(ctx, newer.Lease, []byte("out")); err != nil {
		t.Fatal(err)
	}
	if err := s.CompleteAlone(ctx, old.Lease, []byte("out")); !errors.Is(err, idem.ErrLeaseLost) {
		t.Errorf("completion by the reaped record's holder = %v, want ErrLeaseLost", err)
	}
}

// The statements of the claim path find records by key, whatever the
// planner reckons of the table: a connection keeps a statement's generic
// plan, made while the table was small, as the table grows, so a plan that
// scans the table would make every call dearer as records accumulate.
// Generic plans, forced, on a table that has not been analyzed (as a
// new one is) must use the primary key alone.
func TestStatementsFindRecordsByKey(t *testing.T) {
	ctx := t.Context()
	pool := newPool(t)
	schema := "idemtest_" + strings.ToLower(rand.Text()[:12])
	sql := newStore(t, pool, pgstore.Config{Schema: schema, ReapInterval: -1}).Statements()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, "SET LOCAL plan_cache_mode = force_generic_plan"); err != nil {
		t.Fatal(err)
	}
	// The view counts what this connection has not yet reported, this
	// transaction's scans among them: each step is judged by its change.
	scans := func() (seq, byKey int64) {
		err := tx.QueryRow(ctx, `SELECT seq_scan, idx_scan FROM pg_stat_xact_user_tables
			WHERE relid = $1::regclass`, schema+".idem_records").Scan(&seq, &byKey)
		if err != nil {
			t.Fatal(err)
		}
		return seq, byKey
	}
	lease, ttl := time.Minute.Milliseconds(), time.Hour.Milliseconds()
	keys := []string{"b", "c", "d"}
	for _, step := range []struct {
		name string
		args []any
	}{
		{"claim", []any{"a", "me", "fp", lease, ttl}},
		{"claimMany", []any{keys, []string{"me", "me", "me"}, []string{"fp", "fp", "fp"}, []int64{lease, lease, lease}, []int64{ttl, ttl, ttl}}},
		{"complete", []any{"a", "me", int64(1), []byte("out")}},
		{"completeMany", []any{keys, []string{"me", "me", "me"}, []int64{1, 1, 1}, [][]byte{[]byte("1"), []byte("2"), []byte("3")}}},
		{"claim", []any{"a", "later", "fp", lease, ttl}}, // a replay
	} {
		seq0, byKey0 := scans()
		if _, err := tx.Exec(ctx, sql[step.name], step.args...); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if seq, byKey := scans(); seq != seq0 || byKey == byKey0 {
			t.Fatalf("%s: %d scans of the whole table and %d by key, want none and some", step.name, seq-seq0, byKey-byKey0)
		}
	}
	var completed int
	if err := tx.QueryRow(ctx, "SELECT count(*) FROM "+schema+".idem_records WHERE state = 'c'").Scan(&completed); err != nil || completed != 4 {
		t.Fatalf("%d records completed (%v), want 4", completed, err)
	}
}

// eventually polls cond every 10ms for up to 2s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not within 2s: %s", what)
		}
	}
}

// heldStore returns a store with one batch slot, its pool and schema, and
// a record an open transaction holds (as RunTx's does while its fn runs),
// released at cleanup at the latest.
func heldStore(t *testing.T) (*pgstore.Store, *pgxpool.Pool, string, func()) {
	t.Helper()
	pool := newPool(t)
	schema := "idemtest_" + strings.ToLower(rand.Text()[:12])
	s := newStore(t, pool, pgstore.Config{Schema: schema, BatchSlots: 1})
	tx, cr, err := s.BeginClaim(t.Context(), claimParams("held", "tx", "fp"), 0)
	if err != nil || cr.Status != store.ClaimAcquired {
		t.Fatalf("BeginClaim = %+v, %v", cr, err)
	}
	release := func() { s.Rollback(context.Background(), tx) }
	t.Cleanup(release)
	return s, pool, schema, release
}

// awaitLockWait returns once a statement on schema's table waits for a lock.
func awaitLockWait(t *testing.T, pool *pgxpool.Pool, schema string) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(time.Millisecond) {
		var n int
		err := pool.QueryRow(t.Context(), `SELECT count(*) FROM pg_stat_activity
			WHERE wait_event_type = 'Lock' AND query LIKE '%' || $1 || '%'`, schema).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no statement waited for a lock within 2s")
		}
	}
}

type claimAnswer struct {
	cr  store.ClaimResult
	err error
}

func claimAsync(s *pgstore.Store, ctx context.Context, key, owner string) chan claimAnswer {
	ch := make(chan claimAnswer, 1)
	go func() {
		cr, err := s.Claim(ctx, claimParams(key, owner, "fp"))
		ch <- claimAnswer{cr, err}
	}()
	return ch
}

// Claims that wait for a record another transaction holds give their slot
// up: claims and completions of other keys, alone or batched, go on and
// are answered while the record is still held.
func TestHeldRecordHoldsUpOnlyItsOwnClaims(t *testing.T) {
	ctx := t.Context()
	s, pool, schema, release := heldStore(t)
	mine := acquire(t, s, "mine")["mine"]
	// The first claim of the held record takes the only slot alone and
	// waits there for the lock; the rest queue behind it and go as a batch.
	held := []chan claimAnswer{claimAsync(s, ctx, "held", "waiter-0")}
	awaitLockWait(t, pool, schema)
	for i := 1; i < 3; i++ {
		held = append(held, claimAsync(s, ctx, "held", fmt.Sprint("waiter-", i)))
	}
	var free []chan claimAnswer
	for i := range 4 {
		free = append(free, claimAsync(s, ctx, fmt.Sprint("free-", i), "me"))
	}
	completed := make(chan error, 1)
	go func() { completed <- s.Complete(ctx, mine, []byte("out")) }()
	for i, ch := range free {
		select {
		case a := <-ch:
			if a.err != nil || a.cr.Status != store.ClaimAcquired {
				t.Errorf("claim of free-%d = %+v, %v; want acquired", i, a.cr, a.err)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("the claim of free-%d waited for another key's record", i)
		}
	}
	select {
	case err := <-completed:
		if err != nil {
			t.Errorf("completion of mine: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the completion of mine waited for another key's record")
	}
	for _, ch := range held {
		select {
		case a := <-ch:
			t.Fatalf("a claim of the held record returned while it was held: %+v, %v", a.cr, a.err)
		default:
		}
	}
	release()
	acquired := 0
	for _, ch := range held {
		a := <-ch
		switch {
		case a.err != nil:
			t.Errorf("claim of the released record: %v", a.err)
		case a.cr.Status == store.ClaimAcquired:
			acquired++
		case a.cr.Status != store.ClaimInFlight:
			t.Errorf("claim of the released record = %+v, want acquired or in flight", a.cr)
		}
	}
	if acquired != 1 {
		t.Fatalf("%d claims of the released record acquired it, want 1", acquired)
	}
}

// A batch that meets a held record or bad data sends each of its calls off
// to run alone; a bad call then fails only itself, with the store's error.
func TestBadCallFailsAlone(t *testing.T) {
	ctx := t.Context()
	s, pool, schema, _ := heldStore(t)
	bad := claimParams("bad\x00key", "me", "fp")
	for _, ps := range [][]store.ClaimParams{
		{claimParams("good-1", "me", "fp"), bad, claimParams("good-2", "me", "fp")},
		{claimParams("good-1", "me", "fp"), claimParams("held", "me", "fp")},
	} {
		for i, err := range func() []error { _, errs := s.ClaimBatch(ctx, ps); return errs }() {
			if !errors.Is(err, pgstore.ErrAlone) {
				t.Errorf("%s in a batch with %s = %v, want to run alone", ps[i].Key, ps[1].Key, err)
			}
		}
	}
	if _, err := s.Claim(ctx, bad); err == nil || errors.Is(err, pgstore.ErrAlone) || !strings.HasPrefix(err.Error(), "pgstore: claim: ") {
		t.Fatalf("claim of a bad key alone = %v, want the store's error", err)
	}

	// Through Claim: the held record's claim takes the only slot, so the
	// calls below queue and go as one batch.
	claimAsync(s, ctx, "held", "waiter")
	awaitLockWait(t, pool, schema)
	good1 := claimAsync(s, ctx, "good-1", "me")
	badAnswer := claimAsync(s, ctx, bad.Key, "me")
	good2 := claimAsync(s, ctx, "good-2", "me")
	if a := <-badAnswer; a.err == nil || errors.Is(a.err, pgstore.ErrAlone) {
		t.Fatalf("claim of a bad key beside good ones = %v, want the store's error", a.err)
	}
	for i, ch := range []chan claimAnswer{good1, good2} {
		if a := <-ch; a.err != nil || a.cr.Status != store.ClaimAcquired {
			t.Errorf("claim %d beside a bad one = %+v, %v", i+1, a.cr, a.err)
		}
	}
}

// A caller that gives up while its call waits for a slot gets the store's
// error, and leaves no claim behind; the call queued beside it goes on.
func TestCallerGoneWhileWaiting(t *testing.T) {
	ctx := t.Context()
	s, pool, schema, _ := heldStore(t)
	claimAsync(s, ctx, "held", "waiter")
	awaitLockWait(t, pool, schema)
	live := claimAsync(s, ctx, "live", "me")
	short, cancel := context.WithTimeout(ctx, 5*time.Millisecond)
	defer cancel()
	_, err := s.Claim(short, claimParams("late", "me", "fp"))
	if !errors.Is(err, context.DeadlineExceeded) || !strings.HasPrefix(err.Error(), "pgstore: claim: ") {
		t.Fatalf("Claim = %v, want the store's deadline error", err)
	}
	if a := <-live; a.err != nil || a.cr.Status != store.ClaimAcquired {
		t.Fatalf("the call queued beside it = %+v, %v; want acquired", a.cr, a.err)
	}
	cr, err := s.Claim(ctx, claimParams("late", "again", "fp"))
	if err != nil || cr.Status != store.ClaimAcquired || cr.Lease.Fence != 1 {
		t.Fatalf("claim after the caller left = %+v, %v; want a fresh claim: the abandoned call claimed", cr, err)
	}
}

// A completion that waits for a row another transaction locks gives its
// slot up too: completions of other records go on meanwhile.
func TestLockedRecordHoldsUpOnlyItsOwnCompletion(t *testing.T) {
	ctx := t.Context()
	pool := newPool(t)
	schema := "idemtest_" + strings.ToLower(rand.Text()[:12])
	s := newStore(t, pool, pgstore.Config{Schema: schema, BatchSlots: 1})
	leases := acquire(t, s, "locked", "free")
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tx.Rollback(context.Background()) })
	if _, err := tx.Exec(ctx, "SELECT FROM "+schema+".idem_records WHERE key = 'locked' FOR UPDATE"); err != nil {
		t.Fatal(err)
	}
	locked := make(chan error, 1)
	go func() { locked <- s.Complete(ctx, leases["locked"], []byte("out")) }()
	awaitLockWait(t, pool, schema) // it holds the only slot, or did
	start := time.Now()
	if err := s.Complete(ctx, leases["free"], []byte("out")); err != nil {
		t.Fatalf("completion of the free record: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("completion of the free record took %s: it waited for the locked one", d)
	}
	select {
	case err := <-locked:
		t.Fatalf("completion of the locked record returned while it was locked: %v", err)
	default:
	}
	tx.Rollback(ctx)
	if err := <-locked; err != nil {
		t.Fatalf("completion of the record once unlocked: %v", err)
	}
}
