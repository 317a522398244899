//! The service's own tables, `accounts` and `payments`, and the statements on them, per
//! database. Each statement takes a connection, so that it can run inside the transaction of a
//! transition (an effect) or of a keyed operation ([`Keys::run_once`](fsm_runtime::Keys::run_once)).

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
}

/// The tables, in a form all three databases accept. The checks are a second line of defence:
/// the debit's own condition already keeps a balance from going below zero.
const CREATE_TABLES: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS accounts (\
         id VARCHAR(64) PRIMARY KEY, \
         balance BIGINT NOT NULL, \
         CHECK (balance >= 0))",
    "CREATE TABLE IF NOT EXISTS payments (\
         id VARCHAR(64) PRIMARY KEY, \
         state VARCHAR(32) NOT NULL, \
         version BIGINT NOT NULL, \
         account_id VARCHAR(64) NOT NULL, \
         amount BIGINT NOT NULL, \
         CHECK (amount > 0), \
         FOREIGN KEY (account_id) REFERENCES accounts (id))",
];

const QUESTION_MARKS: LedgerSql = LedgerSql {
    create_tables: CREATE_TABLES,
    insert_account: "INSERT INTO accounts (id, balance) VALUES (?, ?)",
    account_balance: "SELECT balance FROM accounts WHERE id = ?",
    read_payment: "SELECT id, account_id, amount, state, version FROM payments WHERE id = ?",
    debit: "UPDATE accounts SET balance = balance - ? WHERE id = ? AND balance - ? >= 0",
    credit: "UPDATE accounts SET balance = balance + ? WHERE id = ?",
    count_receipts: "SELECT COUNT(*), COUNT(published_at_micros) FROM fsm_outbox WHERE topic = 'payment_receipts' AND message_key = ?",
};

const DOLLARS: LedgerSql = LedgerSql {
    create_tables: CREATE_TABLES,
    insert_account: "INSERT INTO accounts (id, balance) VALUES ($1, $2)",
    account_balance: "SELECT balance FROM accounts WHERE id = $1",
    read_payment: "SELECT id, account_id, amount, state, version FROM payments WHERE id = $1",
    debit: "UPDATE accounts SET balance = balance - $1 WHERE id = $2 AND balance - $1 >= 0",
    credit: "UPDATE accounts SET balance = balance + $1 WHERE id = $2",
    count_receipts: "SELECT COUNT(*), COUNT(published_at_micros) FROM fsm_outbox WHERE topic = 'payment_receipts' AND message_key = $1",
};

/// A database the payment service runs on: SQLite, PostgreSQL or MySQL/MariaDB. Its
/// connections are where an effect writes (the debit, the receipt in the outbox).
pub trait Ledger: Backend {
    /// Creates `accounts` and `payments` if they do not exist.
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

    /// `UPDATE accounts SET balance = balance - amount WHERE id = account AND balance - amount >= 0`:
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
}

/// Two servers creating the same table at once: PostgreSQL may report a duplicate type or
/// table for the loser of `CREATE TABLE IF NOT EXISTS`; the table then exists.
fn is_duplicate_table(error: &sqlx::Error) -> bool {
    error.as_database_error().and_then(|e| e.code()).is_some_and(|code| code == "23505" || code == "42P07")
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
                Ok(())
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
                let query = if $sql.debit.contains("$1") { query } else { query.bind(amount) };
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
        }
    };
}

impl_ledger!(sqlx::Sqlite, QUESTION_MARKS);
impl_ledger!(sqlx::MySql, QUESTION_MARKS);
impl_ledger!(sqlx::Postgres, DOLLARS);
