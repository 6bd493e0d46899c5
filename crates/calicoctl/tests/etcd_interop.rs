//! calicoctl and upstream Calico sharing one etcd: keys written with `etcdctl put` exactly as
//! upstream's calicoctl / libcalico-go etcdv3 backend writes them read back through the
//! calicoctl binary, and what the binary writes is, seen with `etcdctl get`, at upstream's key
//! in a value upstream decodes.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use calico_datastore::etcd::testing::{EtcdServer, etcd_or_skip, upstream};
use serde_json::{Value, json};

/// A real etcd, reached by the calicoctl binary and by etcdctl.
struct Shared {
    server: EtcdServer,
    etcdctl: String,
}

/// etcdctl's own name, or None after a visible SKIP (a failure under `CI=true`, as for etcd).
fn etcdctl_or_skip(test: &str) -> Option<String> {
    let found = Command::new("etcdctl")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return Some("etcdctl".to_owned());
    }
    let reason = "etcdctl not found (install Debian's etcd-client)";
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: {reason}; CI must provide etcdctl");
    }
    eprintln!("SKIP {test}: {reason}");
    println!("SKIP {test}: {reason}");
    None
}

fn succeeded(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}): stdout {} stderr {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap_or_else(|e| panic!("{what} printed non-UTF-8: {e}"))
}

impl Shared {
    fn start(test: &str) -> Option<Self> {
        let bin = etcd_or_skip(test)?;
        let etcdctl = etcdctl_or_skip(test)?;
        Some(Self {
            server: EtcdServer::single(&bin),
            etcdctl,
        })
    }

    fn endpoints(&self) -> String {
        self.server.endpoints().join(",")
    }

    fn etcdctl(&self, args: &[&str]) -> String {
        let out = Command::new(&self.etcdctl)
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &self.endpoints()])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running etcdctl: {e}"));
        succeeded(out, &format!("etcdctl {args:?}"))
    }

    fn put(&self, key: &str, value: &str) {
        let out = self.etcdctl(&["put", key, value]);
        assert_eq!(out.trim(), "OK", "etcdctl put {key}");
    }

    /// The stored value and its mod revision, or None when the key is absent.
    fn get(&self, key: &str) -> Option<(Value, i64)> {
        // `-w json` encodes values in base64; the plain form gives the bytes as stored.
        let meta: Value = serde_json::from_str(&self.etcdctl(&["get", key, "-w", "json"])).unwrap();
        let rev = meta["kvs"].as_array()?.first()?["mod_revision"]
            .as_i64()
            .unwrap();
        let raw = self.etcdctl(&["get", key, "--print-value-only"]);
        let value = serde_json::from_str(raw.trim_end_matches('\n'))
            .unwrap_or_else(|e| panic!("value at {key} is not JSON ({e}): {raw}"));
        Some((value, rev))
    }

    /// The calicoctl binary on this etcd, configured the way users do it: through the
    /// environment.
    fn calicoctl(&self, args: &[&str], stdin: &str) -> String {
        succeeded(
            self.calicoctl_run(args, stdin),
            &format!("calicoctl {args:?}"),
        )
    }

    /// Runs calicoctl against this etcd, whatever its exit status.
    fn calicoctl_run(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_calicoctl"))
            .args(args)
            .env("DATASTORE_TYPE", "etcdv3")
            .env("ETCD_ENDPOINTS", self.endpoints())
            .env_remove("CALICO_DATASTORE_TYPE")
            .env_remove("CALICO_ETCD_ENDPOINTS")
            .env_remove("CALICO_DATASTORE_PATH")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// `calicoctl get <args> -o yaml`, as JSON.
    fn get_yaml(&self, args: &[&str]) -> Value {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-o", "yaml"]);
        let yaml = self.calicoctl(&all, "");
        serde_saphyr::from_str(&yaml).unwrap_or_else(|e| panic!("{all:?} printed bad YAML: {e}"))
    }
}

