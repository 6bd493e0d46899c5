//! Feeds arbitrary text to calicoctl's input path (YAML/JSON multi-document parsing, list
//! expansion, namespace handling, validation): it must accept or reject, never panic.

#![no_main]

use calicoctl::input::{self, NamespaceArgs};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(docs) = input::parse_text("fuzz.yaml", text) {
        let _ = input::validate_documents(docs, &NamespaceArgs::default());
    }
});
