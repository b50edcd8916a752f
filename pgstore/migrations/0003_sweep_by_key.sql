-- The reaper now sweeps the table in key order (Store.Reap), so expires_at
-- needs no index. Without one, completing, renewing or releasing a record
-- changes no indexed column and PostgreSQL can update it in place (a HOT
-- update), which a claim's completion does on every first execution.
-- fillfactor leaves each page room for those updates.
DROP INDEX {{schema}}.idem_records_expires_at;
ALTER TABLE {{schema}}.idem_records SET (fillfactor = 90);
