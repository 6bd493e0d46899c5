//! `calicoctl migrate-overlay` on realistic Marathon and dcos-commons files (under
//! `tests/overlay/`), and on the seed's own app definitions.

mod common;

use std::path::{Path, PathBuf};

use common::Cluster;

const GOOD: [&str; 7] = [
    "web-app.json",
    "legacy-app.json",
    "group.json",
    "apps.json",
    "svc.yml",
    "config.json",
    "marathon.json.mustache",
];

/// A scratch copy of the fixtures.
fn fixtures(c: &Cluster) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/overlay");
    let dir = c.dir.path().join("files");
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(&src).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    dir
}

/// The text of each of `names` in `dir`.
fn contents(dir: &Path, names: &[&str]) -> Vec<String> {
    names
        .iter()
        .map(|n| std::fs::read_to_string(dir.join(n)).unwrap())
        .collect()
}

fn paths(dir: &Path, names: &[&str]) -> Vec<String> {
    names
        .iter()
        .map(|n| dir.join(n).display().to_string())
        .collect()
}

fn migrate(c: &Cluster, extra: &[&str], files: &[String]) -> common::Run {
    let mut args = vec!["migrate-overlay"];
    args.extend_from_slice(extra);
    args.extend(files.iter().map(String::as_str));
    c.ctl(&args)
}

#[test]
fn a_dry_run_shows_the_diff_and_changes_nothing() {
    let c = Cluster::without_store();
    let dir = fixtures(&c);
    let before = contents(&dir, &GOOD);
    let run = migrate(&c, &[], &paths(&dir, &GOOD));
    assert_eq!(run.code, 1, "something would change: {}", run.stderr);
    let out = &run.stdout;
    for line in [
        "web-app.json: app /shop/web: networks[0].name dcos -> calico",
        "legacy-app.json: app /legacy/api: ipAddress.networkName dcos -> calico",
        "group.json: app /prod/backend/orders: networks[0].name dcos -> calico",
        "group.json: app /prod/backend/worker: networks[0].name dcos -> calico",
        "group.json: app /prod/db: on the host network; left as it is",
        "group.json: app /prod/cache: on the bridge network; left as it is",
        "apps.json: app /b: not on the overlay; left as it is",
        "svc.yml: pod hello: networks.dcos -> networks.calico",
        "svc.yml: pod world: on the host network; left as it is",
        "config.json: virtual_network_name: default dcos -> calico",
        "marathon.json.mustache: VIRTUAL_NETWORK_NAME dcos -> calico",
        "-      \"name\": \"dcos\",",
        "+      \"name\": \"calico\",",
        "Summary: 7 file(s) would change, 0 left untouched because of a problem",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    assert!(
        run.stderr.contains("run again with --write"),
        "{}",
        run.stderr
    );
    for (n, old) in GOOD.iter().zip(&before) {
        assert_eq!(&std::fs::read_to_string(dir.join(n)).unwrap(), old, "{n}");
    }
}

#[test]
fn write_changes_only_the_network_names_and_keeps_a_backup() {
    let c = Cluster::without_store();
    let dir = fixtures(&c);
    let before = contents(&dir, &GOOD);
    let run = migrate(&c, &["--write"], &paths(&dir, &GOOD));
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    for (n, old) in GOOD.iter().zip(&before) {
        let new = std::fs::read_to_string(dir.join(n)).unwrap();
        assert_eq!(
            &std::fs::read_to_string(dir.join(format!("{n}.bak"))).unwrap(),
            old,
            "{n}: the backup is the original"
        );
        // Byte for byte the same but for the network names: labels, other fields, spacing
        // and the `dcos` in unrelated values stay.
        assert_eq!(
            new.len(),
            old.len() + 2 * new.matches("calico").count() - 2 * old.matches("calico").count(),
            "{n}"
        );
        let restored = new
            .replace("\"calico\"", "\"dcos\"")
            .replace("calico:", "dcos:");
        let original_calico = old.replace("\"calico\"", "\"dcos\"");
        assert_eq!(restored, original_calico, "{n}: only network names changed");
    }
    let web = std::fs::read_to_string(dir.join("web-app.json")).unwrap();
    assert!(
        web.contains(r#""network": "dcos""#),
        "a label is not a network: {web}"
    );
    let legacy = std::fs::read_to_string(dir.join("legacy-app.json")).unwrap();
    assert!(legacy.contains(r#""UPSTREAM":"dcos""#), "{legacy}");
    // Migrated: a second run finds nothing to do.
    let run = migrate(&c, &[], &paths(&dir, &GOOD));
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("Summary: 0 file(s) would change"),
        "{}",
        run.stdout
    );
}

#[test]
fn unreadable_files_are_reported_and_left_untouched() {
    let c = Cluster::without_store();
    let dir = fixtures(&c);
    let broken = std::fs::read_to_string(dir.join("broken.json")).unwrap();
    std::fs::write(dir.join("notes.json"), "{\"what\": \"a shopping list\"}").unwrap();
    let files = paths(
        &dir,
        &["broken.json", "web-app.json", "notes.json", "missing.json"],
    );
    let run = migrate(&c, &["--write"], &files);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("broken.json: not valid JSON"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("notes.json: not a Marathon app"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("missing.json"), "{}", run.stderr);
    assert_eq!(
        std::fs::read_to_string(dir.join("broken.json")).unwrap(),
        broken
    );
    assert!(!dir.join("broken.json.bak").exists());
    // The good file among them was still migrated.
    assert!(
        std::fs::read_to_string(dir.join("web-app.json"))
            .unwrap()
            .contains(r#""name": "calico""#)
    );
}

#[test]
fn the_seeds_apps_are_already_on_calico() {
    let c = Cluster::without_store();
    let seed = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/seed/apps");
    let mut files: Vec<String> = std::fs::read_dir(&seed)
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .filter(|p| p.ends_with(".json"))
        .collect();
    files.sort();
    let run = migrate(&c, &[], &files);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("Summary: 0 file(s) would change"),
        "{}",
        run.stdout
    );
    // The same apps on the overlay migrate back to exactly the seed's files.
    let dir = c.dir.path().join("on-overlay");
    std::fs::create_dir_all(&dir).unwrap();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let name = Path::new(f).file_name().unwrap();
        std::fs::write(
            dir.join(name),
            text.replace("\"name\": \"calico\"", "\"name\": \"dcos\""),
        )
        .unwrap();
    }
    let overlay: Vec<String> = files
        .iter()
        .map(|f| {
            dir.join(Path::new(f).file_name().unwrap())
                .display()
                .to_string()
        })
        .collect();
    migrate(&c, &["--write"], &overlay).ok();
    for (f, o) in files.iter().zip(&overlay) {
        assert_eq!(
            std::fs::read_to_string(o).unwrap(),
            std::fs::read_to_string(f).unwrap()
        );
    }
}
