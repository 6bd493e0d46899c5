//! The seed's demo: three apps on three hosts, both frontends reach
//! bookstore-server, then the seed's policy lets only the bookstore one
//! through.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::{App, AppContainer, DNS_SUFFIX, Lab};

/// One request of the matrix and what it gave.
#[derive(Debug, Clone)]
pub struct Probe {
    /// The client app.
    pub from: String,
    /// Whether it got the server's task id back.
    pub outcome: Result<String, String>,
}

fn read_app(path: &Path) -> anyhow::Result<App> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing Marathon app {}", path.display()))
}

const CLIENTS: [&str; 2] = ["bookstore-frontend", "fruitstore-frontend"];
const SERVER: &str = "bookstore-server";
/// The apps `--docker` runs through Docker.
const DOCKER_APPS: [&str; 2] = ["bookstore-server", "fruitstore-frontend"];

fn probe_all(lab: &Lab, server_id: &str) -> Vec<Probe> {
    let url = format!("http://{SERVER}.{DNS_SUFFIX}:80/id");
    CLIENTS
        .iter()
        .map(|c| Probe {
            from: (*c).to_owned(),
            outcome: lab.fetch(c, &url).and_then(|body| {
                if body == server_id {
                    Ok(body)
                } else {
                    Err(format!("unexpected answer {body:?}"))
                }
            }),
        })
        .collect()
}

fn cell(p: &Probe) -> String {
    match &p.outcome {
        Ok(_) => "ALLOW (200, server's id)".to_owned(),
        Err(e) => format!("DENY ({e})"),
    }
}

