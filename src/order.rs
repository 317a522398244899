//! The order machine of `examples/orders.rs` and the README.

use fsm_runtime::StateMachine;

/// The life of an order.
#[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[state_machine(name = "Order", rename_all = "snake_case", event = OrderEvent, table = "orders")]
pub enum OrderState {
    /// Placed, not paid.
    #[state(initial)]
    Created,
    /// Paid by the customer.
    #[transition(from = Created, on = Pay)]
    Paid,
    /// Handed to the carrier.
    #[transition(from = Paid, on = Ship)]
    Shipped,
    /// Received by the customer.
    #[transition(from = Shipped, on = Deliver)]
    Delivered,
    /// Cancelled before it shipped.
    #[transition(from = [Created, Paid], on = Cancel)]
    Cancelled,
    /// Sent back and refunded.
    #[transition(from = [Shipped, Delivered], on = Refund)]
    Refunded,
}

/// The statement that creates the `orders` table, per database.
pub fn create_orders_table_sql(url: &str) -> &'static str {
    if url.starts_with("mysql:") || url.starts_with("mariadb:") {
        "CREATE TABLE IF NOT EXISTS orders (id BIGINT PRIMARY KEY, state VARCHAR(64) NOT NULL, version BIGINT NOT NULL)"
    } else {
        "CREATE TABLE IF NOT EXISTS orders (id BIGINT PRIMARY KEY, state TEXT NOT NULL, version BIGINT NOT NULL)"
    }
}
