//! MySQL/MariaDB: the transition as one stored procedure, so that the applied path is one round
//! trip (`CALL`) as on PostgreSQL, though MySQL has no data-modifying CTE, no `UPDATE …
//! RETURNING`, and no batches of prepared statements.
//!
//! The store creates one procedure per table mapping when it is built (`CREATE PROCEDURE IF NOT
//! EXISTS`, named after a hash of its own text, so a changed body is a new procedure). A
//! server that refuses (no `CREATE ROUTINE` privilege, an id column of an unexpected type) keeps
//! the store on its client-side path: `SELECT` · `BEGIN` · `UPDATE` · history `INSERT` ·
//! `COMMIT`. Transitions with effects or an idempotency key take that path too: their work runs
//! between the statements.
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
/// idempotency key and metadata (nullable). The history row is written under the id as the
/// table stores it (`v_entity`): a case-insensitive or padding collation finds `Mixed-Case` for
/// `mixed-case`, and the history must not be written under the caller's spelling.
pub(crate) fn procedure(mapping: &TableMapping, id_type: &str) -> (String, String) {
    let q = <sqlx::MySql as Driver>::quote;
    let (table, id, state, version) = (q(&mapping.table), q(&mapping.id), q(&mapping.state), q(&mapping.version));
    let body = format!(
        "(IN p_id {id_type}, IN p_sources TEXT, IN p_to VARCHAR(191), IN p_machine VARCHAR(191), \
         IN p_event VARCHAR(191), IN p_at BIGINT, IN p_expected BIGINT, IN p_table VARCHAR(64), \
         IN p_actor TEXT, IN p_reason TEXT, IN p_key TEXT, IN p_metadata MEDIUMTEXT) \
         MODIFIES SQL DATA \
         BEGIN \
             DECLARE v_entity VARCHAR(191) DEFAULT NULL; \
             DECLARE v_from VARCHAR(191) DEFAULT NULL; \
             DECLARE v_version BIGINT DEFAULT NULL; \
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
                     UPDATE {table} SET {state} = p_to, {version} = {version} + 1 WHERE {id} = p_id; \
                     INSERT INTO fsm_history ({HISTORY_COLUMNS}) \
                     VALUES (p_table, p_machine, v_entity, v_version + 1, v_from, p_to, p_event, p_at, \
                             p_actor, p_reason, p_key, p_metadata); \
                     COMMIT; \
                     SELECT 1 AS applied, v_from AS state, v_version + 1 AS version, v_entity AS entity; \
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
        format!("CALL `{name}`(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_procedure_is_named_after_its_text() {
        let orders = TableMapping::from_static("orders", "id", "state", "version");
        let (create, call) = procedure(&orders, "bigint(20)");
        let (again, _) = procedure(&orders, "bigint(20)");
        assert_eq!(create, again);
        assert!(call.starts_with("CALL `fsm_transition_"));
        let (text_id, _) = procedure(&orders, "varchar(64)");
        assert_ne!(create, text_id);
        let other = TableMapping::from_static("invoices", "id", "state", "version");
        assert_ne!(procedure(&other, "bigint(20)").1, call);
    }
}
