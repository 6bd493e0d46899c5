//! IP set elements sent over nfnetlink ([`calico_dataplane::elements`]),
//! against the real kernel in a fresh network namespace: what nft lists
//! afterwards is what was sent (prefixes, single addresses, adjacent
//! intervals, the top of the address space, IPv6), packets match the set,
//! and a refused batch changes nothing.

use std::collections::BTreeSet;

use calico_dataplane::elements::ElementSocket;
use calico_dataplane::{Nft, NftLib};
use nftables::batch::Batch;
use nftables::expr::{Expression, NamedExpression, Prefix};
use nftables::schema::{Element, NfListObject, NfObject};

fn element(set: &str, nets: &[&str]) -> NfListObject<'static> {
    let elem = nets
        .iter()
        .map(|n| {
            let (addr, len) = n.split_once('/').expect("a prefix");
            Expression::Named(NamedExpression::Prefix(Prefix {
                addr: Box::new(Expression::String(addr.to_owned().into())),
                len: len.parse().expect("a length"),
            }))
        })
        .collect::<Vec<_>>();
    NfListObject::Element(Element {
        family: nftables::types::NfFamily::INet,
        table: "calico".into(),
        name: set.to_owned().into(),
        elem: elem.into(),
    })
}

/// The elements of `set` as nft lists them (`addr/len`, or `a-b` ranges).
fn listed(nft: &mut NftLib, set: &str) -> BTreeSet<String> {
    let table = nft.list_owned().expect("listing the table");
    let mut out = BTreeSet::new();
    for o in table.objects.iter() {
        let NfObject::ListObject(NfListObject::Set(s)) = o else {
            continue;
        };
        if s.name != set {
            continue;
        }
        for e in s.elem.iter().flat_map(|e| e.iter()) {
            out.insert(match e {
                Expression::String(a) => format!("{a}"),
                Expression::Named(NamedExpression::Prefix(p)) => match p.addr.as_ref() {
                    Expression::String(a) => format!("{a}/{}", p.len),
                    other => format!("{other:?}"),
                },
                Expression::Range(r) => match &r.range {
                    [Expression::String(a), Expression::String(b)] => format!("{a}-{b}"),
                    other => format!("{other:?}"),
                },
                other => format!("{other:?}"),
            });
        }
    }
    out
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn elements_sent_over_netlink_are_what_nft_lists_and_what_packets_match() {
    let outcome = std::thread::spawn(|| {
        if !calico_netlink::testing::enter_fresh_netns("elements") {
            return;
        }
        let mut nft = NftLib::open().expect("libnftables and an nfnetlink socket");
        // The sets as the renderer declares them, created through libnftables.
        let mut b = Batch::new();
        b.add(NfListObject::Table(nftables::schema::Table {
            family: nftables::types::NfFamily::INet,
            name: "calico".into(),
            ..Default::default()
        }));
        for (name, ty) in [
            ("ip4-s.t", nftables::schema::SetType::Ipv4Addr),
            ("ip6-s.t", nftables::schema::SetType::Ipv6Addr),
        ] {
            b.add(NfListObject::Set(Box::new(nftables::schema::Set {
                family: nftables::types::NfFamily::INet,
                table: "calico".into(),
                name: name.into(),
                set_type: nftables::schema::SetTypeValue::Single(ty),
                flags: Some(std::collections::HashSet::from([
                    nftables::schema::SetFlag::Interval,
                ])),
                ..Default::default()
            })));
        }
        nft.apply(&b.to_nftables()).expect("the table");
        let mut netlink = ElementSocket::open().expect("an nfnetlink socket");
        let mut send = |b: Batch<'static>| {
            let sent = netlink.apply(&b.to_nftables());
            assert!(!matches!(sent, Ok(false)), "not taken as an element batch");
            sent
        };

        // Additions: a /24, single addresses (two adjacent to each other and
        // to the /24's end), the very last address, IPv6.
        let mut b = Batch::new();
        b.add(element(
            "ip4-s.t",
            &[
                "10.0.0.0/24",
                "10.0.1.0/32",
                "10.0.1.1/32",
                "10.0.5.9/32",
                "255.255.255.255/32",
            ],
        ));
        b.add(element("ip6-s.t", &["fd00::/127", "fd00::5/128"]));
        send(b).expect("elements added");
        assert_eq!(
            listed(&mut nft, "ip4-s.t"),
            set(&[
                "10.0.0.0/24",
                "10.0.1.0",
                "10.0.1.1",
                "10.0.5.9",
                "255.255.255.255"
            ])
        );
        assert_eq!(listed(&mut nft, "ip6-s.t"), set(&["fd00::/127", "fd00::5"]));

        // A deletion and an addition in one batch.
        let mut b = Batch::new();
        b.delete(element("ip4-s.t", &["10.0.1.0/32", "255.255.255.255/32"]));
        b.add(element("ip4-s.t", &["10.0.7.0/31"]));
        send(b).expect("elements changed");
        assert_eq!(
            listed(&mut nft, "ip4-s.t"),
            set(&["10.0.0.0/24", "10.0.1.1", "10.0.5.9", "10.0.7.0/31"])
        );

        // The kernel refuses deleting what is not there: nothing of the
        // batch is applied, and the error names the set.
        let mut b = Batch::new();
        b.add(element("ip4-s.t", &["10.0.9.9/32"]));
        b.delete(element("ip4-s.t", &["10.0.8.8/32"]));
        let err = send(b).expect_err("refused");
        assert!(err.to_string().contains("ip4-s.t"), "{err}");
        assert!(!listed(&mut nft, "ip4-s.t").contains("10.0.9.9"));

        // Lookups as packets see them: `get element` asks the kernel's set.
        for (addr, inside) in [
            ("10.0.0.77", true),
            ("10.0.1.1", true),
            ("10.0.1.0", false),
            ("10.0.1.2", false),
            ("10.0.7.1", true),
            ("10.0.7.2", false),
            ("10.0.5.9", true),
        ] {
            let got = calico_nftlib::Libnftables::open()
                .expect("libnftables")
                .run(
                    &format!("get element inet calico ip4-s.t {{ {addr} }}"),
                    false,
                )
                .is_ok();
            assert_eq!(got, inside, "{addr} in the set: {got}");
        }
    })
    .join();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
