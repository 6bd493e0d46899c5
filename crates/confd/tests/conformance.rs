//! Upstream confd's template tests as data (`conformance/confd/manifest.json`,
//! or `$CALICO_CONFORMANCE_DIR/confd`): each case loads resources, renders
//! the six BIRD files for its node, and compares them with upstream's
//! golden files, blank lines aside. Multi-step ("daemon") cases change the
//! resources between renders. A case we cannot run is listed in
//! [`UNSUPPORTED`] with the reason; every other case must pass.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use calico_api::{Kind, v3};
use calico_confd::{Affinity, Inputs, Settings};
use serde_json::Value;

/// Cases not run, and why.
const UNSUPPORTED: &[(&str, &str)] = &[
    (
        "oneshot:TestMeshTemplates/static-routes-no-ipv4-address",
        "Kubernetes Services and EndpointSlices (service IP advertisement) exist only with the Kubernetes datastore",
    ),
    (
        "daemon:TestLocalBGPPeer",
        "peering with local workloads (localWorkloadSelector, read from felix's endpoint status files) is not built yet",
    ),
];

fn corpus_dir() -> PathBuf {
    match std::env::var_os("CALICO_CONFORMANCE_DIR") {
        Some(dir) => PathBuf::from(dir).join("confd"),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../conformance/confd"),
    }
}

/// The resources of a case as it goes: documents by (kind, name), and
/// Kubernetes secrets by (name, key).
#[derive(Default)]
struct Store {
    docs: BTreeMap<(String, String), Value>,
    secrets: BTreeMap<(String, String), String>,
}

impl Store {
    fn put(&mut self, doc: Value) -> Result<(), String> {
        let kind = doc["kind"].as_str().unwrap_or_default().to_owned();
        let name = doc["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if kind == "Secret" {
            self.put_secret(&name, &doc["stringData"]);
            return Ok(());
        }
        if Kind::from_document_kind(&kind).is_none() {
            return Err(format!("kind {kind} is not a Calico resource"));
        }
        self.docs.insert((kind, name), doc);
        Ok(())
    }

    fn put_secret(&mut self, name: &str, data: &Value) {
        self.secrets.retain(|(n, _), _| n != name);
        for (k, v) in data.as_object().into_iter().flatten() {
            self.secrets.insert(
                (name.to_owned(), k.clone()),
                v.as_str().unwrap_or_default().to_owned(),
            );
        }
    }

    fn apply_files(&mut self, dir: &Path, files: &[Value]) -> Result<(), String> {
        for f in files {
            let path = dir.join(f.as_str().unwrap_or_default());
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("reading {}: {e}", path.display()))?;
            let docs: Vec<Value> = serde_saphyr::from_multiple(&text)
                .map_err(|e| format!("parsing {}: {e}", path.display()))?;
            for doc in docs.into_iter().filter(|d| !d.is_null()) {
                self.put(doc)?;
            }
        }
        Ok(())
    }

    fn action(&mut self, dir: &Path, a: &Value) -> Result<(), String> {
        let target = |a: &Value| {
            (
                a["target"]["kind"].as_str().unwrap_or_default().to_owned(),
                a["target"]["name"].as_str().unwrap_or_default().to_owned(),
            )
        };
        match a["op"].as_str().unwrap_or_default() {
            "apply" | "upsert" => self.apply_files(dir, a["files"].as_array().map_or(&[], |v| v)),
            "create" => {
                for r in a["resources"].as_array().into_iter().flatten() {
                    self.put(r.clone())?;
                }
                Ok(())
            }
            "update" => {
                let (kind, name) = target(a);
                if kind == "Secret" {
                    self.put_secret(&name, &a["replace"]["stringData"]);
                    return Ok(());
                }
                let doc = self
                    .docs
                    .get_mut(&(kind.clone(), name.clone()))
                    .ok_or_else(|| format!("update of missing {kind}/{name}"))?;
                for (path, value) in a["set"].as_object().into_iter().flatten() {
                    let mut at = &mut *doc;
                    let parts: Vec<&str> = path.split('.').collect();
                    for p in &parts[..parts.len() - 1] {
                        at = &mut at[*p];
                    }
                    at[parts[parts.len() - 1]] = value.clone();
                }
                Ok(())
            }
            "delete" => {
                let (kind, name) = target(a);
                if kind == "Secret" {
                    self.secrets.retain(|(n, _), _| *n != name);
                } else {
                    self.docs.remove(&(kind, name));
                }
                Ok(())
            }
            // A write that changes nothing: the render must not change either.
            "touch" => Ok(()),
            other => Err(format!("unknown action {other}")),
        }
    }

    /// The resources as the sync layer would hand them over: each checked
    /// and defaulted as calicoctl would write it, then typed.
    fn inputs(&self, affinities: &[Affinity]) -> Result<Inputs, String> {
        let mut inputs = Inputs {
            affinities: affinities.to_vec(),
            ..Inputs::default()
        };
        for ((kind, name), doc) in &self.docs {
            let checked = calico_api::parse_resource(doc.clone())
                .map_err(|e| format!("{kind} {name}: {e}"))?;
            let value = checked.value;
            let bad = |e: calico_api::ValidationError| format!("{kind} {name}: {e}");
            match checked.kind {
                Kind::Node => {
                    inputs.nodes.insert(
                        name.clone(),
                        calico_api::decode::<v3::Node>(value).map_err(bad)?,
                    );
                }
                Kind::BgpPeer => {
                    inputs.peers.insert(
                        name.clone(),
                        calico_api::decode::<v3::BGPPeer>(value).map_err(bad)?,
                    );
                }
                Kind::BgpConfiguration => {
                    inputs.configs.insert(
                        name.clone(),
                        calico_api::decode::<v3::BGPConfiguration>(value).map_err(bad)?,
                    );
                }
                Kind::BgpFilter => {
                    inputs.filters.insert(
                        name.clone(),
                        calico_api::decode::<v3::BGPFilter>(value).map_err(bad)?,
                    );
                }
                Kind::IpPool => {
                    inputs.pools.insert(
                        name.clone(),
                        calico_api::decode::<v3::IPPool>(value).map_err(bad)?,
                    );
                }
                other => return Err(format!("{other:?} {name}: not an input of confd")),
            }
        }
        Ok(inputs)
    }
}

