-- One row per store key. A record in progress has an owner, a fence and a
-- lease; a completed one has its outcome; a free one (released) keeps only
-- its fence, so fences never repeat while the row exists. expires_at is the
-- retention deadline: an in-progress row's is its lease plus retention, so
-- no sweep removes a live holder.
CREATE TABLE {{schema}}.idem_records (
	key          text        PRIMARY KEY,
	state        "char"      NOT NULL CHECK (state IN ('p', 'c', 'f')),
	fence        bigint      NOT NULL,
	owner        text,
	fingerprint  text,
	lease_until  timestamptz,
	lease_ms     bigint      NOT NULL,
	retention_ms bigint      NOT NULL,
	took_over    boolean     NOT NULL DEFAULT false,
	waited       boolean     NOT NULL DEFAULT false,
	outcome      bytea,
	expires_at   timestamptz NOT NULL
);

CREATE INDEX idem_records_expires_at ON {{schema}}.idem_records (expires_at);
