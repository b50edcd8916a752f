-- The state CHECK goes. PostgreSQL builds a table's CHECK expressions
-- from their stored text in every statement that writes a row, and for
-- statements this small that cost about 25 µs of server CPU per first
-- execution, whose claim and completion each paid it. Only the store's
-- own statements and functions write state, always as one of the
-- literals 'p', 'c' and 'f'.
ALTER TABLE {{schema}}.idem_records DROP CONSTRAINT idem_records_state_check;
