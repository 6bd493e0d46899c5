//! Renderer tests on the seed bookstore example.

mod common;

use calico_dataplane::render::{self, Ruleset};
use calico_dataplane::{Nft as _, RecordingNft, batch};
use nftables::schema::NfListObject;

/// `(comment, rule JSON)` of every rule of `chain`, in order.
fn rules(r: &Ruleset, chain: &str) -> Vec<(String, String)> {
    r.objects
        .iter()
        .filter_map(|o| match o {
            NfListObject::Rule(rule) if rule.chain == chain => Some((
                rule.comment.as_deref().unwrap_or_default().to_owned(),
                serde_json::to_string(&rule.expr).expect("serializes"),
            )),
            _ => None,
        })
        .collect()
}

fn comments(r: &Ruleset, chain: &str) -> Vec<String> {
    rules(r, chain).into_iter().map(|(c, _)| c).collect()
}

#[test]
fn bookstore_server_ingress_order() {
    let (snap, ifaces) = common::bookstore();
    let r = render::render(&snap, &ifaces);
    assert!(r.unmapped.is_empty() && r.skipped_rules.is_empty(), "{r:?}");
    let pol = "default/default/allow-bookstore-cliient-to-server";
    assert_eq!(
        comments(&r, "to-calibsserver"),
        [
            "ingress of workloadendpoint default/bookstore-server: start undecided",
            "tier default policy default/allow-bookstore-cliient-to-server",
            "allowed by policy default/allow-bookstore-cliient-to-server",
            "tier default: end of tier, no policy decided",
            "tier default: passed",
            "profile calico",
            "allowed by profile calico",
            "ingress of workloadendpoint default/bookstore-server: no policy or profile allowed",
        ]
    );
    let policy = rules(&r, &format!("pi-{pol}"));
    let tier_pol = "tier default policy default/allow-bookstore-cliient-to-server";
    assert_eq!(
        policy.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>(),
        [
            format!("{tier_pol} rule 0 Allow"),
            format!("{tier_pol} rule 1 Deny"),
        ],
        "one IPv4 variant per rule (the sets are family-specific; IPv6 variants follow)",
    );
    // Rule 1 denies TCP to port 80 from the fruitstore set, which holds
    // exactly the fruitstore frontend's address.
    let deny = &policy[1].1;
    let fruit_set = snap
        .ip_sets
        .iter()
        .find(|(_, m)| m.iter().map(ToString::to_string).eq(["10.1.0.3/32"]))
        .map(|(id, _)| render::set_name(id, false))
        .expect("fruitstore set");
    assert_eq!(
        deny,
        &format!(
            r#"[{{"match":{{"left":{{"meta":{{"key":"l4proto"}}}},"right":6,"op":"=="}}}},{{"match":{{"left":{{"meta":{{"key":"nfproto"}}}},"right":"ipv4","op":"=="}}}},{{"match":{{"left":{{"payload":{{"protocol":"ip","field":"saddr"}}}},"right":"@{fruit_set}","op":"=="}}}},{{"match":{{"left":{{"payload":{{"protocol":"th","field":"dport"}}}},"right":80,"op":"=="}}}},{{"counter":null}},{{"drop":null}}]"#
        )
    );
    let set = r
        .objects
        .iter()
        .find_map(|o| match o {
            NfListObject::Set(s) if s.name == fruit_set => {
                Some(serde_json::to_string(&s.elem).expect("json"))
            }
            _ => None,
        })
        .expect("fruitstore set rendered");
    assert_eq!(set, r#"[{"prefix":{"addr":"10.1.0.3","len":32}}]"#);
}

#[test]
fn forward_chain_dispatch_order() {
    let (snap, ifaces) = common::bookstore();
    let r = render::render(&snap, &ifaces);
    assert_eq!(
        comments(&r, render::FORWARD_CHAIN),
        [
            "fast path: flow allowed under the current policy",
            "invalid conntrack state",
            "reply of an established flow",
            "fail closed: from workload interface without an endpoint",
            "fail closed: to workload interface without an endpoint",
            "egress of workloadendpoint default/bookstore-frontend",
            "egress of workloadendpoint default/bookstore-server",
            "egress of workloadendpoint default/fruitstore-frontend",
            "ingress of workloadendpoint default/bookstore-frontend",
            "ingress of workloadendpoint default/bookstore-server",
            "ingress of workloadendpoint default/fruitstore-frontend",
            "remember the policy generation the flow was allowed under",
        ]
    );
    // The profile allows ingress only from members of `has(calico)`.
    let profile = rules(&r, "pri-calico");
    assert_eq!(profile.len(), 1, "{profile:?}");
    assert!(profile[0].1.contains(r#""right":"@ip4-"#), "{profile:?}");
}

#[test]
fn unmapped_endpoint_gets_no_chains() {
    let (snap, mut ifaces) = common::bookstore();
    ifaces.remove(&common::workload("fruitstore-frontend"));
    let r = render::render(&snap, &ifaces);
    assert_eq!(r.unmapped, [common::workload("fruitstore-frontend")]);
    assert!(comments(&r, "to-califsfront").is_empty());
    assert!(
        !serde_json::to_string(&r.objects)
            .expect("json")
            .contains("\"califsfront\"")
    );
}

#[test]
fn batch_replaces_only_our_table() {
    let (snap, ifaces) = common::bookstore();
    let r = render::render(&snap, &ifaces);
    let mut nft = RecordingNft::default();
    nft.apply(&batch(&r)).expect("recorded");
    let cmds = nft.batches[0]["nftables"].as_array().expect("array");
    let head: Vec<String> = cmds[..3].iter().map(|c| c.to_string()).collect();
    assert_eq!(
        head,
        [
            r#"{"add":{"table":{"family":"inet","name":"calico"}}}"#,
            r#"{"delete":{"table":{"family":"inet","name":"calico"}}}"#,
            r#"{"add":{"table":{"family":"inet","name":"calico"}}}"#,
        ]
    );
    // Everything else is an add into our table.
    for c in &cmds[3..] {
        let (_, obj) = c["add"]
            .as_object()
            .and_then(|o| o.iter().next())
            .expect("add");
        assert_eq!(obj["table"], "calico", "{c}");
    }
    // Read back as `nft list table` would: the table, then its contents.
    assert_eq!(
        nft.list_owned().expect("listed").objects.len(),
        1 + r.objects.len()
    );
}

#[test]
fn failsafe_lists_parse_or_name_the_bad_entry() {
    use calico_dataplane::{Failsafe, L4Protocol, parse_failsafes};
    assert_eq!(
        parse_failsafes("tcp:22, UDP:68").unwrap(),
        [
            Failsafe {
                protocol: L4Protocol::Tcp,
                port: 22
            },
            Failsafe {
                protocol: L4Protocol::Udp,
                port: 68
            }
        ]
    );
    assert!(parse_failsafes("none").unwrap().is_empty());
    for bad in ["tcp:0", "tcp:70000", "sctp:9", "22", "tcp:x"] {
        let e = parse_failsafes(&format!("tcp:22,{bad}")).unwrap_err();
        assert_eq!(e.entry, bad);
    }
    let defaults = parse_failsafes(calico_dataplane::DEFAULT_FAILSAFE_INBOUND).unwrap();
    for port in [22, 179, 2379, 2380, 5050, 5051] {
        assert!(defaults.contains(&Failsafe {
            protocol: L4Protocol::Tcp,
            port
        }));
    }
}

#[test]
fn host_endpoints_get_input_and_output_chains_only_when_present() {
    let (snap, ifaces) = common::bookstore();
    let r = render::render(&snap, &ifaces);
    assert!(comments(&r, render::INPUT_CHAIN).is_empty());
    assert!(comments(&r, render::OUTPUT_CHAIN).is_empty());
}
