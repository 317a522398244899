//! Compile-time checks of `#[derive(StateMachine)]`: every rejected machine with its `.stderr`
//! snapshot (`tests/ui/fail`), and machines that must compile and run (`tests/ui/pass`), all
//! through `fsm-runtime` alone. Regenerate the snapshots with `TRYBUILD=overwrite`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/fail/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
