//! Documented calicoctl command lines as Calico users type them: patch types, -R and
//! --skip-empty, delete -s, -l, version --client/--poll, datastore migrate.

mod common;

use std::io::Read as _;
use std::time::Duration;

use common::Cluster;

const POOL: &str = "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: p1\nspec:\n  cidr: 10.9.0.0/16\n";

fn profile(name: &str) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: Profile\nmetadata:\n  name: {name}\nspec: {{}}\n"
    )
}

fn get_json(c: &Cluster, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    serde_json::from_str(&c.ctl(&all).ok().stdout).unwrap()
}

#[test]
fn patch_types_strategic_merge_and_json() {
    let c = Cluster::new();
    c.ctl(&["apply", "-f", &c.file("pool.yaml", POOL)]).ok();
    // The default type (strategic) merges.
    c.ctl(&[
        "patch",
        "ippool",
        "p1",
        "-p",
        r#"{"spec":{"natOutgoing":true}}"#,
    ])
    .ok();
    assert_eq!(get_json(&c, &["ippool", "p1"])["spec"]["natOutgoing"], true);
    c.ctl(&[
        "patch",
        "ippool",
        "p1",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"disabled":true}}"#,
    ])
    .ok();
    let pool = get_json(&c, &["ippool", "p1"]);
    assert_eq!(pool["spec"]["disabled"], true);
    assert_eq!(pool["spec"]["natOutgoing"], true);
    // json: RFC 6902 operations.
    c.ctl(&[
        "patch",
        "ippool",
        "p1",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/disabled","value":false},{"op":"add","path":"/metadata/labels","value":{"zone":"a"}}]"#,
    ])
    .ok();
    let pool = get_json(&c, &["ippool", "p1"]);
    assert_eq!(pool["spec"].get("disabled"), None);
    assert_eq!(pool["metadata"]["labels"]["zone"], "a");
    // A failing json patch and an unknown type change nothing and say why.
    let run = c
        .ctl(&[
            "patch",
            "ippool",
            "p1",
            "--type=json",
            "-p",
            r#"[{"op":"remove","path":"/spec/nope"}]"#,
        ])
        .fails();
    assert!(
        run.stderr.contains("applying the json patch"),
        "{}",
        run.stderr
    );
    let run = c
        .ctl(&["patch", "ippool", "p1", "--type=xml", "-p", "{}"])
        .fails();
    assert!(
        run.stderr
            .contains("strategic (the default), merge or json"),
        "{}",
        run.stderr
    );
    // Field names in any case, as upstream decodes the patched document.
    c.ctl(&[
        "patch",
        "ippool",
        "p1",
        "-p",
        r#"{"spec":{"NATOutgoing":false}}"#,
    ])
    .ok();
    assert_eq!(
        get_json(&c, &["ippool", "p1"])["spec"].get("natOutgoing"),
        None
    );
}

