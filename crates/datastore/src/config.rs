//! Datastore configuration as calicoctl users know it: the `calicoctl.cfg` file
//! (`CalicoAPIConfig`), then environment variables, then defaults.
//!
//! ```yaml
//! apiVersion: projectcalico.org/v3
//! kind: CalicoAPIConfig
//! metadata: {}
//! spec:
//!   datastoreType: etcdv3            # or "embedded"; without it: etcdv3 when
//!                                    # etcd endpoints are set, else embedded
//!   etcdEndpoints: https://a:2379,https://b:2379
//!   etcdCACertFile: /etc/calico/ca.pem
//!   etcdCertFile: /etc/calico/cert.pem
//!   etcdKeyFile: /etc/calico/key.pem
//!   # or inline PEM, one way per item: etcdCACert, etcdCert, etcdKey
//!   embeddedPath: /var/lib/calico/calico.db   # calico-rs addition
//! ```
//!
//! Environment variables override the file, field by field: `DATASTORE_TYPE`,
//! `CALICO_DATASTORE_PATH`, `ETCD_ENDPOINTS`, `ETCD_CA_CERT_FILE`, `ETCD_CERT_FILE`,
//! `ETCD_KEY_FILE`, `ETCD_CA_CERT`, `ETCD_CERT`, `ETCD_KEY`. As upstream, each may also be spelled with a `CALICO_` prefix
//! (`CALICO_DATASTORE_TYPE`, `CALICO_ETCD_ENDPOINTS`, ...), which wins over the bare name. An
//! empty variable counts as unset.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Default location of the embedded datastore file.
pub const DEFAULT_EMBEDDED_PATH: &str = "/var/lib/calico/calico.db";
/// Default location of the client configuration file.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/calico/calicoctl.cfg";

/// The `apiVersion` a configuration file must declare.
pub const CONFIG_API_VERSION: &str = "projectcalico.org/v3";
/// The `kind` a configuration file must declare.
pub const CONFIG_KIND: &str = "CalicoAPIConfig";

/// Which backend to use and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatastoreConfig {
    /// The backend and its settings.
    pub datastore_type: DatastoreType,
}

/// The backend and its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatastoreType {
    /// The embedded single-file SQLite store.
    Embedded {
        /// The store file (created on first use).
        path: PathBuf,
    },
    /// An etcd v3 cluster.
    EtcdV3 {
        /// Client URLs, e.g. `https://10.0.0.1:2379`.
        endpoints: Vec<String>,
        /// How to verify the servers and identify this client.
        tls: EtcdTls,
    },
}

impl std::fmt::Display for DatastoreType {
    /// Where the store is, for logs: never the PEM text of inline TLS material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DatastoreType::Embedded { path } => write!(f, "embedded store {}", path.display()),
            DatastoreType::EtcdV3 { endpoints, tls } => {
                write!(f, "etcdv3 at {}", endpoints.join(","))?;
                for (what, pem) in [("CA", &tls.ca_cert), ("cert", &tls.cert), ("key", &tls.key)] {
                    match pem {
                        Some(Pem::File(p)) => write!(f, ", {what} {}", p.display())?,
                        Some(Pem::Inline(_)) => write!(f, ", {what} inline")?,
                        None => {}
                    }
                }
                Ok(())
            }
        }
    }
}

/// PEM text given as a file to read or inline, as upstream's `etcdCACertFile` / `etcdCACert`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pem {
    /// A file holding the PEM text, read when connecting.
    File(PathBuf),
    /// The PEM text itself.
    Inline(String),
}

impl Pem {
    /// The PEM bytes; `what` names the item in the error ("CA certificate").
    pub fn bytes(&self, what: &str) -> Result<Vec<u8>, String> {
        match self {
            Pem::File(path) => {
                std::fs::read(path).map_err(|e| format!("reading {what} {}: {e}", path.display()))
            }
            Pem::Inline(text) => Ok(text.as_bytes().to_vec()),
        }
    }
}

