package pgstore_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/pgstore"
	"github.com/idemhq/idem/storetest"
)

// The statements over arrays keep the contract, one call at a time.
func TestConformanceArrays(t *testing.T) {
	pool := newPool(t)
	s := newStore(t, pool, pgstore.Config{})
	storetest.Run(t, func(*testing.T) idem.Store { return pgstore.Arrays{Store: s} })
}

func claimParams(key, owner, fingerprint string) idem.ClaimParams {
	return idem.ClaimParams{Key: key, Owner: owner, Fingerprint: fingerprint, LeaseTTL: time.Minute, Retention: time.Hour}
}

// Claims of one key in one batch see each other: the first claims it, the
// rest find it in flight under the first's fence.
func TestBatchClaimsOfOneKey(t *testing.T) {
	s := newStore(t, newPool(t), pgstore.Config{})
	ps := make([]idem.ClaimParams, 5)
	for i := range ps {
		ps[i] = claimParams("same", "owner"+string(rune('a'+i)), "fp")
	}
	got, errs := s.ClaimBatch(t.Context(), ps)
	for i := range ps {
		if errs[i] != nil {
			t.Fatalf("claim %d: %v", i, errs[i])
		}
	}
	if got[0].Status != idem.ClaimAcquired || got[0].Lease.Owner != "ownera" {
		t.Fatalf("first claim = %+v, want acquired by ownera", got[0])
	}
	for i, cr := range got[1:] {
		if cr.Status != idem.ClaimInFlight || cr.Lease.Fence != got[0].Lease.Fence {
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
		if err != nil || cr.Status != idem.ClaimAcquired {
			t.Fatalf("setup claim of %s = %+v, %v", key, cr, err)
		}
		if err := s.Complete(ctx, cr.Lease, []byte(outcome)); err != nil {
			t.Fatalf("setup completion of %s: %v", key, err)
		}
	}
	complete("b-done", "fp", "outcome b")
	complete("a-other", "their-fp", "outcome a")
	if cr, err := s.Claim(ctx, claimParams("c-held", "holder", "fp")); err != nil || cr.Status != idem.ClaimAcquired {
		t.Fatalf("setup claim of c-held = %+v, %v", cr, err)
	}

	got, errs := s.ClaimBatch(ctx, []idem.ClaimParams{
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
	if got[0].Status != idem.ClaimAcquired || got[0].Lease != (idem.Lease{Key: "d-new", Owner: "me", Fence: 1}) {
		t.Errorf("new key: %+v", got[0])
	}
	if got[1].Status != idem.ClaimCompleted || !bytes.Equal(got[1].Outcome, []byte("outcome b")) {
		t.Errorf("completed key: %+v", got[1])
	}
	if got[2].Status != idem.ClaimMismatch {
		t.Errorf("key with another fingerprint: %+v", got[2])
	}
	if got[3].Status != idem.ClaimInFlight || got[3].RetryAfter <= 0 {
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
	leases := make([]idem.Lease, len(keys))
	for i, k := range keys {
		cr, err := s.Claim(ctx, claimParams(k, "me", "fp"))
		if err != nil || cr.Status != idem.ClaimAcquired {
			t.Fatalf("claim %s = %+v, %v", k, cr, err)
		}
		leases[i] = cr.Lease
	}
	woken := make(chan error, 1)
	go func() { woken <- s.Wait(ctx, "z", leases[0].Fence) }()
	for waited := false; !waited; {
		err := pool.QueryRow(ctx, "SELECT waited FROM "+schema+".idem_records WHERE key = 'z'").Scan(&waited)
		if err != nil {
			t.Fatal(err)
		}
	}

	stale := leases[1]
	stale.Fence++
	errs := s.CompleteBatch(ctx, []idem.Lease{leases[0], stale, leases[2]},
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
		case want == "" && cr.Status != idem.ClaimInFlight:
			t.Errorf("%s, never completed: %+v", keys[i], cr)
		case want != "" && (cr.Status != idem.ClaimCompleted || string(cr.Outcome) != want):
			t.Errorf("%s: %+v, want outcome %q", keys[i], cr, want)
		}
	}
}

// A call the server rejects fails alone: the batch runs again call by call.
func TestBatchIsolatesABadCall(t *testing.T) {
	s := newStore(t, newPool(t), pgstore.Config{})
	got, errs := s.ClaimBatch(t.Context(), []idem.ClaimParams{
		claimParams("good-1", "me", "fp"),
		claimParams("bad\x00key", "me", "fp"),
		claimParams("good-2", "me", "fp"),
	})
	if errs[1] == nil {
		t.Fatal("a key PostgreSQL cannot store was claimed")
	}
	for _, i := range []int{0, 2} {
		if errs[i] != nil || got[i].Status != idem.ClaimAcquired {
			t.Errorf("claim %d beside a bad one = %+v, %v", i, got[i], errs[i])
		}
	}
}

// A record held by an open transaction (RunTx's, while its fn runs) holds
// up only its own claim, not the others batched with it.
func TestBatchDoesNotWaitOnOneHeldRecord(t *testing.T) {
	ctx := t.Context()
	pool := newPool(t)
	schema := "idemtest_" + strings.ToLower(rand.Text()[:12])
	s := newStore(t, pool, pgstore.Config{Schema: schema})
	tx, cr, err := s.BeginClaim(ctx, claimParams("held", "tx", "fp"), 0)
	if err != nil || cr.Status != idem.ClaimAcquired {
		t.Fatalf("BeginClaim = %+v, %v", cr, err)
	}
	t.Cleanup(func() { s.Rollback(context.Background(), tx) })
	type answer struct {
		got  []idem.ClaimResult
		errs []error
	}
	done := make(chan answer, 1)
	go func() {
		got, errs := s.ClaimBatch(ctx, []idem.ClaimParams{
			claimParams("free-1", "me", "fp"), claimParams("held", "me", "fp"), claimParams("free-2", "me", "fp"),
		})
		done <- answer{got, errs}
	}()

	deadline := time.Now().Add(2 * time.Second)
	for {
		var n int
		err := pool.QueryRow(ctx, "SELECT count(*) FROM "+schema+".idem_records WHERE key IN ('free-1', 'free-2')").Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the free keys were not claimed while another key of their batch was held")
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case <-done:
		t.Fatal("the held key's claim returned while its record was still held")
	default:
	}
	if err := s.Rollback(ctx, tx); err != nil {
		t.Fatal(err)
	}
	a := <-done
	for i, want := range []string{"free-1", "held", "free-2"} {
		if a.errs[i] != nil || a.got[i].Status != idem.ClaimAcquired || a.got[i].Lease.Key != want {
			t.Errorf("claim of %s = %+v, %v; want acquired", want, a.got[i], a.errs[i])
		}
	}
}
