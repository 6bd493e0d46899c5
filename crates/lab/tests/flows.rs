//! Flow logs on the lab: the seed's demo's flows with the rule the kernel said decided
//! them, which `calicoctl policy trace` must agree with; the web view in headless
//! Chromium; and a flood of new flows that must stay bounded and counted.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{PACKETS, UdpSink, app, eventually, lab, lab_setup, url};
use serde_json::Value;

const CHECK_UI: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ui/check_ui.py");
const MOCK_SERVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ui/mock/mock_server.py");
/// Debian's python (selenium is a Debian package, not in another python's path).
const PYTHON: &str = "/usr/bin/python3";

/// `GET url` from `netns` (None: this namespace), with busybox's wget (its `-T` crashes
/// the Debian build: `timeout` bounds it instead).
fn http_get(netns: Option<&str>, url: &str) -> Result<String, String> {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "timeout", "10"]);
            c
        }
        None => {
            let mut c = Command::new("timeout");
            c.arg("10");
            c
        }
    };
    let out = cmd
        .args(["busybox", "wget", "-q", "-O", "-", url])
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "wget {url}: {} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Whether the browser check can run here; under CI it must.
fn browser_available(what: &str) -> bool {
    let missing: Vec<&str> = ["/usr/bin/chromium", "/usr/bin/chromedriver", PYTHON]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    let selenium = Command::new(PYTHON)
        .args(["-c", "import selenium"])
        .output()
        .is_ok_and(|o| o.status.success());
    if missing.is_empty() && selenium {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{what}: CI must have chromium, chromium-driver and python3-selenium (missing: {missing:?}, selenium: {selenium})"
    );
    println!(
        "SKIPPED {what}: needs Debian's chromium, chromium-driver and python3-selenium (missing: {missing:?}, selenium importable: {selenium})"
    );
    false
}

/// Where test artifacts (screenshots) are kept: `target/test-artifacts`.
fn artifacts() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs the Chromium check of the page at `url`, keeping its screenshot as `shot`;
/// returns what it printed (it must pass).
fn check_ui(url: &str, shot: &Path) -> String {
    let out = Command::new(PYTHON)
        .arg(CHECK_UI)
        .arg(url)
        .arg(shot)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        std::fs::metadata(shot).unwrap().len() > 10_000,
        "a real screenshot"
    );
    text
}

fn find<'a>(
    flows: &'a [Value],
    src: &str,
    dst: &str,
    reporter: &str,
    action: &str,
    kind: &str,
) -> Option<&'a Value> {
    flows.iter().find(|f| {
        f["source"]["ip"] == src
            && f["destination"]["ip"] == dst
            && f["reporter"] == reporter
            && f["action"] == action
            && f["decision"].get(kind).is_some()
    })
}

