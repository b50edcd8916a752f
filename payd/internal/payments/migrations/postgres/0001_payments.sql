-- Accounts own API keys; every payment and idempotency key is scoped to one.
CREATE TABLE accounts (
	id           text   PRIMARY KEY,
	name         text   NOT NULL,
	api_key_hash text   NOT NULL UNIQUE,
	created_at   bigint NOT NULL
);

-- A payment is its own job: inserting it enqueues it, and workers claim it
-- with a fenced lease while it is due. Times are Unix milliseconds by the
-- database's clock. next_attempt_at is when a pending, retrying or unknown
-- payment is due, and when a processing one's lease expires.
CREATE TABLE payments (
	id                 text    PRIMARY KEY,
	account_id         text    NOT NULL REFERENCES accounts (id),
	amount             bigint  NOT NULL CHECK (amount > 0),
	currency           text    NOT NULL,
	reference          text    NOT NULL,
	description        text    NOT NULL DEFAULT '',
	metadata           text    NOT NULL DEFAULT '{}',
	state              text    NOT NULL CHECK (state IN ('pending', 'processing', 'retry_scheduled', 'unknown', 'succeeded', 'failed')),
	claimed_from       text,
	fence              bigint  NOT NULL DEFAULT 0,
	lease_until        bigint,
	next_attempt_at    bigint  NOT NULL,
	attempts           integer NOT NULL DEFAULT 0,
	provider_key       text    NOT NULL UNIQUE,
	provider_charge_id text,
	failure_code       text,
	failure_message    text,
	amount_refunded    bigint  NOT NULL DEFAULT 0 CHECK (amount_refunded >= 0 AND amount_refunded <= amount),
	created_at         bigint  NOT NULL,
	updated_at         bigint  NOT NULL
);

CREATE INDEX payments_due ON payments (next_attempt_at)
	WHERE state IN ('pending', 'processing', 'retry_scheduled', 'unknown');
CREATE INDEX payments_by_reference ON payments (account_id, reference, created_at, id);