#[test]
fn upstream_keys_read_back_through_calicoctl() {
    let Some(e) = Shared::start("upstream_keys_read_back_through_calicoctl") else {
        return;
    };
    for (key, value) in upstream::ALL {
        e.put(key, value);
    }

    // Each resource reads back as exactly what upstream stored, plus its resourceVersion:
    // the key's etcd mod revision, as upstream reports it.
    for (key, value, args) in [
        (
            upstream::GLOBAL_POLICY_KEY,
            upstream::GLOBAL_POLICY,
            &["globalnetworkpolicy", "allow-icmp"][..],
        ),
        (
            upstream::POLICY_KEY,
            upstream::POLICY,
            &["networkpolicy", "allow-tcp-6379", "-n", "production"][..],
        ),
        (
            upstream::POOL_KEY,
            upstream::POOL,
            &["ippool", "default-ipv4-ippool"][..],
        ),
        (
            upstream::PROFILE_KEY,
            upstream::PROFILE,
            &["profile", "calico"][..],
        ),
        (
            upstream::WORKLOAD_ENDPOINT_KEY,
            upstream::WORKLOAD_ENDPOINT,
            &[
                "workloadendpoint",
                "node--1-mesos-web--0-eth0",
                "-n",
                "default",
            ][..],
        ),
    ] {
        let (_, rev) = e.get(key).expect("the key just put");
        let mut expected: Value = serde_json::from_str(value).unwrap();
        expected["metadata"]["resourceVersion"] = json!(rev.to_string());
        assert_eq!(e.get_yaml(args), expected, "calicoctl get {args:?}");
    }
    // Lists find them too.
    let list = e.get_yaml(&["workloadendpoints", "--all-namespaces"]);
    assert_eq!(list["kind"], "WorkloadEndpointList");
    assert_eq!(
        list["items"][0]["spec"]["ipNetworks"],
        json!(["10.0.0.1/32"])
    );

    // The block, its affinity and handles: the pool's two addresses in use.
    let shown = e.calicoctl(&["ipam", "show", "--show-blocks"], "");
    let rows: Vec<Vec<&str>> = shown
        .lines()
        .map(|l| l.split('|').map(str::trim).collect())
        .filter(|cols: &Vec<&str>| cols.len() > 5)
        .collect();
    assert!(
        rows.contains(&vec![
            "",
            "IP Pool",
            "10.0.0.0/16",
            "65536",
            "2 (0%)",
            "65534 (99%)",
            ""
        ]),
        "{shown}"
    );
    assert!(
        rows.contains(&vec![
            "",
            "Block",
            "10.0.0.0/26",
            "64",
            "2 (3%)",
            "62 (96%)",
            ""
        ]),
        "{shown}"
    );
    let ip = e.calicoctl(&["ipam", "show", "--ip", "10.0.0.1"], "");
    assert!(ip.contains("IP 10.0.0.1 is in use"), "{ip}");
    assert!(ip.contains("Handle: k8s-pod-network.abc123"), "{ip}");
    // The handles upstream wrote agree with its block. One address has no workload endpoint
    // here (a leak, as check counts it), so it exits 1.
    let out = e.calicoctl_run(&["ipam", "check"], "");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let check = String::from_utf8_lossy(&out.stdout).into_owned();
    for line in [
        "Found 1 IPAM blocks.",
        "Found 2 IPAM handles.",
        "Found 2 allocated IP addresses.",
        "Found 0 allocations whose handle is missing.",
        "Found 0 handles without allocations.",
        "Found 0 handles whose counts disagree with their blocks.",
    ] {
        assert!(check.contains(line), "{line:?} not in:\n{check}");
    }
}

/// What upstream's decoder needs of a stored v3 resource: only the fields of a Go
/// `TypeMeta` + `ObjectMeta` + spec, `uid` and an RFC 3339 `creationTimestamp` set, and no
/// `resourceVersion` (upstream takes it from the key's mod revision and refuses writes that
/// store one).
fn assert_upstream_resource(stored: &Value, kind: &str, name: &str, namespace: Option<&str>) {
    let top: Vec<&str> = stored
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(top, ["apiVersion", "kind", "metadata", "spec"], "{stored}");
    assert_eq!(stored["apiVersion"], "projectcalico.org/v3");
    assert_eq!(stored["kind"], kind);
    let meta = &stored["metadata"];
    assert_eq!(meta["name"], name);
    assert_eq!(meta["namespace"].as_str(), namespace, "{stored}");
    assert!(
        meta["uid"].as_str().is_some_and(|u| !u.is_empty()),
        "{stored}"
    );
    let created = meta["creationTimestamp"].as_str().unwrap_or_default();
    time::OffsetDateTime::parse(created, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|err| panic!("creationTimestamp {created:?} is not RFC 3339: {err}"));
    assert_eq!(meta.get("resourceVersion"), None, "{stored}");
}

