//! Upstream validation rules outside the vendored conformance vectors (CRD schema and CEL
//! rules, struct tags the vendored tests never exercise), each case citing the upstream code
//! that decides it. Cases calico-rs does not follow are listed in [`NOT_PORTED`] with the
//! reason, and reported, never dropped silently.

use serde_json::Value;

/// Cases deliberately not followed, and why.
const NOT_PORTED: &[(&str, &str)] = &[
    (
        "gap.noticmp-without-protocol-ok",
        "kept stricter: a notICMP without an ICMP protocol would make the rule match no \
         other protocol in nftables, not what the user means",
    ),
    (
        "gap.profile-egress-http-ok",
        "kept stricter: HTTP matches need an application layer calico-rs does not run; an \
         egress one could never match, so it is refused rather than accepted and ignored",
    ),
    (
        "gap.np-selector-global-in-literal",
        "upstream's CEL is a substring test that also fires inside string literals; ours \
         parses the selector and refuses global() where it is used",
    ),
    (
        "gap.np-name-knp-prefix-ok",
        "knp.default.* names are Kubernetes network policies; Kubernetes-only",
    ),
    (
        "gap.tier-kube-admin-no-default-action",
        "kube-admin and kube-baseline are the Kubernetes admin network policy tiers; \
         Kubernetes-only",
    ),
    (
        "gap.tier-kube-baseline-no-order",
        "kube-admin and kube-baseline are the Kubernetes admin network policy tiers; \
         Kubernetes-only",
    ),
    (
        "gap.ipamconfig-kubevirt-ok",
        "KubeVirt address persistence is Kubernetes-only",
    ),
    (
        "gap.ipamconfig-ipcooldown-ok",
        "calico-rs IPAM has no address cool-down: refused as unknown rather than accepted \
         and ignored",
    ),
    (
        "gap.profile-name-uppercase",
        "DC/OS profile names come from Docker network and Marathon names, which allow upper \
         case; kept lenient until every writer is checked",
    ),
    (
        "gap.profile-name-underscore",
        "DC/OS profile names come from Docker network and Marathon names, which allow '_'; \
         kept lenient until every writer is checked",
    ),
    ("gap.hep-profile-uppercase", "as profile names (see above)"),
    ("gap.wep-profile-uppercase", "as profile names (see above)"),
    (
        "gap.node-address-unmasked",
        "upstream's own calico-node writes the address with its subnet (10.0.0.5/24) here; \
         refusing it would refuse the Nodes upstream writes",
    ),
    (
        "gap.node-interfaces-ok",
        "Node.spec.interfaces is newer than the API calico-rs models",
    ),
    (
        "gap.felix-prometheusclientauth-ok",
        "newer FelixConfiguration field than the API calico-rs models",
    ),
    (
        "gap.felix-ipv4normalroutepriority-ok",
        "newer FelixConfiguration field than the API calico-rs models",
    ),
    (
        "gap.felix-nftablesflowtableoffload-ok",
        "newer FelixConfiguration field than the API calico-rs models",
    ),
    (
        "gap.felix-bpfconntrackmode-ok",
        "the vendored vectors name this field bpfConntrackCleanupMode; the newer name is not \
         modelled yet",
    ),
    (
        "gap.felix-fractional-duration-quirk",
        "an upstream quirk (a double-escaped pattern refuses 1.5s); not copied",
    ),
    (
        "gap.felix-bpflogfilters-bad-key",
        "BPF dataplane setting; calico-rs has no BPF dataplane (named as not implemented by felix)",
    ),
    (
        "gap.felix-conntrack-timeout-invalid",
        "BPF dataplane setting; calico-rs has no BPF dataplane (named as not implemented by felix)",
    ),
    (
        "gap.felix-hto-name-with-space-ok",
        "kept stricter: health component names calico-rs reports have no spaces",
    ),
    (
        "gap.bgpconfig-communities-unused",
        "conflicts with the vendored vectors Validator[669] and [670], which accept it",
    ),
];

#[test]
fn upstream_rules_beyond_the_vectors() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/upstream_rules.json");
    let cases: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let (mut passed, mut failed, mut skipped) = (0, Vec::new(), 0);
    for case in &cases {
        let id = case["id"].as_str().unwrap();
        if let Some((_, why)) = NOT_PORTED.iter().find(|(i, _)| *i == id) {
            println!("  not ported {id}: {why}");
            skipped += 1;
            continue;
        }
        let want = case["valid"].as_bool().unwrap();
        let got = calico_api::parse_resource(case["value"].clone())
            .and_then(|r| calico_api::check_supported(&r).map(|()| r));
        match (want, &got) {
            (true, Ok(_)) | (false, Err(_)) => passed += 1,
            (true, Err(e)) => failed.push(format!("{id}: expected valid, got: {e}")),
            (false, Ok(_)) => failed.push(format!(
                "{id}: expected invalid ({}), was accepted",
                case["upstream"].as_str().unwrap_or("")
            )),
        }
    }
    println!(
        "upstream rules: {passed} passed, {} failed, {skipped} not ported",
        failed.len()
    );
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
