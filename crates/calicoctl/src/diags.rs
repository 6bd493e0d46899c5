//! Diagnostics bundles: `calicoctl node diags` (this host: kernel state, BIRD, logs,
//! configuration) and `calicoctl cluster diags` (every resource and the IPAM state from the
//! datastore), each a `.tar.gz`. Everything goes through [`redact`] on the way in: etcd keys and
//! certificates, BGP passwords and tokens never reach a bundle.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use calico_api::Kind;
use calico_datastore::Datastore;
use regex::Regex;

/// Files of a bundle, in the order added.
#[derive(Debug, Default)]
pub struct Bundle {
    /// Top directory inside the archive.
    root: String,
    /// (path under the root, content).
    files: Vec<(String, Vec<u8>)>,
}

static PEM: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?s)-----BEGIN [A-Z0-9 ]+-----.*?-----END [A-Z0-9 ]+-----").expect("valid regex")
});
static ASSIGNED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?i)\b([a-z0-9_.-]*?(?:password|passwd|secret|token|etcd_?key|etcd_?cert|etcd_?ca_?cert|private_?key))(["']?[ \t]*[:=][ \t]*["']?)([^"'\s,}\]]+)"#,
    )
    .expect("valid regex")
});
static BIRD_PASSWORD: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"(?i)(\bpassword\s+)"[^"]*""#).expect("valid regex"));

/// Text with secrets replaced: PEM blocks, values assigned to password, secret, token and etcd
/// key or certificate settings (`KEY=value`, `key: value`, `"key": "value"`), and BIRD's
/// `password "..."`.
pub fn redact(text: &str) -> String {
    let text = PEM.replace_all(text, "[REDACTED PEM BLOCK]");
    let text = BIRD_PASSWORD.replace_all(&text, "${1}\"[REDACTED]\"");
    ASSIGNED
        .replace_all(&text, |c: &regex::Captures<'_>| {
            // A YAML block scalar (`etcdKey: |`) is redacted by the PEM rule.
            if &c[3] == "|" || &c[3] == ">" {
                c[0].to_owned()
            } else {
                format!("{}{}[REDACTED]", &c[1], &c[2])
            }
        })
        .into_owned()
}

impl Bundle {
    /// An empty bundle whose files sit under `root/` in the archive.
    pub fn new(root: impl Into<String>) -> Self {
        Self {
            root: root.into(),
            files: Vec::new(),
        }
    }

    /// Add text, redacted.
    pub fn text(&mut self, path: impl Into<String>, text: &str) {
        self.files.push((path.into(), redact(text).into_bytes()));
    }

    /// The paths added so far.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.files.iter().map(|(p, _)| p.as_str())
    }

    /// Add a command's output (stdout, stderr and exit status), or why it could not run.
    pub fn command(&mut self, path: &str, argv: &[&str]) {
        let Some((cmd, args)) = argv.split_first() else {
            return;
        };
        let text = match std::process::Command::new(cmd).args(args).output() {
            Ok(out) => format!(
                "$ {}\n{}{}{}",
                argv.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                if out.status.success() {
                    String::new()
                } else {
                    format!("({})\n", out.status)
                }
            ),
            Err(e) => format!("$ {}\nnot run: {e}\n", argv.join(" ")),
        };
        self.text(path, &text);
    }

    /// Add a file of the host, or a note saying why it is missing.
    pub fn file(&mut self, path: &str, source: &Path) {
        match std::fs::read(source) {
            Ok(bytes) => self.text(path, &String::from_utf8_lossy(&bytes)),
            Err(e) => self.text(path, &format!("{}: {e}\n", source.display())),
        }
    }

    /// Write the bundle as a gzipped tar to `out`.
    pub fn write_tar_gz(&self, out: impl Write) -> std::io::Result<()> {
        let gz = flate2::write::GzEncoder::new(out, flate2::Compression::default());
        let mut tar = tar::Builder::new(gz);
        let mtime = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        for (path, bytes) in &self.files {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(mtime);
            header.set_cksum();
            tar.append_data(
                &mut header,
                format!("{}/{path}", self.root),
                bytes.as_slice(),
            )?;
        }
        tar.into_inner()?.finish()?.flush()
    }
}

/// Where `node diags` looks on this host.
#[derive(Debug, Clone)]
pub struct NodePaths {
    /// calico-rs configuration (`/etc/calico`).
    pub config_dir: PathBuf,
    /// Component log files (`/var/log/calico`), besides the journal.
    pub log_dir: PathBuf,
    /// BIRD's control sockets (`/var/run/calico`).
    pub bird_dir: PathBuf,
    /// The CNI network configurations (`/opt/mesosphere/etc/dcos/network/cni`).
    pub cni_dir: PathBuf,
}

impl Default for NodePaths {
    fn default() -> Self {
        Self {
            config_dir: "/etc/calico".into(),
            log_dir: "/var/log/calico".into(),
            bird_dir: "/var/run/calico".into(),
            cni_dir: "/opt/mesosphere/etc/dcos/network/cni".into(),
        }
    }
}

/// The units whose journals go into a node bundle.
const UNITS: [&str; 4] = [
    "dcos-calico-felix",
    "dcos-calico-confd",
    "dcos-calico-bird",
    "dcos-calico-libnetwork-plugin",
];

