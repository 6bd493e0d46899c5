//! `docs/operator-guide.md`: every `$` command, in order, against a one-host lab, with the
//! guide's `# file:` blocks written first. A command expecting another exit status says so
//! (`# exit 1`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::lab;

/// Directory of the workspace's binaries (this test runs from target/<profile>/deps).
fn bin_dir() -> PathBuf {
    std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .to_owned()
}

#[test]
fn every_command_of_the_operator_guide_runs() {
    let Some(lab) = lab("guide", 1) else { return };
    let guide = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/operator-guide.md"),
    )
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut in_block = false;
    let mut block: Vec<&str> = Vec::new();
    let mut ran = 0;
    for line in guide.lines() {
        if line.starts_with("```") {
            if in_block {
                if let Some(name) = block.first().and_then(|l| l.strip_prefix("# file: ")) {
                    std::fs::write(work.path().join(name.trim()), block[1..].join("\n") + "\n")
                        .unwrap();
                }
                block.clear();
            }
            in_block = !in_block;
            continue;
        }
        if !in_block {
            continue;
        }
        block.push(line);
        let Some(command) = line.strip_prefix("$ ") else {
            continue;
        };
        let (command, want) = match command.split_once("# exit ") {
            Some((c, code)) => (c.trim(), code.trim().parse::<i32>().unwrap()),
            None => (command.trim(), 0),
        };
        let out = Command::new("sh")
            .args(["-c", command])
            .current_dir(work.path())
            .env("PATH", &path)
            .env("DATASTORE_TYPE", "embedded")
            .env("CALICO_DATASTORE_PATH", lab.datastore())
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(want),
            "{command}\nstdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        ran += 1;
    }
    assert!(ran >= 15, "the guide's commands were found ({ran})");
    // What the commands did is there.
    assert!(work.path().join("old-app.json.bak").exists());
    assert!(work.path().join("node-diags.tar.gz").exists());
    assert!(
        std::fs::read_to_string(work.path().join("all.yaml"))
            .unwrap()
            .contains("net2-profile")
    );
}
