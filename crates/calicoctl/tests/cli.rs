//! calicoctl end to end: the real binaries against a real embedded datastore file.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

const SEED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/seed");

mod common;

use common::{Cluster, assert_contains};

impl Cluster {
    fn get_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-o", "json"]);
        serde_json::from_str(&self.ctl(&all).ok().stdout).unwrap()
    }

    fn names(&self, args: &[&str]) -> Vec<String> {
        self.list_names(args)
    }
}

fn seed(name: &str) -> String {
    Path::new(SEED).join(name).display().to_string()
}

fn policy(name: &str, extra_meta: &str) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata:\n  name: {name}\n{extra_meta}spec:\n  selector: role == 'db'\n  ingress:\n  - action: Allow\n    protocol: TCP\n    destination:\n      ports: [5432]\n"
    )
}

#[test]
fn seed_resources_apply_verbatim_and_read_back_equal() {
    let c = Cluster::new();
    for (file, kind, name) in [
        ("profile-calico.yaml", "profile", "calico"),
        (
            "policy-bookstore.yaml",
            "networkpolicy",
            "allow-bookstore-cliient-to-server",
        ),
        ("ippool.yaml", "ippool", "net2"),
        ("profile-new.yaml", "profile", "net2-profile"),
    ] {
        let out = c.ctl(&["apply", "-f", &seed(file)]).ok();
        assert!(
            out.stdout.starts_with("Successfully applied 1 '"),
            "{}",
            out.stdout
        );
        let written: Value =
            serde_saphyr::from_str(&std::fs::read_to_string(seed(file)).unwrap()).unwrap();
        let read = c.get_json(&[kind, name]);
        assert_contains(&written, &read, "");
        let meta = &read["metadata"];
        assert!(
            meta["uid"].is_string() && meta["creationTimestamp"].is_string(),
            "{meta}"
        );
        assert!(
            meta["resourceVersion"]
                .as_str()
                .unwrap()
                .parse::<i64>()
                .is_ok(),
            "{meta}"
        );
    }
    // The policy landed in the default namespace with the defaults upstream applies.
    let np = c.get_json(&["networkpolicy", "allow-bookstore-cliient-to-server"]);
    assert_eq!(np["metadata"]["namespace"], "default");
    assert_eq!(np["spec"]["tier"], "default");
    let pool = c.get_json(&["ippool", "net2"]);
    assert_eq!(pool["spec"]["blockSize"], 26);
    assert_eq!(pool["spec"]["nodeSelector"], "all()");
}

#[test]
fn a_file_with_one_bad_document_writes_nothing() {
    let c = Cluster::new();
    let text = format!(
        "{}---\n{}---\n{}",
        policy("good-1", ""),
        policy("bad", "").replace(
            "  selector: role == 'db'\n",
            "  selector: role == 'db'\n  colour: blue\n"
        ),
        policy("good-2", "")
    );
    let file = c.file("mixed.yaml", &text);
    let out = c.ctl(&["apply", "-f", &file]).fails();
    assert!(
        out.stderr.contains(&format!("{file}: document 1")),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("colour"),
        "names the field: {}",
        out.stderr
    );
    assert!(out.stderr.contains("nothing was written"), "{}", out.stderr);
    assert!(c.names(&["networkpolicy"]).is_empty());
}

#[test]
fn host_endpoint_policy_modes_not_enforced_are_refused_not_ignored() {
    let c = Cluster::new();
    for (field, extra) in [
        ("preDNAT", "  preDNAT: true\n  applyOnForward: true\n"),
        ("doNotTrack", "  doNotTrack: true\n  applyOnForward: true\n"),
        ("applyOnForward", "  applyOnForward: true\n"),
    ] {
        let text = format!(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: hep\nspec:\n  selector: has(host)\n{extra}  ingress:\n  - action: Deny\n"
        );
        let file = c.file("hep.yaml", &text);
        let out = c.ctl(&["apply", "-f", &file]).fails();
        assert!(
            out.stderr.contains(&format!("spec.{field}")) && out.stderr.contains("not supported"),
            "{field}: {}",
            out.stderr
        );
        assert!(
            c.names(&["globalnetworkpolicy"]).is_empty(),
            "{field}: nothing written"
        );
    }
    // Patching one in is refused the same way.
    let file = c.file("plain.yaml", "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: hep\nspec:\n  selector: has(host)\n  ingress:\n  - action: Deny\n");
    c.ctl(&["apply", "-f", &file]).ok();
    let out = c
        .ctl(&[
            "patch",
            "globalnetworkpolicy",
            "hep",
            "-p",
            r#"{"spec":{"applyOnForward":true}}"#,
        ])
        .fails();
    assert!(out.stderr.contains("spec.applyOnForward"), "{}", out.stderr);
}

