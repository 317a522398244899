-- keyed: what PostgresStore sends for a transition with an idempotency key, one statement
-- (transition_one_statement_keyed): the CTE of applied.sql storing the key and the outcome too.
-- The key is (ksrc, client_id * 1e9 + k), unique per request. Variables (-D): those of
-- applied.sql and ksrc fp.
\set k :k + 1
\set per :entities / :nclients
\set id 1 + :client_id + :nclients * permute(:k - 1, :per)
\set round (:k - 1) / :per
\set seq :client_id * 1000000000 + :k
\if :round % 2 = 0
WITH source AS (SELECT "state" AS from_state FROM "bench_orders" WHERE "id" = :id AND "state" = ANY(:src_a) AND (NULL::bigint IS NULL OR "version" = NULL::bigint) FOR UPDATE), moved AS (UPDATE "bench_orders" SET "state" = :b, "version" = "bench_orders"."version" + 1 FROM source WHERE "bench_orders"."id" = :id RETURNING "bench_orders"."version" AS version, source.from_state), stored AS (INSERT INTO fsm_idempotency_keys (source, seq, fingerprint, outcome, created_at_micros) SELECT :ksrc, :seq, :fp, json_build_object('from', moved.from_state, 'to', :b::text, 'version', moved.version)::text, :at FROM moved), recorded AS (INSERT INTO fsm_history (entity_table, machine, entity_id, version, from_state, to_state, event, at_micros) SELECT :tbl, :machine, :id, moved.version, moved.from_state, :b, NULL, :at FROM moved RETURNING from_state, version) SELECT true AS applied, from_state::text AS state, version::bigint AS version FROM recorded UNION ALL SELECT false, "state"::text, "version"::bigint FROM "bench_orders" WHERE "id" = :id AND NOT EXISTS (SELECT 1 FROM moved);
\else
WITH source AS (SELECT "state" AS from_state FROM "bench_orders" WHERE "id" = :id AND "state" = ANY(:src_b) AND (NULL::bigint IS NULL OR "version" = NULL::bigint) FOR UPDATE), moved AS (UPDATE "bench_orders" SET "state" = :a, "version" = "bench_orders"."version" + 1 FROM source WHERE "bench_orders"."id" = :id RETURNING "bench_orders"."version" AS version, source.from_state), stored AS (INSERT INTO fsm_idempotency_keys (source, seq, fingerprint, outcome, created_at_micros) SELECT :ksrc, :seq, :fp, json_build_object('from', moved.from_state, 'to', :a::text, 'version', moved.version)::text, :at FROM moved), recorded AS (INSERT INTO fsm_history (entity_table, machine, entity_id, version, from_state, to_state, event, at_micros) SELECT :tbl, :machine, :id, moved.version, moved.from_state, :a, NULL, :at FROM moved RETURNING from_state, version) SELECT true AS applied, from_state::text AS state, version::bigint AS version FROM recorded UNION ALL SELECT false, "state"::text, "version"::bigint FROM "bench_orders" WHERE "id" = :id AND NOT EXISTS (SELECT 1 FROM moved);
\endif
