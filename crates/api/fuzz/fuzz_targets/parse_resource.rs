//! Feeds arbitrary JSON documents to `parse_resource`; it must reject or accept, never panic.
//! Accepted documents must also be accepted again unchanged (defaulting is idempotent).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if let Ok(resource) = calico_api::parse_resource(doc) {
        let again = calico_api::parse_resource(resource.value.clone())
            .expect("a parsed resource must parse again");
        assert_eq!(again, resource);
    }
});
