package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/store"
)

// Rows lets the transactional suite write and count business rows in the
// store's database, standing in for a caller's own tables.
type Rows[Tx any] struct {
	// Insert writes one row with id inside tx.
	Insert func(ctx context.Context, tx Tx, id string) error
	// Count returns how many committed rows have id.
	Count func(ctx context.Context, id string) (int, error)
}

// RunTx runs the transactional conformance subtests (idem.RunTx) against
// stores from newStore, with rows standing in for the caller's writes. A
// TxStore must pass Run as well.
func RunTx[Tx any](t *testing.T, newStore func(t *testing.T) store.TxStore[Tx], rows Rows[Tx]) {
	t.Helper()
	for _, c := range []struct {
		name string
		run  func(t *testing.T, s store.TxStore[Tx], rows Rows[Tx])
	}{
		{"TxStormOneRow", testTxStormOneRow[Tx]},
		{"TxReplayWritesNothing", testTxReplayWritesNothing[Tx]},
		{"TxTransientErrorRollsBack", testTxTransientErrorRollsBack[Tx]},
		{"TxFinalErrorRecordedWithoutWrites", testTxFinalErrorRecordedWithoutWrites[Tx]},
		{"TxPanicRollsBack", testTxPanicRollsBack[Tx]},
		{"TxMismatch", testTxMismatch[Tx]},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.run(t, newStore(t), rows)
		})
	}
}

func countRows[Tx any](t *testing.T, rows Rows[Tx], id string) int {
	t.Helper()
	n, err := rows.Count(t.Context(), id)
	if err != nil {
		t.Fatalf("count rows %s: %v", id, err)
	}
	return n
}

