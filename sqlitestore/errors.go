package sqlitestore

import (
	"errors"
	"fmt"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

var (
	// errLockWait: this process's write lock stayed taken past the wait's
	// bound, by a BeginClaim transaction that has not ended.
	errLockWait = errors.New("the write lock is held by a transaction of this process")

	// errBusy: a write did not get the lock within BusyTimeout.
	errBusy = errors.New("database busy")

	// errNotMigrated: the schema is missing or at another version.
	errNotMigrated = errors.New("sqlitestore: schema not migrated (call Store.Migrate)")
)

// failed translates an error of the driver, or of waiting for the write
// lock, for op: the one place that does. The driver's error stays in the
// chain (errors.As finds *sqlite.Error), with its result code named.
func failed(op string, err error) error {
	if err == nil {
		return nil
	}
	var se *sqlite.Error
	switch {
	case errors.Is(err, errBusy):
		return fmt.Errorf("sqlitestore: %s: %w", op, err)
	case errors.Is(err, errLockWait):
		return fmt.Errorf("sqlitestore: %s: database busy: %w", op, err)
	case errors.As(err, &se) && busyCode(se.Code()):
		return fmt.Errorf("sqlitestore: %s: database busy (another writer holds the lock): %w", op, err)
	}
	return fmt.Errorf("sqlitestore: %s: %w", op, err)
}

// busy reports whether err means the write lock was taken (SQLITE_BUSY,
// SQLITE_LOCKED and their extended codes, or this process's own lock held
// too long): an error that waiting, or running the transaction again, may
// cure.
func busy(err error) bool {
	if errors.Is(err, errLockWait) || errors.Is(err, errBusy) {
		return true
	}
	var se *sqlite.Error
	return errors.As(err, &se) && busyCode(se.Code())
}

func busyCode(code int) bool {
	switch code & 0xff {
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
		return true
	}
	return false
}

// transientCode reports whether a result code is SQLite failing rather
// than a statement's answer: an I/O error, a full disk, no memory, an
// interrupted statement, a file that cannot be opened or is corrupt.
func transientCode(code int) bool {
	switch code & 0xff {
	case sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL, sqlite3.SQLITE_NOMEM, sqlite3.SQLITE_INTERRUPT,
		sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_PROTOCOL:
		return true
	}
	return false
}