#[test]
fn recursive_and_skip_empty_file_reading() {
    let c = Cluster::new();
    let root = c.dir.path().join("tree");
    std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
    std::fs::write(root.join("a.yaml"), profile("top")).unwrap();
    std::fs::write(root.join("sub/b.yaml"), profile("middle")).unwrap();
    std::fs::write(root.join("sub/deeper/c.json"), r#"{"apiVersion":"projectcalico.org/v3","kind":"Profile","metadata":{"name":"bottom"},"spec":{}}"#).unwrap();
    std::fs::write(root.join("sub/empty.yaml"), "# nothing yet\n").unwrap();
    let dir = root.display().to_string();
    let run = c.ctl(&["apply", "-f", &dir]).ok();
    assert!(
        run.stdout.contains("Successfully applied 1 'Profile'"),
        "{}",
        run.stdout
    );
    let run = c.ctl(&["apply", "-R", "-f", &dir]).ok();
    assert!(
        run.stdout.contains("Successfully applied 3 'Profile'"),
        "{}",
        run.stdout
    );
    let empty = root.join("sub/empty.yaml").display().to_string();
    c.ctl(&["apply", "-f", &empty]).fails();
    let run = c.ctl(&["apply", "-f", &empty, "--skip-empty"]).ok();
    assert!(
        run.stdout.contains("Successfully applied 0"),
        "{}",
        run.stdout
    );
    // delete reads files the same way; -s skips what is already gone.
    c.ctl(&["delete", "--recursive", "-f", &dir]).ok();
    c.ctl(&["delete", "-R", "-f", &dir]).fails();
    c.ctl(&["delete", "-s", "-R", "-f", &dir]).ok();
    c.ctl(&["delete", "profile", "gone", "-s"]).ok();
}

#[test]
fn log_level_and_version_flags() {
    let c = Cluster::new();
    let run = c.ctl(&["-l", "debug", "get", "profiles"]).ok();
    assert!(
        run.stderr.contains("level=debug") && run.stderr.contains(&c.db().display().to_string()),
        "{}",
        run.stderr
    );
    assert!(c.ctl(&["get", "profiles"]).ok().stderr.is_empty());
    c.ctl(&["--log-level", "loud", "get", "profiles"]).fails();

    let run = c.ctl(&["version", "--client"]).ok();
    assert!(run.stdout.starts_with("Client Version:"), "{}", run.stdout);
    let commit = run
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("Git commit:"))
        .expect("a Git commit line")
        .trim()
        .to_owned();
    assert!(!commit.is_empty(), "{}", run.stdout);
    assert!(!run.stdout.contains("Cluster Version"), "{}", run.stdout);

    // --poll keeps printing the cluster version when it changes.
    c.ctl(&["apply", "-f", &c.file("p.yaml", &profile("x"))])
        .ok();
    let mut child = c
        .command(
            env!("CARGO_BIN_EXE_calicoctl"),
            &["version", "--poll", "200ms"],
        )
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    c.ctl(&[
        "patch",
        "clusterinformation",
        "default",
        "-p",
        r#"{"spec":{"calicoVersion":"v9.9.9"}}"#,
    ])
    .ok();
    std::thread::sleep(Duration::from_millis(900));
    child.kill().unwrap();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child.wait().unwrap();
    assert!(
        out.matches("Cluster Version:").count() == 2 && out.contains("Cluster Version:   v9.9.9"),
        "{out}"
    );
    c.ctl(&["version", "--poll", "soon"]).fails();
}

#[test]
fn migrate_between_embedded_stores_round_trips() {
    let from = Cluster::new();
    from.ctl(&["apply", "-f", &from.file("pool.yaml", POOL)])
        .ok();
    from.ctl(&["apply", "-f", &from.file("p.yaml", &profile("web"))])
        .ok();
    // Export needs the lock, as upstream.
    let run = from.ctl(&["datastore", "migrate", "export"]).fails();
    assert!(run.stderr.contains("not locked"), "{}", run.stderr);
    from.ctl(&["datastore", "migrate", "lock"]).ok();
    let export = from.ctl(&["datastore", "migrate", "export"]).ok().stdout;
    assert!(
        !export.contains("resourceVersion") && !export.contains("uid:"),
        "{export}"
    );
    let file = from.file("export.yaml", &export);

    let to = Cluster::without_store();
    let run = to
        .ctl(&["datastore", "migrate", "import", "-f", &file])
        .ok();
    assert!(run.stdout.contains("stays locked"), "{}", run.stdout);
    // Importing twice is refused: the target is no longer empty.
    let run = to
        .ctl(&["datastore", "migrate", "import", "-f", &file])
        .fails();
    assert!(run.stderr.contains("not empty"), "{}", run.stderr);
    to.ctl(&["datastore", "migrate", "unlock"]).ok();
    assert_eq!(
        get_json(&to, &["ippool", "p1"])["spec"]["cidr"],
        "10.9.0.0/16"
    );
    assert_eq!(
        get_json(&to, &["profile", "web"])["metadata"]["name"],
        "web"
    );
    // A bad document writes nothing.
    let bad = to.file("bad.yaml", &format!("{POOL}---\nkind: Nope\n"));
    let fresh = Cluster::without_store();
    fresh
        .ctl(&["datastore", "migrate", "import", "-f", &bad])
        .fails();
    assert!(
        !fresh.db().exists()
            || fresh
                .ctl(&["get", "ippools", "-o", "json"])
                .ok()
                .stdout
                .contains("[]")
    );
}

#[test]
fn node_checksystem_on_this_host() {
    let c = Cluster::new();
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"));
    let run = c.ctl(&["node", "checksystem"]);
    if !root {
        assert_ne!(run.code, 0);
        assert!(run.stdout.contains("running as root"), "{}", run.stdout);
        println!("SKIP node_checksystem_on_this_host: not root, the kernel checks cannot run");
        return;
    }
    // The lab's own tests need veth, vxlan and nftables here: checksystem must agree.
    for item in [
        "veth",
        "vxlan",
        "nftables (policy)",
        "network namespaces",
        "conntrack tool",
    ] {
        let line = run
            .stdout
            .lines()
            .find(|l| l.trim_start().starts_with(item))
            .unwrap_or_else(|| panic!("no {item} line: {}", run.stdout));
        assert!(line.ends_with("PASS"), "{line}");
    }
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert!(
        run.stdout
            .contains("System meets minimum system requirements")
    );
    // Nothing was left behind on the host.
    let links = std::process::Command::new("ip")
        .args(["-o", "link"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&links.stdout).contains("cc0@"));
}

