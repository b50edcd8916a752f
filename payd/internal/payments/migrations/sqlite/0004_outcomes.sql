-- What it takes never to finalize an unknown outcome on a "not found"
-- (DESIGN §6), never to settle what the provider did otherwise, and to
-- correct a final state only through an audited correction. The columns
-- are PostgreSQL's 0004; see there.
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

-- The correction kinds of journal transaction. SQLite cannot change a
-- CHECK constraint, so the ledger's two tables are built again with their
-- rows, indexes and append-only triggers. Entries go first: they refer
-- to transactions, and foreign keys are enforced in this transaction.
CREATE TABLE ledger_transactions_v2 (
	id         text   PRIMARY KEY,
	kind       text   NOT NULL CHECK (kind IN
		('charge', 'refund_reserve', 'refund', 'refund_reversal', 'charge_reversal', 'refund_correction', 'refund_correction_reversal')),
	ref        text   NOT NULL,
	created_at bigint NOT NULL,
	UNIQUE (kind, ref)
);
INSERT INTO ledger_transactions_v2 (id, kind, ref, created_at) SELECT id, kind, ref, created_at FROM ledger_transactions;
CREATE TABLE ledger_entries_v2 (
	txn_id     text    NOT NULL REFERENCES ledger_transactions_v2 (id),
	line       integer NOT NULL,
	account    text    NOT NULL,
	currency   text    NOT NULL,
	amount     bigint  NOT NULL,
	created_at bigint  NOT NULL,
	PRIMARY KEY (txn_id, line)
);
INSERT INTO ledger_entries_v2 (txn_id, line, account, currency, amount, created_at)
	SELECT txn_id, line, account, currency, amount, created_at FROM ledger_entries;
DROP TABLE ledger_entries;
DROP TABLE ledger_transactions;
ALTER TABLE ledger_transactions_v2 RENAME TO ledger_transactions;
ALTER TABLE ledger_entries_v2 RENAME TO ledger_entries;
CREATE INDEX ledger_entries_by_account ON ledger_entries (account, currency);
CREATE TRIGGER ledger_transactions_no_update BEFORE UPDATE ON ledger_transactions
BEGIN SELECT RAISE(ABORT, 'ledger_transactions is append-only: UPDATE refused'); END;
CREATE TRIGGER ledger_transactions_no_delete BEFORE DELETE ON ledger_transactions
BEGIN SELECT RAISE(ABORT, 'ledger_transactions is append-only: DELETE refused'); END;
CREATE TRIGGER ledger_entries_no_update BEFORE UPDATE ON ledger_entries
BEGIN SELECT RAISE(ABORT, 'ledger_entries is append-only: UPDATE refused'); END;
CREATE TRIGGER ledger_entries_no_delete BEFORE DELETE ON ledger_entries
BEGIN SELECT RAISE(ABORT, 'ledger_entries is append-only: DELETE refused'); END;

-- A mismatch is about one provider key and one kind of disagreement; see
-- PostgreSQL's 0004.
CREATE TABLE reconciliation_mismatches_v2 (
	id           text   PRIMARY KEY,
	kind         text   NOT NULL,
	provider_key text   NOT NULL,
	account_id   text   NOT NULL DEFAULT '',
	payment_id   text   NOT NULL DEFAULT '',
	refund_id    text   NOT NULL DEFAULT '',
	provider_id  text   NOT NULL DEFAULT '',
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