/// Client TLS settings for etcd: `etcdCACert[File]`, `etcdCert[File]`, `etcdKey[File]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EtcdTls {
    /// CA bundle to verify the servers with.
    pub ca_cert: Option<Pem>,
    /// Client certificate for mutual TLS.
    pub cert: Option<Pem>,
    /// Key of the client certificate.
    pub key: Option<Pem>,
}

/// Errors loading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Reading the file failed.
    #[error("reading datastore config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why reading failed.
        source: std::io::Error,
    },
    /// The file is not valid YAML for a `CalicoAPIConfig` (syntax, unknown field, wrong type).
    #[error("parsing datastore config {path}: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's explanation, naming the offending field where it can.
        reason: String,
    },
    /// A field of the file has a value this program does not accept.
    #[error("datastore config {path}: {field} is {value:?}, expected {expected}")]
    InvalidField {
        /// The file.
        path: PathBuf,
        /// The field, e.g. `spec.datastoreType`.
        field: String,
        /// The value found (empty when the field is missing).
        value: String,
        /// What would be accepted.
        expected: String,
    },
    /// An environment variable has a value this program does not accept.
    #[error("environment variable {var}={value:?} is invalid, expected {expected}")]
    InvalidEnv {
        /// The variable.
        var: String,
        /// Its value.
        value: String,
        /// What would be accepted.
        expected: String,
    },
    /// Both etcd endpoints and an embedded store path are set, and no
    /// datastore type says which one is meant.
    #[error(
        "both etcd endpoints and an embedded datastore path are set and no datastore type: set {hint} to etcdv3 or embedded"
    )]
    Ambiguous {
        /// Where to set the type.
        hint: String,
    },
    /// etcdv3 was selected but no endpoint was given anywhere.
    #[error("datastore type etcdv3 needs etcd endpoints: set {hint}")]
    MissingEtcdEndpoints {
        /// Where endpoints could have been given.
        hint: String,
    },
    /// One TLS item is given both as a file and inline, as upstream refuses.
    #[error("{file} and {inline} are both set: give the {what} one way only")]
    TlsTwice {
        /// The file setting that was given (`etcdCACertFile` / `ETCD_CA_CERT_FILE`).
        file: String,
        /// The inline setting that was given (`etcdCACert` / `ETCD_CA_CERT`).
        inline: String,
        /// The item ("CA certificate").
        what: &'static str,
    },
}

/// The `CalicoAPIConfig` document.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ApiConfigFile {
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    /// Accepted for compatibility; nothing in it is used.
    #[serde(default)]
    #[expect(dead_code, reason = "parsed only to accept upstream files")]
    metadata: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    spec: Option<ApiConfigSpec>,
}

/// The `spec` of a `CalicoAPIConfig`, limited to the settings calico-rs supports.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ApiConfigSpec {
    #[serde(default)]
    datastore_type: Option<String>,
    #[serde(default)]
    etcd_endpoints: Option<String>,
    #[serde(default, rename = "etcdCACertFile")]
    etcd_ca_cert_file: Option<String>,
    #[serde(default)]
    etcd_cert_file: Option<String>,
    #[serde(default)]
    etcd_key_file: Option<String>,
    #[serde(default, rename = "etcdCACert")]
    etcd_ca_cert: Option<String>,
    #[serde(default)]
    etcd_cert: Option<String>,
    #[serde(default)]
    etcd_key: Option<String>,
    #[serde(default)]
    embedded_path: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Embedded,
    EtcdV3,
}

const DATASTORE_TYPES: &str = "\"etcdv3\" or \"embedded\"";

fn parse_kind(s: &str) -> Option<Kind> {
    match s {
        "embedded" => Some(Kind::Embedded),
        "etcdv3" => Some(Kind::EtcdV3),
        _ => None,
    }
}

/// Settings gathered from the file and the environment before defaults are applied.
#[derive(Default)]
struct Settings {
    kind: Option<Kind>,
    etcd_endpoints: Option<String>,
    ca_cert_file: Option<String>,
    cert_file: Option<String>,
    key_file: Option<String>,
    ca_cert: Option<String>,
    cert: Option<String>,
    key: Option<String>,
    embedded_path: Option<String>,
    /// Where each TLS setting came from (field or variable), for [`ConfigError::TlsTwice`].
    tls_sources: std::collections::HashMap<&'static str, String>,
}