#[test]
fn bad_documents_each_get_a_clear_message() {
    let c = Cluster::new();
    let cases = [
        (
            "unknown kind",
            "apiVersion: projectcalico.org/v3\nkind: NetworkPolicyy\nmetadata:\n  name: a\n",
            "kind",
        ),
        (
            "wrong apiVersion",
            "apiVersion: projectcalico.org/v2\nkind: IPPool\nmetadata:\n  name: a\nspec:\n  cidr: 10.0.0.0/24\n",
            "apiVersion",
        ),
        (
            "unknown field",
            "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: a\nspec:\n  cidr: 10.0.0.0/24\n  natOutgoin: true\n",
            "natOutgoin",
        ),
        (
            "bad value",
            "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: a\nspec:\n  cidr: 10.0.0.0/33\n",
            "cidr",
        ),
        (
            "namespace on a global kind",
            "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: a\n  namespace: default\nspec:\n  cidr: 10.0.0.0/24\n",
            "IPPool is not a namespaced resource",
        ),
        (
            "missing name",
            "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {}\nspec:\n  cidr: 10.0.0.0/24\n",
            "name",
        ),
        ("not a mapping", "- just\n- a list\n", "must be a mapping"),
        ("bad YAML", "kind: [\n", "parsing"),
    ];
    for (what, text, needle) in cases {
        let file = c.file("bad.yaml", text);
        let out = c.ctl(&["create", "-f", &file]).fails();
        assert!(
            out.stderr.contains(&file),
            "{what}: names the file: {}",
            out.stderr
        );
        assert!(
            out.stderr.contains(needle),
            "{what}: expected {needle:?} in {}",
            out.stderr
        );
    }
    // Two documents naming the same resource.
    let file = c.file(
        "dup.yaml",
        &format!("{}---\n{}", policy("twin", ""), policy("twin", "")),
    );
    let out = c.ctl(&["create", "-f", &file]).fails();
    assert!(out.stderr.contains("duplicate resource"), "{}", out.stderr);
    // The policy's namespace disagrees with -n.
    let file = c.file("ns.yaml", &policy("p", "  namespace: prod\n"));
    let out = c.ctl(&["apply", "-f", &file, "-n", "dev"]).fails();
    assert!(out.stderr.contains("prod != dev"), "{}", out.stderr);
    assert!(c.names(&["networkpolicy", "-A"]).is_empty());
    assert!(c.names(&["ippool"]).is_empty());
}

#[test]
fn create_fails_on_existing_unless_skip_exists_and_replace_needs_existing() {
    let c = Cluster::new();
    let file = c.file("p.yaml", &policy("p1", ""));
    c.ctl(&["create", "-f", &file]).ok();
    let out = c.ctl(&["create", "-f", &file]).fails();
    assert!(out.stderr.contains("already exists"), "{}", out.stderr);
    let out = c.ctl(&["create", "-f", &file, "--skip-exists"]).ok();
    assert_eq!(
        out.stdout.trim(),
        "Successfully created 1 'NetworkPolicy' resource(s)"
    );

    let other = c.file("p2.yaml", &policy("p2", ""));
    let out = c.ctl(&["replace", "-f", &other]).fails();
    assert!(out.stderr.contains("does not exist"), "{}", out.stderr);
    c.ctl(&["replace", "-f", &file]).ok();
}

