-- keyed, multi-statement: the same work as keyed.sql (key, compare-and-set, history row) as
-- the common transaction of five round trips: BEGIN; INSERT key; UPDATE; INSERT history; COMMIT.
\set k :k + 1
\set per :entities / :nclients
\set id 1 + :client_id + :nclients * permute(:k - 1, :per)
\set round (:k - 1) / :per
\set seq :client_id * 1000000000 + :k
BEGIN;
\if :round % 2 = 0
INSERT INTO fsm_idempotency_keys (source, seq, fingerprint, outcome, created_at_micros) VALUES (:ksrc, :seq, :fp, :outcome_b, :at);
UPDATE "bench_orders" SET "state" = :b, "version" = "version" + 1 WHERE "id" = :id AND "state" = ANY(:src_a) RETURNING "version" \gset
INSERT INTO fsm_history (entity_table, machine, entity_id, version, from_state, to_state, event, at_micros) VALUES (:tbl, :machine, :id, :version, :a, :b, NULL, :at);
\else
INSERT INTO fsm_idempotency_keys (source, seq, fingerprint, outcome, created_at_micros) VALUES (:ksrc, :seq, :fp, :outcome_a, :at);
UPDATE "bench_orders" SET "state" = :a, "version" = "version" + 1 WHERE "id" = :id AND "state" = ANY(:src_b) RETURNING "version" \gset
INSERT INTO fsm_history (entity_table, machine, entity_id, version, from_state, to_state, event, at_micros) VALUES (:tbl, :machine, :id, :version, :b, :a, NULL, :at);
\endif
COMMIT;