impl DatastoreConfig {
    /// The embedded store at `path`.
    pub fn embedded(path: impl Into<PathBuf>) -> Self {
        Self {
            datastore_type: DatastoreType::Embedded { path: path.into() },
        }
    }

    /// Load from `config_path` (which must exist) or, without one, from
    /// [`DEFAULT_CONFIG_PATH`] when that file exists; then apply the process environment.
    pub fn load(config_path: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with_env(config_path, &|name| std::env::var(name).ok())
    }

    /// [`DatastoreConfig::load`] with the environment read through `env` (for tests and
    /// embedding callers).
    pub fn load_with_env(
        config_path: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        Self::load_with(config_path, Some(Path::new(DEFAULT_CONFIG_PATH)), env)
    }

    /// The general form: `config_path` must exist when given; otherwise `default_path`, when
    /// given, is read if it exists. Environment variables, read through `env`, override file
    /// settings. Without a datastore type, etcd endpoints mean etcd (as upstream); what
    /// neither sets defaults to the embedded store at [`DEFAULT_EMBEDDED_PATH`].
    pub fn load_with(
        config_path: Option<&Path>,
        default_path: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let read = |path: &Path| {
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })
        };
        let file = match (config_path, default_path) {
            (Some(path), _) => Some((path, read(path)?)),
            (None, Some(path)) => match read(path) {
                Ok(text) => Some((path, text)),
                Err(ConfigError::Read { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    None
                }
                Err(e) => return Err(e),
            },
            (None, None) => None,
        };
        let mut settings = match &file {
            Some((path, text)) => parse_file(path, text)?,
            None => Settings::default(),
        };
        apply_env(&mut settings, env)?;
        resolve(settings, file.map(|(p, _)| p))
    }
}

/// Parse and check a `CalicoAPIConfig` document.
fn parse_file(path: &Path, text: &str) -> Result<Settings, ConfigError> {
    let doc: ApiConfigFile = serde_saphyr::from_str(text).map_err(|e| {
        // One line ("line 5 column 3: unknown field ..."): the caller adds the file name, and
        // a source snippet would break up the error chain.
        let plain = e.without_snippet().to_string();
        ConfigError::Parse {
            path: path.to_path_buf(),
            reason: plain.strip_prefix("error: ").unwrap_or(&plain).to_string(),
        }
    })?;
    let invalid = |field: &str, value: Option<&str>, expected: &str| ConfigError::InvalidField {
        path: path.to_path_buf(),
        field: field.into(),
        value: value.unwrap_or_default().into(),
        expected: expected.into(),
    };
    if doc.api_version.as_deref() != Some(CONFIG_API_VERSION) {
        return Err(invalid(
            "apiVersion",
            doc.api_version.as_deref(),
            CONFIG_API_VERSION,
        ));
    }
    if doc.kind.as_deref() != Some(CONFIG_KIND) {
        return Err(invalid("kind", doc.kind.as_deref(), CONFIG_KIND));
    }
    let spec = doc.spec.unwrap_or_default();
    let kind = match spec.datastore_type.as_deref() {
        None | Some("") => None,
        Some(s) => Some(
            parse_kind(s).ok_or_else(|| invalid("spec.datastoreType", Some(s), DATASTORE_TYPES))?,
        ),
    };
    let nonempty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
    let mut s = Settings {
        kind,
        etcd_endpoints: nonempty(spec.etcd_endpoints),
        ca_cert_file: nonempty(spec.etcd_ca_cert_file),
        cert_file: nonempty(spec.etcd_cert_file),
        key_file: nonempty(spec.etcd_key_file),
        ca_cert: nonempty(spec.etcd_ca_cert),
        cert: nonempty(spec.etcd_cert),
        key: nonempty(spec.etcd_key),
        embedded_path: nonempty(spec.embedded_path),
        tls_sources: Default::default(),
    };
    for (item, field, set) in [
        (
            "ca_cert_file",
            "spec.etcdCACertFile",
            s.ca_cert_file.is_some(),
        ),
        ("cert_file", "spec.etcdCertFile", s.cert_file.is_some()),
        ("key_file", "spec.etcdKeyFile", s.key_file.is_some()),
        ("ca_cert", "spec.etcdCACert", s.ca_cert.is_some()),
        ("cert", "spec.etcdCert", s.cert.is_some()),
        ("key", "spec.etcdKey", s.key.is_some()),
    ] {
        if set {
            s.tls_sources
                .insert(item, format!("{field} in {}", path.display()));
        }
    }
    Ok(s)
}

