// Package sqlitestore is a store.Store on SQLite, for a single node: the
// durable embedded store, in pure Go (modernc.org/sqlite, no cgo). It is
// also a store.TxStore[*sql.Tx]: idem.RunTx runs fn's writes and records
// the outcome in one SQLite transaction, so they commit together or not at
// all.
//
//	db, err := sqlitestore.OpenDB(ctx, "app.db")
//	...
//	store, err := sqlitestore.New(db, nil)
//	...
//	err = store.Migrate(ctx) // applies the embedded schema; nothing else runs DDL
//	engine, err := idem.New(store, nil)
//
// # Guarantees
//
// It passes the store conformance suite (storetest.Run and storetest.RunTx)
// with the guarantees of package idem, and keeps them across processes that
// share the database file on one host: two *sql.DB handles on one file, as
// two processes look to SQLite, run fn exactly once per key between them
// (TestTwoHandlesOneFile). A transaction cut short by a crash leaves
// neither fn's writes nor the record, and the retry applies them once
// (TestCrashMidTransaction, which kills a real process while fn runs).
//
// A record is one row of idem_records. Every state change is one write
// statement under the database's write lock: a claim is a compare-and-set
// on the fence, state and lease it read, and renew, complete and release
// are compare-and-sets on (owner, fence). A replay is one narrow read
// without the lock; a live lease or a different fingerprint is answered
// from one more read. Fences increase by one per claim for as long as the
// row exists. A background reaper deletes expired rows, sweeping the table
// in batches (Config.ReapInterval, Config.ReapBatch); after that a key's
// fences may start again from 1, and the owner still tells holders apart.
//
// # Clock
//
// Leases and retention are judged by the host's wall clock, read by the
// process that runs each statement and stored as Unix milliseconds. All
// processes sharing a file are on one host and read the same clock; SQLite's
// own time functions would read it too. A step of the wall clock (a manual
// change, an NTP step rather than a slew) moves every lease and retention
// by the step: a forward step can expire a live lease early, and then the
// fence still refuses the old holder's writes.
//
// # Locking and busy databases
//
// SQLite has one write lock per database file. A Store queues its
// process's writes for it in process, so they do not poll SQLite's busy
// handler against each other; writes of other processes are waited for
// through the busy timeout. The application's own writes to the same file
// join that queue through Store.Write. A busy or locked database (SQLITE_BUSY,
// SQLITE_LOCKED) is retried with backoff for up to Config.BusyTimeout and
// is never reported as fn's failure: before fn a claim fails closed (fn did
// not run), and in a transaction Conflict reports it, so RunTx runs the
// transaction again. After a plain Run's fn, a completion still locked out
// at BusyTimeout is what the engine reports as idem.ErrNotRecorded.
//
// A BeginClaim transaction holds the write lock from the claim to Commit or
// Rollback, and so, while fn runs, every other write to the file waits for
// it, whatever its key: other claims, renewals, completions, and the
// caller's own writes. Keep transactional fn short, shorter than
// BusyTimeout.
//
// # Waiting
//
// A waiter is woken at once by a change made through the same Store.
// Changes made by another process sharing the file reach it by polling:
// each waiter re-reads its record every Config.PollInterval (1s by
// default), so a waiter in another process sees an outcome up to that late.
//
// # Durability
//
// OpenDB sets synchronous=FULL in WAL mode: a record is on disk when its
// operation returns, and survives power loss. With synchronous=NORMAL
// (a db opened by the caller) commits are faster and survive a crash of the
// process but not of the machine: the last records can be lost, and a lost
// completion lets a retry run fn again. A lost transaction of RunTx loses
// fn's writes with its record, never one without the other.
//
// # Caveats
//
//   - One node. The file must be on a local disk: SQLite's locks are not
//     reliable on network file systems.
//   - Several processes on one host share the file correctly, but wake each
//     other's waiters only by polling (see Waiting).
//   - Use one Store per file in a process; two Stores on one file work but
//     contend through SQLite's busy handler.
//   - The schema is created by Migrate, never behind the caller's back; the
//     first operation on an unmigrated database fails.
package sqlitestore
