//! The service's own tables, `accounts` and `payments`, and the statements on them, per
//! database. Each statement takes a connection, so that it can run inside the transaction of a
//! transition (an effect) or of a keyed operation ([`Keys::run_once`](fsm_runtime::Keys::run_once)).
//!
//! An account has a `balance` and a `reserved` amount: the sum of its payments being charged
//! by the card processor (`capturing`). A capture through the processor reserves its amount
//! when it starts (`balance - reserved - amount >= 0`, or the capture is refused before the
//! processor is called), and its recording transition debits it and releases the reservation
//! (charged) or only releases it (declined): so the debit of a charge the processor made can
//! never fail for want of funds.

use std::future::Future;

use fsm_runtime::sql::Backend;
use fsm_runtime::sqlx;

/// A payment as stored in the `payments` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRow {
    /// The payment's id.
    pub id: String,
    /// The account it debits.
    pub account_id: String,
    /// The amount, in minor units (cents).
    pub amount: i64,
    /// The stored name of its state.
    pub state: String,
    /// Its version: 0 when created, +1 for every transition.
    pub version: i64,
}

/// The SQL text of the service's statements in one database's dialect.
struct LedgerSql {
    create_tables: &'static [&'static str],
    insert_account: &'static str,
    account_balance: &'static str,
    read_payment: &'static str,
    debit: &'static str,
    credit: &'static str,
    count_receipts: &'static str,
    reserve: &'static str,
    debit_reserved: &'static str,
    release: &'static str,
    account_reserved: &'static str,
    create_index: &'static str,
}

/// The tables, in a form all three databases accept. The checks are a second line of defence:
/// the debit's own condition already keeps a balance from going below zero.
const CREATE_TABLES: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS accounts (\
         id VARCHAR(64) PRIMARY KEY, \
         balance BIGINT NOT NULL, \
         reserved BIGINT NOT NULL DEFAULT 0, \
         CHECK (balance >= 0), \
         CHECK (reserved >= 0))",
    "CREATE TABLE IF NOT EXISTS payments (\
         id VARCHAR(64) PRIMARY KEY, \
         state VARCHAR(32) NOT NULL, \
         version BIGINT NOT NULL, \
         account_id VARCHAR(64) NOT NULL, \
         amount BIGINT NOT NULL, \
         CHECK (amount > 0), \
         FOREIGN KEY (account_id) REFERENCES accounts (id))",
];

/// Whether `accounts` has its `reserved` column (tables created before it have not).
const PROBE_RESERVED: &str = "SELECT reserved FROM accounts WHERE 1 = 0";

/// Adds `reserved` to an `accounts` table created before it (in every database's dialect; a
/// server that added it meanwhile answers "duplicate column", which is fine).
const ADD_RESERVED: &str = "ALTER TABLE accounts ADD COLUMN reserved BIGINT NOT NULL DEFAULT 0";

/// SQLite's dialect: `?` placeholders.
const SQLITE: LedgerSql = LedgerSql {
    create_tables: CREATE_TABLES,
    insert_account: "INSERT INTO accounts (id, balance) VALUES (?, ?)",
    account_balance: "SELECT balance FROM accounts WHERE id = ?",
    read_payment: "SELECT id, account_id, amount, state, version FROM payments WHERE id = ?",
    debit: "UPDATE accounts SET balance = balance - ? WHERE id = ? AND balance - reserved - ? >= 0",
    credit: "UPDATE accounts SET balance = balance + ? WHERE id = ?",
    count_receipts: "SELECT COUNT(*), COUNT(published_at_micros) FROM fsm_outbox WHERE topic = 'payment_receipts' AND message_key = ?",
    reserve: "UPDATE accounts SET reserved = reserved + ? WHERE id = ? AND balance - reserved - ? >= 0",
    debit_reserved: "UPDATE accounts SET balance = balance - ?, \
                     reserved = CASE WHEN reserved >= ? THEN reserved - ? ELSE 0 END \
                     WHERE id = ? AND balance - ? >= 0",
    release: "UPDATE accounts SET reserved = CASE WHEN reserved >= ? THEN reserved - ? ELSE 0 END WHERE id = ?",
    account_reserved: "SELECT reserved FROM accounts WHERE id = ?",
    create_index: "CREATE INDEX IF NOT EXISTS payments_state ON payments (state)",
};

/// MySQL's and MariaDB's: `?` placeholders, and no `CREATE INDEX IF NOT EXISTS` in MySQL (a
/// second creation fails with "duplicate key name", which is fine).
const MYSQL: LedgerSql = LedgerSql { create_index: "CREATE INDEX payments_state ON payments (state)", ..SQLITE };

