//! confd as a service: follows the datastore through the shared sync layer,
//! renders when something changed (after a quiet moment), writes the files
//! that changed atomically, and asks BIRD to read them again. A render that
//! fails, or a configuration BIRD refuses, leaves the last good files in
//! place and says why.

use std::collections::BTreeMap;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use calico_api::Kind;
use calico_datastore::Datastore;
use calico_sync::{Resource, SyncEvent, Syncer};

use crate::model::{Affinity, Inputs, Secrets, Settings};

/// The kinds confd renders from.
pub const KINDS: [Kind; 6] = [
    Kind::Node,
    Kind::BgpPeer,
    Kind::BgpConfiguration,
    Kind::BgpFilter,
    Kind::IpPool,
    Kind::BlockAffinity,
];

/// How the service runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The node rendered for, and its router id setting.
    pub settings: Settings,
    /// Where the six files go (upstream: `/etc/calico/confd/config`).
    pub config_dir: PathBuf,
    /// Secrets for BGP passwords: `<dir>/<secret name>/<key>` (as a
    /// Kubernetes secret volume lays them out); see [`SecretSources`].
    pub secrets_dir: Option<PathBuf>,
    /// Where BIRD's control sockets (`bird.ctl`, `bird6.ctl`) are; none:
    /// BIRD is not asked to reload.
    pub bird_dir: Option<PathBuf>,
    /// Quiet time after a change before rendering.
    pub debounce: Duration,
}

/// Where BGP passwords come from: a file `<dir>/<name>/<key>` (one trailing
/// newline dropped, as a Kubernetes secret volume or `echo` leaves it), else
/// the environment variable `CALICO_BGP_SECRET_<NAME>_<KEY>` (upper-cased,
/// other characters than letters and digits as `_`).
#[derive(Debug, Clone, Default)]
pub struct SecretSources {
    /// The secrets directory, when there is one.
    pub dir: Option<PathBuf>,
}

impl SecretSources {
    /// The environment variable that holds `key` of secret `name`.
    pub fn env_name(name: &str, key: &str) -> String {
        let part = |s: &str| -> String {
            s.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_uppercase()
                    } else {
                        '_'
                    }
                })
                .collect()
        };
        format!("CALICO_BGP_SECRET_{}_{}", part(name), part(key))
    }
}

impl Secrets for SecretSources {
    fn secret(&self, name: &str, key: &str) -> Option<String> {
        if let Some(dir) = &self.dir {
            // Names and keys become path components: nothing that leaves the directory.
            let safe = |s: &str| {
                !s.is_empty()
                    && !s.starts_with('.')
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            };
            if safe(name) && safe(key) {
                match std::fs::read_to_string(dir.join(name).join(key)) {
                    Ok(text) => return Some(text.strip_suffix('\n').unwrap_or(&text).to_owned()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        tracing::warn!(target: "confd", "reading secret {name:?} key {key:?} in {}: {e}",
                            dir.display()
                        )
                    }
                }
            } else {
                tracing::warn!(target: "confd", "secret {name:?} key {key:?}: not a plain file name");
            }
        }
        let var = Self::env_name(name, key);
        match std::env::var(&var) {
            Ok(v) => Some(v),
            Err(_) => {
                tracing::warn!(target: "confd", "no secret {name:?} key {key:?} (file or {var}); no password");
                None
            }
        }
    }
}

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Files written (their text changed).
    pub written: Vec<&'static str>,
    /// What BIRD said, per control socket asked.
    pub reloaded: Vec<String>,
}

/// Why a pass left the last good configuration in place.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Rendering failed.
    #[error(transparent)]
    Render(#[from] crate::Error),
    /// A file could not be written.
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// The failure.
        source: std::io::Error,
    },
    /// BIRD refused the new configuration; the previous files are back.
    #[error("{0}; the previous configuration files are restored")]
    Refused(crate::bird::BirdError),
    /// The datastore could not be read.
    #[error("reading the datastore: {0}")]
    Sync(String),
}

/// The service's state.
pub struct Confd<D: Deref<Target: Datastore>> {
    opts: Options,
    syncer: Syncer<D>,
    inputs: Inputs,
    affinities: BTreeMap<String, Affinity>,
    in_sync: bool,
    /// The text of each file as BIRD last accepted it (or as found at start).
    good: BTreeMap<&'static str, String>,
}

impl<D: Deref<Target: Datastore>> Confd<D> {
    /// A service reading `ds`.
    pub fn new(ds: D, opts: Options) -> Self {
        let good = crate::FILE_NAMES
            .into_iter()
            .filter_map(|n| Some((n, std::fs::read_to_string(opts.config_dir.join(n)).ok()?)))
            .collect();
        Confd {
            opts,
            syncer: Syncer::new(ds, KINDS),
            inputs: Inputs::default(),
            affinities: BTreeMap::new(),
            in_sync: false,
            good,
        }
    }

    /// What confd renders from now.
    pub fn inputs(&self) -> Inputs {
        let mut inputs = self.inputs.clone();
        inputs.affinities = self.affinities.values().cloned().collect();
        inputs
    }

