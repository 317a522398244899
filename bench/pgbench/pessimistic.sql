-- pessimistic: what PostgresStore sends for lock(id), transition(to), commit(): BEGIN; the row
-- read FOR UPDATE; the compare-and-set on the state and version read; the history row; COMMIT
-- (read_for_update, cas, insert_history in dialect.rs).
\set k :k + 1
\set per :entities / :nclients
\set id 1 + :client_id + :nclients * permute(:k - 1, :per)
\set round (:k - 1) / :per
BEGIN;
SELECT "state", "version" FROM "bench_orders" WHERE "id" = :id FOR UPDATE \gset
\set next :version + 1
\if :round % 2 = 0
UPDATE "bench_orders" SET "state" = :b, "version" = "version" + 1 WHERE "id" = :id AND "state" = :a AND "version" = :version;
INSERT INTO fsm_history (entity_table, machine, entity_id, version, from_state, to_state, event, at_micros) VALUES (:tbl, :machine, :id, :next, :a, :b, NULL, :at);
\else
UPDATE "bench_orders" SET "state" = :a, "version" = "version" + 1 WHERE "id" = :id AND "state" = :b AND "version" = :version;
INSERT INTO fsm_history (entity_table, machine, entity_id, version, from_state, to_state, event, at_micros) VALUES (:tbl, :machine, :id, :next, :b, :a, NULL, :at);
\endif
COMMIT;