/// The first of `CALICO_<name>` and `<name>` that is set and non-empty, with its variable name.
fn lookup(env: &dyn Fn(&str) -> Option<String>, name: &str) -> Option<(String, String)> {
    let prefixed = if name.starts_with("CALICO_") {
        None
    } else {
        Some(format!("CALICO_{name}"))
    };
    prefixed
        .into_iter()
        .chain(std::iter::once(name.to_string()))
        .find_map(|var| env(&var).filter(|v| !v.trim().is_empty()).map(|v| (var, v)))
}

fn apply_env(s: &mut Settings, env: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
    if let Some((var, value)) = lookup(env, "DATASTORE_TYPE") {
        s.kind = Some(
            parse_kind(value.trim()).ok_or_else(|| ConfigError::InvalidEnv {
                var,
                value: value.clone(),
                expected: DATASTORE_TYPES.into(),
            })?,
        );
    }
    let set = |field: &mut Option<String>, name: &str| -> Option<String> {
        let (var, value) = lookup(env, name)?;
        *field = Some(value);
        Some(var)
    };
    set(&mut s.embedded_path, "CALICO_DATASTORE_PATH");
    set(&mut s.etcd_endpoints, "ETCD_ENDPOINTS");
    for (item, var) in [
        ("ca_cert_file", "ETCD_CA_CERT_FILE"),
        ("cert_file", "ETCD_CERT_FILE"),
        ("key_file", "ETCD_KEY_FILE"),
        ("ca_cert", "ETCD_CA_CERT"),
        ("cert", "ETCD_CERT"),
        ("key", "ETCD_KEY"),
    ] {
        let field = match item {
            "ca_cert_file" => &mut s.ca_cert_file,
            "cert_file" => &mut s.cert_file,
            "key_file" => &mut s.key_file,
            "ca_cert" => &mut s.ca_cert,
            "cert" => &mut s.cert,
            _ => &mut s.key,
        };
        if let Some(var) = set(field, var) {
            s.tls_sources.insert(item, var);
        }
    }
    Ok(())
}