/// Runs the demo on a lab that is up with 3 hosts; returns whether every
/// expectation held. `seed` holds `apps/*.json` and `policy-bookstore.yaml`. With
/// `docker` (a lab up with Docker), bookstore-server and fruitstore-frontend run as
/// Docker containers: the same matrix must hold across both containerizers.
pub fn run(lab: &Lab, seed: &Path, docker: bool) -> anyhow::Result<bool> {
    let read = |name: &str| -> anyhow::Result<App> {
        let mut app = read_app(&seed.join(format!("apps/{name}.json")))?;
        if docker && DOCKER_APPS.contains(&name) {
            app.container = Some(AppContainer {
                kind: "DOCKER".into(),
            });
        }
        Ok(app)
    };
    let server_task = lab.add_app(&read(SERVER)?, Some("h1"))?.remove(0);
    let mut client_tasks = Vec::new();
    for (c, host) in CLIENTS.iter().zip(["h2", "h3"]) {
        client_tasks.push(lab.add_app(&read(c)?, Some(host))?.remove(0));
    }
    println!();
    println!(
        "{:<32} {:<6} {:<8} {:<16} labels",
        "TASK", "HOST", "RUNTIME", "IP"
    );
    for t in std::iter::once(&server_task).chain(&client_tasks) {
        let labels: Vec<String> = t.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!(
            "{:<32} {:<6} {:<8} {:<16} {}",
            t.id,
            t.host,
            if t.docker { "Docker" } else { "Mesos" },
            t.ip,
            labels.join(",")
        );
    }
    println!();
    let bgp_held = if lab.state()?.bgp {
        show_bgp(lab, &server_task.ip)?
    } else {
        true
    };

    lab.say("requests before the policy");
    let before = probe_all(lab, &server_task.id);

    let policy = seed.join("policy-bookstore.yaml");
    lab.say(format!("calicoctl apply -f {}", policy.display()));
    let out = lab.calicoctl(&["apply", "-f", &policy.to_string_lossy()])?;
    print!("{out}");
    // Enforcement is asynchronous (felix sees the change through its
    // watch): wait until the fruitstore request is refused, bounded.
    let applied = Instant::now();
    let fruit = &client_tasks[1];
    let mut enforced_after = None;
    while applied.elapsed() < Duration::from_secs(15) {
        let quick = lab.exec(
            &fruit.id,
            &[
                "timeout".into(),
                "1".into(),
                "busybox".into(),
                "wget".into(),
                "-q".into(),
                "-O".into(),
                "/dev/null".into(),
                format!("http://{}:80/id", server_task.ip),
            ],
        )?;
        if !quick.status.success() {
            enforced_after = Some(applied.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    lab.say(match enforced_after {
        Some(t) => format!(
            "policy enforced {:.0?} after apply (seen by a request with a 1 s timeout)",
            t
        ),
        None => "policy NOT enforced within 15 s".to_owned(),
    });
    lab.say("requests after the policy");
    let after = probe_all(lab, &server_task.id);

    println!();
    println!(
        "{:<46} {:<34} after policy",
        "request (TCP 80)", "before policy"
    );
    for (b, a) in before.iter().zip(&after) {
        println!(
            "{:<46} {:<34} {}",
            format!("{} -> {SERVER}:80/id", b.from),
            cell(b),
            cell(a)
        );
    }
    println!();
    let trace = lab.calicoctl(&[
        "policy",
        "trace",
        "--src",
        &fruit.ip,
        "--dst",
        &server_task.ip,
        "--protocol",
        "TCP",
        "--port",
        "80",
    ])?;
    println!(
        "$ calicoctl policy trace --src {} --dst {} --protocol TCP --port 80",
        fruit.ip, server_task.ip
    );
    print!("{trace}");
    println!();
    show_denied_flows(lab, &fruit.ip);

    let held = before.iter().all(|p| p.outcome.is_ok())
        && after[0].outcome.is_ok()
        && after[1].outcome.is_err()
        && bgp_held;
    println!(
        "demo: {}",
        if held {
            "PASS: both frontends reached bookstore-server before the policy; after it, bookstore-frontend still does and fruitstore-frontend is dropped"
        } else {
            "FAIL: the matrix above differs from the expected allow/allow, allow/deny (or, in BGP mode, a route to the server's block did not come from BIRD)"
        }
    );
    Ok(held)
}

/// What the flow logs recorded of the denied requests (every host's, with the rule the
/// kernel applied): shown, not judged (the lab tests check it).
fn show_denied_flows(lab: &Lab, client_ip: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match lab.calicoctl(&["flows", "--denied", "--since", "5m"]) {
            Ok(table) if table.contains(client_ip) || table.contains("fruitstore-frontend") => {
                println!("$ calicoctl flows --denied --since 5m");
                print!("{table}");
                println!();
                return;
            }
            Ok(_) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(500));
            }
            Ok(table) => {
                lab.say(format!(
                    "flow logs: no denied flow from {client_ip} recorded yet:\n{table}"
                ));
                return;
            }
            Err(e) => {
                lab.say(format!("flow logs: {e:#}"));
                return;
            }
        }
    }
}

/// BGP mode: the other hosts reach the server's block by BIRD's routes, and
/// h1's BGP sessions are up. Returns whether both hold.
fn show_bgp(lab: &Lab, server_ip: &str) -> anyhow::Result<bool> {
    lab.say("BGP: the other hosts' routes to bookstore-server's block come from BIRD");
    let mut held = true;
    for host in ["h2", "h3"] {
        let ns = lab.host_netns(host)?;
        let routes = super::ip(&["-n", &ns, "route", "show", "match", server_ip])?;
        for line in routes.lines().filter(|l| !l.starts_with("default")) {
            println!("{host}: {line}");
        }
        held &= routes.lines().any(|l| l.contains("proto bird"));
    }
    let ns = lab.host_netns("h1")?;
    let status = std::process::Command::new("ip")
        .args(["netns", "exec", &ns])
        .arg(lab.binary("calicoctl")?)
        .args(["node", "status", "--bird-dir"])
        .arg(lab.bird_dir("h1"))
        .output()?;
    println!("$ calicoctl node status   (on h1)");
    print!("{}", String::from_utf8_lossy(&status.stdout));
    held &= String::from_utf8_lossy(&status.stdout)
        .matches("Established")
        .count()
        == 2;
    println!();
    Ok(held)
}
