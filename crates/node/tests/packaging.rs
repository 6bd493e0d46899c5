//! The systemd units under `packaging/systemd` (the seed's dcos-calico-* services) pass
//! `systemd-analyze verify`, start in the seed's order, restart, and read the DC/OS parameters
//! file through the shared environment file.

use std::path::{Path, PathBuf};
use std::process::Command;

const UNITS: [&str; 4] = [
    "dcos-calico-felix.service",
    "dcos-calico-confd.service",
    "dcos-calico-bird.service",
    "dcos-calico-libnetwork-plugin.service",
];

fn packaging() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging")
}

fn unit(name: &str) -> String {
    std::fs::read_to_string(packaging().join("systemd").join(name)).unwrap()
}

#[test]
fn units_pass_systemd_analyze_verify() {
    let found = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        let reason = "systemd-analyze not found (install Debian's systemd)";
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{reason}; CI must provide it"
        );
        println!("SKIP units_pass_systemd_analyze_verify: {reason}");
        return;
    }
    // verify checks that each command exists: our binaries are not installed here, so the
    // copies name an existing program in their place (the units' syntax, sections, keys and
    // dependencies are what is checked).
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for name in UNITS {
        let text = unit(name)
            .replace("/usr/bin/calico-node", "/bin/true")
            .replace("/usr/bin/calico-confd", "/bin/true")
            .replace("/usr/bin/calico-libnetwork-plugin", "/bin/true");
        let text = if Path::new("/usr/sbin/bird").exists() {
            text
        } else {
            text.replace("/usr/sbin/bird", "/bin/true")
                .replace("/usr/sbin/birdc", "/bin/true")
        };
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        paths.push(path);
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(&paths)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Warnings about units these depend on but this machine lacks (docker.service) are the
    // machine's; anything about our files is a failure.
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| UNITS.iter().any(|u| l.contains(u)))
        .collect();
    assert!(out.status.success() && ours.is_empty(), "{stderr}");
}

