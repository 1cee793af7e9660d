//! Compile-time behaviour of `#[event_handler]`: what it rejects, with which message on which
//! token (`tests/ui/fail`, one file per failure mode), and what it accepts (`tests/ui/pass`).
//!
//! Regenerate the expected output with `TRYBUILD=overwrite cargo test -p jetfn --test ui`, then
//! read every changed `.stderr`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/fail/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