#[test]
fn calicoctl_apply_lands_in_upstream_keys() {
    let Some(e) = Shared::start("calicoctl_apply_lands_in_upstream_keys") else {
        return;
    };
    let yaml = "\
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: deny-external
spec:
  selector: all()
  order: 20
  types: [Ingress]
  ingress:
  - action: Deny
    source:
      nets: [0.0.0.0/0]
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: allow-web
  namespace: shop
spec:
  selector: app == 'web'
  ingress:
  - action: Allow
    protocol: TCP
    destination:
      ports: [80, 443]
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: pool2
spec:
  cidr: 10.20.0.0/16
  blockSize: 24
  natOutgoing: true
---
apiVersion: projectcalico.org/v3
kind: Profile
metadata:
  name: shop
  labels:
    team: shop
spec:
  labelsToApply:
    team: shop
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata:
  name: host1-mesos-web-eth0
  namespace: shop
spec:
  node: host1
  orchestrator: mesos
  workload: web
  endpoint: eth0
  interfaceName: cali1234567890a
  ipNetworks: [10.20.0.5/32]
  profiles: [shop]
";
    e.calicoctl(&["apply", "-f", "-"], yaml);

    let prefix = "/calico/resources/v3/projectcalico.org";
    let at = |key: &str| {
        e.get(key)
            .unwrap_or_else(|| panic!("nothing at upstream's key {key}"))
    };

    let (gnp, gnp_rev) = at(&format!("{prefix}/globalnetworkpolicies/deny-external"));
    assert_upstream_resource(&gnp, "GlobalNetworkPolicy", "deny-external", None);
    assert_eq!(gnp["spec"]["selector"], "all()");
    assert_eq!(gnp["spec"]["order"], 20);
    assert_eq!(gnp["spec"]["types"], json!(["Ingress"]));
    assert_eq!(gnp["spec"]["ingress"][0]["action"], "Deny");
    assert_eq!(
        gnp["spec"]["ingress"][0]["source"]["nets"],
        json!(["0.0.0.0/0"])
    );
    // calicoctl's resourceVersion is that key's mod revision, as upstream's would be.
    let read = e.get_yaml(&["globalnetworkpolicy", "deny-external"]);
    assert_eq!(read["metadata"]["resourceVersion"], gnp_rev.to_string());
    assert_eq!(read["metadata"]["uid"], gnp["metadata"]["uid"]);

    let (np, _) = at(&format!("{prefix}/networkpolicies/shop/allow-web"));
    assert_upstream_resource(&np, "NetworkPolicy", "allow-web", Some("shop"));
    assert_eq!(np["spec"]["selector"], "app == 'web'");
    assert_eq!(np["spec"]["ingress"][0]["protocol"], "TCP");
    assert_eq!(
        np["spec"]["ingress"][0]["destination"]["ports"],
        json!([80, 443])
    );

    let (pool, _) = at(&format!("{prefix}/ippools/pool2"));
    assert_upstream_resource(&pool, "IPPool", "pool2", None);
    assert_eq!(pool["spec"]["cidr"], "10.20.0.0/16");
    assert_eq!(pool["spec"]["blockSize"], 24);
    assert_eq!(pool["spec"]["natOutgoing"], true);

    let (profile, _) = at(&format!("{prefix}/profiles/shop"));
    assert_upstream_resource(&profile, "Profile", "shop", None);
    assert_eq!(profile["metadata"]["labels"]["team"], "shop");
    assert_eq!(profile["spec"]["labelsToApply"]["team"], "shop");

    let (wep, _) = at(&format!(
        "{prefix}/workloadendpoints/shop/host1-mesos-web-eth0"
    ));
    assert_upstream_resource(
        &wep,
        "WorkloadEndpoint",
        "host1-mesos-web-eth0",
        Some("shop"),
    );
    assert_eq!(wep["spec"]["node"], "host1");
    assert_eq!(wep["spec"]["orchestrator"], "mesos");
    assert_eq!(wep["spec"]["ipNetworks"], json!(["10.20.0.5/32"]));
    assert_eq!(wep["spec"]["profiles"], json!(["shop"]));

    // Besides these, only what upstream's client also creates on first use (its
    // EnsureInitialized): the default tier and the ClusterInformation.
    let keys = e.etcdctl(&["get", "/calico/", "--prefix", "--keys-only"]);
    let keys: Vec<&str> = keys.lines().filter(|l| !l.is_empty()).collect();
    let expected: Vec<String> = [
        "clusterinformations/default",
        "globalnetworkpolicies/deny-external",
        "ippools/pool2",
        "networkpolicies/shop/allow-web",
        "profiles/shop",
        "tiers/default",
        "workloadendpoints/shop/host1-mesos-web-eth0",
    ]
    .iter()
    .map(|k| format!("{prefix}/{k}"))
    .collect();
    assert_eq!(keys, expected);
    let (tier, _) = at(&format!("{prefix}/tiers/default"));
    assert_upstream_resource(&tier, "Tier", "default", None);
    let (info, _) = at(&format!("{prefix}/clusterinformations/default"));
    assert_upstream_resource(&info, "ClusterInformation", "default", None);

    // IPAM configuration lands at upstream's key, in upstream's (non-v3) encoding.
    e.calicoctl(&["ipam", "configure", "--strictaffinity=true"], "");
    let (cfg, _) = at("/calico/ipam/v2/config");
    assert_eq!(cfg["strict_affinity"], true, "{cfg}");
    assert_eq!(cfg["auto_allocate_blocks"], true, "{cfg}");
}

