-- An account has any number of API keys, so that a merchant can roll one
-- without downtime: a key is created, deployed, then the old one revoked.
-- payd keeps a key's SHA-256 and its first characters (to tell keys apart
-- in a listing), never the key. A revoked key stays, to refuse its reuse.
CREATE TABLE api_keys (
	id         text   PRIMARY KEY,
	account_id text   NOT NULL REFERENCES accounts (id),
	hash       text   NOT NULL UNIQUE,
	hint       text   NOT NULL,
	created_at bigint NOT NULL,
	revoked_at bigint
);
CREATE INDEX api_keys_by_account ON api_keys (account_id, created_at);

-- Each account's one key becomes its first api_keys row. SQLite cannot
-- drop a UNIQUE column, so accounts.api_key_hash stays in both dialects,
-- filled with a value no SHA-256 in hex equals, and is never read.
INSERT INTO api_keys (id, account_id, hash, hint, created_at)
	SELECT 'key_' || id, id, api_key_hash, '', created_at FROM accounts;
UPDATE accounts SET api_key_hash = 'retired:' || id;
