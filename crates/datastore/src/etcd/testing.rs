//! Throw-away etcd servers for tests and benchmarks: a single node or a 3-member cluster on
//! free loopback ports, each member with its own temporary data directory, killed and removed
//! on drop.
//!
//! The binary is `$CALICO_TEST_ETCD`, else `etcd` on `PATH`, else `/usr/bin/etcd` (Debian's
//! `etcd-server`). When it is missing, [`etcd_or_skip`] prints a SKIP line and lets the test
//! pass, except under `CI=true`, where a missing etcd is a setup bug and the test fails.

pub mod upstream;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a member may take to report healthy.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The etcd binary to run, if there is one.
pub fn etcd_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CALICO_TEST_ETCD").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("etcd"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let p = PathBuf::from("/usr/bin/etcd");
        p.is_file().then_some(p)
    })
}

/// The etcd binary, or None after printing a visible SKIP for `test`. Panics instead of
/// skipping when `CI=true`.
pub fn etcd_or_skip(test: &str) -> Option<PathBuf> {
    if let Some(p) = etcd_binary() {
        return Some(p);
    }
    let reason = "etcd binary not found (set CALICO_TEST_ETCD or install Debian's etcd-server)";
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: {reason}; CI must provide etcd");
    }
    eprintln!("SKIP {test}: {reason}");
    println!("SKIP {test}: {reason}");
    None
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding a free loopback port")
}

