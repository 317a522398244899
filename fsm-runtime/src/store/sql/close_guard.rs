//! [`CloseUnlessFinished`]: a pooled connection that is closed, not pooled again, when the
//! request using it is dropped halfway.

use std::ops::{Deref, DerefMut};

use sqlx::pool::PoolConnection;

/// Borrows a pooled connection for one request. Dropped before [`finished`](Self::finished),
/// the connection is marked to be closed when it is released: a request cancelled in the
/// middle of a multi-statement batch may have left a transaction open on it, and closing the
/// connection rolls that back, where pooling it would hand the open transaction to the next
/// request. A request that returned, with an outcome or an error, calls `finished`.
pub(crate) struct CloseUnlessFinished<'c, DB: sqlx::Database> {
    conn: &'c mut PoolConnection<DB>,
    finished: bool,
}

impl<'c, DB: sqlx::Database> CloseUnlessFinished<'c, DB> {
    /// Guards `conn`.
    pub(crate) fn new(conn: &'c mut PoolConnection<DB>) -> Self {
        Self { conn, finished: false }
    }

    /// The request ran to its end: the connection goes back to the pool as usual.
    pub(crate) fn finished(mut self) {
        self.finished = true;
    }
}

impl<DB: sqlx::Database> Deref for CloseUnlessFinished<'_, DB> {
    type Target = DB::Connection;

    fn deref(&self) -> &DB::Connection {
        self.conn
    }
}

impl<DB: sqlx::Database> DerefMut for CloseUnlessFinished<'_, DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        self.conn
    }
}

impl<DB: sqlx::Database> Drop for CloseUnlessFinished<'_, DB> {
    fn drop(&mut self) {
        if !self.finished {
            self.conn.close_on_drop();
        }
    }
}
