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

-- The reaper deletes by expiry, oldest first.
CREATE INDEX idem_records_expires_at ON idem_records (expires_at);