#[test]
fn go_template_fields_are_checked_against_the_type() {
    let c = Cluster::new();
    c.ctl(&["apply", "-f", &c.file("pool.yaml", POOL)]).ok();
    // calicoctl hands templates a list of lists, as upstream does.
    let template = |t: &str| {
        c.ctl(&[
            "get",
            "ippools",
            "-o",
            &format!("go-template={{{{range .}}}}{{{{range .Items}}}}{t}{{{{end}}}}{{{{end}}}}"),
        ])
    };
    let run = template("{{.ObjectMeta.Name}} {{.Spec.CIDR}}").ok();
    assert_eq!(run.stdout, "p1 10.9.0.0/16");
    // A field the type has, omitted because it holds its zero value: no error.
    template("{{.Spec.Disabled}}").ok();
    // A map has every key.
    template("{{.ObjectMeta.Labels.anything}}").ok();
    // A field the type does not have is an error, as upstream's templates fail on a struct.
    let run = template("{{.Spec.Nope}}").fails();
    assert!(
        run.stderr
            .contains("can't evaluate field Nope in type IPPool.spec"),
        "{}",
        run.stderr
    );
    let run = template("{{.Spce.CIDR}}").fails();
    assert!(run.stderr.contains("field Spce"), "{}", run.stderr);
}

#[test]
fn the_dcos_cli_plugin_package_installs_and_reads_the_clusters_config() {
    // The package as `dcos plugin add` takes it.
    let c = Cluster::new();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let bins = std::path::Path::new(env!("CARGO_BIN_EXE_dcos-calico"))
        .parent()
        .unwrap()
        .to_owned();
    let out_dir = c.dir.path().join("plugin");
    let built = std::process::Command::new(root.join("packaging/build-dcos-plugin.sh"))
        .arg(&bins)
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let zip = String::from_utf8(built.stdout).unwrap().trim().to_owned();
    // Unpack it as the DC/OS CLI does, keeping modes.
    let installed = c.dir.path().join("installed");
    let unzip = std::process::Command::new("python3")
        .args([
            "-c",
            "import os,sys,zipfile\nz=zipfile.ZipFile(sys.argv[1])\nfor i in z.infolist():\n    p=z.extract(i,sys.argv[2])\n    os.chmod(p,(i.external_attr>>16)&0o777)",
            &zip,
        ])
        .arg(&installed)
        .status()
        .unwrap();
    assert!(unzip.success());
    let manifest = std::fs::read_to_string(installed.join("plugin.toml")).unwrap();
    for line in [
        "schema_version = 1",
        "name = \"dcos-calico\"",
        "name = \"calico\"",
        "path = \"bin/dcos-calico\"",
        &format!("version = \"{}\"", env!("CARGO_PKG_VERSION")),
    ] {
        assert!(manifest.contains(line), "{line}: {manifest}");
    }
    let plugin = installed.join("bin/dcos-calico");

    // From outside the cluster: the datastore configuration beside the DC/OS CLI's files.
    let dcos_dir = c.dir.path().join("dot-dcos");
    std::fs::create_dir_all(dcos_dir.join("calico")).unwrap();
    std::fs::write(
        dcos_dir.join("calico/calicoctl.cfg"),
        format!(
            "apiVersion: projectcalico.org/v3\nkind: CalicoAPIConfig\nmetadata: {{}}\nspec:\n  datastoreType: embedded\n  embeddedPath: {}\n",
            c.db().display()
        ),
    )
    .unwrap();
    c.ctl(&["apply", "-f", &c.file("pool.yaml", POOL)]).ok();
    let run = std::process::Command::new(&plugin)
        .args(["calico", "get", "ippools", "-o", "json"])
        .env("DCOS_DIR", &dcos_dir)
        .env_remove("CALICO_DATASTORE_PATH")
        .env_remove("DATASTORE_TYPE")
        .env_remove("ETCD_ENDPOINTS")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(stdout.contains("10.9.0.0/16"), "{stdout}");
    let info = std::process::Command::new(&plugin)
        .arg("--info")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&info.stdout).contains("Calico"));
}