#[test]
fn stale_resource_version_is_a_conflict() {
    let c = Cluster::new();
    let file = c.file("p.yaml", &policy("p1", ""));
    c.ctl(&["create", "-f", &file]).ok();
    let current = c.get_json(&["networkpolicy", "p1"]);
    let rv = current["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    // Someone else changes it.
    c.ctl(&["label", "networkpolicy", "p1", "team=a"]).ok();
    let stale = c.file(
        "stale.yaml",
        &policy("p1", &format!("  resourceVersion: \"{rv}\"\n")),
    );
    let out = c.ctl(&["replace", "-f", &stale]).fails();
    assert!(out.stderr.contains("conflict"), "{}", out.stderr);
    let out = c.ctl(&["apply", "-f", &stale]).fails();
    assert!(out.stderr.contains("conflict"), "{}", out.stderr);
    assert_eq!(
        c.get_json(&["networkpolicy", "p1"])["metadata"]["labels"]["team"],
        "a"
    );
}

#[test]
fn get_one_several_all_and_namespaces() {
    let c = Cluster::new();
    let text = format!(
        "{}---\n{}---\n{}",
        policy("a", ""),
        policy("b", ""),
        policy("c", "  namespace: prod\n")
    );
    let out = c.ctl(&["apply", "-f", &c.file("ps.yaml", &text)]).ok();
    assert_eq!(
        out.stdout.trim(),
        "Successfully applied 3 'NetworkPolicy' resource(s)"
    );
    assert_eq!(c.names(&["networkpolicy"]), ["a", "b"]);
    assert_eq!(c.names(&["policy", "-n", "prod"]), ["c"]);
    assert_eq!(c.names(&["networkpolicies", "-A"]), ["a", "b", "c"]);
    let several = c.get_json(&["np", "a", "b"]);
    assert_eq!(several.as_array().unwrap().len(), 2);
    let table = c.ctl(&["get", "networkpolicy", "-A"]).ok().stdout;
    assert_eq!(
        table,
        "NAMESPACE   NAME   TIER\ndefault     a      default\ndefault     b      default\nprod        c      default\n\n"
    );
    let out = c.ctl(&["get", "networkpolicy", "a", "nope"]).fails();
    assert!(
        out.stderr
            .contains("resource does not exist: NetworkPolicy(default/nope)"),
        "{}",
        out.stderr
    );
    let out = c.ctl(&["get", "ippool", "-n", "x"]).fails();
    assert!(
        out.stderr.contains("IPPool is not namespaced"),
        "{}",
        out.stderr
    );
    let out = c.ctl(&["get", "frobnicators"]).fails();
    assert!(
        out.stderr.contains("'frobnicators' is not supported"),
        "{}",
        out.stderr
    );
}

#[test]
fn output_formats() {
    let c = Cluster::new();
    c.ctl(&["apply", "-f", &seed("ippool.yaml")]).ok();
    let yaml = c.ctl(&["get", "ippool", "net2", "-o", "yaml"]).ok().stdout;
    assert!(
        yaml.starts_with("apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n"),
        "{yaml}"
    );
    assert!(yaml.contains("  cidr: 10.1.0.0/16\n"), "{yaml}");
    let wide = c.ctl(&["get", "ippool", "-o", "wide"]).ok().stdout;
    assert_eq!(
        wide,
        "NAME   CIDR          NAT    IPIPMODE   VXLANMODE   DISABLED   DISABLEBGPEXPORT   SELECTOR   ASSIGNMENTMODE\n\
         net2   10.1.0.0/16   true   Never      Never       false      false              all()      Automatic\n\n"
    );
    let custom = c
        .ctl(&["get", "ippool", "-o", "custom-columns=NAME,NAT"])
        .ok()
        .stdout;
    assert_eq!(custom, "NAME   NAT\nnet2   true\n\n");
    let tmpl = c
        .ctl(&["get", "ippool", "-o", "go-template={{range .}}{{range .Items}}{{.ObjectMeta.Name}}={{.Spec.CIDR}};{{end}}{{end}}"])
        .ok()
        .stdout;
    assert_eq!(tmpl, "net2=10.1.0.0/16;");
    let tfile = c.file("t.tmpl", "{{range .}}{{.kind}}{{end}}\n");
    let out = c
        .ctl(&["get", "ippool", "-o", &format!("go-template-file={tfile}")])
        .ok()
        .stdout;
    assert_eq!(out, "IPPoolList\n");
    let exported = c.get_json(&["ippool", "net2", "--export"]);
    assert!(
        exported["metadata"].get("uid").is_none()
            && exported["metadata"].get("resourceVersion").is_none()
    );
    let out = c.ctl(&["get", "ippool", "-o", "xml"]).fails();
    assert!(
        out.stderr.contains("unrecognized output format"),
        "{}",
        out.stderr
    );
    let out = c
        .ctl(&["get", "ippool", "-o", "custom-columns=NAME,BOGUS"])
        .fails();
    assert!(
        out.stderr.contains("unknown column \"BOGUS\""),
        "{}",
        out.stderr
    );
}

#[test]
fn patch_and_label() {
    let c = Cluster::new();
    c.ctl(&["apply", "-f", &seed("ippool.yaml")]).ok();
    let out = c
        .ctl(&[
            "patch",
            "ippool",
            "net2",
            "-p",
            r#"{"spec":{"disabled":true}}"#,
        ])
        .ok();
    assert_eq!(
        out.stdout.trim(),
        "Successfully patched 1 'IPPool' resource"
    );
    assert_eq!(c.get_json(&["ippool", "net2"])["spec"]["disabled"], true);
    // A patch that makes the resource invalid changes nothing.
    let out = c
        .ctl(&[
            "patch",
            "ippool",
            "net2",
            "-p",
            r#"{"spec":{"cidr":"not-a-cidr"}}"#,
        ])
        .fails();
    assert!(out.stderr.contains("cidr"), "{}", out.stderr);
    assert_eq!(
        c.get_json(&["ippool", "net2"])["spec"]["cidr"],
        "10.1.0.0/16"
    );
    c.ctl(&["patch", "ippool", "missing", "-p", "{}"]).fails();

    // Upstream's messages, naming the kind as typed.
    let out = c.ctl(&["label", "ippools", "net2", "zone=a"]).ok();
    assert_eq!(
        out.stdout.trim(),
        "Successfully set label zone on ippools net2"
    );
    let out = c.ctl(&["label", "ippool", "net2", "zone=b"]).fails();
    assert_eq!(
        out.stderr.trim(),
        "failed to update label of ippool net2, key zone is already present. please use \
         '--overwrite' to set a new value"
    );
    let out = c
        .ctl(&["label", "ippool", "net2", "zone=b", "--overwrite"])
        .ok();
    assert_eq!(
        out.stdout.trim(),
        "Successfully updated label zone on ippool net2"
    );
    assert_eq!(
        c.get_json(&["ippool", "net2"])["metadata"]["labels"],
        json!({"zone": "b"})
    );
    let out = c.ctl(&["label", "ippool", "net2", "zone", "--remove"]).ok();
    assert_eq!(
        out.stdout.trim(),
        "Successfully removed label zone from ippool net2"
    );
    assert!(
        c.get_json(&["ippool", "net2"])["metadata"]
            .get("labels")
            .is_none()
    );
    let out = c
        .ctl(&["label", "ippool", "net2", "zone", "--remove"])
        .fails();
    assert_eq!(
        out.stderr.trim(),
        "cannot remove label of ippool net2, key zone does not exist"
    );
}

#[test]
fn delete_by_name_and_by_file() {
    let c = Cluster::new();
    let file = c.file(
        "ps.yaml",
        &format!("{}---\n{}", policy("a", ""), policy("b", "")),
    );
    c.ctl(&["apply", "-f", &file]).ok();
    let out = c.ctl(&["delete", "networkpolicy", "a"]).ok();
    assert_eq!(
        out.stdout.trim(),
        "Successfully deleted 1 'NetworkPolicy' resource(s)"
    );
    // One missing resource fails the whole delete: b is still there.
    let out = c.ctl(&["delete", "-f", &file]).fails();
    assert!(out.stderr.contains("does not exist"), "{}", out.stderr);
    assert_eq!(c.names(&["networkpolicy"]), ["b"]);
    c.ctl(&["delete", "-f", &file, "--skip-not-exists"]).ok();
    assert!(c.names(&["networkpolicy"]).is_empty());
}

#[test]
fn stdin_directories_json_and_lists() {
    let c = Cluster::new();
    let out = c
        .ctl_stdin(&["create", "-f", "-"], &policy("from-stdin", ""))
        .ok();
    assert!(out.stdout.contains("created 1"), "{}", out.stdout);
    let dir = c.dir.path().join("manifests");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("a.yaml"), policy("dir-a", "")).unwrap();
    let list = json!({"apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicyList", "items": [
        serde_saphyr::from_str::<Value>(&policy("dir-b", "")).unwrap(),
        serde_saphyr::from_str::<Value>(&policy("dir-c", "")).unwrap(),
    ]});
    std::fs::write(dir.join("b.json"), list.to_string()).unwrap();
    std::fs::write(dir.join("notes.txt"), "ignored").unwrap();
    let out = c.ctl(&["apply", "-f", dir.to_str().unwrap()]).ok();
    assert!(
        out.stdout.contains("applied 3 'NetworkPolicy'"),
        "{}",
        out.stdout
    );
    assert_eq!(
        c.names(&["networkpolicy"]),
        ["dir-a", "dir-b", "dir-c", "from-stdin"]
    );
    let empty = c.file("empty.yaml", "\n");
    let out = c.ctl(&["apply", "-f", &empty]).fails();
    assert!(
        out.stderr.contains("No resources specified"),
        "{}",
        out.stderr
    );
}

