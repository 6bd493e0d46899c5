//! Fuzz target: any UTF-8 input must parse or fail cleanly (no panic, no
//! stack overflow), and a successful parse's canonical form must re-parse to
//! the same canonical form. Run with `cargo +nightly fuzz run parse` from
//! `crates/selector`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &str| {
    let Ok(sel) = calico_selector::parse(input) else {
        return;
    };
    let canonical = sel.canonical();
    let again = calico_selector::parse(canonical)
        .unwrap_or_else(|e| panic!("canonical form of {input:?} does not re-parse: {e}"));
    assert_eq!(again.canonical(), canonical, "canonical form of {input:?} is not a fixed point");
    assert_eq!(again.uid(), sel.uid());
});
