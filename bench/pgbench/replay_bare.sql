-- replay, bare: the compare-and-set UPDATE alone on a row already in the target (0 rows), the
-- statement of shared/BASELINE.md's (1r): the floor of any replay that writes nothing.
\set id random(1, :entities)
UPDATE "bench_orders" SET "state" = :a, "version" = "version" + 1 WHERE "id" = :id AND "state" = ANY(:src_b);
