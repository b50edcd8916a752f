-- An account's balance is kept in slots, and is the sum of them. A posting
-- adds to one slot, picked at random, so that postings to one account
-- (every charge moves provider_clearing and its merchant) seldom wait on
-- each other's row lock, which is held until commit. SQLite has one writer
-- at a time anyway; the schema is the same on both databases.
CREATE TABLE ledger_balances_slotted (
	account  text     NOT NULL,
	currency text     NOT NULL,
	slot     smallint NOT NULL,
	balance  bigint   NOT NULL,
	PRIMARY KEY (account, currency, slot)
);
INSERT INTO ledger_balances_slotted (account, currency, slot, balance)
	SELECT account, currency, 0, balance FROM ledger_balances;
DROP TABLE ledger_balances;
ALTER TABLE ledger_balances_slotted RENAME TO ledger_balances;
