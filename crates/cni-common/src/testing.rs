//! For tests of the plugins: run a plugin binary as a runtime would (its
//! configuration on stdin) and check what it answered.

use std::io::Write as _;
use std::process::{Command, Stdio};

use serde_json::Value;

/// What a plugin run answered.
#[derive(Debug)]
pub struct PluginOutput {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output, trimmed.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs `cmd` (its environment already set) with `stdin` as its input.
///
/// # Panics
/// When the program cannot be started: a test's setup is broken.
pub fn run_plugin(cmd: &mut Command, stdin: &str) -> PluginOutput {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(stdin.as_bytes())
        .expect("writing the plugin's stdin");
    let out = child.wait_with_output().expect("waiting for the plugin");
    PluginOutput {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

impl PluginOutput {
    /// Standard output as JSON (panics, showing both streams, when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {:?} / {}",
                self.stdout, self.stderr
            )
        })
    }

    /// Asserts success.
    pub fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "stdout {} stderr {}",
            self.stdout, self.stderr
        );
        self
    }

    /// Asserts failure with a CNI error document; returns its code.
    pub fn err_code(&self) -> u64 {
        assert_ne!(self.code, 0, "expected failure, got {}", self.stdout);
        let v = self.json();
        assert!(v["msg"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
        v["code"]
            .as_u64()
            .expect("an error document has a numeric code")
    }

    /// The addresses of a result's `ips`.
    pub fn ips(&self) -> Vec<String> {
        self.json()["ips"]
            .as_array()
            .expect("a result has ips")
            .iter()
            .map(|i| {
                i["address"]
                    .as_str()
                    .expect("an ip has an address")
                    .to_owned()
            })
            .collect()
    }
}
