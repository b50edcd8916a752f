-- The write half of a claim, called by the claim statement only when the
-- record is not a plain replay (absent, free, expired, in progress, or
-- bound to another fingerprint). A replay then costs one primary-key read:
-- the executor never starts this function, nor the INSERT inside it.
--
-- An absent key, a first execution, is claimed by the first INSERT alone.
-- Any other record is read next. When it is plainly not claimable (completed, or
-- held by a live lease, or bound to another fingerprint, and not past
-- retention), nothing is written and no row is locked. Otherwise the
-- INSERT … ON CONFLICT … DO UPDATE claims it if it is still claimable on the
-- latest row version: free, past retention, or in progress under an
-- expired lease with the same fingerprint. When the claim does not happen,
-- the second branch reports the record as it was read; a record that
-- changed after that read is reported in flight (3), so the caller looks
-- again. Status: 1 acquired, 2 completed, 3 in flight, 4 mismatch.
CREATE FUNCTION {{schema}}.idem_claim(p_key text, p_owner text, p_fingerprint text, p_lease_ms bigint, p_retention_ms bigint)
RETURNS TABLE (status int, fence bigint, took_over boolean, outcome bytea, left_ms bigint)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
BEGIN
	RETURN QUERY
	INSERT INTO {{schema}}.idem_records AS r (key, state, fence, owner, fingerprint, lease_until, lease_ms, retention_ms, took_over, waited, outcome, expires_at)
	VALUES (p_key, 'p', 1, p_owner, p_fingerprint, statement_timestamp() + p_lease_ms * interval '1 millisecond', p_lease_ms, p_retention_ms, false, false, NULL,
	        statement_timestamp() + (p_lease_ms + p_retention_ms) * interval '1 millisecond')
	ON CONFLICT (key) DO NOTHING
	RETURNING 1, r.fence, false, NULL::bytea, 0::bigint;
	IF FOUND THEN
		RETURN;
	END IF;

	RETURN QUERY
	WITH cur AS (
		SELECT r.state, r.fence, r.fingerprint, r.outcome, r.lease_until, r.expires_at
		FROM {{schema}}.idem_records r WHERE r.key = p_key
	), claimed AS (
		INSERT INTO {{schema}}.idem_records AS r (key, state, fence, owner, fingerprint, lease_until, lease_ms, retention_ms, took_over, waited, outcome, expires_at)
		SELECT p_key, 'p', 1, p_owner, p_fingerprint, statement_timestamp() + p_lease_ms * interval '1 millisecond', p_lease_ms, p_retention_ms, false, false, NULL,
		       statement_timestamp() + (p_lease_ms + p_retention_ms) * interval '1 millisecond'
		WHERE NOT EXISTS (
			SELECT FROM cur
			WHERE cur.expires_at > statement_timestamp()
			  AND (cur.state = 'c'
			       OR (cur.state = 'p' AND (cur.lease_until > statement_timestamp() OR cur.fingerprint IS DISTINCT FROM p_fingerprint))))
		ON CONFLICT (key) DO UPDATE SET
			state = 'p', fence = r.fence + 1, owner = excluded.owner, fingerprint = excluded.fingerprint,
			lease_until = excluded.lease_until, lease_ms = excluded.lease_ms, retention_ms = excluded.retention_ms,
			took_over = r.state = 'p', waited = false, outcome = NULL, expires_at = excluded.expires_at
		WHERE r.state = 'f'
		   OR r.expires_at <= statement_timestamp()
		   OR (r.state = 'p' AND r.lease_until <= statement_timestamp() AND r.fingerprint = excluded.fingerprint)
		RETURNING r.fence, r.took_over
	)
	SELECT 1, claimed.fence, claimed.took_over, NULL::bytea, 0::bigint FROM claimed
	UNION ALL
	SELECT CASE WHEN cur.state = 'f' OR cur.expires_at <= statement_timestamp() THEN 3
	            WHEN cur.fingerprint IS DISTINCT FROM p_fingerprint THEN 4
	            WHEN cur.state = 'c' THEN 2
	            ELSE 3 END,
	       cur.fence, false,
	       CASE WHEN cur.state = 'c' AND cur.fingerprint = p_fingerprint THEN cur.outcome END,
	       GREATEST(0, ceil(extract(epoch FROM cur.lease_until - statement_timestamp()) * 1000))::bigint
	FROM cur
	WHERE NOT EXISTS (SELECT FROM claimed);
END
$$;

-- Completes a claim inside the transaction that holds it (RunTx), with the
-- COMMIT sent right behind it in the same round trip. Unlike the plain
-- completion it raises when the claim is not the caller's, so that the
-- COMMIT rolls back instead of committing fn's writes without their outcome.
CREATE FUNCTION {{schema}}.idem_complete_held(p_key text, p_owner text, p_fence bigint, p_outcome bytea, p_channel text)
RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
	v_waited boolean;
BEGIN
	UPDATE {{schema}}.idem_records SET
		state = 'c', outcome = p_outcome, owner = NULL, lease_until = NULL,
		expires_at = statement_timestamp() + retention_ms * interval '1 millisecond'
	WHERE key = p_key AND state = 'p' AND owner = p_owner AND fence = p_fence
	RETURNING waited INTO v_waited;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'the claim of % with fence % is not held by this transaction', p_key, p_fence
			USING ERRCODE = 'IDM01';
	END IF;
	IF v_waited THEN
		PERFORM pg_notify(p_channel, p_key);
	END IF;
END
$$;
