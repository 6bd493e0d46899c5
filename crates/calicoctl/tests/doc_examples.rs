//! Calico-style YAML for every kind calico-rs supports, with the documented fields (our own
//! examples under `tests/doc_examples/`, applied in file order): each file validates, applies,
//! reads back with every written field, and replaces; then the files are deleted in reverse
//! order, which the cluster rules (tiers, pools) allow only in that order.

mod common;

use std::path::{Path, PathBuf};

use common::{Cluster, assert_contains};
use serde_json::Value;

fn example_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/doc_examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

fn documents(file: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(file).unwrap();
    text.split("\n---\n")
        .map(|doc| serde_saphyr::from_str::<Value>(doc).unwrap())
        .collect()
}

#[test]
fn every_kind_validates_applies_reads_back_and_replaces() {
    let c = Cluster::new();
    let files = example_files();
    let mut kinds_seen = std::collections::BTreeSet::new();
    for file in &files {
        let path = file.display().to_string();
        c.ctl(&["validate", "-f", &path]).ok();
        c.ctl(&["apply", "-f", &path]).ok();
        for doc in documents(file) {
            let kind = doc["kind"].as_str().unwrap().to_owned();
            let name = doc["metadata"]["name"].as_str().unwrap();
            let mut args = vec!["get", kind.as_str(), name, "-o", "yaml"];
            if let Some(ns) = doc["metadata"]["namespace"].as_str() {
                args.extend_from_slice(&["-n", ns]);
            }
            let out = c.ctl(&args).ok().stdout;
            let read: Value = serde_saphyr::from_str(&out).unwrap();
            assert_contains(&doc, &read, "");
            // A listing of the kind works and holds it.
            let list = c.ctl(&["get", &kind, "-A", "-o", "wide"]).ok().stdout;
            assert!(list.contains(name), "{kind} listing lacks {name}: {list}");
            kinds_seen.insert(kind);
        }
        c.ctl(&["replace", "-f", &path]).ok();
    }
    // Every kind users write is covered.
    let expected: std::collections::BTreeSet<String> = calico_api::kind::ALL_KIND_NAMES
        .iter()
        .map(|k| (*k).to_owned())
        .collect();
    assert_eq!(kinds_seen, expected);

    for file in files.iter().rev() {
        let path = file.display().to_string();
        let docs = documents(file);
        let singleton = docs.iter().all(|d| {
            matches!(
                d["kind"].as_str(),
                Some("ClusterInformation" | "IPAMConfiguration")
            ) || d["metadata"]["name"] == "default"
        });
        if file.file_name().is_some_and(|n| n == "10-config.yaml") || singleton {
            continue;
        }
        c.ctl(&["delete", "-f", &path]).ok();
    }
    assert!(c.ctl(&["get", "tier", "security"]).code != 0);
}
