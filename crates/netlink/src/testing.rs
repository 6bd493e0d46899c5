//! Helpers for tests that need a kernel network namespace of their own.

/// Moves the calling thread into a new network namespace. Without the
/// privilege to, says why and returns false (the test then skips visibly);
/// under `CI=true` it panics instead, since CI runs as root.
pub fn enter_fresh_netns(test: &str) -> bool {
    match nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET) {
        Ok(()) => true,
        Err(e) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{test}: cannot create a network namespace ({e}); CI must run as root"
            );
            eprintln!("SKIPPED {test}: cannot create a network namespace ({e}); run as root");
            false
        }
    }
}
