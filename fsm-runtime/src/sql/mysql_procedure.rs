//! MySQL/MariaDB: the transition as one stored procedure, so that the applied path is one round
//! trip (`CALL`) as on PostgreSQL, though MySQL has no data-modifying CTE, no `UPDATE …
//! RETURNING`, and no batches of prepared statements.
//!
//! The store creates one procedure per table mapping when it is built (`CREATE PROCEDURE IF NOT
//! EXISTS`, named after a hash of its own text, so a changed body is a new procedure). A
//! server that refuses (no `CREATE ROUTINE` privilege, an id column of an unexpected type) keeps
//! the store on its client-side path: `SELECT` · `BEGIN` · `UPDATE` · history `INSERT` ·
//! `COMMIT`. Transitions with effects take that path too: their work runs between the
//! statements. A transition with an idempotency key has a procedure of its own, which also
//! stores the key with the outcome in the move's transaction: one `CALL` where the client-side
//! path took six round trips (a replay of the key: the `CALL`, then the read of the key).
//!
//! The procedure reads the row (a plain read: a replay or a refused request ends there, without
//! a transaction or a lock); when it is in a legal source (and at the expected version) it locks
//! it by primary key (`SELECT … FOR UPDATE`), checks again, updates it and inserts the history
//! row, commits, and answers one row `(applied, state, version)`: `(1, from, new version)` when
//! it applied, else `(0, state, version)` of the row it found (`NULL`s: no row). Any error
//! inside rolls the procedure's transaction back and is raised again to the caller.

use sha2::{Digest as _, Sha256};

use crate::mapping::TableMapping;
use crate::sql::backend::private::Driver;
use crate::sql::entity::HISTORY_COLUMNS;

/// The query that reads the declared type of the mapping's id column (`bigint(20)`,
/// `varchar(64)`, …), which the procedure's id parameter takes. The names are validated
/// identifiers (`[A-Za-z_][A-Za-z0-9_]*`), so they are safe inside string literals.
pub(crate) fn id_column_type_query(mapping: &TableMapping) -> String {
    format!(
        "SELECT CAST(COLUMN_TYPE AS CHAR) FROM information_schema.COLUMNS \
         WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '{}' AND COLUMN_NAME = '{}'",
        mapping.table, mapping.id
    )
}

