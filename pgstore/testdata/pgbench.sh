#!/usr/bin/env bash
# Where a first execution's time goes on the server, for BENCHMARKS.md.
# Copies the store's schema (the migrations) into a scratch schema, then:
#
#  1. runs pgbench scripts in turn at one client, 4 s each, for ROUNDS
#     rounds (default 3), and prints transactions per second for each:
#       floor       the floor's INSERT
#       floor2      the floor's INSERT, then UPDATE (twostep)
#       row         the store's row: INSERT … ON CONFLICT … RETURNING, then
#                   the completion's UPDATE, in plain SQL
#       store       the store's claim and completion, as a lone call sends
#                   them (pgstore.go: claimTimed, completeTimed)
#       new         the claim of a new key alone
#       new_cte     the same, with the INSERT in a data-modifying CTE in
#                   front of the replay read instead of in idem_claim
#       replay      the claim of a completed key (a replay)
#       replay_cte  the same with the CTE
#  2. times each statement without its round trip or commit: a PL/pgSQL
#     loop of 5,000 in a transaction that is rolled back, ROUNDS times,
#     printing µs per statement.
#
# The SQL below restates the store's statements as of migration 0005; keep
# it in step with pgstore.go. Needs psql and pgbench (PostgreSQL's bin
# directory on PATH, or PGBENCH=...). Connects through the PG* variables,
# by default to 127.0.0.1 as postgres, database test.
set -euo pipefail
cd "$(dirname "$0")/.."
export PGHOST=${PGHOST:-127.0.0.1} PGUSER=${PGUSER:-postgres} PGDATABASE=${PGDATABASE:-test}
export PGOPTIONS='-c client_min_messages=warning'
PGBENCH=${PGBENCH:-$(command -v pgbench || echo /usr/lib/postgresql/15/bin/pgbench)}
ROUNDS=${ROUNDS:-3}
S=pgbench_idem
dir=$(mktemp -d)
trap 'psql -qc "DROP SCHEMA IF EXISTS '$S' CASCADE" >/dev/null 2>&1; rm -rf "$dir"' EXIT

