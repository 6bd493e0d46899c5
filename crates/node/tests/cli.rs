//! The binary refuses bad DC/OS parameters before touching anything: a
//! non-zero exit and the parameter, its source and value named. Each run is
//! in a fresh network namespace (`unshare --net`) with one veth
//! 10.9.9.1/24; without root the test skips visibly (fails under `CI=true`).

use std::process::Command;

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .is_some_and(|l| l.split_whitespace().nth(1) == Some("0"))
    })
}

fn node(env: &[(&str, &str)], args: &[&str]) -> (i32, String) {
    // A directory per run: the tests run in parallel.
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("calico-node-cli-{}-{run}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("never-created.db");
    let script = "ip link add d0 type veth peer name d1 && ip addr add 10.9.9.1/24 dev d0 && ip link set d0 up && exec \"$0\" \"$@\"";
    let ip = args
        .iter()
        .position(|a| *a == "--ip")
        .map_or("10.9.9.1/24", |i| args[i + 1]);
    let rest: Vec<&str> = args
        .iter()
        .enumerate()
        .filter(|(i, a)| **a != "--ip" && (*i == 0 || args[i - 1] != "--ip"))
        .map(|(_, a)| *a)
        .collect();
    let out = Command::new("unshare")
        .args([
            "--net",
            "sh",
            "-c",
            script,
            env!("CARGO_BIN_EXE_calico-node"),
        ])
        .args(["--node", "n1", "--ip", ip])
        .args(rest)
        .envs(env.iter().copied())
        .env("CALICO_DATASTORE_PATH", &db)
        .output()
        .unwrap();
    assert!(
        !db.exists(),
        "nothing written before the parameters are valid"
    );
    std::fs::remove_dir_all(&dir).unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_parameters_are_refused_with_their_name() {
    if !is_root() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI must run as root"
        );
        eprintln!(
            "SKIPPED bad_parameters_are_refused_with_their_name: needs root for unshare --net"
        );
        return;
    }
    let (code, err) = node(&[("CALICO_VXLAN_PORT", "70000")], &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("environment variable CALICO_VXLAN_PORT: calico_vxlan_port = \"70000\"")
            && err.contains("65535"),
        "{err}"
    );
    let (code, err) = node(&[("CALICO_NETWORK_CIDR", "10.9.0.0/16")], &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("overlaps this host's network 10.9.9.0/24"),
        "{err}"
    );
    let (code, err) = node(&[("CALICO_NETWORK_CIDR", "44.128.1.0/24")], &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("calico_network_cidr") && err.contains("44.128.0.0/20"),
        "{err}"
    );
    let file = std::env::temp_dir().join(format!("calico-node-params-{}.yaml", std::process::id()));
    std::fs::write(&file, "calico_vxlan_mtu: 9000\n").unwrap();
    let (code, err) = node(&[], &["--params", &file.to_string_lossy()]);
    std::fs::remove_file(&file).unwrap();
    assert_eq!(code, 1);
    assert!(
        err.contains("calico_vxlan_mtu") && err.contains(&*file.to_string_lossy()),
        "{err}"
    );
    let (code, err) = node(&[("FELIX_FAILSAFEINBOUNDHOSTPORTS", "tcp:22,sctp:9")], &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("FELIX_FAILSAFEINBOUNDHOSTPORTS") && err.contains("\"sctp:9\""),
        "{err}"
    );
    let (code, err) = node(&[], &["--ip", "192.0.2.99/24"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("no interface of this host has 192.0.2.99"),
        "{err}"
    );
}

#[test]
fn logs_are_one_line_per_event_as_text_or_json_at_the_level_asked() {
    if !is_root() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "this test needs root (network namespaces)"
        );
        println!("SKIP logs_are_one_line_per_event: not root");
        return;
    }
    // Text: time, level, component, cause.
    let (code, err) = node(&[("CALICO_VXLAN_PORT", "70000")], &[]);
    assert_eq!(code, 1);
    let line = err
        .lines()
        .find(|l| l.contains("calico_vxlan_port"))
        .unwrap();
    assert!(
        line.contains("ERROR") && line.contains("calico-node:"),
        "{line}"
    );
    // JSON lines, as FELIX_LOGSEVERITYSCREEN and CALICO_LOG_FORMAT set them.
    let (code, err) = node(
        &[
            ("CALICO_VXLAN_PORT", "70000"),
            ("CALICO_LOG_FORMAT", "json"),
            ("FELIX_LOGSEVERITYSCREEN", "Warning"),
        ],
        &[],
    );
    assert_eq!(code, 1);
    let event: serde_json::Value = serde_json::from_str(
        err.lines()
            .find(|l| l.contains("calico_vxlan_port"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(event["level"], "ERROR");
    assert_eq!(event["target"], "calico-node");
    assert!(
        event["message"].as_str().unwrap().contains("65535"),
        "{event}"
    );
    // A level that is not Calico's is refused, naming it.
    let (code, err) = node(&[], &["-l", "loud"]);
    assert_eq!(code, 1);
    assert!(err.contains("log level \"loud\""), "{err}");
}