/// The procedure of `mapping` for an id column of type `id_type`: its `CREATE` statement and
/// the `CALL` statement that runs it. `CALL` parameters, in the order of PostgreSQL's statement:
/// id, the legal sources as a JSON array of stored names, target, machine, event (nullable),
/// at_micros, expected version (nullable), entity table, then the history's actor, reason,
/// idempotency key and metadata (nullable); `keyed`, then the key's source and seq and the
/// request's fingerprint, which the procedure stores with the outcome in the transaction of the
/// move. A key stored already (the insert's duplicate key, and only that insert's) rolls the
/// move back and answers a miss: the caller then reads the key
/// ([`TransitionSql::misses_on_stored_key`](crate::sql::transition::TransitionSql)). Any other
/// duplicate (a stale history row) is an error, as on PostgreSQL. The history row is written under the id as the
/// table stores it (`v_entity`): a case-insensitive or padding collation finds `Mixed-Case` for
/// `mixed-case`, and the history must not be written under the caller's spelling.
pub(crate) fn procedure(mapping: &TableMapping, id_type: &str, keyed: bool) -> (String, String) {
    let q = <sqlx::MySql as Driver>::quote;
    let (table, id, state, version) = (q(&mapping.table), q(&mapping.id), q(&mapping.state), q(&mapping.version));
    let (key_params, store_key, key_args) = if keyed {
        (
            ", IN p_key_source VARCHAR(191), IN p_key_seq BIGINT, IN p_fingerprint VARCHAR(128)",
            "BEGIN DECLARE CONTINUE HANDLER FOR 1062 SET v_stored = 1; \
             INSERT INTO fsm_idempotency_keys (source, seq, fingerprint, outcome, created_at_micros) \
             VALUES (p_key_source, p_key_seq, p_fingerprint, JSON_OBJECT('machine', p_machine, 'entity', v_entity, \
             'from', v_from, 'to', p_to, 'version', v_version + 1), p_at); END; ",
            ", ?, ?, ?",
        )
    } else {
        ("", "", "")
    };
    let body = format!(
        "(IN p_id {id_type}, IN p_sources TEXT, IN p_to VARCHAR(191), IN p_machine VARCHAR(191), \
         IN p_event VARCHAR(191), IN p_at BIGINT, IN p_expected BIGINT, IN p_table VARCHAR(64), \
         IN p_actor TEXT, IN p_reason TEXT, IN p_key TEXT, IN p_metadata MEDIUMTEXT{key_params}) \
         MODIFIES SQL DATA \
         BEGIN \
             DECLARE v_entity VARCHAR(191) DEFAULT NULL; \
             DECLARE v_from VARCHAR(191) DEFAULT NULL; \
             DECLARE v_version BIGINT DEFAULT NULL; \
             DECLARE v_stored INT DEFAULT 0; \
             DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN ROLLBACK; RESIGNAL; END; \
             SELECT {entity}, {state}, {version} INTO v_entity, v_from, v_version FROM {table} WHERE {id} = p_id; \
             IF v_from IS NULL OR NOT JSON_CONTAINS(p_sources, JSON_QUOTE(v_from)) \
                OR (p_expected IS NOT NULL AND v_version <> p_expected) THEN \
                 SELECT 0 AS applied, v_from AS state, v_version AS version, v_entity AS entity; \
             ELSE \
                 START TRANSACTION; \
                 SET v_entity = NULL, v_from = NULL, v_version = NULL; \
                 SELECT {entity}, {state}, {version} INTO v_entity, v_from, v_version FROM {table} WHERE {id} = p_id FOR UPDATE; \
                 IF v_from IS NOT NULL AND JSON_CONTAINS(p_sources, JSON_QUOTE(v_from)) \
                    AND (p_expected IS NULL OR v_version = p_expected) THEN \
                     {store_key}\
                     IF v_stored = 0 THEN \
                         UPDATE {table} SET {state} = p_to, {version} = {version} + 1 WHERE {id} = p_id; \
                         INSERT INTO fsm_history ({HISTORY_COLUMNS}) \
                         VALUES (p_table, p_machine, v_entity, v_version + 1, v_from, p_to, p_event, p_at, \
                                 p_actor, p_reason, p_key, p_metadata); \
                         COMMIT; \
                         SELECT 1 AS applied, v_from AS state, v_version + 1 AS version, v_entity AS entity; \
                     ELSE \
                         ROLLBACK; \
                         SELECT 0 AS applied, v_from AS state, v_version AS version, v_entity AS entity; \
                     END IF; \
                 ELSE \
                     COMMIT; \
                     SELECT 0 AS applied, v_from AS state, v_version AS version, v_entity AS entity; \
                 END IF; \
             END IF; \
         END",
        entity = <sqlx::MySql as Driver>::id_text(&id),
    );
    let digest = Sha256::digest(format!("{table}{body}").as_bytes());
    let name: String = digest.iter().take(10).map(|byte| format!("{byte:02x}")).collect();
    let name = format!("fsm_transition_{name}");
    (
        format!("CREATE PROCEDURE IF NOT EXISTS `{name}` {body}"),
        format!("CALL `{name}`(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?{key_args})"),
    )
}

