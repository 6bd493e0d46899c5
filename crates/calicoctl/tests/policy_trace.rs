//! `calicoctl policy trace` and `get workloadendpoint --show-policies` on the seed's bookstore
//! example, through the real binary and a real embedded datastore.

use serde_json::Value;

const SEED_POLICY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/seed/policy-bookstore.yaml"
);

/// The DC/OS default profile (allow all, `calico` label) and the three apps' endpoints, as the
/// CNI plugin would write them: bookstore-frontend and fruitstore-frontend on host1,
/// bookstore-server on host2.
const CLUSTER: &str = r#"
apiVersion: projectcalico.org/v3
kind: Profile
metadata:
  name: calico
spec:
  ingress:
  - action: Allow
  egress:
  - action: Allow
  labelsToApply:
    calico: ""
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata:
  name: host1-mesos-bookstore--frontend-eth0
  namespace: default
  labels:
    biz_type: bookstore
spec:
  node: host1
  orchestrator: mesos
  workload: bookstore-frontend
  endpoint: eth0
  interfaceName: cali0a1b2c3d4e5
  ipNetworks: [172.29.0.1/32]
  profiles: [calico]
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata:
  name: host1-mesos-fruitstore--frontend-eth0
  namespace: default
  labels:
    biz_type: fruitstore
spec:
  node: host1
  orchestrator: mesos
  workload: fruitstore-frontend
  endpoint: eth0
  interfaceName: cali1a1b2c3d4e5
  ipNetworks: [172.29.0.2/32]
  profiles: [calico]
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata:
  name: host2-mesos-bookstore--server-eth0
  namespace: default
  labels:
    biz_type: bookstore
    role: server
spec:
  node: host2
  orchestrator: mesos
  workload: bookstore-server
  endpoint: eth0
  interfaceName: cali2a1b2c3d4e5
  ipNetworks: [172.29.0.3/32]
  profiles: [calico]
"#;

mod common;

use common::Cluster;

impl Cluster {
    fn with(with_policy: bool) -> Self {
        let c = Self::new();
        let file = c.dir.path().join("cluster.yaml");
        std::fs::write(&file, CLUSTER).unwrap();
        c.ok(&["apply", "-f", file.to_str().unwrap()]);
        if with_policy {
            c.ok(&["apply", "-f", SEED_POLICY]);
        }
        c
    }

    fn ok(&self, args: &[&str]) -> String {
        self.ctl(args).ok().stdout
    }

    fn trace_json(&self, src: &str, dst: &str, port: &str) -> Value {
        let out = self.ok(&[
            "policy",
            "trace",
            "--src",
            src,
            "--dst",
            dst,
            "--protocol",
            "TCP",
            "--port",
            port,
            "-o",
            "json",
        ]);
        serde_json::from_str(&out).unwrap()
    }
}

#[test]
fn bookstore_frontend_is_allowed_by_rule_0() {
    let c = Cluster::with(true);
    let t = c.trace_json("bookstore-frontend", "bookstore-server", "80");
    assert_eq!(t["verdict"], "allow", "{t:#}");
    assert_eq!(t["ingress"]["verdict"], "allow");
    assert_eq!(t["ingress"]["tier"], "default");
    assert_eq!(
        t["ingress"]["policy"],
        "default/allow-bookstore-cliient-to-server"
    );
    assert_eq!(t["ingress"]["rule"], 0);
    // Egress at the frontend: no policy selects it, so the profile decides.
    assert_eq!(t["egress"]["profile"], "calico");
    assert_eq!(t["egress"]["verdict"], "allow");
}

#[test]
fn fruitstore_frontend_is_denied_by_rule_1() {
    let c = Cluster::with(true);
    let t = c.trace_json("default/fruitstore-frontend", "172.29.0.3", "80");
    assert_eq!(t["verdict"], "deny", "{t:#}");
    assert_eq!(t["egress"]["verdict"], "allow");
    assert_eq!(t["ingress"]["verdict"], "deny");
    assert_eq!(
        t["ingress"]["policy"],
        "default/allow-bookstore-cliient-to-server"
    );
    assert_eq!(t["ingress"]["rule"], 1);
    let text = c.ok(&[
        "policy",
        "trace",
        "--src",
        "fruitstore-frontend",
        "--dst",
        "bookstore-server",
        "--port",
        "80",
    ]);
    assert!(text.contains("Verdict: DENY"), "{text}");
    assert!(
        text.contains("DENY by rule 1 (Deny) of policy default/allow-bookstore-cliient-to-server"),
        "{text}"
    );
}

#[test]
fn other_ports_and_sources_end_of_tier_deny() {
    let c = Cluster::with(true);
    // Port 8080: no rule matches, the tier's end denies.
    let t = c.trace_json("bookstore-frontend", "bookstore-server", "8080");
    assert_eq!(t["verdict"], "deny", "{t:#}");
    assert_eq!(t["ingress"]["tier"], "default");
    assert!(t["ingress"].get("rule").is_none(), "{t:#}");
    // An address outside Calico: no egress policy; ingress has no rule for it.
    let t = c.trace_json("10.9.9.9", "bookstore-server", "80");
    assert_eq!(t["verdict"], "deny", "{t:#}");
    assert!(t["egress"].is_null());
}