#[test]
fn validate_checks_without_writing() {
    let c = Cluster::without_store();
    let out = c
        .ctl(&["validate", "-f", &seed("policy-bookstore.yaml")])
        .ok();
    assert_eq!(
        out.stdout.trim(),
        "Successfully validated 1 'NetworkPolicy' resource(s)"
    );
    assert!(!c.db().exists(), "validate must not touch the datastore");
    let bad = c.file("bad.yaml", &policy("x", "").replace("5432", "70000"));
    let out = c.ctl(&["validate", "-f", &bad]).fails();
    assert!(out.stderr.contains("ports"), "{}", out.stderr);
}

#[test]
fn dcos_plugin_behaves_like_calicoctl() {
    let c = Cluster::new();
    c.dcos(&["calico", "create", "-f", &seed("ippool.yaml")])
        .ok();
    let node = c.file(
        "node.yaml",
        "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata:\n  name: 172.16.0.23\nspec:\n  bgp:\n    ipv4Address: 172.16.0.23/20\n",
    );
    c.ctl(&["apply", "-f", &node]).ok();
    let ours = c.ctl(&["get", "nodes"]).ok().stdout;
    assert_eq!(ours, "NAME\n172.16.0.23\n\n");
    assert_eq!(c.dcos(&["calico", "get", "nodes"]).ok().stdout, ours);
    let wide = c
        .dcos(&["calico", "get", "nodes", "-o", "wide"])
        .ok()
        .stdout;
    assert!(wide.contains("(64512)   172.16.0.23/20"), "{wide}");
    assert!(c.dcos(&["--info"]).ok().stdout.contains("Calico"));
}

