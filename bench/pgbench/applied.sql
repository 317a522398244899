-- applied: what PostgresStore sends for store.transition(id, to), one statement
-- (postgres_transition in fsm-runtime/src/store/sql/dialect.rs), with its bind parameters
-- written as pgbench variables. $8 (expected version) and $6 (event) are NULL for a plain
-- transition(id, to); pgbench cannot bind a NULL, so they are NULL literals here.
-- Each client owns the ids 1 + client_id + nclients * j and visits them in a random order
-- (permute); in even rounds every row it owns is in 'a', in odd rounds in 'b', so every
-- statement applies. Variables (-D): k=0 nclients entities a b src_a src_b tbl machine at.
\set k :k + 1
\set per :entities / :nclients
\set id 1 + :client_id + :nclients * permute(:k - 1, :per)
\set round (:k - 1) / :per
\if :round % 2 = 0
WITH source AS (SELECT "state" AS from_state FROM "bench_orders" WHERE "id" = :id AND "state" = ANY(:src_a) AND (NULL::bigint IS NULL OR "version" = NULL::bigint) FOR UPDATE), moved AS (UPDATE "bench_orders" SET "state" = :b, "version" = "bench_orders"."version" + 1 FROM source WHERE "bench_orders"."id" = :id RETURNING "bench_orders"."version" AS version, source.from_state), recorded AS (INSERT INTO fsm_history (entity_table, machine, entity_id, version, from_state, to_state, event, at_micros) SELECT :tbl, :machine, :id, moved.version, moved.from_state, :b, NULL, :at FROM moved RETURNING from_state, version) SELECT true AS applied, from_state::text AS state, version::bigint AS version FROM recorded UNION ALL SELECT false, "state"::text, "version"::bigint FROM "bench_orders" WHERE "id" = :id AND NOT EXISTS (SELECT 1 FROM moved);
\else
WITH source AS (SELECT "state" AS from_state FROM "bench_orders" WHERE "id" = :id AND "state" = ANY(:src_b) AND (NULL::bigint IS NULL OR "version" = NULL::bigint) FOR UPDATE), moved AS (UPDATE "bench_orders" SET "state" = :a, "version" = "bench_orders"."version" + 1 FROM source WHERE "bench_orders"."id" = :id RETURNING "bench_orders"."version" AS version, source.from_state), recorded AS (INSERT INTO fsm_history (entity_table, machine, entity_id, version, from_state, to_state, event, at_micros) SELECT :tbl, :machine, :id, moved.version, moved.from_state, :a, NULL, :at FROM moved RETURNING from_state, version) SELECT true AS applied, from_state::text AS state, version::bigint AS version FROM recorded UNION ALL SELECT false, "state"::text, "version"::bigint FROM "bench_orders" WHERE "id" = :id AND NOT EXISTS (SELECT 1 FROM moved);
\endif
