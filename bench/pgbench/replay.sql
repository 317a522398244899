-- replay: what PostgresStore sends for store.transition(id, 'a') on a row already in 'a': the
-- one-statement CTE, which matches no row, then the read that classifies the miss
-- (AlreadyApplied). Variables (-D): entities a src_b tbl machine at.
\set id random(1, :entities)
WITH source AS (SELECT "state" AS from_state FROM "bench_orders" WHERE "id" = :id AND "state" = ANY(:src_b) AND (NULL::bigint IS NULL OR "version" = NULL::bigint) FOR UPDATE), moved AS (UPDATE "bench_orders" SET "state" = :a, "version" = "bench_orders"."version" + 1 FROM source WHERE "bench_orders"."id" = :id RETURNING "bench_orders"."version" AS version, source.from_state) INSERT INTO fsm_history (entity_table, machine, entity_id, version, from_state, to_state, event, at_micros) SELECT :tbl, :machine, :id, moved.version, moved.from_state, :a, NULL, :at FROM moved RETURNING from_state, version;
SELECT "state", "version" FROM "bench_orders" WHERE "id" = :id;