#[test]
fn version_and_cluster_information() {
    let c = Cluster::new();
    c.ctl(&["apply", "-f", &seed("ippool.yaml")]).ok();
    let out = c.ctl(&["version"]).ok().stdout;
    assert!(out.starts_with("Client Version:    v"), "{out}");
    assert!(out.contains("Cluster Type:      dcos"), "{out}");
    assert_eq!(c.names(&["tier"]), ["default"]);
    assert_eq!(c.names(&["clusterinformation"]), ["default"]);
}

#[test]
fn config_file_selects_the_datastore() {
    let c = Cluster::new();
    let other = c.dir.path().join("other.db");
    let cfg = c.file(
        "calicoctl.cfg",
        &format!(
            "apiVersion: projectcalico.org/v3\nkind: CalicoAPIConfig\nmetadata: {{}}\nspec:\n  datastoreType: embedded\n  embeddedPath: {}\n",
            other.display()
        ),
    );
    // The environment overrides the file, so drop it for this run.
    let out = Command::new(env!("CARGO_BIN_EXE_calicoctl"))
        .args(["apply", "--config", &cfg, "-f", &seed("ippool.yaml")])
        .env_remove("CALICO_DATASTORE_PATH")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(other.exists());
    let bad = c.file("bad.cfg", "apiVersion: projectcalico.org/v3\nkind: CalicoAPIConfig\nspec:\n  datastoreType: zookeeper\n");
    let out = c.ctl(&["get", "ippool", "--config", &bad]).fails();
    assert!(out.stderr.contains("zookeeper"), "{}", out.stderr);
}

/// Writes garbage (not JSON) over a stored value, behind the store's back.
fn corrupt(c: &Cluster, name: &str) {
    let conn = rusqlite::Connection::open(c.db()).unwrap();
    let changed = conn
        .execute(
            "UPDATE events SET value = '{not json' WHERE rev =
             (SELECT mod_rev FROM kv WHERE kind = 'NetworkPolicy' AND name = ?1)",
            [name],
        )
        .unwrap();
    assert_eq!(changed, 1);
}