/// Files (recursively) under `dir`, sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.is_file() {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// This host's diagnostics.
pub fn node(paths: &NodePaths, version: &str) -> Bundle {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "host".into());
    let mut b = Bundle::new(format!("calico-node-diags-{host}"));
    b.text(
        "version.txt",
        &format!(
            "calicoctl {version}\nkernel {}\n",
            std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default()
        ),
    );
    for (name, argv) in [
        (
            "nft-table.txt",
            &["nft", "list", "table", "inet", "calico"][..],
        ),
        ("nft-version.txt", &["nft", "--version"]),
        ("links.txt", &["ip", "-d", "link", "show"]),
        ("addresses.txt", &["ip", "addr", "show"]),
        (
            "routes-v4.txt",
            &["ip", "-4", "route", "show", "table", "all"],
        ),
        (
            "routes-v6.txt",
            &["ip", "-6", "route", "show", "table", "all"],
        ),
        ("rules.txt", &["ip", "rule", "show"]),
        ("neighbours.txt", &["ip", "neigh", "show"]),
        ("fdb.txt", &["bridge", "fdb", "show"]),
        ("conntrack-count.txt", &["conntrack", "-C"]),
        ("bird-version.txt", &["bird", "--version"]),
    ] {
        b.command(&format!("commands/{name}"), argv);
    }
    for unit in UNITS {
        b.command(
            &format!("logs/{unit}.journal.txt"),
            &[
                "journalctl",
                "-u",
                &format!("{unit}.service"),
                "--no-pager",
                "-n",
                "5000",
            ],
        );
    }
    for file in files_under(&paths.log_dir) {
        let rel = file.strip_prefix(&paths.log_dir).unwrap_or(&file);
        b.file(&format!("logs/files/{}", rel.display()), &file);
    }
    for (sock, name) in [("bird.ctl", "bird"), ("bird6.ctl", "bird6")] {
        let socket = paths.bird_dir.join(sock);
        let text = match calico_confd::bird::request(&socket, "show protocols all") {
            Ok(lines) => lines
                .iter()
                .map(|l| format!("{} {}\n", l.code, l.text))
                .collect(),
            Err(e) => format!("{e}\n"),
        };
        b.text(format!("bird/{name}-protocols.txt"), &text);
    }
    // Workload interfaces' sysctls (what felix sets for each).
    let mut sysctls = String::new();
    let mut ifaces: Vec<PathBuf> = std::fs::read_dir("/proc/sys/net/ipv4/conf")
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    ifaces.sort();
    for dir in ifaces {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !(name.starts_with("cali") || name == "all" || name.starts_with("vxlan")) {
            continue;
        }
        for key in ["forwarding", "rp_filter", "proxy_arp", "route_localnet"] {
            let v = std::fs::read_to_string(dir.join(key)).unwrap_or_default();
            sysctls.push_str(&format!("net.ipv4.conf.{name}.{key} = {}\n", v.trim()));
        }
    }
    b.text("sysctls.txt", &sysctls);
    for file in files_under(&paths.config_dir) {
        let rel = file.strip_prefix(&paths.config_dir).unwrap_or(&file);
        b.file(&format!("config/{}", rel.display()), &file);
    }
    for file in files_under(&paths.cni_dir) {
        let rel = file.strip_prefix(&paths.cni_dir).unwrap_or(&file);
        b.file(&format!("cni/{}", rel.display()), &file);
    }
    b
}

/// The datastore's diagnostics: every resource and IPAM's state, and an IPAM check.
pub fn cluster(ds: &dyn Datastore, datastore: &str, version: &str) -> Bundle {
    let mut b = Bundle::new("calico-cluster-diags");
    b.text(
        "version.txt",
        &format!("calicoctl {version}\ndatastore: {datastore}\n"),
    );
    let kinds = calico_api::kind::ALL_KINDS
        .into_iter()
        .map(|k| ("resources", k))
        .chain(
            [Kind::IpamBlock, Kind::BlockAffinity, Kind::IpamHandle]
                .into_iter()
                .map(|k| ("ipam", k)),
        );
    for (dir, kind) in kinds {
        let text = match ds.list(kind, None) {
            Ok(list) => {
                let mut text = String::new();
                for kv in list.items {
                    let doc = serde_saphyr::to_string(&crate::output::sorted_keys(&kv.value))
                        .unwrap_or_else(|e| format!("# {}: {e}\n", kv.key));
                    text.push_str("---\n");
                    text.push_str(&doc);
                }
                for bad in list.unreadable {
                    text.push_str(&format!("# unreadable {}: {}\n", bad.key, bad.reason));
                }
                text
            }
            Err(e) => format!("# listing {kind}: {e}\n"),
        };
        b.text(format!("{dir}/{}.yaml", kind.as_str()), &text);
    }
    let check = match calico_ipam::check::check(ds) {
        Ok(report) => serde_json::to_string_pretty(&report).unwrap_or_default(),
        Err(e) => format!("ipam check: {e}"),
    };
    b.text("ipam/check.json", &check);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_and_the_rest_kept() {
        let text = "spec:\n  etcdEndpoints: https://10.0.0.1:2379\n  etcdKeyFile: /etc/calico/key.pem\n  etcdKey: |\n    -----BEGIN PRIVATE KEY-----\n    MIIEv\n    -----END PRIVATE KEY-----\nETCD_KEY=inline-key\nDCOS_ACS_TOKEN=eyJhbGci\n\"password\": \"hunter2\"\n  password \"bgp-secret\";\ntoken: abc123\n";
        let out = redact(text);
        for secret in [
            "MIIEv",
            "inline-key",
            "eyJhbGci",
            "hunter2",
            "bgp-secret",
            "abc123",
        ] {
            assert!(!out.contains(secret), "{secret} survived:\n{out}");
        }
        for kept in ["https://10.0.0.1:2379", "etcdKeyFile: /etc/calico/key.pem"] {
            assert!(out.contains(kept), "{kept} lost:\n{out}");
        }
    }
}