// testTxStormOneRow: 64 goroutines through four engines, one key: exactly
// one business row and one execution, and every caller sees its value.
func testTxStormOneRow[Tx any](t *testing.T, s store.TxStore[Tx], rows Rows[Tx]) {
	const goroutines, engines = 64, 4
	var engs [engines]*idem.Engine
	for i := range engs {
		engs[i] = newEngine(t, s, idem.Config{})
	}
	key := newRunKey(t)
	var (
		executions atomic.Int32
		mu         sync.Mutex
		values     = map[string]int{}
		wg         sync.WaitGroup
	)
	for g := range goroutines {
		wg.Go(func() {
			res, err := idem.RunTx(t.Context(), engs[g%engines], key, func(ctx context.Context, tx Tx) ([]byte, error) {
				n := executions.Add(1)
				if err := rows.Insert(ctx, tx, key); err != nil {
					return nil, err
				}
				return fmt.Appendf(nil, "row by execution %d", n), nil
			}, &idem.RunOptions{MaxWait: patience})
			if err != nil {
				t.Errorf("RunTx: %v", err)
				return
			}
			mu.Lock()
			values[string(res.Value)]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if n := countRows(t, rows, key); n != 1 {
		t.Errorf("business rows = %d, want 1", n)
	}
	if n := executions.Load(); n != 1 {
		t.Errorf("fn committed by %d executions, want 1", n)
	}
	if len(values) != 1 {
		t.Errorf("callers saw %d different values %v, want 1", len(values), values)
	}
}

func testTxReplayWritesNothing[Tx any](t *testing.T, s store.TxStore[Tx], rows Rows[Tx]) {
	e := newEngine(t, s, idem.Config{})
	key := newRunKey(t)
	insert := func(ctx context.Context, tx Tx) ([]byte, error) { return []byte("inserted"), rows.Insert(ctx, tx, key) }
	for i, wantReplayed := range []bool{false, true, true} {
		res, err := idem.RunTx(t.Context(), e, key, insert, nil)
		if err != nil || res.Replayed != wantReplayed || string(res.Value) != "inserted" {
			t.Fatalf("call %d: RunTx = (%q, replayed %t, %v), want (inserted, %t, nil)", i, res.Value, res.Replayed, err, wantReplayed)
		}
	}
	if n := countRows(t, rows, key); n != 1 {
		t.Fatalf("business rows = %d, want 1", n)
	}
	// The outcome is an ordinary record: Run replays it too.
	res, err := e.Run(t.Context(), key, func(context.Context) ([]byte, error) {
		return nil, errors.New("fn ran outside the transaction")
	}, nil)
	if err != nil || !res.Replayed || string(res.Value) != "inserted" {
		t.Fatalf("Run after RunTx = (%q, replayed %t, %v), want the replay", res.Value, res.Replayed, err)
	}
}

// testTxTransientErrorRollsBack: a transient error undoes fn's writes and
// the claim, so the next call runs fn again, once.
func testTxTransientErrorRollsBack[Tx any](t *testing.T, s store.TxStore[Tx], rows Rows[Tx]) {
	e := newEngine(t, s, idem.Config{})
	key := newRunKey(t)
	errBusy := errors.New("provider busy")
	opts := &idem.RunOptions{Retryable: func(err error) bool { return errors.Is(err, errBusy) }}
	_, err := idem.RunTx(t.Context(), e, key, func(ctx context.Context, tx Tx) ([]byte, error) {
		if err := rows.Insert(ctx, tx, key); err != nil {
			return nil, err
		}
		return nil, errBusy
	}, opts)
	if !errors.Is(err, errBusy) {
		t.Fatalf("RunTx = %v, want the transient error", err)
	}
	if n := countRows(t, rows, key); n != 0 {
		t.Fatalf("business rows after a rolled-back attempt = %d, want 0", n)
	}
	res, err := idem.RunTx(t.Context(), e, key, func(ctx context.Context, tx Tx) ([]byte, error) {
		return []byte("second"), rows.Insert(ctx, tx, key)
	}, opts)
	if err != nil || res.Replayed || string(res.Value) != "second" {
		t.Fatalf("RunTx after the rollback = (%q, replayed %t, %v), want a fresh run", res.Value, res.Replayed, err)
	}
	if n := countRows(t, rows, key); n != 1 {
		t.Fatalf("business rows = %d, want 1", n)
	}
}

// testTxFinalErrorRecordedWithoutWrites: a final error is recorded and
// replayed, and fn's writes before it are undone.
func testTxFinalErrorRecordedWithoutWrites[Tx any](t *testing.T, s store.TxStore[Tx], rows Rows[Tx]) {
	errDeclined := errors.New("declined")
	e := newEngine(t, s, idem.Config{Errors: map[string]error{"declined": errDeclined}})
	key := newRunKey(t)
	runs := 0
	fn := func(ctx context.Context, tx Tx) ([]byte, error) {
		runs++
		if err := rows.Insert(ctx, tx, key); err != nil {
			return nil, err
		}
		return nil, errDeclined
	}
	for i := range 2 {
		if _, err := idem.RunTx(t.Context(), e, key, fn, nil); !errors.Is(err, errDeclined) {
			t.Fatalf("call %d: RunTx = %v, want the declined error", i, err)
		}
	}
	if runs != 1 {
		t.Fatalf("fn ran %d times, want 1: the error is recorded", runs)
	}
	if n := countRows(t, rows, key); n != 0 {
		t.Fatalf("business rows = %d, want 0: the failed attempt's writes are undone", n)
	}
}

func testTxPanicRollsBack[Tx any](t *testing.T, s store.TxStore[Tx], rows Rows[Tx]) {
	e := newEngine(t, s, idem.Config{})
	key := newRunKey(t)
	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Errorf("recovered %v, want boom", r)
			}
		}()
		idem.RunTx(t.Context(), e, key, func(ctx context.Context, tx Tx) ([]byte, error) {
			if err := rows.Insert(ctx, tx, key); err != nil {
				return nil, err
			}
			panic("boom")
		}, nil)
	}()
	if n := countRows(t, rows, key); n != 0 {
		t.Fatalf("business rows after a panic = %d, want 0", n)
	}
	res, err := idem.RunTx(t.Context(), e, key, func(ctx context.Context, tx Tx) ([]byte, error) {
		return []byte("after"), rows.Insert(ctx, tx, key)
	}, nil)
	if err != nil || res.Replayed {
		t.Fatalf("RunTx after a panic = (replayed %t, %v), want a fresh run", res.Replayed, err)
	}
}

func testTxMismatch[Tx any](t *testing.T, s store.TxStore[Tx], rows Rows[Tx]) {
	e := newEngine(t, s, idem.Config{})
	key := newRunKey(t)
	insert := func(ctx context.Context, tx Tx) ([]byte, error) { return nil, rows.Insert(ctx, tx, key) }
	if _, err := idem.RunTx(t.Context(), e, key, insert, &idem.RunOptions{Fingerprint: "a"}); err != nil {
		t.Fatal(err)
	}
	if _, err := idem.RunTx(t.Context(), e, key, insert, &idem.RunOptions{Fingerprint: "b"}); !errors.Is(err, idem.ErrMismatch) {
		t.Fatalf("RunTx with another fingerprint = %v, want ErrMismatch", err)
	}
	if n := countRows(t, rows, key); n != 1 {
		t.Fatalf("business rows = %d, want 1", n)
	}
}