#[test]
fn an_unreadable_record_is_named_and_can_be_repaired_or_deleted() {
    let c = Cluster::new();
    for name in ["a", "b", "c"] {
        let f = c.file(&format!("{name}.yaml"), &policy(name, ""));
        c.ctl(&["apply", "-f", &f]).ok();
    }
    corrupt(&c, "b");
    // Everything readable is listed; the bad record is named on stderr; the exit says so.
    let run = c.ctl(&["get", "networkpolicy", "-A"]).fails();
    assert!(
        run.stdout.contains(" a ") || run.stdout.contains("a\n"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains('c'), "{}", run.stdout);
    assert!(!run.stdout.contains(" b "), "{}", run.stdout);
    assert!(
        run.stderr.contains("NetworkPolicy(default/b)") && run.stderr.contains("calicoctl delete"),
        "{}",
        run.stderr
    );
    // A single get names what is wrong.
    let run = c.ctl(&["get", "networkpolicy", "b"]).fails();
    assert!(
        run.stderr.contains("NetworkPolicy(default/b)"),
        "{}",
        run.stderr
    );
    // Delete removes it.
    c.ctl(&["delete", "networkpolicy", "b"]).ok();
    assert_eq!(c.names(&["networkpolicy", "-A"]), ["a", "c"]);
    // Apply overwrites one.
    corrupt(&c, "c");
    let f = c.file("c2.yaml", &policy("c", ""));
    c.ctl(&["apply", "-f", &f]).ok();
    assert_eq!(c.names(&["networkpolicy", "-A"]), ["a", "c"]);
    // And delete --skip-not-exists sees an unreadable record as existing.
    corrupt(&c, "a");
    c.ctl(&["delete", "networkpolicy", "a", "--skip-not-exists"])
        .ok();
    assert_eq!(c.names(&["networkpolicy", "-A"]), ["c"]);
}

#[test]
fn bgp_filters_apply_get_and_refuse_as_upstream() {
    let c = Cluster::new();
    let good = c.file(
        "filter.yaml",
        "apiVersion: projectcalico.org/v3\nkind: BGPFilter\nmetadata:\n  name: no-10-8\nspec:\n  exportV4:\n  - cidr: 10.0.0.0/8\n    matchOperator: In\n    action: Reject\n  - action: Accept\n    operations:\n    - addCommunity:\n        value: \"65000:100\"\n  importV6:\n  - cidr: fd00::/48\n    matchOperator: Equal\n    prefixLength:\n      max: 64\n    action: Accept\n",
    );
    c.ctl(&["apply", "-f", &good]).ok();
    assert_eq!(c.names(&["bgpfilters"]), ["no-10-8"]);
    let table = c.ctl(&["get", "bgpfilter"]).ok().stdout;
    assert_eq!(table.trim(), "NAME\nno-10-8", "{table}");
    let back = c.get_json(&["bgpfilter", "no-10-8"]);
    assert_eq!(
        back["spec"]["exportV4"][1]["operations"][0]["addCommunity"]["value"],
        "65000:100"
    );
    // A rule whose cidr has no matchOperator: refused, the rule named, nothing written.
    let bad = c.file(
        "bad.yaml",
        "apiVersion: projectcalico.org/v3\nkind: BGPFilter\nmetadata:\n  name: half\nspec:\n  exportV4:\n  - cidr: 10.0.0.0/8\n    action: Accept\n",
    );
    let out = c.ctl(&["apply", "-f", &bad]).fails();
    assert!(
        out.stderr.contains("spec.exportV4[0]")
            && out
                .stderr
                .contains("cidr and matchOperator must both be set"),
        "{}",
        out.stderr
    );
    assert_eq!(c.names(&["bgpfilters"]), ["no-10-8"]);
    c.ctl(&["delete", "bgpfilter", "no-10-8"]).ok();
    assert!(c.names(&["bgpfilters"]).is_empty());
}

#[test]
fn reads_never_create_the_store_file() {
    let c = Cluster::without_store();
    let db = c.db().display().to_string();
    for args in [
        &["get", "ippools"][..],
        &["get", "profile", "calico", "-o", "yaml"],
        &["ipam", "show"],
        &["ipam", "check"],
        &["delete", "profile", "calico"],
        &["label", "profile", "calico", "a=b"],
        &["patch", "profile", "calico", "-p", "{\"spec\":{}}"],
    ] {
        let run = c.ctl(args).fails();
        assert!(
            run.stderr.contains(&db) && run.stderr.contains("does not exist"),
            "{args:?}: {}",
            run.stderr
        );
        assert!(!c.db().exists(), "{args:?} created {db}");
    }
    // version still answers, with the cluster fields unknown.
    let run = c.ctl(&["version"]).ok();
    assert!(
        run.stdout.contains("Cluster Version:   unknown"),
        "{}",
        run.stdout
    );
    assert!(!c.db().exists());
    // A write creates it.
    c.ctl(&["create", "-f", &seed("profile-calico.yaml")]).ok();
    assert!(c.db().exists());
}