fn unique_dir(tag: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let dir = std::env::temp_dir().join(format!(
        "calico-etcd-{tag}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("creating an etcd test directory");
    dir
}

/// One HTTP request to a member's client port; the response body.
fn http(port: u16, method: &str, path: &str, body: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

/// One etcd member's settings.
#[derive(Debug, Clone)]
struct MemberSpec {
    name: String,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
    /// `--initial-cluster` value.
    cluster: String,
    /// `--initial-cluster-token`, the same for every member of one cluster.
    token: String,
    /// Extra flags (timing, TLS).
    extra: Vec<String>,
    /// `http` or `https` for the client URL.
    scheme: &'static str,
}

impl MemberSpec {
    fn spawn(&self, bin: &Path) -> Child {
        let client = format!("{}://127.0.0.1:{}", self.scheme, self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        Command::new(bin)
            .args(["--name", &self.name])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &self.cluster])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", &self.token])
            .args(["--logger", "zap", "--log-outputs"])
            .arg(&self.log)
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()))
    }

    fn healthy(&self) -> bool {
        if self.scheme == "https" {
            // No TLS client here: an accepting port after a short settle time must do.
            return TcpStream::connect(("127.0.0.1", self.client_port)).is_ok();
        }
        http(self.client_port, "GET", "/health", "")
            .is_some_and(|b| b.contains("\"health\":\"true\""))
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

/// One running (or stopped) member.
#[derive(Debug)]
struct Member {
    spec: MemberSpec,
    child: Option<Child>,
}

impl Member {
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM lets etcd hand leadership over, as a real shutdown would.
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A set of etcd members: one ([`EtcdServer::single`]) or three ([`EtcdServer::cluster`]).
#[derive(Debug)]
pub struct EtcdServer {
    bin: PathBuf,
    dir: PathBuf,
    members: Vec<Member>,
}

/// TLS files for a server started with [`EtcdServer::single_tls`].
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// CA that signed the server and client certificates.
    pub ca: PathBuf,
    /// Server certificate (SAN 127.0.0.1).
    pub server_cert: PathBuf,
    /// Server key.
    pub server_key: PathBuf,
}

impl EtcdServer {
    /// A single-node server with fast (test) raft timing.
    pub fn single(bin: &Path) -> Self {
        Self::start(bin, 1, "http", &[])
    }

    /// A single-node server on `https://` that requires client certificates signed by
    /// `tls.ca`.
    pub fn single_tls(bin: &Path, tls: &ServerTls) -> Self {
        let extra = [
            "--cert-file".to_string(),
            tls.server_cert.display().to_string(),
            "--key-file".to_string(),
            tls.server_key.display().to_string(),
            "--client-cert-auth".to_string(),
            "--trusted-ca-file".to_string(),
            tls.ca.display().to_string(),
        ];
        Self::start(bin, 1, "https", &extra)
    }

    /// A 3-member cluster on loopback.
    pub fn cluster(bin: &Path) -> Self {
        Self::start(bin, 3, "http", &[])
    }

    fn start(bin: &Path, size: usize, scheme: &'static str, extra: &[String]) -> Self {
        let mut last_err = String::new();
        // Ports are picked free but not held: on a clash with a concurrent test, retry.
        for _attempt in 0..3 {
            let dir = unique_dir(if size == 1 { "single" } else { "cluster" });
            let ports: Vec<(u16, u16)> = (0..size).map(|_| (free_port(), free_port())).collect();
            let cluster = ports
                .iter()
                .enumerate()
                .map(|(i, (_, p))| format!("m{i}=http://127.0.0.1:{p}"))
                .collect::<Vec<_>>()
                .join(",");
            // Fast elections for a lone member; a cluster gets more slack against load.
            let timing: [&str; 4] = if size == 1 {
                ["--heartbeat-interval", "10", "--election-timeout", "100"]
            } else {
                ["--heartbeat-interval", "50", "--election-timeout", "500"]
            };
            let mut flags: Vec<String> = timing.iter().map(|s| s.to_string()).collect();
            flags.extend(extra.iter().cloned());
            let members: Vec<Member> = ports
                .iter()
                .enumerate()
                .map(|(i, &(client_port, peer_port))| {
                    let spec = MemberSpec {
                        name: format!("m{i}"),
                        client_port,
                        peer_port,
                        data_dir: dir.join(format!("m{i}")),
                        log: dir.join(format!("m{i}.log")),
                        cluster: cluster.clone(),
                        token: dir.display().to_string(),
                        extra: flags.clone(),
                        scheme,
                    };
                    Member {
                        child: Some(spec.spawn(bin)),
                        spec,
                    }
                })
                .collect();
            let mut server = EtcdServer {
                bin: bin.to_path_buf(),
                dir,
                members,
            };
            match server.wait_healthy() {
                Ok(()) => return server,
                Err(e) => last_err = e,
            }
        }
        panic!("etcd did not start: {last_err}");
    }

    fn wait_healthy(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        for m in &mut self.members {
            loop {
                if let Some(child) = &mut m.child
                    && let Ok(Some(status)) = child.try_wait()
                {
                    return Err(format!(
                        "member {} exited ({status}):\n{}",
                        m.spec.name,
                        m.spec.log_tail()
                    ));
                }
                if m.spec.healthy() {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(format!(
                        "member {} not healthy after {START_TIMEOUT:?}:\n{}",
                        m.spec.name,
                        m.spec.log_tail()
                    ));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        if self.members.iter().any(|m| m.spec.scheme == "https") {
            std::thread::sleep(Duration::from_millis(300));
        }
        Ok(())
    }

    /// Client URLs of every member, running or not.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("{}://127.0.0.1:{}", m.spec.scheme, m.spec.client_port))
            .collect()
    }

    /// The member count.
    pub fn size(&self) -> usize {
        self.members.len()
    }

    /// Stop member `i` (SIGTERM, then SIGKILL after 10 s).
    pub fn stop(&mut self, i: usize) {
        self.members[i].stop();
    }

    /// Restart a stopped member `i` on its data directory and ports, and wait until it is
    /// healthy.
    pub fn restart(&mut self, i: usize) {
        let m = &mut self.members[i];
        assert!(m.child.is_none(), "member {i} is running");
        m.child = Some(m.spec.spawn(&self.bin));
        if let Err(e) = self.wait_healthy() {
            panic!("etcd member {i} did not come back: {e}");
        }
    }

    /// The index of the current leader, asked of the running members.
    pub fn leader(&self) -> Option<usize> {
        let ids: Vec<Option<String>> = self
            .members
            .iter()
            .map(|m| {
                m.child.as_ref()?;
                let body = http(m.spec.client_port, "POST", "/v3/maintenance/status", "{}")?;
                let v: serde_json::Value = serde_json::from_str(&body).ok()?;
                Some(v["header"]["member_id"].as_str()?.to_string())
            })
            .collect();
        for m in &self.members {
            if m.child.is_none() {
                continue;
            }
            let Some(body) = http(m.spec.client_port, "POST", "/v3/maintenance/status", "{}")
            else {
                continue;
            };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&body) else {
                continue;
            };
            if let Some(leader) = v["leader"].as_str()
                && let Some(i) = ids.iter().position(|id| id.as_deref() == Some(leader))
            {
                return Some(i);
            }
        }
        None
    }

    /// The directory holding data directories and logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.members.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Generate, with the `openssl` command, a CA, a server certificate for 127.0.0.1 and a client
/// certificate, in `dir`. Returns the server side and `(client cert, client key)`.
pub fn generate_tls(dir: &Path) -> Result<(ServerTls, PathBuf, PathBuf), String> {
    let run = |args: &[&str]| -> Result<(), String> {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running openssl: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "openssl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    };
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n",
    )
    .map_err(|e| e.to_string())?;
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n")
        .map_err(|e| e.to_string())?;
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=calico-test-ca",
    ])?;
    for who in ["server", "client"] {
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &format!("{who}.key"),
            "-out",
            &format!("{who}.csr"),
            "-subj",
            &format!("/CN={who}"),
        ])?;
        run(&[
            "x509",
            "-req",
            "-in",
            &format!("{who}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &format!("{who}.pem"),
            "-days",
            "2",
            "-extfile",
            &format!("{who}.ext"),
        ])?;
    }
    Ok((
        ServerTls {
            ca: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
        },
        dir.join("client.pem"),
        dir.join("client.key"),
    ))
}

/// A store together with the server it talks to, which lives as long as the store (or any
/// other holder of the `Arc`).
#[derive(Debug)]
pub struct WithServer {
    /// The store.
    pub store: super::EtcdDatastore,
    /// The server, shared with other stores on it.
    pub server: std::sync::Arc<EtcdServer>,
}

impl WithServer {
    /// A store on a new single-node server.
    pub fn fresh(bin: &Path) -> Self {
        let server = std::sync::Arc::new(EtcdServer::single(bin));
        Self::on(server)
    }

    /// Another store on `server`.
    pub fn on(server: std::sync::Arc<EtcdServer>) -> Self {
        let store = super::EtcdDatastore::connect(&server.endpoints(), &super::EtcdTls::default())
            .unwrap_or_else(|e| panic!("connecting to the test etcd: {e}"));
        Self { store, server }
    }
}

impl crate::Datastore for WithServer {
    fn get(&self, key: &crate::Key) -> Result<Option<crate::KeyValue>, crate::DatastoreError> {
        self.store.get(key)
    }

    fn list(
        &self,
        kind: crate::Kind,
        namespace: Option<&str>,
    ) -> Result<crate::ListResult, crate::DatastoreError> {
        self.store.list(kind, namespace)
    }

    fn create(
        &self,
        key: &crate::Key,
        value: serde_json::Value,
    ) -> Result<crate::KeyValue, crate::DatastoreError> {
        self.store.create(key, value)
    }

    fn update(
        &self,
        key: &crate::Key,
        value: serde_json::Value,
        expected_revision: Option<crate::Revision>,
    ) -> Result<crate::KeyValue, crate::DatastoreError> {
        self.store.update(key, value, expected_revision)
    }

    fn delete(
        &self,
        key: &crate::Key,
        expected_revision: Option<crate::Revision>,
    ) -> Result<crate::KeyValue, crate::DatastoreError> {
        self.store.delete(key, expected_revision)
    }

    fn write_batch(
        &self,
        ops: Vec<crate::WriteOp>,
    ) -> Result<Vec<crate::KeyValue>, crate::DatastoreError> {
        self.store.write_batch(ops)
    }

    fn watch(
        &self,
        filter: crate::WatchFilter,
        after: crate::Revision,
    ) -> Result<Box<dyn crate::Watcher>, crate::DatastoreError> {
        self.store.watch(filter, after)
    }

    fn revision(&self) -> Result<crate::Revision, crate::DatastoreError> {
        self.store.revision()
    }

    fn compact(&self, revision: crate::Revision) -> Result<(), crate::DatastoreError> {
        self.store.compact(revision)
    }
}