#[test]
fn units_start_in_the_seeds_order_and_restart() {
    let after = |name: &str| {
        unit(name)
            .lines()
            .filter_map(|l| l.strip_prefix("After="))
            .flat_map(|v| v.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
            .collect::<Vec<String>>()
    };
    assert!(after("dcos-calico-felix.service").contains(&"network-online.target".to_owned()));
    assert!(after("dcos-calico-confd.service").contains(&"dcos-calico-felix.service".to_owned()));
    assert!(after("dcos-calico-bird.service").contains(&"dcos-calico-confd.service".to_owned()));
    let plugin = after("dcos-calico-libnetwork-plugin.service");
    assert!(
        plugin.contains(&"docker.service".to_owned())
            && plugin.contains(&"dcos-calico-felix.service".to_owned())
    );
    for name in UNITS {
        let text = unit(name);
        assert!(text.contains("\nRestart=always\n"), "{name}");
        assert!(text.contains("\nWantedBy=multi-user.target\n"), "{name}");
    }
    // calico-node reads the DC/OS parameters file named in the shared environment file.
    let env = std::fs::read_to_string(packaging().join("etc/calico.env")).unwrap();
    assert!(
        env.contains("CALICO_NODE_PARAMS=/etc/calico/dcos-calico.yaml"),
        "{env}"
    );
    assert!(unit("dcos-calico-felix.service").contains("--params ${CALICO_NODE_PARAMS}"));
}

#[test]
fn the_default_parameters_file_is_what_calico_node_accepts() {
    let params = calico_node::params::Params::load(
        Some(&packaging().join("etc/dcos-calico.yaml")),
        &|_| None,
        &["172.30.0.1/24".parse().unwrap()],
        1500,
    )
    .unwrap();
    assert_eq!(
        params,
        calico_node::params::Params::default(),
        "the file states the defaults"
    );
}

#[test]
fn the_debian_package_carries_binaries_units_cni_files_and_configuration() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let bins = root.join("target/debug");
    if !bins.join("calicoctl").exists() || !bins.join("calico-confd").exists() {
        // The workspace's binaries are built before the tests (scripts/test.sh does).
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the workspace binaries must be built before this test"
        );
        println!("SKIP the_debian_package: build the workspace binaries first");
        return;
    }
    // Beside the binaries: that filesystem has room for them, /tmp may not.
    let out_dir = tempfile::tempdir_in(root.join("target")).unwrap();
    let out = Command::new(root.join("packaging/build-deb.sh"))
        .arg(&bins)
        .arg(out_dir.path())
        .env("DEB_FAST", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deb = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let listing = Command::new("dpkg-deb")
        .args(["-c", &deb])
        .output()
        .unwrap();
    let listing = String::from_utf8(listing.stdout).unwrap();
    let entry = |path: &str| {
        listing
            .lines()
            .find(|l| l.ends_with(path))
            .unwrap_or_else(|| panic!("{path} missing from the package:\n{listing}"))
            .to_owned()
    };
    assert!(
        entry(" ./").starts_with("drwxr-xr-x"),
        "the root must stay 0755"
    );
    for bin in [
        "./usr/bin/calico-node",
        "./usr/bin/calicoctl",
        "./usr/bin/dcos-calico",
        "./usr/bin/calico-confd",
        "./usr/bin/calico-libnetwork-plugin",
        "./opt/mesosphere/active/cni/calico",
        "./opt/mesosphere/active/cni/calico-ipam",
    ] {
        assert!(entry(bin).starts_with("-rwxr-xr-x"), "{bin}");
    }
    for file in UNITS
        .iter()
        .map(|u| format!("./lib/systemd/system/{u}"))
        .chain(
            [
                "./etc/calico/calico.env",
                "./etc/calico/dcos-calico.yaml",
                "./etc/calico/calicoctl.cfg",
                "./opt/mesosphere/etc/dcos/network/cni/calico.conf",
            ]
            .map(String::from),
        )
    {
        assert!(entry(&file).starts_with("-rw-r--r--"), "{file}");
    }
    let info = |field: &str| {
        let out = Command::new("dpkg-deb")
            .args(["-f", &deb, field])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    assert_eq!(info("Package"), "calico-rs");
    assert!(info("Depends").contains("nftables"), "{}", info("Depends"));
    // Maintainer scripts and conffiles.
    let control = tempfile::tempdir().unwrap();
    let ok = Command::new("dpkg-deb")
        .args(["-e", &deb])
        .arg(control.path())
        .status()
        .unwrap();
    assert!(ok.success());
    let conffiles = std::fs::read_to_string(control.path().join("conffiles")).unwrap();
    assert!(
        conffiles.contains("/etc/calico/dcos-calico.yaml"),
        "{conffiles}"
    );
    for script in ["postinst", "prerm", "postrm"] {
        let path = control.path().join(script);
        let syntax = Command::new("sh").arg("-n").arg(&path).status().unwrap();
        assert!(syntax.success(), "{script} is not valid sh");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("/run/systemd/system"),
            "{script} must work without systemd"
        );
    }
    let postinst = std::fs::read_to_string(control.path().join("postinst")).unwrap();
    assert!(
        postinst.contains("systemctl enable dcos-calico-felix.service"),
        "{postinst}"
    );
    // postinst runs without systemd (a container, a chroot) and exits 0.
    let run = Command::new("sh")
        .arg(control.path().join("postinst"))
        .arg("abort-upgrade")
        .status()
        .unwrap();
    assert!(run.success());
}

#[test]
fn the_dcos_diagnostics_configuration_runs_our_diagnostics() {
    let text = std::fs::read_to_string(packaging().join("dcos-diagnostics/calico.json")).unwrap();
    let conf: serde_json::Value = serde_json::from_str(&text).unwrap();
    let commands = conf["LocalCommands"].as_array().unwrap();
    let argv = |c: &serde_json::Value| -> Vec<String> {
        c["Command"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect()
    };
    let all: Vec<Vec<String>> = commands.iter().map(argv).collect();
    assert!(
        all.iter().any(|a| a[1..] == ["node", "diags", "-o", "-"]),
        "{all:?}"
    );
    assert!(
        all.iter()
            .any(|a| a[1..] == ["cluster", "diags", "-o", "-"]),
        "{all:?}"
    );
    for c in commands {
        assert_eq!(
            argv(c)[0],
            "/usr/bin/calicoctl",
            "a binary the package installs"
        );
        let roles = c["Role"].as_array().unwrap();
        assert!(!roles.is_empty());
        for r in roles {
            assert!(["master", "agent", "agent_public"].contains(&r.as_str().unwrap()));
        }
    }
}