#[test]
fn before_the_policy_everything_is_allowed() {
    let c = Cluster::with(false);
    for src in ["bookstore-frontend", "fruitstore-frontend"] {
        let t = c.trace_json(src, "bookstore-server", "80");
        assert_eq!(t["verdict"], "allow", "{src}: {t:#}");
        assert_eq!(t["ingress"]["profile"], "calico");
    }
}

#[test]
fn show_policies_lists_what_applies_in_order() {
    let c = Cluster::with(true);
    let out = c.ok(&[
        "get",
        "workloadendpoint",
        "host2-mesos-bookstore--server-eth0",
        "--show-policies",
    ]);
    assert!(
        out.contains("ingress:\n  tier default: NetworkPolicy default/allow-bookstore-cliient-to-server\n  then profiles: calico"),
        "{out}"
    );
    assert!(
        out.contains("egress:\n  (no policy selects it)\n  then profiles: calico"),
        "{out}"
    );
    let run = c.ctl(&["get", "ippool", "--show-policies"]);
    let (ok, err) = (run.code == 0, run.stderr);
    assert!(
        !ok && err.contains("--show-policies works with named workload endpoints"),
        "{err}"
    );
}

#[test]
fn bad_trace_requests_are_explained() {
    let c = Cluster::with(true);
    for (args, needle) in [
        (
            vec![
                "--src",
                "nosuch",
                "--dst",
                "bookstore-server",
                "--port",
                "80",
            ],
            "no workload endpoint default/nosuch",
        ),
        (
            vec!["--src", "bookstore-frontend", "--dst", "bookstore-server"],
            "--port is required",
        ),
        (
            vec![
                "--src",
                "bookstore-frontend",
                "--dst",
                "bookstore-server",
                "--protocol",
                "ICMP",
                "--port",
                "80",
            ],
            "need a protocol with ports",
        ),
        (
            vec![
                "--src",
                "bookstore-frontend",
                "--dst",
                "bookstore-server",
                "--protocol",
                "TCPX",
                "--port",
                "80",
            ],
            "--protocol \"TCPX\"",
        ),
        (
            vec![
                "--src",
                "bookstore-frontend",
                "--dst",
                "::1",
                "--port",
                "80",
            ],
            "different IP versions",
        ),
    ] {
        let mut all = vec!["policy", "trace"];
        all.extend(args);
        let run = c.ctl(&all);
        let (ok, err) = (run.code == 0, run.stderr);
        assert!(!ok && err.contains(needle), "{all:?}: {err}");
    }
}

#[test]
fn staged_policies_show_what_they_would_change() {
    let c = Cluster::with(true);
    let staged = c.dir.path().join("staged.yaml");
    // Stage the removal of the bookstore policy, and a global deny to the server's port 80
    // from fruitstore only (it already gets denied; bookstore stays allowed once the
    // NetworkPolicy is gone through the profile).
    std::fs::write(
        &staged,
        "apiVersion: projectcalico.org/v3\nkind: StagedNetworkPolicy\nmetadata:\n  name: allow-bookstore-cliient-to-server\n  namespace: default\nspec:\n  stagedAction: Delete\n---\n\
         apiVersion: projectcalico.org/v3\nkind: StagedGlobalNetworkPolicy\nmetadata:\n  name: learn-only\nspec:\n  stagedAction: Learn\n  selector: all()\n  ingress:\n  - action: Deny\n",
    )
    .unwrap();
    c.ok(&["apply", "-f", staged.to_str().unwrap()]);
    let trace = |staged: bool| {
        let mut args = vec![
            "policy",
            "trace",
            "--src",
            "fruitstore-frontend",
            "--dst",
            "bookstore-server",
            "--protocol",
            "TCP",
            "--port",
            "80",
        ];
        if staged {
            args.push("--staged");
        }
        c.ok(&args)
    };
    // Staged policies are never enforced: without --staged nothing changes.
    let now = trace(false);
    assert!(now.contains("Verdict: DENY"), "{now}");
    assert!(!now.contains("staged"), "{now}");
    let with = trace(true);
    assert!(
        with.contains("With staged policies in force: ALLOW (CHANGED from DENY)"),
        "{with}"
    );
    assert!(
        with.contains(
            "StagedNetworkPolicy default/allow-bookstore-cliient-to-server: deletes NetworkPolicy allow-bookstore-cliient-to-server"
        ) && with.contains("StagedGlobalNetworkPolicy learn-only: stagedAction Learn, nothing put in force"),
        "{with}"
    );

    // A staged Set that denies: the verdict would change the other way.
    std::fs::write(
        &staged,
        "apiVersion: projectcalico.org/v3\nkind: StagedGlobalNetworkPolicy\nmetadata:\n  name: lockdown\nspec:\n  order: 1\n  selector: role == 'server'\n  ingress:\n  - action: Deny\n",
    )
    .unwrap();
    c.ok(&[
        "delete",
        "stagednetworkpolicy",
        "allow-bookstore-cliient-to-server",
    ]);
    c.ok(&["apply", "-f", staged.to_str().unwrap()]);
    let out = c.ok(&[
        "policy",
        "trace",
        "--src",
        "bookstore-frontend",
        "--dst",
        "bookstore-server",
        "--protocol",
        "TCP",
        "--port",
        "80",
        "--staged",
        "-o",
        "json",
    ]);
    let t: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(t["verdict"], "allow", "{t:#}");
    assert_eq!(t["staged"]["verdict"], "deny", "{t:#}");
    assert_eq!(t["staged"]["ingress"]["policy"], "lockdown", "{t:#}");
}
