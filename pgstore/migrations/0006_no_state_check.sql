-- The state CHECK goes. PostgreSQL prepares a table's CHECK expressions
-- from their stored text afresh in each statement that writes a row, and
-- a claim and a completion are small enough for that to show in a first
-- execution's time (BENCHMARKS.md). Only the store's own statements and
-- functions write state, always as one of the literals 'p', 'c' and 'f'.
ALTER TABLE {{schema}}.idem_records DROP CONSTRAINT idem_records_state_check;
