//! Docker containers on the lab (each host its own dockerd and Calico Docker plugin): the
//! seed's demo with Docker and Mesos containers mixed, the seed's `calico-docker` app
//! verbatim, a second Calico network with its own pool and profile, restarts of the plugin
//! and of dockerd under running containers, and `docker rm -f` leaving nothing behind.
//! Needs root and Debian's docker.io; skips visibly without root, fails under `CI=true`.

use std::path::PathBuf;
use std::time::Duration;

use calico_lab::App;

mod common;
use common::*;

fn seed() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/seed")
}

#[test]
fn demo_with_docker_and_mesos_containers() {
    let Some(lab) = lab_with("dkdemo", 3, false, true) else {
        return;
    };
    assert!(
        calico_lab::demo::run(&lab, &seed(), true).unwrap(),
        "demo matrix with bookstore-server and fruitstore-frontend in Docker"
    );
    let state = lab.state().unwrap();
    let docker: Vec<&str> = state
        .tasks
        .iter()
        .filter(|t| t.docker)
        .map(|t| t.app.as_str())
        .collect();
    assert_eq!(docker, ["bookstore-server", "fruitstore-frontend"]);
}

fn endpoints(lab: &calico_lab::Lab) -> Vec<serde_json::Value> {
    let out = lab
        .calicoctl(&["get", "workloadendpoints", "-o", "json"])
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["items"].as_array().cloned().unwrap_or_default()
}

#[test]
fn docker_app_lifecycle_second_network_and_restarts() {
    let Some(lab) = lab_with("dklife", 2, false, true) else {
        return;
    };
    // The seed's app, verbatim (its image stands for the lab's busybox).
    let text = std::fs::read_to_string(seed().join("apps/calico-docker.json")).unwrap();
    let docker_app: App = serde_json::from_str(&text).unwrap();
    assert!(docker_app.is_docker());
    let d = lab.add_app(&docker_app, Some("h1")).unwrap().remove(0);
    let m = lab
        .add_app(&app("mesos", 1, &[("app", "m")]), Some("h2"))
        .unwrap()
        .remove(0);
    assert!(reaches(&lab, &m, &d), "Mesos on h2 -> Docker on h1");
    assert!(reaches(&lab, &d, &m), "Docker on h1 -> Mesos on h2");
    let wep = endpoints(&lab)
        .into_iter()
        .find(|e| e["spec"]["orchestrator"] == "libnetwork")
        .expect("the Docker container's endpoint");
    assert_eq!(wep["spec"]["profiles"], serde_json::json!(["calico"]));

    // A second network with its own pool and profile (the seed's "adding network
    // profiles"), connected to the running container.
    lab.apply_yaml(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: net2\nspec:\n  cidr: 10.1.0.0/16\n  natOutgoing: true\n---\napiVersion: projectcalico.org/v3\nkind: Profile\nmetadata:\n  name: prof2\nspec:\n  ingress:\n  - action: Allow\n  egress:\n  - action: Allow\n  labelsToApply:\n    calico: \"\"\n",
    )
    .unwrap();
    lab.docker(
        "h1",
        &[
            "network",
            "create",
            "--opt",
            "org.projectcalico.profile=prof2",
            "--driver",
            "calico",
            "--ipam-driver",
            "calico-ipam",
            "--subnet=10.1.0.0/16",
            "net2",
        ],
    )
    .unwrap();
    lab.docker("h1", &["network", "connect", "net2", &d.id])
        .unwrap();
    let addrs = lab
        .exec(&d.id, &["ip".into(), "-o".into(), "addr".into()])
        .unwrap();
    assert!(
        String::from_utf8_lossy(&addrs.stdout).contains("10.1."),
        "{addrs:?}"
    );
    assert!(
        endpoints(&lab)
            .iter()
            .any(|e| e["spec"]["profiles"] == serde_json::json!(["prof2"])),
        "the second network's endpoint carries its profile"
    );
    lab.docker("h1", &["network", "disconnect", "net2", &d.id])
        .unwrap();

    // A dual-stack network: two containers reach each other over IPv6 through the host.
    lab.apply_yaml(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: net6\nspec:\n  cidr: fd00:6::/64\n  blockSize: 122\n---\napiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: net6-v4\nspec:\n  cidr: 10.6.0.0/16\n",
    )
    .unwrap();
    lab.docker(
        "h1",
        &[
            "network",
            "create",
            "--ipv6",
            "--driver",
            "calico",
            "--ipam-driver",
            "calico-ipam",
            "--subnet=10.6.0.0/16",
            "--subnet=fd00:6::/64",
            "-o",
            "org.projectcalico.profile=calico",
            "dual",
        ],
    )
    .unwrap();
    for name in ["six-a", "six-b"] {
        lab.docker(
            "h1",
            &[
                "run",
                "-d",
                "--name",
                name,
                "--network",
                "dual",
                calico_lab::docker::IMAGE,
                "sleep",
                "600",
            ],
        )
        .unwrap();
    }
    let v6 = lab
        .docker(
            "h1",
            &[
                "inspect",
                "-f",
                "{{.NetworkSettings.Networks.dual.GlobalIPv6Address}}",
                "six-b",
            ],
        )
        .unwrap();
    let v6 = v6.trim().to_owned();
    assert!(v6.starts_with("fd00:6:"), "{v6:?}");
    assert!(
        eventually(Duration::from_secs(15), || lab
            .docker(
                "h1",
                &["exec", "six-a", "ping", "-6", "-c", "1", "-W", "1", &v6]
            )
            .is_ok()),
        "six-a reaches six-b at {v6} over IPv6"
    );
    lab.docker("h1", &["rm", "-f", "six-a", "six-b"]).unwrap();

    // The plugin restarts, then dockerd (live-restore): traffic keeps flowing and new
    // containers still work.
    lab.restart_docker_plugin("h1").unwrap();
    assert!(reaches(&lab, &m, &d), "after a plugin restart");
    lab.restart_dockerd("h1").unwrap();
    assert!(
        eventually(Duration::from_secs(10), || reaches(&lab, &m, &d)),
        "after a dockerd restart"
    );
    let later = lab.add_app(&docker_app, Some("h1")).unwrap().remove(0);
    assert!(
        reaches(&lab, &m, &later),
        "a container started after both restarts"
    );

    // docker rm -f: no endpoint, address or veth left.
    let veths: Vec<String> = endpoints(&lab)
        .iter()
        .filter(|e| e["spec"]["orchestrator"] == "libnetwork")
        .filter_map(|e| e["spec"]["interfaceName"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(veths.len(), 2);
    for t in [&d, &later] {
        lab.remove_task(&t.id).unwrap();
    }
    assert!(
        eventually(Duration::from_secs(10), || endpoints(&lab)
            .iter()
            .all(|e| e["spec"]["orchestrator"] != "libnetwork")),
        "endpoints left: {:#?}\nplugin log:\n{}",
        endpoints(&lab),
        std::fs::read_to_string(lab.dir.join("libnetwork-h1.log")).unwrap_or_default()
    );
    let h1 = lab.host_netns("h1").unwrap();
    let links = std::process::Command::new("ip")
        .args(["-n", &h1, "-o", "link"])
        .output()
        .unwrap();
    let links = String::from_utf8_lossy(&links.stdout).into_owned();
    for v in &veths {
        assert!(!links.contains(v.as_str()), "{v} left on h1");
    }
    let check = lab.calicoctl(&["ipam", "check"]).unwrap();
    assert!(
        check.contains("found 0 problems") && check.contains("Found 0 leaked"),
        "calicoctl ipam check after docker rm -f:\n{check}"
    );
}
