package store

import (
	"context"
	"time"
)

// TxStore is a Store that can also claim a key, run fn's writes and record
// the outcome in one database transaction of type Tx (pgx.Tx, *sql.Tx), so
// that the writes and the record commit or roll back together. idem.RunTx
// uses it; storetest.RunTx checks it, each method with the subtests its
// comment names.
type TxStore[Tx any] interface {
	Store

	// BeginClaim begins a transaction and claims p.Key inside it, as Claim
	// would, mismatches included (TxMismatch). On ClaimAcquired the claim is
	// uncommitted: it holds the key until the transaction ends, and a
	// concurrent claim of the key waits up to its own maxWait for that, then
	// reports ClaimInFlight, so a storm on one key writes once
	// (TxStormOneRow). On any other status, or an error, the transaction is
	// already over and tx is the zero value (TxReplayWritesNothing). maxWait
	// of zero means don't wait.
	BeginClaim(ctx context.Context, p ClaimParams, maxWait time.Duration) (tx Tx, cr ClaimResult, err error)

	// Commit records outcome for l in tx and commits tx, so the writes and
	// the record land together (TxStormOneRow, TxReplayWritesNothing). With
	// discardWrites it first undoes everything written in tx since
	// BeginClaim, so an error outcome is recorded without the writes that
	// led to it (TxFinalErrorRecordedWithoutWrites). It ends tx even when it
	// fails.
	Commit(ctx context.Context, tx Tx, l Lease, outcome []byte, discardWrites bool) error

	// Rollback ends tx, recording nothing: neither fn's writes nor the
	// claim remain (TxTransientErrorRollsBack, TxPanicRollsBack).
	Rollback(ctx context.Context, tx Tx) error

	// Conflict reports whether err, from fn or Commit, means the transaction
	// lost a race with another (a serialization failure, a deadlock, a busy
	// database) and may succeed if run again. The suite cannot cause a
	// conflict in a store-neutral way; each store's own tests do
	// (pgstore's TestDeadlockIsRetried, sqlitestore's TestConflict).
	Conflict(err error) bool

	// Transient reports whether err, from fn, is the database failing
	// rather than fn's answer: a lock or statement timeout, a lost
	// connection, a database out of space. idem.RunTx then rolls the call
	// back and records nothing, as for RunOptions.Retryable, so that a
	// retry with the key runs fn again instead of replaying the failure.
	// The suite cannot cause one in a store-neutral way; each store's own
	// tests do (pgstore's TestDatabaseFailuresInFnAreNotRecorded,
	// sqlitestore's TestTransient).
	Transient(err error) bool
}
