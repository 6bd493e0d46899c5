//! A scratch cluster for the binary tests: an embedded datastore file in a
//! temporary directory, and the calicoctl / dcos-calico binaries run on it.

#![allow(
    dead_code,
    reason = "each test binary uses a different subset of the helpers"
)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// One scratch cluster: a datastore file in a temporary directory. Test
/// files add their own helpers in `impl Cluster` blocks.
pub struct Cluster {
    pub dir: tempfile::TempDir,
}

/// What one run of a binary gave.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts success.
    pub fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "expected success; stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Asserts failure with a reason on stderr.
    pub fn fails(self) -> Self {
        assert_ne!(self.code, 0, "expected failure; stdout:\n{}", self.stdout);
        assert!(!self.stderr.trim().is_empty(), "a failure must say why");
        self
    }
}

impl Cluster {
    /// A cluster whose store file exists and is empty, as calico-node leaves it at start.
    pub fn new() -> Self {
        let cluster = Self::without_store();
        calico_datastore::sqlite::SqliteDatastore::open(&cluster.db()).unwrap();
        cluster
    }

    /// A cluster where nothing has created the store file yet.
    pub fn without_store() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Write `text` to `name` in the cluster's directory; its path.
    pub fn file(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }

    pub fn db(&self) -> PathBuf {
        self.dir.path().join("calico.db")
    }

    /// `bin args...` on this cluster's store, whatever the caller's environment says.
    pub fn command(&self, bin: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .env("CALICO_DATASTORE_PATH", self.db())
            .env_remove("DATASTORE_TYPE")
            .env_remove("CALICO_DATASTORE_TYPE")
            .env_remove("ETCD_ENDPOINTS");
        cmd
    }

    fn finish(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8(out.stdout).unwrap(),
            stderr: String::from_utf8(out.stderr).unwrap(),
        }
    }

    pub fn ctl(&self, args: &[&str]) -> Run {
        Self::finish(
            self.command(env!("CARGO_BIN_EXE_calicoctl"), args)
                .output()
                .unwrap(),
        )
    }

    pub fn dcos(&self, args: &[&str]) -> Run {
        Self::finish(
            self.command(env!("CARGO_BIN_EXE_dcos-calico"), args)
                .output()
                .unwrap(),
        )
    }

    pub fn ctl_stdin(&self, args: &[&str], input: &str) -> Run {
        let mut child = self
            .command(env!("CARGO_BIN_EXE_calicoctl"), args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        Self::finish(child.wait_with_output().unwrap())
    }
}

/// Every field the user wrote is in what the datastore returns (the store adds metadata and
/// defaults, and may replace server-owned metadata). As in upstream's Go types, a field set to
/// its zero value (`disabled: false`) reads back as absent.
pub fn assert_contains(written: &Value, read: &Value, path: &str) {
    match written {
        Value::Object(m) => {
            for (k, v) in m {
                if path == ".metadata"
                    && ["uid", "resourceVersion", "creationTimestamp"].contains(&k.as_str())
                {
                    continue;
                }
                let sub = format!("{path}.{k}");
                if read.get(k).is_none() && matches!(v, Value::Bool(false)) {
                    continue;
                }
                assert!(read.get(k).is_some(), "{sub} missing from {read}");
                assert_contains(v, &read[k], &sub);
            }
        }
        Value::Array(a) => {
            let r = read
                .as_array()
                .unwrap_or_else(|| panic!("{path} is not a list in {read}"));
            assert_eq!(a.len(), r.len(), "{path} length");
            for (i, (w, r)) in a.iter().zip(r).enumerate() {
                assert_contains(w, r, &format!("{path}[{i}]"));
            }
        }
        other => assert_eq!(other, read, "{path}"),
    }
}

impl Cluster {
    /// The names `calicoctl get <args> -o json` lists.
    pub fn list_names(&self, args: &[&str]) -> Vec<String> {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-o", "json"]);
        let list: Value = serde_json::from_str(&self.ctl(&all).ok().stdout).unwrap();
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap().to_owned())
            .collect()
    }
}
