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

    /// Log level on stderr: panic, fatal, error, warn, info, debug or trace (debug and trace
    /// also say which datastore is used and what is read).
    #[arg(
        short = 'l',
        long = "log-level",
        global = true,
        value_name = "LEVEL",
        default_value = "panic",
        value_parser = ["panic", "fatal", "error", "warn", "warning", "info", "debug", "trace"]
    )]
    pub log_level: String,

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
    /// Policy tools: `policy trace` explains why a packet is allowed or dropped.
    Policy(PolicyArgs),
    /// Print the client and cluster versions.
    Version(VersionArgs),
    /// IP address management: show usage, check for leaks, release addresses, configure.
    Ipam(IpamArgs),
    /// This host's Calico node: `node status` shows calico-node and BIRD's BGP peers.
    Node(NodeArgs),
    /// Datastore operations: `datastore migrate` moves a cluster to another datastore.
    Datastore(DatastoreArgs),
    /// Cluster-wide tools: `cluster diags` writes the datastore's diagnostics bundle.
    Cluster(ClusterArgs),
    /// The flows the cluster's policy decided recently, from every host, each with the
    /// policy rule that allowed or denied it.
    Flows(FlowsArgs),
    /// Move apps and services from the DC/OS overlay (`dcos`) to Calico: rewrite Marathon app,
    /// group and pod definitions and dcos-commons service files. Without --write, prints the
    /// diff; exit 0 when nothing would change, 1 when something would, 2 when a file could
    /// not be read.
    #[command(name = "migrate-overlay")]
    MigrateOverlay(MigrateOverlayArgs),
}

/// Arguments of flows.
#[derive(Debug, Args)]
pub struct FlowsArgs {
    /// Only denied flows.
    #[arg(long = "denied")]
    pub denied: bool,
    /// Flows last seen within this long (e.g. 30s, 5m, 1h).
    #[arg(long = "since", default_value = "5m")]
    pub since: String,
    /// `wide` (addresses, reporting direction, first seen) or `json`.
    #[arg(short = 'o', long = "output")]
    pub output: Option<String>,
}

/// Arguments of migrate-overlay.
#[derive(Debug, Args)]
pub struct MigrateOverlayArgs {
    /// Marathon app/group/pod JSON files, dcos-commons svc.yml, config.json or
    /// marathon.json.mustache files.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
    /// Write the changes (each file atomically, the original kept as FILE.bak).
    #[arg(long = "write")]
    pub write: bool,
    /// The overlay network's name.
    #[arg(long = "from", default_value = "dcos", value_name = "NETWORK")]
    pub from: String,
    /// Calico's network name.
    #[arg(long = "to", default_value = "calico", value_name = "NETWORK")]
    pub to: String,
}

/// Arguments of datastore.
#[derive(Debug, Args)]
pub struct DatastoreArgs {
    /// The datastore command.
    #[command(subcommand)]
    pub command: DatastoreCommand,
}

/// The datastore commands.
#[derive(Debug, Subcommand)]
pub enum DatastoreCommand {
    /// Move every resource and the IPAM state to another datastore: lock, export, import into
    /// the new one, unlock it.
    Migrate(MigrateArgs),
}

/// Arguments of datastore migrate.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The migration step.
    #[command(subcommand)]
    pub command: MigrateCommand,
}

/// The migration steps.
#[derive(Debug, Subcommand)]
pub enum MigrateCommand {
    /// Stop IPAM from handing out addresses (ClusterInformation datastoreReady: false).
    Lock,
    /// Let IPAM hand out addresses again.
    Unlock,
    /// Print every resource and the IPAM state as YAML (the datastore must be locked).
    Export,
    /// Write an export into an empty datastore; it stays locked until unlocked.
    Import(ImportArgs),
}

/// Arguments of datastore migrate import.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The export file, or `-` for stdin.
    #[arg(
        short = 'f',
        long = "filename",
        value_name = "FILENAME",
        required = true
    )]
    pub filename: String,
    /// How -f is read.
    #[command(flatten)]
    pub files: FileFlags,
}

/// Arguments of version.
#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Print the client version only (no datastore access).
    #[arg(long = "client")]
    pub client: bool,
    /// Keep printing the cluster version whenever it changes, checking at this interval
    /// (`1s`, `10m`, `2h`); 0 (the default) prints once.
    #[arg(long = "poll", value_name = "POLL", value_parser = parse_poll)]
    pub poll: Option<std::time::Duration>,
}

fn parse_poll(s: &str) -> Result<std::time::Duration, String> {
    match calico_api::parse_go_duration(s) {
        Some(ns) if ns >= 0.0 => Ok(std::time::Duration::from_secs_f64(ns / 1e9)),
        _ => Err(format!(
            "{s:?} is not a duration (e.g. 1s, 10m, 2h; 0 prints once)"
        )),
    }
}

/// Arguments of node.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// The node command.
    #[command(subcommand)]
    pub command: NodeCommand,
}