/// The batch procedure of `mapping` ([`crate::sql::batch`]; items without a key, as one JSON
/// array of rows, sorted by id so that two batches lock their rows in the same order): its
/// `CREATE` statement and its `CALL` (items, machine, entity table, time). In one transaction,
/// a cursor over the items (`JSON_TABLE`) locks each item's row (`SELECT … FOR UPDATE`) and,
/// when it is in a legal source at the expected version, moves it and inserts its history
/// row; then the procedure commits and answers one row per item, as the batch statement of
/// PostgreSQL does. Any error rolls the whole batch back and is raised again to the caller.
pub(crate) fn batch_procedure(mapping: &TableMapping, id_type: &str) -> (String, String) {
    let q = <sqlx::MySql as Driver>::quote;
    let (table, id, state, version) = (q(&mapping.table), q(&mapping.id), q(&mapping.state), q(&mapping.version));
    let entity = <sqlx::MySql as Driver>::id_text(&id);
    let answer = "JSON_ARRAY(v_ord, v_applied, v_from, v_version, v_entity)";
    let body = format!(
        "(IN p_items LONGTEXT, IN p_machine VARCHAR(191), IN p_table VARCHAR(64), IN p_at BIGINT) \
         MODIFIES SQL DATA \
         BEGIN \
             DECLARE v_done INT DEFAULT 0; \
             DECLARE v_ord BIGINT; \
             DECLARE v_id {id_type}; \
             DECLARE v_to, v_event, v_entity, v_from VARCHAR(191); \
             DECLARE v_sources, v_actor, v_reason, v_key TEXT; \
             DECLARE v_metadata MEDIUMTEXT; \
             DECLARE v_expected, v_version BIGINT; \
             DECLARE v_applied INT; \
             DECLARE v_answers LONGTEXT DEFAULT ''; \
             DECLARE v_items CURSOR FOR SELECT j.* FROM JSON_TABLE(p_items, '$[*]' COLUMNS ( \
                 ord BIGINT PATH '$[0]', id VARCHAR(191) PATH '$[1]', target VARCHAR(191) PATH '$[2]', \
                 sources TEXT PATH '$[3]', event VARCHAR(191) PATH '$[4]', expected BIGINT PATH '$[5]', \
                 actor TEXT PATH '$[6]', reason TEXT PATH '$[7]', key_text TEXT PATH '$[8]', \
                 metadata MEDIUMTEXT PATH '$[9]')) AS j; \
             DECLARE CONTINUE HANDLER FOR NOT FOUND SET v_done = 1; \
             DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN ROLLBACK; RESIGNAL; END; \
             START TRANSACTION; \
             OPEN v_items; \
             items: LOOP \
                 FETCH v_items INTO v_ord, v_id, v_to, v_sources, v_event, v_expected, v_actor, v_reason, v_key, v_metadata; \
                 IF v_done = 1 THEN LEAVE items; END IF; \
                 SET v_entity = NULL, v_from = NULL, v_version = NULL, v_applied = 0; \
                 SELECT {entity}, {state}, {version} INTO v_entity, v_from, v_version FROM {table} WHERE {id} = v_id FOR UPDATE; \
                 SET v_done = 0; \
                 IF v_from IS NOT NULL \
                    AND LOCATE(CONCAT(CHAR(31), v_from, CHAR(31)), CONCAT(CHAR(31), v_sources, CHAR(31))) > 0 \
                    AND (v_expected IS NULL OR v_version = v_expected) THEN \
                     UPDATE {table} SET {state} = v_to, {version} = {version} + 1 WHERE {id} = v_id; \
                     INSERT INTO fsm_history ({HISTORY_COLUMNS}) \
                     VALUES (p_table, p_machine, v_entity, v_version + 1, v_from, v_to, v_event, p_at, \
                             v_actor, v_reason, v_key, v_metadata); \
                     SET v_applied = 1, v_version = v_version + 1; \
                 END IF; \
                 SET v_answers = IF(v_answers = '', {answer}, CONCAT(v_answers, ',', {answer})); \
             END LOOP; \
             CLOSE v_items; \
             COMMIT; \
             SELECT a.ord, a.applied, a.state, a.version, a.entity, NULL AS fingerprint, NULL AS outcome \
             FROM JSON_TABLE(CONCAT('[', v_answers, ']'), '$[*]' COLUMNS ( \
                 ord BIGINT PATH '$[0]', applied INT PATH '$[1]', state VARCHAR(191) PATH '$[2]', \
                 version BIGINT PATH '$[3]', entity VARCHAR(191) PATH '$[4]')) AS a; \
         END"
    );
    let digest = Sha256::digest(format!("{table}{body}").as_bytes());
    let name: String = digest.iter().take(10).map(|byte| format!("{byte:02x}")).collect();
    let name = format!("fsm_batch_{name}");
    (format!("CREATE PROCEDURE IF NOT EXISTS `{name}` {body}"), format!("CALL `{name}`(?, ?, ?, ?)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_procedure_is_named_after_its_text() {
        let orders = TableMapping::from_static("orders", "id", "state", "version");
        let (create, call) = procedure(&orders, "bigint(20)", false);
        let (again, _) = procedure(&orders, "bigint(20)", false);
        assert_eq!(create, again);
        assert!(call.starts_with("CALL `fsm_transition_"));
        let (text_id, _) = procedure(&orders, "varchar(64)", false);
        assert_ne!(create, text_id);
        let other = TableMapping::from_static("invoices", "id", "state", "version");
        assert_ne!(procedure(&other, "bigint(20)", false).1, call);
        let (keyed, keyed_call) = procedure(&orders, "bigint(20)", true);
        assert!(keyed.contains("INSERT INTO fsm_idempotency_keys") && !create.contains("fsm_idempotency_keys"));
        assert!(keyed_call.ends_with("?, ?, ?, ?)") && keyed_call != call);
    }
}
