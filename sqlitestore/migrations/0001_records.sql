-- One row per store key. Times are Unix milliseconds by the host's wall
-- clock, as the process running each statement reads it.
--
-- state: 0 free (released: only the fence remains), 1 in progress,
-- 2 completed. The fence survives release, takeover and completion.
-- In progress, expires_at is lease_until + retention_ms, so a record never
-- expires while its lease is live. fingerprint is compared byte for byte
-- (BINARY collation).
CREATE TABLE idem_records (
	key          TEXT PRIMARY KEY,
	state        INTEGER NOT NULL,
	fence        INTEGER NOT NULL,
	owner        TEXT NOT NULL,
	fingerprint  TEXT NOT NULL,
	lease_ms     INTEGER NOT NULL,
	retention_ms INTEGER NOT NULL,
	lease_until  INTEGER NOT NULL,
	expires_at   INTEGER NOT NULL,
	outcome      BLOB
) STRICT, WITHOUT ROWID;

-- No index on expires_at: every claim, renewal and completion changes it,
-- and an index would double the pages each of them writes. The reaper
-- sweeps the primary key in bounded ranges instead.
