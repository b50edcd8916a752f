-- What it takes never to finalize an unknown outcome on a "not found"
-- (DESIGN §6), never to settle what the provider did otherwise, and to
-- correct a final state only through an audited correction.
--
-- sent_at: by the database's clock, the latest time a request under the
-- row's provider key may have reached the provider and may still be
-- outstanding there; NULL while none can have (every attempt was refused
-- before it was sent, or none was made). A worker that takes over an
-- expired lease folds the old lease's end into it: the old worker may
-- have sent until then.
-- hold: the kind of the open mismatch that holds the row: not final, never
-- claimed by a worker, never settled by a webhook or reconciliation while
-- its provider record disagrees with it.
ALTER TABLE payments ADD COLUMN sent_at bigint;
ALTER TABLE payments ADD COLUMN hold text;
ALTER TABLE refunds ADD COLUMN sent_at bigint;
ALTER TABLE refunds ADD COLUMN hold text;
-- A row not final that was claimed before this migration may have had its
-- request sent, with no record of it: count it as sent when it was last
-- claimed or changed, so a "not found" cannot fail it before the
-- provider's longest processing time has passed since.
UPDATE payments SET sent_at = coalesce(lease_until, updated_at)
WHERE state IN ('processing', 'retry_scheduled', 'unknown') AND attempts > 0;
UPDATE refunds SET sent_at = coalesce(lease_until, updated_at)
WHERE state IN ('processing', 'retry_scheduled', 'unknown') AND attempts > 0;

-- Corrections of a final state post journal transactions of their own:
--   charge_reversal             merchant +A, clearing −A   a succeeded charge corrected to failed
--   refund_correction           merchant +R, clearing −R   a failed refund corrected to succeeded
--   refund_correction_reversal  clearing +R, merchant −R   a succeeded refund corrected to failed
-- (a failed charge corrected to succeeded posts its charge transaction).
ALTER TABLE ledger_transactions DROP CONSTRAINT ledger_transactions_kind_check;
ALTER TABLE ledger_transactions ADD CONSTRAINT ledger_transactions_kind_check CHECK (kind IN
	('charge', 'refund_reserve', 'refund', 'refund_reversal', 'charge_reversal', 'refund_correction', 'refund_correction_reversal'));

-- A mismatch is about one provider key, of a charge or a refund, and one
-- kind of disagreement: a run that looks at the key again and finds it
-- consistent resolves it, and nothing else does but a correction.
CREATE TABLE reconciliation_mismatches_v2 (
	id           text   PRIMARY KEY,
	kind         text   NOT NULL,
	provider_key text   NOT NULL,
	account_id   text   NOT NULL DEFAULT '',
	payment_id   text   NOT NULL DEFAULT '',
	refund_id    text   NOT NULL DEFAULT '',
	provider_id  text   NOT NULL DEFAULT '', -- the provider's charge or refund id
	detail       text   NOT NULL,
	subject_at   bigint NOT NULL,
	found_at     bigint NOT NULL,
	resolved_at  bigint,
	UNIQUE (kind, provider_key)
);
-- Old rows of one kind for one payment (with different provider charge
-- ids) become one row per key: an open one if any, else the latest.
INSERT INTO reconciliation_mismatches_v2 (id, kind, provider_key, account_id, payment_id, provider_id, detail, subject_at, found_at, resolved_at)
	SELECT m.id, m.kind, coalesce(p.provider_key, 'legacy:' || m.id), coalesce(p.account_id, ''), m.payment_id,
		m.provider_charge_id, m.detail, m.subject_at, m.found_at, m.resolved_at
	FROM reconciliation_mismatches m LEFT JOIN payments p ON p.id = m.payment_id
	WHERE true
	ORDER BY CASE WHEN m.resolved_at IS NULL THEN 0 ELSE 1 END, m.found_at DESC
ON CONFLICT (kind, provider_key) DO NOTHING;
DROP TABLE reconciliation_mismatches;
ALTER TABLE reconciliation_mismatches_v2 RENAME TO reconciliation_mismatches;
CREATE INDEX reconciliation_mismatches_open ON reconciliation_mismatches (found_at) WHERE resolved_at IS NULL;

ALTER TABLE reconciliation_runs ADD COLUMN provider_refunds integer NOT NULL DEFAULT 0;
