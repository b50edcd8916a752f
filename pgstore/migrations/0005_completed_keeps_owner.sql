-- A completed record keeps the owner that completed it. Owners are unique
-- per acquired lease, while fences start again at 1 when a record is
-- reaped and claimed anew, so the owner is what tells a completion that
-- finds its outcome already recorded (its batch committed it, then
-- failed) from one whose record was reaped and completed by a later
-- holder with the same fence (pgstore's completeAlone).
CREATE OR REPLACE FUNCTION {{schema}}.idem_complete(p_key text, p_owner text, p_fence bigint, p_outcome bytea)
RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
	v_waited boolean;
BEGIN
	UPDATE {{schema}}.idem_records SET
		state = 'c', outcome = p_outcome, lease_until = NULL,
		expires_at = statement_timestamp() + retention_ms * interval '1 millisecond'
	WHERE key = p_key AND state = 'p' AND owner = p_owner AND fence = p_fence
	RETURNING waited INTO v_waited;
	RETURN v_waited;
END
$$;