/// Without blank (or blank-looking) lines.
fn normalise(text: &str) -> String {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Runs one case; an error says which step and file differ and how.
fn run(dir: &Path, manifest: &Value, case: &Value) -> Result<(), String> {
    let node = case["node_name"]
        .as_str()
        .or(manifest["default_node_name"].as_str())
        .unwrap_or_default()
        .to_owned();
    let env = &case["env"];
    let settings = Settings {
        node_name: env["NODENAME"].as_str().unwrap_or(&node).to_owned(),
        router_id: env["CALICO_ROUTER_ID"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    };
    let affinities: Vec<Affinity> = if case["block_affinities"].as_bool() == Some(true) {
        manifest["standard_block_affinities"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| Affinity {
                host: a["host"].as_str().unwrap_or_default().to_owned(),
                cidr: a["cidr"]
                    .as_str()
                    .unwrap_or_default()
                    .parse()
                    .expect("cidr"),
                state: a["state"].as_str().unwrap_or_default().to_owned(),
            })
            .collect()
    } else {
        Vec::new()
    };
    let mut store = Store::default();
    for (i, step) in case["steps"].as_array().into_iter().flatten().enumerate() {
        for a in step["actions"].as_array().into_iter().flatten() {
            store
                .action(dir, a)
                .map_err(|e| format!("step {}: {e}", i + 1))?;
        }
        let inputs = store
            .inputs(&affinities)
            .map_err(|e| format!("step {}: {e}", i + 1))?;
        let files = calico_confd::render(&inputs, &settings, &store.secrets)
            .map_err(|e| format!("step {}: {e}", i + 1))?;
        if let Some(expect) = step["expect"].as_str() {
            for name in calico_confd::FILE_NAMES {
                let golden = dir.join(expect).join(name);
                let want = std::fs::read_to_string(&golden)
                    .map_err(|e| format!("reading {}: {e}", golden.display()))?;
                let got = files.get(name).map(String::as_str).unwrap_or_default();
                if normalise(got) != normalise(&want) {
                    return Err(format!(
                        "step {}: {name} differs from {expect}:\n{}",
                        i + 1,
                        first_difference(&normalise(&want), &normalise(got))
                    ));
                }
            }
        }
        if let Some(count) = step["expect_bgp_protocol_count"].as_u64() {
            let got = files.get("bird.cfg").map_or(0, |t| {
                t.lines().filter(|l| l.starts_with("protocol bgp ")).count()
            });
            if got as u64 != count {
                return Err(format!("step {}: {got} BGP protocols, want {count}", i + 1));
            }
        }
    }
    Ok(())
}

/// The first differing line, with a little context.
fn first_difference(want: &str, got: &str) -> String {
    let (w, g): (Vec<&str>, Vec<&str>) = (want.lines().collect(), got.lines().collect());
    let at = w
        .iter()
        .zip(&g)
        .position(|(a, b)| a != b)
        .unwrap_or(w.len().min(g.len()));
    let from = at.saturating_sub(2);
    format!(
        "  line {}:\n  want: {:?}\n  got:  {:?}",
        at + 1,
        &w[from..(at + 3).min(w.len())],
        &g[from..(at + 3).min(g.len())]
    )
}

#[test]
fn upstream_confd_golden_files() {
    let dir = corpus_dir();
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("manifest.json")).expect("confd manifest"),
    )
    .expect("manifest JSON");
    let cases = manifest["cases"].as_array().expect("cases");
    let (mut passed, mut failed, mut unsupported) = (0, Vec::new(), 0);
    for case in cases {
        let id = case["id"].as_str().unwrap_or_default();
        if let Some((_, why)) = UNSUPPORTED.iter().find(|(u, _)| *u == id) {
            println!("confd: {id}: unsupported: {why}");
            unsupported += 1;
            continue;
        }
        match run(&dir, &manifest, case) {
            Ok(()) => passed += 1,
            Err(e) => failed.push(format!("{id}: {e}")),
        }
    }
    for f in &failed {
        println!("FAIL {f}\n");
    }
    println!(
        "confd: {passed} passed, {} failed, {unsupported} unsupported",
        failed.len()
    );
    assert!(failed.is_empty(), "{} confd cases failed", failed.len());
    assert!(passed > 0, "no confd case ran");
}