#[test]
fn the_demos_flows_name_the_deciding_rule_agree_with_trace_and_show_in_the_web_view() {
    let Some(lab) = lab("flows", 3) else { return };
    let seed = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/seed");
    assert!(calico_lab::demo::run(&lab, &seed, false).unwrap(), "demo");
    let server = lab.task("bookstore-server").unwrap();
    let fruit = lab.task("fruitstore-frontend").unwrap();
    let book = lab.task("bookstore-frontend").unwrap();
    // Traffic under the policy, so the window certainly holds it.
    assert!(lab.fetch(&fruit.id, &url(&server)).is_err());
    assert!(lab.fetch(&book.id, &url(&server)).is_ok());

    let mut view = Value::Null;
    let found = eventually(Duration::from_secs(20), || {
        let Ok(out) = lab.calicoctl(&["flows", "-o", "json", "--since", "5m"]) else {
            return false;
        };
        view = serde_json::from_str(&out).unwrap();
        let flows = view["flows"].as_array().unwrap();
        find(
            flows,
            &fruit.ip,
            &server.ip,
            "ingress",
            "deny",
            "policyRule",
        )
        .is_some()
            && find(
                flows,
                &book.ip,
                &server.ip,
                "ingress",
                "allow",
                "policyRule",
            )
            .is_some()
    });
    assert!(found, "the demo's flows: {view:#}");
    assert_eq!(view["errors"], serde_json::json!([]), "every host answers");
    let flows = view["flows"].as_array().unwrap();
    for (client, action, rule) in [(&fruit, "deny", 1), (&book, "allow", 0)] {
        let flow = find(
            flows,
            &client.ip,
            &server.ip,
            "ingress",
            action,
            "policyRule",
        )
        .unwrap();
        assert_eq!(flow["host"], server.host.as_str(), "{flow:#}");
        assert_eq!(
            flow["decidedBy"]["policy"], "default/allow-bookstore-cliient-to-server",
            "{flow:#}"
        );
        assert_eq!(flow["decidedBy"]["rule"], rule, "{flow:#}");
        assert_eq!(
            flow["source"]["app"],
            client.app.as_str(),
            "named as Marathon knows it"
        );
        assert_eq!(flow["source"]["task"], client.id.as_str());
        assert_eq!(flow["destination"]["app"], "bookstore-server");
        assert_eq!(
            flow["source"]["labels"]["biz_type"],
            client.labels["biz_type"].as_str()
        );
        assert_eq!(
            (flow["protocol"].as_str(), flow["port"].as_u64()),
            (Some("TCP"), Some(80))
        );
        assert!(flow["packets"].as_u64().unwrap() >= 1, "{flow:#}");
        // The same packet through `calicoctl policy trace`: the same rule, both ways.
        let trace: Value = serde_json::from_str(
            &lab.calicoctl(&[
                "policy",
                "trace",
                "--src",
                &client.ip,
                "--dst",
                &server.ip,
                "--protocol",
                "TCP",
                "--port",
                "80",
                "-o",
                "json",
            ])
            .unwrap(),
        )
        .unwrap();
        assert_eq!(
            trace["ingress"]["trace"]["decision"], flow["decision"],
            "the trace disagrees with the dataplane"
        );
        let egress = find(
            flows,
            &client.ip,
            &server.ip,
            "egress",
            "allow",
            "profileRule",
        )
        .unwrap_or_else(|| panic!("egress of {} at its host: {view:#}", client.app));
        assert_eq!(egress["host"], client.host.as_str());
        assert_eq!(trace["egress"]["trace"]["decision"], egress["decision"]);
        // Allowed connections count their packets both ways from conntrack.
        if action == "allow" {
            assert!(flow["packets"].as_u64().unwrap() > 2, "{flow:#}");
        }
    }
    let denied: Value =
        serde_json::from_str(&lab.calicoctl(&["flows", "--denied", "-o", "json"]).unwrap())
            .unwrap();
    assert!(
        denied["flows"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["action"] == "deny"),
        "{denied:#}"
    );
    let table = lab.calicoctl(&["flows", "--since", "5m"]).unwrap();
    assert!(
        table.lines().any(|l| l.contains("fruitstore-frontend")
            && l.contains("DENY")
            && l.contains("allow-bookstore-cliient-to-server rule 1")),
        "{table}"
    );

    // Prometheus counters per policy rule, with the action, on the server's host.
    let host_ip = |name: &str| -> String {
        let state = lab.state().unwrap();
        let h = state.hosts.iter().find(|h| h.name == name).unwrap();
        h.ip.split('/').next().unwrap().to_owned()
    };
    let metrics = http_get(
        Some(&lab.underlay()),
        &format!("http://{}:9091/metrics", host_ip(&server.host)),
    )
    .unwrap();
    let counter = |rule: &str, action: &str| -> f64 {
        metrics
            .lines()
            .find(|l| {
                l.starts_with("felix_policy_rule_packets_total{")
                    && l.contains("policy=\"default/allow-bookstore-cliient-to-server\"")
                    && l.contains(&format!("rule=\"{rule}\""))
                    && l.contains(&format!("action=\"{action}\""))
                    && l.contains("direction=\"ingress\"")
            })
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no counter for rule {rule} {action}:\n{metrics}"))
    };
    assert!(counter("1", "deny") >= 1.0);
    assert!(counter("0", "allow") >= 1.0);
    assert!(metrics.contains("felix_policy_rule_bytes_total{"));

    // The web view, from host h1's calico-node (which reads every host's flows).
    let at = lab.ui_proxy("h1", "127.0.0.1:0").unwrap();
    let deny_id = find(
        flows,
        &fruit.ip,
        &server.ip,
        "ingress",
        "deny",
        "policyRule",
    )
    .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let why: Value = serde_json::from_str(
        &http_get(
            None,
            &format!("http://{at}/api/why?id={}", percent_encode(&deny_id)),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(why["agrees"], true, "{why:#}");
    // Read-only: a POST is refused.
    let post = Command::new("timeout")
        .args(["10", "busybox", "wget", "-q", "-O", "-", "--post-data", "x"])
        .arg(format!("http://{at}/api/cluster"))
        .output()
        .unwrap();
    assert!(!post.status.success(), "a POST was answered");
    assert!(
        String::from_utf8_lossy(&post.stderr).contains("405"),
        "{}",
        String::from_utf8_lossy(&post.stderr)
    );
    assert!(
        why["trace"]
            .as_str()
            .unwrap()
            .contains("rule 1 (Deny): matched"),
        "{why:#}"
    );
    let cluster: Value =
        serde_json::from_str(&http_get(None, &format!("http://{at}/api/cluster")).unwrap())
            .unwrap();
    let policy = cluster["policies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "allow-bookstore-cliient-to-server")
        .unwrap();
    let selects = policy["selects"].as_array().unwrap();
    assert_eq!(selects.len(), 1, "{policy:#}");
    assert!(
        selects[0]
            .as_str()
            .unwrap()
            .starts_with(&format!("default/{}-mesos-", server.host)),
        "{policy:#}"
    );
    if browser_available("the web view in Chromium") {
        let shot = artifacts().join("flows-web-view.png");
        let text = check_ui(&format!("http://{at}/"), &shot);
        assert!(text.contains("ok: denied flow decided by"), "{text}");
        println!("{text}screenshot: {}", shot.display());
    }
}

/// The page shows hostile values as text, with the mock API (no lab needed).
#[test]
fn the_web_view_shows_hostile_values_as_text_in_chromium() {
    if !browser_available("the web view with the mock API") {
        return;
    }
    let mut server = Command::new(PYTHON)
        .args([MOCK_SERVER, "--port", "0"])
        .current_dir(Path::new(MOCK_SERVER).parent().unwrap())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    use std::io::BufRead as _;
    std::io::BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("mock server said {line:?}"))
        .to_owned();
    let shot = artifacts().join("web-view-mock.png");
    // The server goes when the check is done, passed or not.
    let checked = std::panic::catch_unwind(|| check_ui(&url, &shot));
    let _ = server.kill();
    let _ = server.wait();
    let text = checked.unwrap_or_else(|p| std::panic::resume_unwind(p));
    assert!(
        text.contains("ok: a label holding markup is shown as text"),
        "the mock has a hostile label: {text}"
    );
}

#[test]
fn a_flood_of_new_flows_is_bounded_counted_and_policy_still_holds() {
    // Small bounds, so a flood a test can make exceeds them.
    let Some(lab) = lab_setup(
        "flood",
        2,
        calico_lab::Setup {
            node_env: vec![
                ("FELIX_FLOWLOGSMAXRATE".into(), "500".into()),
                ("FELIX_FLOWLOGSMAXFLOWS".into(), "50".into()),
            ],
            ..calico_lab::Setup::default()
        },
    ) else {
        return;
    };
    let server = lab
        .add_app(&app("server", 1, &[("role", "server")]), Some("h1"))
        .unwrap()
        .remove(0);
    let client = lab
        .add_app(&app("client", 1, &[("role", "client")]), Some("h2"))
        .unwrap()
        .remove(0);
    // Control: before the policy, UDP reaches the server.
    let sink = UdpSink::start(&lab, &server, 1100);
    assert!(
        eventually(Duration::from_secs(10), || {
            let _ = lab.exec(
                &client.id,
                &[
                    "python3".into(),
                    PACKETS.into(),
                    "udp-send".into(),
                    client.ip.clone(),
                    server.ip.clone(),
                    "1100".into(),
                    "before".into(),
                ],
            );
            sink.got("before")
        }),
        "UDP reaches the server before the policy"
    );
    lab.apply_yaml(
        "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: server-tcp-only}\nspec:\n  selector: role == 'server'\n  types: [Ingress]\n  ingress:\n  - action: Allow\n    protocol: TCP\n  - action: Deny\n    protocol: UDP\n",
    )
    .unwrap();
    assert!(eventually(Duration::from_secs(10), || lab
        .fetch(&client.id, &url(&server))
        .is_ok()));
    let rss_before = node_rss_kib(&lab.host_netns("h1").unwrap());
    let out = lab
        .exec(
            &client.id,
            &[
                "python3".into(),
                PACKETS.into(),
                "udp-flood".into(),
                server.ip.clone(),
                "30000".into(),
            ],
        )
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!(sent > 20_000, "{sent}");
    // Policy still holds and the agent still answers: none of the flood arrived (one
    // datagram went to the sink's port), the allowed TCP still works.
    assert!(
        !sink.got("x"),
        "a denied datagram arrived: {}",
        sink.contents()
    );
    assert!(lab.fetch(&client.id, &url(&server)).is_ok());
    assert!(lab.is_ready("h1").unwrap());
    let h1 = "172.30.0.1";
    let mut got = Value::Null;
    let counted = eventually(Duration::from_secs(10), || {
        let Ok(text) = http_get(
            Some(&lab.underlay()),
            &format!("http://{h1}:9091/flows?since=300"),
        ) else {
            return false;
        };
        got = serde_json::from_str(&text).unwrap();
        let lost = &got["lost"];
        let recorded = got["flows"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["action"] == "Deny"));
        lost["rateLimited"].as_u64().unwrap_or(0) + lost["overruns"].as_u64().unwrap_or(0) > 0
            && lost["tableFull"].as_u64().unwrap_or(0) > 0
            && recorded
    });
    assert!(counted, "the flood's excess is counted: {}", got["lost"]);
    let records = got["flows"].as_array().unwrap();
    println!(
        "flood of {sent} datagrams: {} records kept, lost {}",
        records.len(),
        got["lost"]
    );
    // At most 50 flows per 1 s interval while the flood lasted (a few seconds).
    assert!(records.len() <= 50 * 30, "{} records", records.len());
    // The agent's memory stays where it was: the flood filled capped tables only.
    let rss_after = node_rss_kib(&lab.host_netns("h1").unwrap());
    println!("calico-node on h1: {rss_before} KiB before the flood, {rss_after} KiB after");
    assert!(
        rss_after < rss_before + 64 * 1024,
        "calico-node grew from {rss_before} to {rss_after} KiB"
    );
    let metrics = http_get(Some(&lab.underlay()), &format!("http://{h1}:9091/metrics")).unwrap();
    for series in [
        "felix_flow_log_table_full_total",
        "felix_flow_log_rate_limited_total",
    ] {
        assert!(metrics.contains(series), "{series}:\n{metrics}");
    }
}

/// Resident memory of the calico-node running in `netns`, in KiB.
fn node_rss_kib(netns: &str) -> u64 {
    let out = Command::new("ip")
        .args(["netns", "pids", netns])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .find(|pid| {
            std::fs::read_link(format!("/proc/{pid}/exe"))
                .is_ok_and(|exe| exe.file_name().is_some_and(|n| n == "calico-node"))
        })
        .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or_else(|| panic!("no calico-node in {netns}"))
}