/// The node commands.
#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Whether calico-node runs here, and BIRD's BGP peers (from its control sockets).
    Status(NodeStatusArgs),
    /// Whether this host has the kernel features and tools calico-node needs.
    #[command(name = "checksystem")]
    Checksystem,
    /// Write this host's diagnostics bundle (.tar.gz): kernel state, BIRD, logs,
    /// configuration; secrets redacted.
    Diags(NodeDiagsArgs),
}

/// Arguments of node diags.
#[derive(Debug, Args)]
pub struct NodeDiagsArgs {
    /// The bundle to write (`-` for standard output); default
    /// calico-node-diags-<host>-<time>.tar.gz here.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<String>,
    /// calico-rs configuration directory.
    #[arg(long = "config-dir", default_value = "/etc/calico", value_name = "DIR")]
    pub config_dir: PathBuf,
    /// Directory of component log files (besides the journal).
    #[arg(
        long = "log-dir",
        default_value = "/var/log/calico",
        value_name = "DIR"
    )]
    pub log_dir: PathBuf,
    /// Directory of BIRD's control sockets.
    #[arg(
        long = "bird-dir",
        default_value = "/var/run/calico",
        value_name = "DIR"
    )]
    pub bird_dir: PathBuf,
    /// Directory of the CNI network configurations.
    #[arg(
        long = "cni-dir",
        default_value = "/opt/mesosphere/etc/dcos/network/cni",
        value_name = "DIR"
    )]
    pub cni_dir: PathBuf,
}

/// Arguments of cluster.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// The cluster command.
    #[command(subcommand)]
    pub command: ClusterCommand,
}

/// The cluster commands.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Write the datastore's diagnostics bundle (.tar.gz): every resource, IPAM's state and
    /// an IPAM check; secrets redacted.
    Diags(ClusterDiagsArgs),
}

/// Arguments of cluster diags.
#[derive(Debug, Args)]
pub struct ClusterDiagsArgs {
    /// The bundle to write (`-` for standard output); default
    /// calico-cluster-diags-<time>.tar.gz here.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<String>,
}

/// Arguments of node status.
#[derive(Debug, Args)]
pub struct NodeStatusArgs {
    /// Directory of BIRD's control sockets `bird.ctl` and `bird6.ctl` (default: upstream's
    /// places, /var/run/calico then /var/run/bird).
    #[arg(long = "bird-dir", value_name = "DIR")]
    pub bird_dir: Option<std::path::PathBuf>,
}

/// Namespace scoping shared by the commands.
#[derive(Debug, Args, Clone, Default)]
pub struct NamespaceFlag {
    /// Namespace of namespaced resources (default: the document's, else `default`).
    #[arg(short = 'n', long = "namespace", value_name = "NS")]
    pub namespace: Option<String>,
}

/// How `-f` is read.
#[derive(Debug, Args, Clone, Copy, Default)]
pub struct FileFlags {
    /// Process the directory given with -f recursively.
    #[arg(short = 'R', long = "recursive")]
    pub recursive: bool,
    /// Do not fail when a file or directory given with -f holds no documents.
    #[arg(long = "skip-empty")]
    pub skip_empty: bool,
}

impl FileFlags {
    /// As the reader takes them.
    pub fn read_options(self) -> crate::input::ReadOptions {
        crate::input::ReadOptions {
            recursive: self.recursive,
            skip_empty: self.skip_empty,
        }
    }
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
    /// How -f is read.
    #[command(flatten)]
    pub files: FileFlags,
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
    #[arg(short = 's', long = "skip-not-exists")]
    pub skip_not_exists: bool,
    /// How -f is read.
    #[command(flatten)]
    pub files: FileFlags,
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
    /// For one workload endpoint: also list the policies that apply to it, in order.
    #[arg(long = "show-policies")]
    pub show_policies: bool,
    /// How -f is read.
    #[command(flatten)]
    pub files: FileFlags,
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
    /// The patch, JSON or YAML: an object for strategic and merge, a list of operations for
    /// json, e.g. `{"spec":{"disabled":true}}`.
    #[arg(short = 'p', long = "patch", value_name = "PATCH")]
    pub patch: String,
    /// Patch type: strategic (Calico's types carry no merge keys, so it merges as a JSON merge
    /// patch does), merge (RFC 7396) or json (RFC 6902 operations).
    #[arg(
        short = 't',
        long = "type",
        default_value = "strategic",
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
    /// How -f is read.
    #[command(flatten)]
    pub files: FileFlags,
    /// Namespace for namespaced resources without one.
    #[command(flatten)]
    pub namespace: NamespaceFlag,
}

/// Arguments of ipam.
#[derive(Debug, Args)]
pub struct IpamArgs {
    /// The ipam command.
    #[command(subcommand)]
    pub command: IpamCommand,
}

/// The ipam commands.
#[derive(Debug, Subcommand)]
pub enum IpamCommand {
    /// Show addresses in use per pool (and per block, borrowed, configuration, one address).
    Show(IpamShowArgs),
    /// Cross-check allocations against workload endpoints and nodes; report leaks.
    Check(IpamCheckArgs),
    /// Release an address, or the leaks a check report lists (each re-validated first).
    Release(IpamReleaseArgs),
    /// Change the IPAM configuration.
    Configure(IpamConfigureArgs),
    /// Split an IP pool into a power of two of equal pools (the datastore must be locked).
    Split(IpamSplitArgs),
}

