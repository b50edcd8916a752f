-- Refunds are jobs like payments: claimed with a fenced lease, sent to the
-- provider with a key fixed at creation, settled with the fence checked.
CREATE TABLE refunds (
	id                 text    PRIMARY KEY,
	payment_id         text    NOT NULL REFERENCES payments (id),
	account_id         text    NOT NULL REFERENCES accounts (id),
	amount             bigint  NOT NULL CHECK (amount > 0),
	currency           text    NOT NULL,
	charge_id          text    NOT NULL, -- the provider's id of the charge refunded
	state              text    NOT NULL CHECK (state IN ('pending', 'processing', 'retry_scheduled', 'unknown', 'succeeded', 'failed')),
	claimed_from       text,
	fence              bigint  NOT NULL DEFAULT 0,
	lease_until        bigint,
	next_attempt_at    bigint  NOT NULL,
	attempts           integer NOT NULL DEFAULT 0,
	provider_key       text    NOT NULL UNIQUE,
	provider_refund_id text,
	failure_code       text,
	failure_message    text,
	created_at         bigint  NOT NULL,
	updated_at         bigint  NOT NULL
);
CREATE INDEX refunds_due ON refunds (next_attempt_at)
	WHERE state IN ('pending', 'processing', 'retry_scheduled', 'unknown');
CREATE INDEX refunds_by_payment ON refunds (payment_id, created_at, id);

-- Reconciliation compares payments by when they were created.
CREATE INDEX payments_by_created ON payments (created_at);

-- The ledger: double entry, append-only. A journal transaction is posted
-- once per (kind, ref): a succeeded charge, a refund reserved, paid or
-- reversed. Its entries sum to zero; balances are the sums of entries,
-- kept as they are posted and checked by payd verify.
CREATE TABLE ledger_transactions (
	id         text   PRIMARY KEY,
	kind       text   NOT NULL CHECK (kind IN ('charge', 'refund_reserve', 'refund', 'refund_reversal')),
	ref        text   NOT NULL,
	created_at bigint NOT NULL,
	UNIQUE (kind, ref)
);
CREATE TABLE ledger_entries (
	txn_id     text   NOT NULL REFERENCES ledger_transactions (id),
	line       integer NOT NULL,
	account    text   NOT NULL,
	currency   text   NOT NULL,
	amount     bigint NOT NULL,
	created_at bigint NOT NULL,
	PRIMARY KEY (txn_id, line)
);
CREATE INDEX ledger_entries_by_account ON ledger_entries (account, currency);
CREATE TABLE ledger_balances (
	account  text   NOT NULL,
	currency text   NOT NULL,
	balance  bigint NOT NULL,
	PRIMARY KEY (account, currency)
);

-- Posted means posted: no UPDATE or DELETE of journal transactions,
-- entries or the audit log.
CREATE FUNCTION payd_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP;
END $$;
CREATE TRIGGER ledger_transactions_append_only BEFORE UPDATE OR DELETE ON ledger_transactions
	FOR EACH ROW EXECUTE FUNCTION payd_append_only();
CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries
	FOR EACH ROW EXECUTE FUNCTION payd_append_only();

-- Reconciliation: each run, the mismatches it found (open until a run no
-- longer finds them), and an audit log of every fix made without a worker,
-- by reconciliation or a webhook.
CREATE TABLE reconciliation_runs (
	id               text    PRIMARY KEY,
	started_at       bigint  NOT NULL,
	finished_at      bigint  NOT NULL,
	window_from      bigint  NOT NULL,
	window_to        bigint  NOT NULL,
	provider_charges integer NOT NULL,
	matched          integer NOT NULL,
	fixed            integer NOT NULL,
	mismatches       integer NOT NULL
);
CREATE TABLE reconciliation_mismatches (
	id                 text   PRIMARY KEY,
	kind               text   NOT NULL,
	payment_id         text   NOT NULL DEFAULT '',
	provider_charge_id text   NOT NULL DEFAULT '',
	detail             text   NOT NULL,
	subject_at         bigint NOT NULL, -- when the charge or payment at fault was created
	found_at           bigint NOT NULL,
	resolved_at        bigint,
	UNIQUE (kind, payment_id, provider_charge_id)
);
CREATE TABLE audit_log (
	id         text   PRIMARY KEY,
	at         bigint NOT NULL,
	actor      text   NOT NULL,
	action     text   NOT NULL,
	payment_id text   NOT NULL DEFAULT '',
	detail     text   NOT NULL
);
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
	FOR EACH ROW EXECUTE FUNCTION payd_append_only();
