//! Diagnostics bundles: what they hold, and that planted secrets never survive.

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use common::Cluster;

/// The bundle's files by path under its top directory.
fn unpack(path: &Path) -> BTreeMap<String, String> {
    let file = std::fs::File::open(path).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut files = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().display().to_string();
        let name = name
            .split_once('/')
            .map_or(name.clone(), |(_, rest)| rest.to_owned());
        let mut text = String::new();
        entry.read_to_string(&mut text).unwrap();
        files.insert(name, text);
    }
    files
}

fn assert_no_secret(files: &BTreeMap<String, String>, secrets: &[&str]) {
    for (name, text) in files {
        for s in secrets {
            assert!(!text.contains(s), "{s} survived in {name}:\n{text}");
        }
    }
}

#[test]
fn node_diags_collect_the_host_and_redact_secrets() {
    let c = Cluster::new();
    let root = c.dir.path();
    let config = root.join("etc-calico");
    std::fs::create_dir_all(config.join("confd/config")).unwrap();
    std::fs::write(
        config.join("calicoctl.cfg"),
        "apiVersion: projectcalico.org/v3\nkind: CalicoAPIConfig\nmetadata: {}\nspec:\n  etcdEndpoints: https://10.0.0.1:2379\n  etcdCACertFile: /etc/calico/ca.pem\n  etcdKey: |\n    -----BEGIN PRIVATE KEY-----\n    PLANTED-PEM-BODY\n    -----END PRIVATE KEY-----\n",
    )
    .unwrap();
    std::fs::write(
        config.join("calico.env"),
        "CALICO_NODE_PARAMS=/etc/calico/dcos-calico.yaml\nETCD_KEY=planted-inline-key\nDCOS_ACS_TOKEN=planted-acs-token\n",
    )
    .unwrap();
    std::fs::write(
        config.join("dcos-calico.yaml"),
        "calico_network_cidr: 172.29.0.0/16\n",
    )
    .unwrap();
    std::fs::write(
        config.join("confd/config/bird.cfg"),
        "protocol bgp Mesh_10_0_0_2 from bgp_template {\n  neighbor 10.0.0.2 as 64512;\n  password \"planted-bgp-password\";\n}\n",
    )
    .unwrap();
    let logs = root.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::write(
        logs.join("calico-node.log"),
        "felix: programmed 3 endpoints\nlibnetwork: docker said token=planted-log-token\n",
    )
    .unwrap();
    let cni = root.join("cni");
    std::fs::create_dir_all(&cni).unwrap();
    std::fs::write(
        cni.join("calico.conf"),
        "{\"name\": \"calico\", \"type\": \"calico\"}",
    )
    .unwrap();
    let out = root.join("node.tar.gz");
    let run = c
        .ctl(&[
            "node",
            "diags",
            "-o",
            out.to_str().unwrap(),
            "--config-dir",
            config.to_str().unwrap(),
            "--log-dir",
            logs.to_str().unwrap(),
            "--bird-dir",
            root.join("no-bird").to_str().unwrap(),
            "--cni-dir",
            cni.to_str().unwrap(),
        ])
        .ok();
    assert!(run.stdout.contains("secrets redacted"), "{}", run.stdout);
    let files = unpack(&out);
    for name in [
        "version.txt",
        "commands/nft-table.txt",
        "commands/routes-v4.txt",
        "commands/links.txt",
        "commands/neighbours.txt",
        "commands/fdb.txt",
        "sysctls.txt",
        "bird/bird-protocols.txt",
        "logs/dcos-calico-felix.journal.txt",
        "logs/files/calico-node.log",
        "config/calicoctl.cfg",
        "config/calico.env",
        "config/dcos-calico.yaml",
        "config/confd/config/bird.cfg",
        "cni/calico.conf",
    ] {
        assert!(
            files.contains_key(name),
            "{name} missing: {:?}",
            files.keys()
        );
    }
    assert_no_secret(
        &files,
        &[
            "PLANTED-PEM-BODY",
            "planted-inline-key",
            "planted-acs-token",
            "planted-bgp-password",
            "planted-log-token",
        ],
    );
    // What is not secret stays readable.
    assert!(files["logs/files/calico-node.log"].contains("felix: programmed 3 endpoints"));
    assert!(files["config/calicoctl.cfg"].contains("etcdCACertFile: /etc/calico/ca.pem"));
    assert!(files["config/dcos-calico.yaml"].contains("172.29.0.0/16"));
    assert!(files["config/confd/config/bird.cfg"].contains("neighbor 10.0.0.2 as 64512"));
    assert!(
        files["bird/bird-protocols.txt"].contains("no-bird"),
        "says why BIRD was not asked"
    );
}

#[test]
fn cluster_diags_hold_every_resource_and_the_ipam_state() {
    let c = Cluster::new();
    c.ctl(&[
        "apply",
        "-f",
        &c.file(
            "r.yaml",
            "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: p1}\nspec: {cidr: 10.7.0.0/16}\n---\n\
             apiVersion: projectcalico.org/v3\nkind: Profile\nmetadata:\n  name: web\n  annotations: {token: planted-annotation-token}\nspec: {}\n---\n\
             apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: tor}\nspec:\n  peerIP: 192.0.2.1\n  asNumber: 64513\n  password:\n    secretKeyRef: {name: bgp, key: tor}\n",
        ),
    ])
    .ok();
    {
        let ds = calico_datastore::sqlite::SqliteDatastore::open(&c.db()).unwrap();
        let mut args = calico_ipam::AssignArgs::new("h1", "n1");
        args.attrs.insert("node".into(), "n1".into());
        calico_ipam::Ipam::new(&ds).auto_assign(&args).unwrap();
    }
    let out = c.dir.path().join("cluster.tar.gz");
    c.ctl(&["cluster", "diags", "-o", out.to_str().unwrap()])
        .ok();
    let files = unpack(&out);
    assert!(files["resources/IPPool.yaml"].contains("cidr: 10.7.0.0/16"));
    assert!(
        files["resources/BGPPeer.yaml"].contains("secretKeyRef"),
        "a reference, not a secret"
    );
    assert!(
        files["ipam/IPAMBlock.yaml"].contains("10.7."),
        "{}",
        files["ipam/IPAMBlock.yaml"]
    );
    assert!(files.contains_key("ipam/IPAMHandle.yaml") && files.contains_key("ipam/check.json"));
    assert!(files.contains_key("resources/ClusterInformation.yaml"));
    assert_no_secret(&files, &["planted-annotation-token"]);
    // `-o -` streams the bundle.
    let run = c
        .command(
            env!("CARGO_BIN_EXE_calicoctl"),
            &["cluster", "diags", "-o", "-"],
        )
        .output()
        .unwrap();
    assert!(run.status.success());
    assert_eq!(&run.stdout[..2], &[0x1f, 0x8b], "a gzip stream");
}