/// calicoctl on an embedded store file.
fn embedded(db: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_calicoctl"))
        .args(args)
        .env("CALICO_DATASTORE_PATH", db)
        .env_remove("DATASTORE_TYPE")
        .env_remove("CALICO_DATASTORE_TYPE")
        .env_remove("ETCD_ENDPOINTS")
        .env_remove("CALICO_ETCD_ENDPOINTS")
        .output()
        .unwrap()
}

#[test]
fn migrate_from_the_embedded_store_to_etcd_and_back() {
    let Some(e) = Shared::start("migrate_from_the_embedded_store_to_etcd_and_back") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("calico.db");
    let yaml = dir.path().join("cluster.yaml");
    std::fs::write(
        &yaml,
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: pool1}\nspec: {cidr: 10.30.0.0/16, blockSize: 26}\n---\n\
         apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {name: n1}\nspec: {}\n---\n\
         apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: security}\nspec: {order: 10}\n---\n\
         apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: security.deny}\nspec: {tier: security, selector: all(), ingress: [{action: Deny}]}\n---\n\
         apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: web, namespace: shop}\nspec: {selector: app == 'web', ingress: [{action: Allow}]}\n",
    )
    .unwrap();
    succeeded(
        embedded(&db, &["apply", "-f", yaml.to_str().unwrap()]),
        "apply",
    );
    // IPAM state: an endpoint's address and a leaked one.
    let ip = {
        let ds = calico_datastore::sqlite::SqliteDatastore::open(&db).unwrap();
        let ipam = calico_ipam::Ipam::new(&ds);
        let mut args = calico_ipam::AssignArgs::new("h-web", "n1");
        args.attrs.insert("node".into(), "n1".into());
        let ip = ipam.auto_assign(&args).unwrap().v4[0].ip;
        ipam.auto_assign(&calico_ipam::AssignArgs::new("h-leak", "n1"))
            .unwrap();
        ip
    };
    let wep = dir.path().join("wep.yaml");
    std::fs::write(
        &wep,
        format!(
            "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {{name: n1-mesos-web-eth0, namespace: shop}}\n\
             spec: {{node: n1, orchestrator: mesos, workload: web, endpoint: eth0, interfaceName: cali0123456789a, ipNetworks: [{ip}/32]}}\n"
        ),
    )
    .unwrap();
    succeeded(
        embedded(&db, &["apply", "-f", wep.to_str().unwrap()]),
        "apply wep",
    );

    succeeded(embedded(&db, &["datastore", "migrate", "lock"]), "lock");
    let exported = succeeded(embedded(&db, &["datastore", "migrate", "export"]), "export");
    let file = dir.path().join("export.yaml");
    std::fs::write(&file, &exported).unwrap();
    for kind in [
        "IPAMBlock",
        "BlockAffinity",
        "IPAMHandle",
        "GlobalNetworkPolicy",
        "WorkloadEndpoint",
    ] {
        assert!(
            exported.contains(&format!("kind: {kind}")),
            "{kind} missing: {exported}"
        );
    }

    // Into etcd: everything lands, the store stays locked until unlocked.
    let out = e.calicoctl(
        &[
            "datastore",
            "migrate",
            "import",
            "-f",
            file.to_str().unwrap(),
        ],
        "",
    );
    assert!(out.contains("stays locked"), "{out}");
    let info = e.get_yaml(&["clusterinformation", "default"]);
    assert_eq!(info["spec"]["datastoreReady"], false);
    // The same export comes back out of etcd.
    let again = e.calicoctl(&["datastore", "migrate", "export"], "");
    assert_eq!(again, exported);
    e.calicoctl(&["datastore", "migrate", "unlock"], "");
    // IPAM on etcd sees the same state: one endpoint address, one leak.
    let check = e.calicoctl_run(&["ipam", "check"], "");
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(
        text.contains("Found 2 allocated IP addresses") && text.contains("Found 1 leaked"),
        "{text}"
    );

    // And back into a new embedded store.
    e.calicoctl(&["datastore", "migrate", "lock"], "");
    let from_etcd = e.calicoctl(&["datastore", "migrate", "export"], "");
    let db2 = dir.path().join("back.db");
    let file2 = dir.path().join("back.yaml");
    std::fs::write(&file2, &from_etcd).unwrap();
    succeeded(
        embedded(
            &db2,
            &[
                "datastore",
                "migrate",
                "import",
                "-f",
                file2.to_str().unwrap(),
            ],
        ),
        "import back",
    );
    assert_eq!(
        succeeded(
            embedded(&db2, &["datastore", "migrate", "export"]),
            "export back"
        ),
        exported
    );
}
