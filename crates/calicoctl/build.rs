//! Records the git commit of the build for `calicoctl version` (`Git commit:`), as upstream
//! prints it; `unknown` when not built from a git checkout. Hand-written: one command, no
//! dependency needed.

use std::process::Command;

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let commit = Command::new("git")
        .args(["-C", &dir, "rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=CALICO_GIT_COMMIT={commit}");
    // A new commit changes HEAD (or the branch ref it points to).
    if let Ok(out) = Command::new("git")
        .args(["-C", &dir, "rev-parse", "--git-dir"])
        .output()
        && let Ok(git_dir) = String::from_utf8(out.stdout)
    {
        let git_dir = std::path::Path::new(&dir).join(git_dir.trim());
        println!("cargo:rerun-if-changed={}", git_dir.join("HEAD").display());
        println!(
            "cargo:rerun-if-changed={}",
            git_dir.join("refs/heads").display()
        );
    }
}
