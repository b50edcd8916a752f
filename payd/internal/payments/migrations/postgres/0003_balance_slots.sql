-- An account's balance is kept in slots, and is the sum of them. A posting
-- adds to one slot, picked at random, so that postings to one account
-- (every charge moves provider_clearing and its merchant) seldom wait on
-- each other's row lock, which is held until commit.
ALTER TABLE ledger_balances ADD COLUMN slot smallint NOT NULL DEFAULT 0;
ALTER TABLE ledger_balances DROP CONSTRAINT ledger_balances_pkey;
ALTER TABLE ledger_balances ADD PRIMARY KEY (account, currency, slot);