const DOLLARS: LedgerSql = LedgerSql {
    create_tables: CREATE_TABLES,
    insert_account: "INSERT INTO accounts (id, balance) VALUES ($1, $2)",
    account_balance: "SELECT balance FROM accounts WHERE id = $1",
    read_payment: "SELECT id, account_id, amount, state, version FROM payments WHERE id = $1",
    debit: "UPDATE accounts SET balance = balance - $1 WHERE id = $2 AND balance - reserved - $1 >= 0",
    credit: "UPDATE accounts SET balance = balance + $1 WHERE id = $2",
    count_receipts: "SELECT COUNT(*), COUNT(published_at_micros) FROM fsm_outbox WHERE topic = 'payment_receipts' AND message_key = $1",
    reserve: "UPDATE accounts SET reserved = reserved + $1 WHERE id = $2 AND balance - reserved - $1 >= 0",
    debit_reserved: "UPDATE accounts SET balance = balance - $1, \
                     reserved = CASE WHEN reserved >= $1 THEN reserved - $1 ELSE 0 END \
                     WHERE id = $2 AND balance - $1 >= 0",
    release: "UPDATE accounts SET reserved = CASE WHEN reserved >= $1 THEN reserved - $1 ELSE 0 END WHERE id = $2",
    account_reserved: "SELECT reserved FROM accounts WHERE id = $1",
    create_index: "CREATE INDEX IF NOT EXISTS payments_state ON payments (state)",
};

/// A database the payment service runs on: SQLite, PostgreSQL or MySQL/MariaDB. Its
/// connections are where an effect writes (the debit, the receipt in the outbox).
pub trait Ledger: Backend {
    /// Creates `accounts` and `payments` if they do not exist, adds `accounts.reserved` to a
    /// table created before it, and indexes `payments.state` (the recovery of captures lists
    /// the payments in `capturing` by it).
    fn create_tables(conn: &mut Self::Connection) -> impl Future<Output = Result<(), sqlx::Error>> + Send;