/// Apply defaults and build the configuration.
fn resolve(s: Settings, file: Option<&Path>) -> Result<DatastoreConfig, ConfigError> {
    let kind = match (s.kind, &s.etcd_endpoints, &s.embedded_path) {
        (Some(kind), _, _) => kind,
        // As upstream: etcd endpoints without a datastore type mean etcd
        // (the docs' etcd examples set no type).
        (None, Some(_), None) => Kind::EtcdV3,
        (None, Some(_), Some(_)) => {
            return Err(ConfigError::Ambiguous {
                hint: match file {
                    Some(p) => format!("spec.datastoreType in {} or DATASTORE_TYPE", p.display()),
                    None => "DATASTORE_TYPE".to_string(),
                },
            });
        }
        (None, None, _) => Kind::Embedded,
    };
    let datastore_type = match kind {
        Kind::Embedded => DatastoreType::Embedded {
            path: PathBuf::from(
                s.embedded_path
                    .as_deref()
                    .unwrap_or(DEFAULT_EMBEDDED_PATH)
                    .trim(),
            ),
        },
        Kind::EtcdV3 => {
            let endpoints: Vec<String> = s
                .etcd_endpoints
                .as_deref()
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .map(String::from)
                .collect();
            if endpoints.is_empty() {
                let hint = match file {
                    Some(p) => format!("spec.etcdEndpoints in {} or ETCD_ENDPOINTS", p.display()),
                    None => "ETCD_ENDPOINTS".to_string(),
                };
                return Err(ConfigError::MissingEtcdEndpoints { hint });
            }
            let pem = |file: Option<String>,
                       file_item: &str,
                       inline: Option<String>,
                       inline_item: &str,
                       what: &'static str|
             -> Result<Option<Pem>, ConfigError> {
                match (file, inline) {
                    (Some(_), Some(_)) => Err(ConfigError::TlsTwice {
                        file: s.tls_sources[file_item].clone(),
                        inline: s.tls_sources[inline_item].clone(),
                        what,
                    }),
                    (Some(f), None) => Ok(Some(Pem::File(PathBuf::from(f.trim())))),
                    (None, Some(text)) => Ok(Some(Pem::Inline(text))),
                    (None, None) => Ok(None),
                }
            };
            let tls = EtcdTls {
                ca_cert: pem(
                    s.ca_cert_file.clone(),
                    "ca_cert_file",
                    s.ca_cert.clone(),
                    "ca_cert",
                    "CA certificate",
                )?,
                cert: pem(
                    s.cert_file.clone(),
                    "cert_file",
                    s.cert.clone(),
                    "cert",
                    "client certificate",
                )?,
                key: pem(
                    s.key_file.clone(),
                    "key_file",
                    s.key.clone(),
                    "key",
                    "client key",
                )?,
            };
            DatastoreType::EtcdV3 { endpoints, tls }
        }
    };
    Ok(DatastoreConfig { datastore_type })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn write(dir: &tempfile::TempDir, text: &str) -> PathBuf {
        let path = dir.path().join("calicoctl.cfg");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn load(path: Option<&Path>, vars: &[(&str, &str)]) -> Result<DatastoreConfig, ConfigError> {
        DatastoreConfig::load_with(path, None, &env_of(vars))
    }

    const ETCD_FILE: &str = "\
apiVersion: projectcalico.org/v3
kind: CalicoAPIConfig
metadata: {}
spec:
  datastoreType: etcdv3
  etcdEndpoints: \"https://a:2379, https://b:2379\"
  etcdCACertFile: /etc/calico/ca.pem
  etcdCertFile: /etc/calico/cert.pem
  etcdKeyFile: /etc/calico/key.pem
";

    #[test]
    fn defaults_to_embedded() {
        let cfg = load(None, &[]).unwrap();
        assert_eq!(cfg, DatastoreConfig::embedded(DEFAULT_EMBEDDED_PATH));
    }

    #[test]
    fn parses_etcd_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, ETCD_FILE);
        let cfg = load(Some(&path), &[]).unwrap();
        assert_eq!(
            cfg.datastore_type,
            DatastoreType::EtcdV3 {
                endpoints: vec!["https://a:2379".into(), "https://b:2379".into()],
                tls: EtcdTls {
                    ca_cert: Some(Pem::File("/etc/calico/ca.pem".into())),
                    cert: Some(Pem::File("/etc/calico/cert.pem".into())),
                    key: Some(Pem::File("/etc/calico/key.pem".into())),
                },
            }
        );
    }

    #[test]
    fn parses_embedded_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            &dir,
            "apiVersion: projectcalico.org/v3\nkind: CalicoAPIConfig\n\
             spec:\n  datastoreType: embedded\n  embeddedPath: /tmp/x.db\n",
        );
        let cfg = load(Some(&path), &[]).unwrap();
        assert_eq!(cfg, DatastoreConfig::embedded("/tmp/x.db"));
    }

    #[test]
    fn default_file_is_read_when_present_and_skipped_when_absent() {
        let dir = tempfile::tempdir().unwrap();
        let absent = dir.path().join("absent.cfg");
        let env = env_of(&[]);
        let cfg = DatastoreConfig::load_with(None, Some(&absent), &env).unwrap();
        assert_eq!(cfg, DatastoreConfig::embedded(DEFAULT_EMBEDDED_PATH));
        let present = write(&dir, ETCD_FILE);
        let cfg = DatastoreConfig::load_with(None, Some(&present), &env).unwrap();
        assert!(matches!(cfg.datastore_type, DatastoreType::EtcdV3 { .. }));
    }

    #[test]
    fn explicit_file_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.cfg");
        let err = load(Some(&missing), &[]).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }));
        assert!(err.to_string().contains("nope.cfg"), "{err}");
    }

    #[test]
    fn unknown_field_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            &dir,
            "apiVersion: projectcalico.org/v3\nkind: CalicoAPIConfig\n\
             spec:\n  datastoreType: etcdv3\n  etcdEndpoint: http://x:2379\n",
        );
        let err = load(Some(&path), &[]).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ConfigError::Parse { .. }), "{msg}");
        assert!(msg.contains("etcdEndpoint"), "{msg}");
        assert!(msg.contains("calicoctl.cfg"), "{msg}");
        assert!(msg.contains("line 5"), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");

        let path = write(
            &dir,
            "apiVersion: projectcalico.org/v3\nkind: CalicoAPIConfig\nspek: {}\n",
        );
        let msg = load(Some(&path), &[]).unwrap_err().to_string();
        assert!(msg.contains("spek"), "{msg}");
    }

    #[test]
    fn bad_datastore_type_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            &dir,
            "apiVersion: projectcalico.org/v3\nkind: CalicoAPIConfig\n\
             spec:\n  datastoreType: kubernetes\n",
        );
        let err = load(Some(&path), &[]).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(&err, ConfigError::InvalidField { field, value, .. }
                if field == "spec.datastoreType" && value == "kubernetes"),
            "{msg}"
        );
        assert!(
            msg.contains("calicoctl.cfg") && msg.contains("etcdv3"),
            "{msg}"
        );
    }

    #[test]
    fn wrong_kind_or_api_version_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "apiVersion: v1\nkind: CalicoAPIConfig\nspec: {}\n");
        let err = load(Some(&path), &[]).unwrap_err();
        assert!(
            matches!(&err, ConfigError::InvalidField { field, value, .. }
                if field == "apiVersion" && value == "v1"),
            "{err}"
        );
        let path = write(
            &dir,
            "apiVersion: projectcalico.org/v3\nkind: calicoApiConfig\nspec: {}\n",
        );
        let err = load(Some(&path), &[]).unwrap_err();
        assert!(err.to_string().contains("calicoApiConfig"), "{err}");
        let path = write(&dir, "spec: {}\n");
        let err = load(Some(&path), &[]).unwrap_err();
        assert!(err.to_string().contains("apiVersion"), "{err}");
    }

    #[test]
    fn malformed_yaml_is_a_parse_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "apiVersion: [unclosed\n");
        let err = load(Some(&path), &[]).unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
    }

    #[test]
    fn env_overrides_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, ETCD_FILE);
        let cfg = load(
            Some(&path),
            &[("ETCD_ENDPOINTS", "http://c:2379"), ("ETCD_KEY_FILE", "/k")],
        )
        .unwrap();
        assert_eq!(
            cfg.datastore_type,
            DatastoreType::EtcdV3 {
                endpoints: vec!["http://c:2379".into()],
                tls: EtcdTls {
                    ca_cert: Some(Pem::File("/etc/calico/ca.pem".into())),
                    cert: Some(Pem::File("/etc/calico/cert.pem".into())),
                    key: Some(Pem::File("/k".into())),
                },
            }
        );
        let cfg = load(
            Some(&path),
            &[
                ("DATASTORE_TYPE", "embedded"),
                ("CALICO_DATASTORE_PATH", "/d.db"),
            ],
        )
        .unwrap();
        assert_eq!(cfg, DatastoreConfig::embedded("/d.db"));
    }

    #[test]
    fn env_alone_selects_etcd() {
        let cfg = load(
            None,
            &[
                ("CALICO_DATASTORE_TYPE", "etcdv3"),
                ("DATASTORE_TYPE", "embedded"),
                ("CALICO_ETCD_ENDPOINTS", "http://p:2379"),
                ("ETCD_ENDPOINTS", "http://bare:2379"),
                ("ETCD_CA_CERT_FILE", "/ca"),
                ("CALICO_ETCD_CERT_FILE", "/cert"),
            ],
        )
        .unwrap();
        // CALICO_-prefixed variables win over bare ones, as upstream.
        assert_eq!(
            cfg.datastore_type,
            DatastoreType::EtcdV3 {
                endpoints: vec!["http://p:2379".into()],
                tls: EtcdTls {
                    ca_cert: Some(Pem::File("/ca".into())),
                    cert: Some(Pem::File("/cert".into())),
                    key: None,
                },
            }
        );
    }

    #[test]
    fn inline_certificates_as_upstream() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            &dir,
            "apiVersion: projectcalico.org/v3\nkind: CalicoAPIConfig\nmetadata: {}\nspec:\n  \
             etcdEndpoints: https://a:2379\n  etcdCACert: |\n    -----BEGIN CERTIFICATE-----\n    \
             AAAA\n    -----END CERTIFICATE-----\n  etcdKeyFile: /k\n",
        );
        let cfg = load(Some(&path), &[("ETCD_CERT", "PEM-CERT")]).unwrap();
        assert_eq!(
            cfg.datastore_type,
            DatastoreType::EtcdV3 {
                endpoints: vec!["https://a:2379".into()],
                tls: EtcdTls {
                    ca_cert: Some(Pem::Inline(
                        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into()
                    )),
                    cert: Some(Pem::Inline("PEM-CERT".into())),
                    key: Some(Pem::File("/k".into())),
                },
            }
        );
        // One item both ways: refused, naming both places.
        let err = load(Some(&path), &[("ETCD_KEY", "PEM-KEY")]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("spec.etcdKeyFile in")
                && text.contains("ETCD_KEY ")
                && text.contains("client key"),
            "{text}"
        );
    }

    #[test]
    fn etcd_endpoints_without_a_type_select_etcd_as_upstream() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            &dir,
            "apiVersion: projectcalico.org/v3\nkind: CalicoAPIConfig\nmetadata: {}\n\
             spec:\n  etcdEndpoints: http://a:2379,http://b:2379\n",
        );
        let cfg = load(Some(&path), &[]).unwrap();
        assert!(
            matches!(&cfg.datastore_type, DatastoreType::EtcdV3 { endpoints, .. }
                if endpoints == &["http://a:2379", "http://b:2379"]),
            "{cfg:?}"
        );
        let cfg = load(None, &[("ETCD_ENDPOINTS", "http://e:2379")]).unwrap();
        assert!(
            matches!(cfg.datastore_type, DatastoreType::EtcdV3 { .. }),
            "{cfg:?}"
        );
        // Both an embedded path and endpoints, no type: which one is meant is not guessed.
        let err = load(
            None,
            &[
                ("ETCD_ENDPOINTS", "http://e:2379"),
                ("CALICO_DATASTORE_PATH", "/tmp/x.db"),
            ],
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("set DATASTORE_TYPE to etcdv3 or embedded"),
            "{err}"
        );
        // An explicit type still wins.
        let cfg = load(
            None,
            &[
                ("ETCD_ENDPOINTS", "http://e:2379"),
                ("DATASTORE_TYPE", "embedded"),
            ],
        )
        .unwrap();
        assert!(
            matches!(cfg.datastore_type, DatastoreType::Embedded { .. }),
            "{cfg:?}"
        );
    }

    #[test]
    fn invalid_env_value_names_the_variable() {
        let err = load(None, &[("DATASTORE_TYPE", "kubernetes")]).unwrap_err();
        assert!(
            matches!(&err, ConfigError::InvalidEnv { var, value, .. }
                if var == "DATASTORE_TYPE" && value == "kubernetes"),
            "{err}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("DATASTORE_TYPE") && msg.contains("kubernetes"),
            "{msg}"
        );
        // Empty counts as unset.
        assert!(load(None, &[("DATASTORE_TYPE", "")]).is_ok());
    }

    #[test]
    fn etcd_without_endpoints_is_an_error() {
        let err = load(None, &[("DATASTORE_TYPE", "etcdv3")]).unwrap_err();
        assert!(matches!(err, ConfigError::MissingEtcdEndpoints { .. }));
        assert!(err.to_string().contains("ETCD_ENDPOINTS"), "{err}");
    }
}