/// Arguments of ipam split.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("pool").required(true).args(["cidr", "name"])))]
pub struct IpamSplitArgs {
    /// How many pools to make: 2, 4, 8, ...
    #[arg(value_name = "NUMBER")]
    pub parts: u32,
    /// CIDR of the pool to split.
    #[arg(long = "cidr", value_name = "CIDR")]
    pub cidr: Option<String>,
    /// Name of the pool to split.
    #[arg(long = "name", value_name = "POOL_NAME")]
    pub name: Option<String>,
}

/// Arguments of ipam show.
#[derive(Debug, Args)]
pub struct IpamShowArgs {
    /// Show whether this address is in use, and by what.
    #[arg(long = "ip", value_name = "IP")]
    pub ip: Option<String>,
    /// Show each block's usage too.
    #[arg(long = "show-blocks")]
    pub show_blocks: bool,
    /// Show addresses nodes borrowed from blocks affine to other nodes.
    #[arg(long = "show-borrowed")]
    pub show_borrowed: bool,
    /// Show the IPAM configuration.
    #[arg(long = "show-configuration")]
    pub show_configuration: bool,
}

/// Arguments of ipam check.
#[derive(Debug, Args)]
pub struct IpamCheckArgs {
    /// Write the report (JSON) to this file, for `ipam release --from-report`.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// List every allocated address.
    #[arg(long = "show-all-ips")]
    pub show_all_ips: bool,
    /// List every address with a problem.
    #[arg(long = "show-problem-ips")]
    pub show_problem_ips: bool,
}

/// Arguments of ipam release.
#[derive(Debug, Args)]
pub struct IpamReleaseArgs {
    /// The address to release (refused while a workload endpoint lists it).
    #[arg(
        long = "ip",
        value_name = "IP",
        required_unless_present = "from_report",
        conflicts_with = "from_report"
    )]
    pub ip: Option<String>,
    /// Release the leaks, handles and node-less blocks of an `ipam check -o` report; given
    /// several times, only what every report lists (reports taken apart in time rule out
    /// addresses caught in the middle of an assignment). Each item is checked again first.
    #[arg(long = "from-report", value_name = "FILE")]
    pub from_report: Vec<PathBuf>,
    /// Release from reports even though the datastore is not locked
    /// (`calicoctl datastore migrate lock`).
    #[arg(long = "force")]
    pub force: bool,
}

/// Arguments of ipam configure.
#[derive(Debug, Args)]
pub struct IpamConfigureArgs {
    /// Never borrow addresses from other nodes' blocks (true or false).
    #[arg(long = "strictaffinity", value_name = "BOOL")]
    pub strict_affinity: Option<bool>,
    /// Most blocks a node may claim per address family (0: no limit).
    #[arg(long = "max-blocks-per-host", value_name = "N")]
    pub max_blocks_per_host: Option<u32>,
}

/// Arguments of `policy`.
#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// The policy tool to run.
    #[command(subcommand)]
    pub command: PolicyCommand,
}

/// The policy tools.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Explain the verdict for a packet: egress policy at the source endpoint, then ingress
    /// policy at the destination, each tier, policy and rule consulted.
    Trace(TraceArgs),
}

/// Arguments of `policy trace`.
#[derive(Debug, Args)]
pub struct TraceArgs {
    /// Source: `namespace/endpoint`, `endpoint` (namespace default), a workload id, or an IP.
    #[arg(long = "src", value_name = "ENDPOINT|IP")]
    pub src: String,
    /// Destination: `namespace/endpoint`, `endpoint`, a workload id, or an IP.
    #[arg(long = "dst", value_name = "ENDPOINT|IP")]
    pub dst: String,
    /// Protocol: TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or a number.
    #[arg(long = "protocol", default_value = "TCP", value_name = "PROTOCOL")]
    pub protocol: String,
    /// Destination port (required for protocols with ports).
    #[arg(long = "port", value_name = "PORT")]
    pub port: Option<u16>,
    /// Source port (default 40000).
    #[arg(long = "src-port", value_name = "PORT")]
    pub src_port: Option<u16>,
    /// ICMP type.
    #[arg(long = "icmp-type", value_name = "TYPE")]
    pub icmp_type: Option<u8>,
    /// ICMP code.
    #[arg(long = "icmp-code", value_name = "CODE")]
    pub icmp_code: Option<u8>,
    /// Output: `text` (default) or `json`.
    #[arg(
        short = 'o',
        long = "output",
        default_value = "text",
        value_name = "OUTPUT"
    )]
    pub output: String,
    /// Also show the verdict with every staged policy (StagedGlobalNetworkPolicy,
    /// StagedNetworkPolicy) put in force as its stagedAction says.
    #[arg(long = "staged")]
    pub staged: bool,
}
