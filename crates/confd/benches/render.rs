//! confd's render time (issue 15): `cargo bench -p calico-confd`.
//!
//! 1,000 nodes, each with a /26 block affinity and a label, 4 pools, and
//! 100 BGPPeers (ToR peerings by IP, half of them per rack by node
//! selector); rendered for one node, with the node-to-node mesh (999 mesh
//! sessions plus the peers) and without it (the peers only, as a large
//! cluster with route reflectors or ToRs runs).

use calico_api::v3;
use calico_confd::{Affinity, Inputs, NoSecrets, Settings};
use divan::{Bencher, black_box};
use serde_json::{Value, json};

fn main() {
    divan::main();
}

fn typed<T: calico_api::ApiResource>(doc: Value) -> T {
    let checked = calico_api::parse_resource(doc).expect("valid");
    calico_api::decode(checked.value).expect("typed")
}

fn inputs(mesh: bool) -> Inputs {
    let mut inputs = Inputs::default();
    for n in 0..1000u32 {
        let name = format!("node-{n}");
        let ip = format!("10.1.{}.{}/16", n / 250, n % 250 + 1);
        inputs.nodes.insert(
            name.clone(),
            typed::<v3::Node>(json!({"apiVersion": "projectcalico.org/v3", "kind": "Node",
                "metadata": {"name": name, "labels": {"rack": format!("r{}", n % 50)}},
                "spec": {"bgp": {"ipv4Address": ip}}})),
        );
        inputs.affinities.push(Affinity {
            host: name,
            cidr: format!(
                "172.{}.{}.{}/26",
                16 + n / 1024,
                (n / 4) % 256,
                (n % 4) * 64
            )
            .parse()
            .expect("cidr"),
            state: "confirmed".to_owned(),
        });
    }
    for p in 0..100u32 {
        let mut spec = json!({"peerIP": format!("192.168.{}.{}", p / 250, p % 250 + 1), "asNumber": 65000 + p});
        if p % 2 == 0 {
            spec["nodeSelector"] = json!(format!("rack == 'r{}'", p % 50));
        }
        inputs.peers.insert(
            format!("tor-{p}"),
            typed::<v3::BGPPeer>(
                json!({"apiVersion": "projectcalico.org/v3", "kind": "BGPPeer",
                "metadata": {"name": format!("tor-{p}")}, "spec": spec}),
            ),
        );
    }
    for (i, cidr) in [
        "172.16.0.0/14",
        "172.20.0.0/16",
        "10.200.0.0/16",
        "fd00:10::/64",
    ]
    .iter()
    .enumerate()
    {
        inputs.pools.insert(
            format!("pool-{i}"),
            typed::<v3::IPPool>(
                json!({"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
                "metadata": {"name": format!("pool-{i}")}, "spec": {"cidr": cidr}}),
            ),
        );
    }
    inputs.configs.insert(
        "default".to_owned(),
        typed::<v3::BGPConfiguration>(json!({"apiVersion": "projectcalico.org/v3",
            "kind": "BGPConfiguration", "metadata": {"name": "default"},
            "spec": {"nodeToNodeMeshEnabled": mesh}})),
    );
    inputs
}

fn settings() -> Settings {
    Settings {
        node_name: "node-7".to_owned(),
        router_id: String::new(),
    }
}

#[divan::bench(args = [true, false])]
fn render_1000_nodes_100_peers(bencher: Bencher<'_, '_>, mesh: bool) {
    let inputs = inputs(mesh);
    let files = calico_confd::render(&inputs, &settings(), &NoSecrets).expect("renders");
    let sessions = files["bird.cfg"].matches("protocol bgp ").count();
    assert!(
        sessions >= if mesh { 999 } else { 1 },
        "{sessions} sessions"
    );
    bencher.bench(|| calico_confd::render(black_box(&inputs), &settings(), &NoSecrets));
}
