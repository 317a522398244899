#![deny(warnings)]
//! `table`, `id`, `column` and `version`, and their defaults.

use fsm_runtime::StateMachine;
use fsm_runtime::mapping::TableMapping;

#[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
#[state_machine(name = "invoice", table = "billing_invoices", id = "invoice_id", column = "status", version = "_rev2")]
enum Invoice {
    #[state(initial)]
    Open,
    #[transition(from = Open)]
    Paid,
}

#[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
#[state_machine(table = "a_table_name_of_exactly_sixty_three_bytes_that_postgres_accepts")]
enum CustomerAccount {
    #[state(initial)]
    Active,
    #[transition(from = Active)]
    Closed,
}

#[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
#[state_machine(column = "phase")]
enum HTTPRequest {
    #[state(initial)]
    Sent,
    #[transition(from = Sent)]
    Answered,
}

fn main() {
    assert_eq!(Invoice::MACHINE, "invoice");
    assert_eq!(Invoice::MAPPING, TableMapping::from_static("billing_invoices", "invoice_id", "status", "_rev2"));
    assert_eq!(CustomerAccount::MAPPING.table.len(), 63);
    assert_eq!(CustomerAccount::MAPPING.id, "id");
    assert_eq!(HTTPRequest::MAPPING, TableMapping::from_static("h_t_t_p_request", "id", "phase", "version"));
    for mapping in [Invoice::MAPPING, CustomerAccount::MAPPING, HTTPRequest::MAPPING] {
        assert_eq!(mapping.validate(), Ok(()));
    }
}
