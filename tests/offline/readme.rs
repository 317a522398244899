//! The README shows what the code does: its Mermaid diagram is the one the derive generates.

use fsm_suite::order::OrderState;

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README.md is readable")
}

#[test]
fn readme_diagram_is_the_generated_one() {
    let readme = readme();
    let start = readme.find("```mermaid\n").expect("README has a mermaid block") + "```mermaid\n".len();
    let end = start + readme[start..].find("```").expect("the mermaid block is closed");
    assert_eq!(readme[start..end].trim_end(), OrderState::MERMAID.trim_end());
}

#[test]
fn readme_shows_the_two_newcomer_commands() {
    let readme = readme();
    assert!(readme.contains("cargo run --example orders"));
    assert!(readme.contains("cargo test --workspace"));
}