    /// Applies one sync event; whether the inputs may have changed.
    fn take(&mut self, ev: SyncEvent) -> bool {
        match ev {
            SyncEvent::Set { key, resource, .. } => {
                let name = key.name.clone();
                let i = &mut self.inputs;
                match resource {
                    Resource::Node(n) => drop(i.nodes.insert(name, n)),
                    Resource::BgpPeer(p) => drop(i.peers.insert(name, p)),
                    Resource::BgpConfiguration(c) => drop(i.configs.insert(name, c)),
                    Resource::BgpFilter(f) => drop(i.filters.insert(name, f)),
                    Resource::IpPool(p) => drop(i.pools.insert(name, p)),
                    Resource::BlockAffinity(a) => match a.spec.cidr.parse() {
                        Ok(cidr) if a.spec.deleted != "true" => {
                            self.affinities.insert(
                                name,
                                Affinity {
                                    host: a.spec.node.clone(),
                                    cidr,
                                    state: a.spec.state.clone(),
                                },
                            );
                        }
                        _ => drop(self.affinities.remove(&name)),
                    },
                    _ => return false,
                }
                true
            }
            SyncEvent::Deleted { key, .. } => {
                self.forget(key.kind, &key.name);
                true
            }
            SyncEvent::Unreadable {
                key, error, kept, ..
            } => {
                if kept {
                    tracing::warn!(target: "confd", "{error}; keeping its last good version");
                    false
                } else {
                    tracing::warn!(target: "confd", "{error}; ignored");
                    self.forget(key.kind, &key.name);
                    true
                }
            }
            SyncEvent::InSync { .. } => {
                let first = !self.in_sync;
                self.in_sync = true;
                first
            }
            SyncEvent::Lost { error } => {
                tracing::warn!(target: "confd", "{error}; keeping the last configuration until the datastore is back"
                );
                self.in_sync = false;
                false
            }
        }
    }

    fn forget(&mut self, kind: Kind, name: &str) {
        let i = &mut self.inputs;
        match kind {
            Kind::Node => drop(i.nodes.remove(name)),
            Kind::BgpPeer => drop(i.peers.remove(name)),
            Kind::BgpConfiguration => drop(i.configs.remove(name)),
            Kind::BgpFilter => drop(i.filters.remove(name)),
            Kind::IpPool => drop(i.pools.remove(name)),
            Kind::BlockAffinity => drop(self.affinities.remove(name)),
            _ => {}
        }
    }

    /// Reads the datastore until in sync (at most `timeout`), then renders
    /// and writes once: `--onetime`.
    pub fn once(&mut self, timeout: Duration) -> Result<Report, DaemonError> {
        for ev in self
            .syncer
            .read_until_in_sync(timeout)
            .map_err(DaemonError::Sync)?
        {
            self.take(ev);
        }
        self.render_and_write()
    }

    /// Follows the datastore until `stop`, rendering after each quiet
    /// moment that follows a change; every pass says what it did.
    pub fn run(&mut self, stop: &AtomicBool) {
        let mut dirty_since: Option<Instant> = None;
        while !stop.load(Ordering::Relaxed) {
            let wait = if dirty_since.is_some() {
                self.opts.debounce
            } else {
                Duration::from_millis(200)
            };
            if let Some(ev) = self.syncer.next(wait) {
                if self.take(ev) {
                    dirty_since.get_or_insert_with(Instant::now);
                }
                // While changes keep coming, render at most ten quiet times late.
                if dirty_since.is_none_or(|d| d.elapsed() < self.opts.debounce * 10) {
                    continue;
                }
            }
            if !self.in_sync || dirty_since.take().is_none() {
                continue;
            }
            match self.render_and_write() {
                Ok(r) if r.written.is_empty() => {}
                Ok(r) => tracing::warn!(target: "confd", "wrote {}{}",
                    r.written.join(", "),
                    if r.reloaded.is_empty() {
                        String::new()
                    } else {
                        format!("; {}", r.reloaded.join("; "))
                    }
                ),
                Err(e) => {
                    tracing::warn!(target: "confd", "{e}; keeping the last good configuration")
                }
            }
        }
    }

    /// Renders, writes what changed, and asks BIRD to reload the families
    /// whose files changed. On a render error nothing is written; when BIRD
    /// refuses, the previous files are put back.
    pub fn render_and_write(&mut self) -> Result<Report, DaemonError> {
        let secrets = SecretSources {
            dir: self.opts.secrets_dir.clone(),
        };
        let files = crate::render(&self.inputs(), &self.opts.settings, &secrets)?;
        let changed: Vec<&'static str> = crate::FILE_NAMES
            .into_iter()
            .filter(|n| self.good.get(n) != files.get(n))
            .collect();
        let mut report = Report::default();
        if changed.is_empty() {
            return Ok(report);
        }
        // Included files before the main ones that include them.
        let mut order = changed.clone();
        order.sort_by_key(|n| !n.contains('_'));
        for name in &order {
            write_atomically(&self.opts.config_dir.join(name), &files[name])?;
        }
        report.written = order;
        if let Some(dir) = &self.opts.bird_dir {
            for (socket, six) in [("bird.ctl", false), ("bird6.ctl", true)] {
                if !changed.iter().any(|n| n.starts_with("bird6") == six) {
                    continue;
                }
                let path = dir.join(socket);
                if !path.exists() {
                    report.reloaded.push(format!(
                        "{socket}: BIRD is not running; it reads the files when it starts"
                    ));
                    continue;
                }
                match crate::bird::configure(&path) {
                    Ok(said) => report.reloaded.push(format!("{socket}: {said}")),
                    Err(e) => {
                        // BIRD keeps running what it had: the files must say the same.
                        for name in changed.iter().filter(|n| n.starts_with("bird6") == six) {
                            if let Some(old) = self.good.get(name) {
                                write_atomically(&self.opts.config_dir.join(name), old)?;
                            }
                        }
                        return Err(DaemonError::Refused(e));
                    }
                }
            }
        }
        for name in &changed {
            self.good.insert(name, files[name].clone());
        }
        Ok(report)
    }
}

/// Writes `text` to a temporary file beside `path`, then renames it over
/// `path`: a reader sees the old file or the new one, never half of one.
fn write_atomically(path: &Path, text: &str) -> Result<(), DaemonError> {
    let fail = |source| DaemonError::Write {
        path: path.display().to_string(),
        source,
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}
