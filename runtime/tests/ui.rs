//! Compile-time behaviour of `#[event_handler]`: what it rejects, with which message on which
//! token (`tests/ui/fail`, one file per failure mode), and what it accepts (`tests/ui/pass`).
//! Fixtures that need the cargo feature `protobuf` live in `tests/ui/protobuf/`.
//!
//! Regenerate the expected output with `TRYBUILD=overwrite cargo test -p jetfn --all-features
//! --test ui`, then read every changed `.stderr`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/fail/*.rs");
    t.pass("tests/ui/pass/*.rs");
    #[cfg(feature = "protobuf")]
    {
        t.compile_fail("tests/ui/protobuf/fail/*.rs");
        t.pass("tests/ui/protobuf/pass/*.rs");
    }
}