psql -q -v ON_ERROR_STOP=1 -c "DROP SCHEMA IF EXISTS $S CASCADE" -c "CREATE SCHEMA $S"
for f in migrations/*.sql; do sed "s/{{schema}}/$S/g" "$f" | psql -q -v ON_ERROR_STOP=1; done
psql -q -v ON_ERROR_STOP=1 <<SQL
CREATE TABLE $S.floor (key text PRIMARY KEY, value bytea NOT NULL);
INSERT INTO $S.idem_records (key, state, fence, owner, fingerprint, lease_ms, retention_ms, outcome, expires_at)
SELECT 'replay-' || g, 'c', 1, 'owner', '', 30000, 86400000, '\x7b22223a317d', now() + interval '1 day'
FROM generate_series(1, 1000) g;
ANALYZE $S.idem_records;
SQL

K="'bench/' || md5(:k::text) || :client_id"
V="'\\x7b226964223a2263685f31227d'::bytea"
LT="CASE WHEN set_config('lock_timeout', '100ms', true) IS NOT NULL THEN"
ROW="(key, state, fence, owner, fingerprint, lease_until, lease_ms, retention_ms, took_over, waited, outcome, expires_at)"
ROWVALUES="'p', 1, 'owner', '', statement_timestamp() + 30000 * interval '1 millisecond', 30000, 86400000, false, false, NULL, statement_timestamp() + (30000 + 86400000) * interval '1 millisecond'"
COMPLETE="UPDATE $S.idem_records SET state = 'c', outcome = $LT $V END, lease_until = NULL, expires_at = statement_timestamp() + retention_ms * interval '1 millisecond' WHERE key = $K AND state = 'p' AND owner = 'owner' AND fence = 1 RETURNING waited;"
replay() { echo "(SELECT 2, r.fence, false, r.outcome, 0::bigint FROM $S.idem_records r WHERE r.key = $1 AND r.state = 'c' AND r.fingerprint = '' AND r.expires_at > statement_timestamp()$2)"; }
claim() { echo "$(replay "$1" "") UNION ALL (SELECT * FROM $S.idem_claim($LT $1 END, 'owner', '', 30000, 86400000)) LIMIT 1;"; }
cte() { echo "WITH ins AS (INSERT INTO $S.idem_records AS r $ROW VALUES ($1, $ROWVALUES) ON CONFLICT (key) DO NOTHING RETURNING 1, r.fence, false, NULL::bytea, 0::bigint) SELECT * FROM ins UNION ALL $(replay "$1" " AND NOT EXISTS (SELECT FROM ins)") UNION ALL (SELECT * FROM $S.idem_claim($1, 'owner', '', 30000, 86400000) WHERE NOT EXISTS (SELECT FROM ins)) LIMIT 1;"; }
script() { name=$1 range=$2; shift 2; { echo "\\set k random(1, $range)"; printf '%s\n' "$@"; } >"$dir/$name.sql"; }
R="'replay-' || :k"
script floor 1000000000 "INSERT INTO $S.floor (key, value) VALUES ($K, $V);"
script floor2 1000000000 "INSERT INTO $S.floor (key, value) VALUES ($K, $V);" "UPDATE $S.floor SET value = $V WHERE key = $K;"
script row 1000000000 "INSERT INTO $S.idem_records AS r $ROW VALUES ($K, $ROWVALUES) ON CONFLICT (key) DO NOTHING RETURNING 1, r.fence;" "$COMPLETE"
script store 1000000000 "$(claim "$K")" "$COMPLETE"
script new 1000000000 "$(claim "$K")"
script new_cte 1000000000 "$(cte "$K")"
script replay 1000 "$(claim "$R")"
script replay_cte 1000 "$(cte "$R")"

echo "transactions per second, pgbench -n -M prepared -c1 -T4:"
for round in $(seq "$ROUNDS"); do
	for s in floor floor2 row store new new_cte replay replay_cte; do
		printf '%s %s ' "$s" "$("$PGBENCH" -n -M prepared -c1 -T4 -f "$dir/$s.sql" 2>/dev/null | awk '/^tps/ {printf "%.0f", $3}')"
	done
	echo
done

psql -q -v ON_ERROR_STOP=1 <<SQL
CREATE FUNCTION $S.per_statement(kind text, n int) RETURNS float8 LANGUAGE plpgsql AS \$f\$
DECLARE t0 timestamptz := clock_timestamp(); k text; res record;
BEGIN
	FOR i IN 1..n LOOP
		k := 'bench/' || md5(kind || i || random());
		CASE kind
		WHEN 'floor' THEN INSERT INTO $S.floor (key, value) VALUES (k, $V);
		WHEN 'floor_on_conflict' THEN INSERT INTO $S.floor (key, value) VALUES (k, $V) ON CONFLICT DO NOTHING;
		WHEN 'row' THEN INSERT INTO $S.idem_records $ROW VALUES (k, $ROWVALUES);
		WHEN 'row_on_conflict' THEN INSERT INTO $S.idem_records AS x $ROW VALUES (k, $ROWVALUES) ON CONFLICT (key) DO NOTHING RETURNING 1, x.fence INTO res;
		WHEN 'claim' THEN SELECT * INTO res FROM ($(claim k | sed 's/;$//')) q;
		END CASE;
	END LOOP;
	RETURN extract(epoch FROM clock_timestamp() - t0) * 1e6 / n;
END \$f\$;
SQL
echo "µs per statement, without round trip or commit:"
for round in $(seq "$ROUNDS"); do
	for kind in floor floor_on_conflict row row_on_conflict claim; do
		printf '%s %s ' "$kind" "$(psql -Atq -v ON_ERROR_STOP=1 -c "BEGIN" -c "SELECT round($S.per_statement('$kind', 5000)::numeric, 1)" -c "ROLLBACK")"
	done
	echo
done
