-- Completes one claim if p_owner still holds it with p_fence, and returns
-- whether anyone waits on the record; NULL when the claim was not current.
-- A batch of completions calls it once per key, in key order (pgstore's
-- completeMany), so that each completion is one primary-key lookup. Written
-- as one UPDATE … FROM unnest(…), the batch let the planner, which reckons
-- ten elements in an array parameter, join by scanning the whole table
-- while it held fewer than a few thousand records; each connection then
-- kept that plan as the table grew.
CREATE FUNCTION {{schema}}.idem_complete(p_key text, p_owner text, p_fence bigint, p_outcome bytea)
RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
	v_waited boolean;
BEGIN
	UPDATE {{schema}}.idem_records SET
		state = 'c', outcome = p_outcome, owner = NULL, lease_until = NULL,
		expires_at = statement_timestamp() + retention_ms * interval '1 millisecond'
	WHERE key = p_key AND state = 'p' AND owner = p_owner AND fence = p_fence
	RETURNING waited INTO v_waited;
	RETURN v_waited;
END
$$;

-- The completion inside the transaction that holds the claim, now by way
-- of idem_complete: unchanged, but for where its UPDATE is written.
CREATE OR REPLACE FUNCTION {{schema}}.idem_complete_held(p_key text, p_owner text, p_fence bigint, p_outcome bytea, p_channel text)
RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
	v_waited boolean := {{schema}}.idem_complete(p_key, p_owner, p_fence, p_outcome);
BEGIN
	IF v_waited IS NULL THEN
		RAISE EXCEPTION 'the claim of % with fence % is not held by this transaction', p_key, p_fence
			USING ERRCODE = 'IDM01';
	END IF;
	IF v_waited THEN
		PERFORM pg_notify(p_channel, p_key);
	END IF;
END
$$;
