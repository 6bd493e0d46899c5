//! Command-line arguments, kept apart from the commands so the DC/OS plugin entry point
//! parses exactly the same syntax.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// calicoctl: manage Calico resources (projectcalico.org/v3).
#[derive(Debug, Parser)]
#[command(name = "calicoctl", version, about, disable_version_flag = true)]
pub struct Cli {
    /// Path to the client configuration file (CalicoAPIConfig); default /etc/calico/calicoctl.cfg
    /// when present, then DATASTORE_TYPE / CALICO_DATASTORE_PATH / ETCD_* from the environment.
    #[arg(short = 'c', long = "config", global = true, value_name = "CONFIG")]
    pub config: Option<PathBuf>,

    /// Accepted for compatibility with upstream calicoctl; client and cluster are one build here.
    #[arg(long = "allow-version-mismatch", global = true, hide = true)]
    pub allow_version_mismatch: bool,

    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The resource management commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create resources from a file; fails if any exists (unless --skip-exists).
    Create(WriteArgs),
    /// Create or update resources from a file.
    Apply(WriteArgs),
    /// Replace existing resources from a file.
    Replace(WriteArgs),
    /// Delete resources named in a file or on the command line.
    Delete(DeleteArgs),
    /// Show resources.
    Get(GetArgs),
    /// Change a resource with a JSON merge patch.
    Patch(PatchArgs),
    /// Add, change or remove a label on a resource.
    Label(LabelArgs),
    /// Check resource files without writing anything.
    Validate(ValidateArgs),
    /// Print the client and cluster versions.
    Version,
}

/// Namespace scoping shared by the commands.
#[derive(Debug, Args, Clone, Default)]
pub struct NamespaceFlag {
    /// Namespace of namespaced resources (default: the document's, else `default`).
    #[arg(short = 'n', long = "namespace", value_name = "NS")]
    pub namespace: Option<String>,
}

/// Arguments of create, apply and replace.
#[derive(Debug, Args)]
pub struct WriteArgs {
    /// File or directory of YAML/JSON documents, or `-` for stdin.
    #[arg(
        short = 'f',
        long = "filename",
        value_name = "FILENAME",
        required = true
    )]
    pub filename: String,
    /// Skip resources that already exist (create only).
    #[arg(long = "skip-exists")]
    pub skip_exists: bool,
    /// Namespace for namespaced resources without one.
    #[command(flatten)]
    pub namespace: NamespaceFlag,
}

/// Arguments of delete.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Resource kind, e.g. `networkpolicy`, `ippool`, `gnp`.
    #[arg(value_name = "KIND", required_unless_present = "filename")]
    pub kind: Option<String>,
    /// Names of the resources to delete.
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,
    /// File or directory naming the resources, or `-` for stdin.
    #[arg(
        short = 'f',
        long = "filename",
        value_name = "FILENAME",
        conflicts_with = "kind"
    )]
    pub filename: Option<String>,
    /// Succeed for resources that do not exist.
    #[arg(long = "skip-not-exists")]
    pub skip_not_exists: bool,
    /// Namespace of namespaced resources.
    #[command(flatten)]
    pub namespace: NamespaceFlag,
}

/// Arguments of get.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// Resource kind, e.g. `nodes`, `networkpolicy`, `ippool`.
    #[arg(value_name = "KIND", required_unless_present = "filename")]
    pub kind: Option<String>,
    /// Names (all of the kind when none).
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,
    /// File or directory naming the resources to get.
    #[arg(
        short = 'f',
        long = "filename",
        value_name = "FILENAME",
        conflicts_with = "kind"
    )]
    pub filename: Option<String>,
    /// Output format: ps, wide, custom-columns=COL,..., yaml, json, go-template=T,
    /// go-template-file=FILE.
    #[arg(
        short = 'o',
        long = "output",
        default_value = "ps",
        value_name = "OUTPUT"
    )]
    pub output: String,
    /// Drop cluster-specific metadata (uid, resourceVersion, creationTimestamp, namespace)
    /// from resources fetched by name.
    #[arg(long = "export")]
    pub export: bool,
    /// List namespaced resources in every namespace.
    #[arg(short = 'A', long = "all-namespaces")]
    pub all_namespaces: bool,
    /// Namespace of namespaced resources.
    #[command(flatten)]
    pub namespace: NamespaceFlag,
}

/// Arguments of patch.
#[derive(Debug, Args)]
pub struct PatchArgs {
    /// Resource kind.
    #[arg(value_name = "KIND")]
    pub kind: String,
    /// Resource name.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// The JSON merge patch (RFC 7396), JSON or YAML, e.g. `{"spec":{"disabled":true}}`.
    #[arg(short = 'p', long = "patch", value_name = "PATCH")]
    pub patch: String,
    /// Patch type; only `merge` is supported.
    #[arg(
        short = 't',
        long = "type",
        default_value = "merge",
        value_name = "TYPE"
    )]
    pub patch_type: String,
    /// Namespace of namespaced resources.
    #[command(flatten)]
    pub namespace: NamespaceFlag,
}

/// Arguments of label.
#[derive(Debug, Args)]
pub struct LabelArgs {
    /// Resource kind.
    #[arg(value_name = "KIND")]
    pub kind: String,
    /// Resource name.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// `key=value` to set, or `key` with --remove.
    #[arg(value_name = "LABEL")]
    pub label: String,
    /// Replace the value of an existing label.
    #[arg(long = "overwrite", conflicts_with = "remove")]
    pub overwrite: bool,
    /// Remove the label.
    #[arg(long = "remove")]
    pub remove: bool,
    /// Namespace of namespaced resources.
    #[command(flatten)]
    pub namespace: NamespaceFlag,
}

/// Arguments of validate.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// File or directory of YAML/JSON documents, or `-` for stdin.
    #[arg(
        short = 'f',
        long = "filename",
        value_name = "FILENAME",
        required = true
    )]
    pub filename: String,
    /// Namespace for namespaced resources without one.
    #[command(flatten)]
    pub namespace: NamespaceFlag,
}