    /// Inserts an account with `balance`.
    fn insert_account(
        conn: &mut Self::Connection,
        id: &str,
        balance: i64,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;

    /// The balance of an account, `None` if there is no such account.
    fn account_balance(
        conn: &mut Self::Connection,
        id: &str,
    ) -> impl Future<Output = Result<Option<i64>, sqlx::Error>> + Send;

    /// Reads a payment.
    fn read_payment(
        conn: &mut Self::Connection,
        id: &str,
    ) -> impl Future<Output = Result<Option<PaymentRow>, sqlx::Error>> + Send;

    /// `UPDATE accounts SET balance = balance - amount WHERE id = account AND balance - reserved - amount >= 0`:
    /// 1 when debited, 0 when the account cannot pay (or does not exist).
    fn debit(
        conn: &mut Self::Connection,
        account_id: &str,
        amount: i64,
    ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send;

    /// `UPDATE accounts SET balance = balance + amount WHERE id = account`: rows updated.
    fn credit(
        conn: &mut Self::Connection,
        account_id: &str,
        amount: i64,
    ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send;

    /// How many receipts were enqueued in the outbox for a payment, and how many of them a
    /// relay has published.
    fn count_receipts(
        conn: &mut Self::Connection,
        payment_id: &str,
    ) -> impl Future<Output = Result<(i64, i64), sqlx::Error>> + Send;

    /// Reserves `amount` on the account for a capture through the processor:
    /// `UPDATE accounts SET reserved = reserved + amount WHERE id = account AND balance - reserved - amount >= 0`;
    /// 1 when reserved, 0 when the account cannot pay (or does not exist).
    fn reserve(
        conn: &mut Self::Connection,
        account_id: &str,
        amount: i64,
    ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send;

    /// Debits a charged capture and releases its reservation:
    /// `UPDATE accounts SET balance = balance - amount, reserved = reserved - amount WHERE id = account AND balance - amount >= 0`
    /// (the reservation never below zero); rows updated.
    fn debit_reserved(
        conn: &mut Self::Connection,
        account_id: &str,
        amount: i64,
    ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send;

    /// Releases the reservation of a declined capture (never below zero); rows updated.
    fn release(
        conn: &mut Self::Connection,
        account_id: &str,
        amount: i64,
    ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send;

    /// The amount reserved on an account, `None` if there is no such account.
    fn account_reserved(
        conn: &mut Self::Connection,
        id: &str,
    ) -> impl Future<Output = Result<Option<i64>, sqlx::Error>> + Send;
}

/// Two servers creating the same table at once: PostgreSQL may report a duplicate type or
/// table for the loser of `CREATE TABLE IF NOT EXISTS`; the table then exists.
fn is_duplicate_table(error: &sqlx::Error) -> bool {
    error.as_database_error().and_then(|e| e.code()).is_some_and(|code| code == "23505" || code == "42P07")
}

/// What was to be added exists already: a column (PostgreSQL `42701`, MySQL 1060, SQLite's
/// "duplicate column name") or an index (MySQL 1061), added by another server meanwhile or
/// before.
fn is_already_there(error: &sqlx::Error) -> bool {
    let Some(db) = error.as_database_error() else { return false };
    if db.message().contains("duplicate column name") {
        return true;
    }
    if let Some(mysql) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        return matches!(mysql.number(), 1060 | 1061);
    }
    is_duplicate_table(error) || db.code().is_some_and(|code| code == "42701")
}

/// `$n` placeholders bind each value once; `?` placeholders bind by position.
fn numbered(sql: &str) -> bool {
    sql.contains("$1")
}

macro_rules! impl_ledger {
    ($db:ty, $sql:expr) => {
        impl Ledger for $db {
            async fn create_tables(conn: &mut Self::Connection) -> Result<(), sqlx::Error> {
                for statement in $sql.create_tables {
                    match sqlx::query(*statement).execute(&mut *conn).await {
                        Ok(_) => {}
                        Err(error) if is_duplicate_table(&error) => {}
                        Err(error) => return Err(error),
                    }
                }
                if sqlx::query(PROBE_RESERVED).execute(&mut *conn).await.is_err() {
                    match sqlx::query(ADD_RESERVED).execute(&mut *conn).await {
                        Ok(_) => {}
                        Err(error) if is_already_there(&error) => {}
                        Err(error) => return Err(error),
                    }
                }
                match sqlx::query($sql.create_index).execute(&mut *conn).await {
                    Ok(_) => Ok(()),
                    Err(error) if is_already_there(&error) => Ok(()),
                    Err(error) => Err(error),
                }
            }

            async fn insert_account(conn: &mut Self::Connection, id: &str, balance: i64) -> Result<(), sqlx::Error> {
                sqlx::query($sql.insert_account).bind(id).bind(balance).execute(conn).await.map(drop)
            }

            async fn account_balance(conn: &mut Self::Connection, id: &str) -> Result<Option<i64>, sqlx::Error> {
                sqlx::query_scalar($sql.account_balance).bind(id).fetch_optional(conn).await
            }

            async fn read_payment(conn: &mut Self::Connection, id: &str) -> Result<Option<PaymentRow>, sqlx::Error> {
                let row: Option<(String, String, i64, String, i64)> =
                    sqlx::query_as($sql.read_payment).bind(id).fetch_optional(conn).await?;
                Ok(row.map(|(id, account_id, amount, state, version)| PaymentRow {
                    id,
                    account_id,
                    amount,
                    state,
                    version,
                }))
            }

            async fn debit(conn: &mut Self::Connection, account_id: &str, amount: i64) -> Result<u64, sqlx::Error> {
                let query = sqlx::query($sql.debit).bind(amount).bind(account_id);
                // `?` placeholders are positional: the amount is bound once per use.
                let query = if numbered($sql.debit) { query } else { query.bind(amount) };
                query.execute(conn).await.map(|done| done.rows_affected())
            }

            async fn credit(conn: &mut Self::Connection, account_id: &str, amount: i64) -> Result<u64, sqlx::Error> {
                sqlx::query($sql.credit)
                    .bind(amount)
                    .bind(account_id)
                    .execute(conn)
                    .await
                    .map(|done| done.rows_affected())
            }

            async fn count_receipts(conn: &mut Self::Connection, payment_id: &str) -> Result<(i64, i64), sqlx::Error> {
                sqlx::query_as($sql.count_receipts).bind(payment_id).fetch_one(conn).await
            }

            async fn reserve(conn: &mut Self::Connection, account_id: &str, amount: i64) -> Result<u64, sqlx::Error> {
                let query = sqlx::query($sql.reserve).bind(amount).bind(account_id);
                let query = if numbered($sql.reserve) { query } else { query.bind(amount) };
                query.execute(conn).await.map(|done| done.rows_affected())
            }

            async fn debit_reserved(
                conn: &mut Self::Connection,
                account_id: &str,
                amount: i64,
            ) -> Result<u64, sqlx::Error> {
                let query = if numbered($sql.debit_reserved) {
                    sqlx::query($sql.debit_reserved).bind(amount).bind(account_id)
                } else {
                    let query = sqlx::query($sql.debit_reserved).bind(amount).bind(amount).bind(amount);
                    query.bind(account_id).bind(amount)
                };
                query.execute(conn).await.map(|done| done.rows_affected())
            }

            async fn release(conn: &mut Self::Connection, account_id: &str, amount: i64) -> Result<u64, sqlx::Error> {
                let query = sqlx::query($sql.release).bind(amount);
                let query = if numbered($sql.release) { query } else { query.bind(amount) };
                query.bind(account_id).execute(conn).await.map(|done| done.rows_affected())
            }

            async fn account_reserved(conn: &mut Self::Connection, id: &str) -> Result<Option<i64>, sqlx::Error> {
                sqlx::query_scalar($sql.account_reserved).bind(id).fetch_optional(conn).await
            }
        }
    };
}

impl_ledger!(sqlx::Sqlite, SQLITE);
impl_ledger!(sqlx::MySql, MYSQL);
impl_ledger!(sqlx::Postgres, DOLLARS);
