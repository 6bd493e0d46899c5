//! The resource commands. Every write command checks all of its input first and then writes
//! it in one atomic datastore batch: either every resource lands or none does.

use std::io::Write;

use calico_api::{Kind, Resource};
use calico_datastore::{Datastore, DatastoreError, Key, KeyValue, OpenMode, WriteOp};
use serde_json::Value;

use crate::cli::{
    Command, DeleteArgs, GetArgs, LabelArgs, NamespaceFlag, PatchArgs, PolicyArgs, PolicyCommand,
    ValidateArgs, VersionArgs, WriteArgs,
};
use crate::input::{self, NamespaceArgs, Origin};
use crate::output::{self, OutputFormat, Printable};

/// A failed command: the message to print and the exit code.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CommandError {
    /// What went wrong, ready to print.
    pub message: String,
    /// The exit code (1 unless the command documents others).
    pub code: i32,
}

impl CommandError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self::with_code(message, 1)
    }

    pub(crate) fn with_code(message: impl Into<String>, code: i32) -> Self {
        Self {
            message: message.into(),
            code,
        }
    }
}

impl From<input::InputError> for CommandError {
    fn from(e: input::InputError) -> Self {
        Self::new(e.to_string())
    }
}

/// The version this build reports.
pub const VERSION: &str = concat!("v", env!("CARGO_PKG_VERSION"));

/// Opens the datastore only when a command needs it, so `validate` and argument errors work
/// without one.
pub struct Context<'a> {
    /// Opens the configured datastore: [`OpenMode::Create`] for commands that write new
    /// resources, [`OpenMode::Existing`] for the rest (a read never creates a store file).
    pub open: &'a dyn Fn(OpenMode) -> Result<Box<dyn Datastore>, CommandError>,
    /// Where results go.
    pub out: &'a mut dyn Write,
}

/// Run one command.
pub fn run(command: Command, ctx: &mut Context<'_>) -> Result<(), CommandError> {
    match command {
        Command::Create(a) => write_command(WriteMode::Create, a, ctx),
        Command::Apply(a) => write_command(WriteMode::Apply, a, ctx),
        Command::Replace(a) => write_command(WriteMode::Replace, a, ctx),
        Command::Delete(a) => delete(a, ctx),
        Command::Get(a) => get(a, ctx),
        Command::Patch(a) => patch(a, ctx),
        Command::Label(a) => label(a, ctx),
        Command::Validate(a) => validate(a, ctx),
        Command::Policy(a) => policy(a, ctx),
        Command::Version(a) => version(&a, ctx),
        Command::Datastore(a) => crate::datastore_cmd::run(a, ctx),
        Command::MigrateOverlay(a) => crate::overlay_cmd::run(&a, ctx),
        Command::Cluster(a) => crate::diags_cmd::cluster(&a, ctx),
        Command::Flows(a) => crate::flows_cmd::run(&a, ctx),
        Command::Ipam(a) => crate::ipam_cmd::run(a, ctx),
        Command::Node(a) => crate::node_cmd::run(a, ctx),
    }
}

fn ns_args(flag: &NamespaceFlag, all_namespaces: bool) -> NamespaceArgs {
    NamespaceArgs {
        namespace: flag.namespace.clone(),
        all_namespaces,
    }
}

fn key_of(resource: &Resource) -> Key {
    Key {
        kind: resource.kind,
        namespace: resource.namespace().map(str::to_owned),
        name: resource.name().to_owned(),
    }
}

/// "'NetworkPolicy' " when every resource is of one kind, "" otherwise (calicoctl's wording).
fn kind_phrase(kinds: impl IntoIterator<Item = Kind>) -> String {
    let mut kinds: Vec<Kind> = kinds.into_iter().collect();
    kinds.sort();
    kinds.dedup();
    match kinds.as_slice() {
        [one] => format!("'{one}' "),
        _ => String::new(),
    }
}

/// A `metadata.resourceVersion` given in a document, for compare-and-swap.
fn given_revision(origin: &Origin, resource: &Resource) -> Result<Option<i64>, CommandError> {
    match resource.value.pointer("/metadata/resourceVersion") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => s.parse().map(Some).map_err(|_| {
            CommandError::new(format!(
                "{origin}: field metadata.resourceVersion = {s:?}: not a revision of this datastore (expected a decimal number)"
            ))
        }),
        Some(other) => Err(CommandError::new(format!(
            "{origin}: field metadata.resourceVersion = {other}: must be a string"
        ))),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum WriteMode {
    Create,
    Apply,
    Replace,
}

fn write_command(
    mode: WriteMode,
    args: WriteArgs,
    ctx: &mut Context<'_>,
) -> Result<(), CommandError> {
    let (verb, past) = match mode {
        WriteMode::Create => ("create", "created"),
        WriteMode::Apply => ("apply", "applied"),
        WriteMode::Replace => ("replace", "replaced"),
    };
    let docs = input::read_documents(&args.filename, args.files.read_options())?;
    let resources = input::validate_documents(docs, &ns_args(&args.namespace, false))?;
    let phrase = kind_phrase(resources.iter().map(|(_, r)| r.kind));
    let ds = (ctx.open)(OpenMode::Create)?;
    ensure_initialized(ds.as_ref());

    let mut ops = Vec::with_capacity(resources.len());
    let mut skipped = 0;
    for (origin, resource) in &resources {
        let key = key_of(resource);
        let expected = given_revision(origin, resource)?;
        let value = resource.value.clone();
        let op = match mode {
            WriteMode::Create => {
                if args.skip_exists && exists(ds.as_ref(), &key)? {
                    skipped += 1;
                    continue;
                }
                WriteOp::Create { key, value }
            }
            WriteMode::Replace => WriteOp::Update {
                key,
                value,
                expected_revision: expected,
            },
            WriteMode::Apply => match expected {
                // A document carrying a resourceVersion updates only that version; if the
                // resource does not exist (a document exported from another cluster), it is
                // created.
                Some(rev) if exists(ds.as_ref(), &key)? => WriteOp::Update {
                    key,
                    value,
                    expected_revision: Some(rev),
                },
                _ => WriteOp::Upsert { key, value },
            },
        };
        ops.push(op);
    }
    let written = ops.len();
    if !ops.is_empty() {
        calico_datastore::cluster::check_batch(ds.as_ref(), &ops)
            .and_then(|()| ds.write_batch(ops))
            .map_err(|e| {
                CommandError::new(format!(
                    "Failed to {verb} any {phrase}resources: {}",
                    describe_batch_error(&e, &resources)
                ))
            })?;
    }
    let total = written + skipped;
    writeln!(ctx.out, "Successfully {past} {total} {phrase}resource(s)").map_err(io_error)?;
    Ok(())
}

fn describe_batch_error(e: &DatastoreError, resources: &[(Origin, Resource)]) -> String {
    match e {
        DatastoreError::Batch { index, source } => match resources.get(*index) {
            Some((origin, _)) => format!("{origin}: {source}; nothing was written"),
            None => format!("{source}; nothing was written"),
        },
        other => other.to_string(),
    }
}

fn describe_delete_error(e: &DatastoreError) -> String {
    match e {
        DatastoreError::Batch { source, .. } => format!("{source}; nothing was deleted"),
        other => other.to_string(),
    }
}

fn get_existing(ds: &dyn Datastore, key: &Key) -> Result<Option<KeyValue>, CommandError> {
    ds.get(key)
        .map_err(|e| CommandError::new(format!("reading {key}: {e}")))
}

/// Whether `key` holds a value, readable or not: an unreadable one still exists (and can be
/// overwritten or deleted, which is how it is repaired).
fn exists(ds: &dyn Datastore, key: &Key) -> Result<bool, CommandError> {
    match ds.get(key) {
        Ok(found) => Ok(found.is_some()),
        Err(DatastoreError::Corrupt { .. }) => Ok(true),
        Err(e) => Err(CommandError::new(format!("reading {key}: {e}"))),
    }
}

pub(crate) fn io_error(e: std::io::Error) -> CommandError {
    CommandError::new(format!("writing output: {e}"))
}

/// Write the resources every cluster has if missing, as upstream calicoctl does before its
/// first write. Failures are ignored: the user's own write reports any real datastore problem.
fn ensure_initialized(ds: &dyn Datastore) {
    let _ = calico_datastore::cluster::ensure_initialized(ds, VERSION);
}

fn resolve_kind(name: &str) -> Result<Kind, CommandError> {
    Kind::from_cli_name(name).ok_or_else(|| {
        CommandError::new(format!(
            "Resource type '{name}' is not supported; use one of: {}",
            calico_api::kind::ALL_KINDS
                .iter()
                .map(|k| k.plural())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })
}

/// The namespace a kind+name command addresses.
fn cli_namespace(kind: Kind, flag: &NamespaceFlag) -> Result<Option<String>, CommandError> {
    match (kind.is_namespaced(), &flag.namespace) {
        (true, Some(ns)) => Ok(Some(ns.clone())),
        (true, None) => Ok(Some("default".into())),
        (false, Some(_)) => Err(CommandError::new(format!("{kind} is not namespaced"))),
        (false, None) => Ok(None),
    }
}

fn check_name(name: &str) -> Result<(), CommandError> {
    if name.is_empty() {
        Err(CommandError::new("resource name may not be empty"))
    } else {
        Ok(())
    }
}

fn delete(args: DeleteArgs, ctx: &mut Context<'_>) -> Result<(), CommandError> {
    // (key, expected revision, origin for messages)
    let mut targets: Vec<(Key, Option<i64>)> = Vec::new();
    let kinds: Vec<Kind>;
    if let Some(filename) = &args.filename {
        let docs = input::read_documents(filename, args.files.read_options())?;
        let resources = input::validate_documents(docs, &ns_args(&args.namespace, false))?;
        kinds = resources.iter().map(|(_, r)| r.kind).collect();
        for (origin, resource) in &resources {
            targets.push((key_of(resource), given_revision(origin, resource)?));
        }
    } else {
        let kind = resolve_kind(args.kind.as_deref().unwrap_or_default())?;
        if args.names.is_empty() {
            return Err(CommandError::new(format!(
                "no {kind} name given: calicoctl delete {} <NAME>...",
                kind.plural()
            )));
        }
        let namespace = cli_namespace(kind, &args.namespace)?;
        for name in &args.names {
            check_name(name)?;
            targets.push((
                Key {
                    kind,
                    namespace: namespace.clone(),
                    name: name.clone(),
                },
                None,
            ));
        }
        kinds = vec![kind];
    }
    let phrase = kind_phrase(kinds);
    let ds = (ctx.open)(OpenMode::Existing)?;
    let mut ops = Vec::new();
    // Everything named must exist before anything goes (a Node's removal below is not part
    // of the batch), unless missing ones are to be skipped.
    for (key, expected) in targets {
        if !exists(ds.as_ref(), &key)? {
            if args.skip_not_exists {
                continue;
            }
            return Err(CommandError::new(format!(
                "Failed to delete any {phrase}resources: resource does not exist: {key}; \
                 nothing was deleted"
            )));
        }
        ops.push(WriteOp::Delete {
            key,
            expected_revision: expected,
        });
    }
    calico_datastore::cluster::check_batch(ds.as_ref(), &ops).map_err(|e| {
        CommandError::new(format!(
            "Failed to delete any {phrase}resources: {}",
            describe_delete_error(&e)
        ))
    })?;
    // A Node takes its endpoints, addresses, block affinities and per-node configuration
    // with it; the Node goes only once all of that is gone, so a failure can be retried.
    let total = ops.len();
    let mut removed: Vec<Key> = Vec::new();
    for op in &ops {
        if let WriteOp::Delete { key, .. } = op
            && key.kind == Kind::Node
        {
            let removal = calico_ipam::node_removal::remove_node(ds.as_ref(), &key.name);
            if !removal.errors.is_empty() {
                return Err(CommandError::new(format!(
                    "Failed to delete Node {}: removing what belongs to it: {}",
                    key.name,
                    removal.errors.join("; ")
                )));
            }
            removed.extend(removal.deleted);
        }
    }
    // What a Node took with it is deleted already.
    ops.retain(|op| !matches!(op, WriteOp::Delete { key, .. } if removed.contains(key)));
    if !ops.is_empty() {
        ds.write_batch(ops).map_err(|e| {
            CommandError::new(format!(
                "Failed to delete any {phrase}resources: {}",
                describe_delete_error(&e)
            ))
        })?;
    }
    writeln!(ctx.out, "Successfully deleted {total} {phrase}resource(s)").map_err(io_error)?;
    Ok(())
}

fn get(args: GetArgs, ctx: &mut Context<'_>) -> Result<(), CommandError> {
    let format = OutputFormat::parse(&args.output).map_err(CommandError::new)?;
    if args.all_namespaces && args.namespace.namespace.is_some() {
        return Err(CommandError::new(
            "cannot use both --namespace and --all-namespaces flags at the same time",
        ));
    }
    // What to fetch: named keys, or a list of one kind.
    let mut named: Vec<Key> = Vec::new();
    let mut list: Option<(Kind, Option<String>)> = None;
    if let Some(filename) = &args.filename {
        let docs = input::read_documents(filename, args.files.read_options())?;
        let resources = input::validate_documents(docs, &ns_args(&args.namespace, false))?;
        named = resources.iter().map(|(_, r)| key_of(r)).collect();
    } else {
        let kind = resolve_kind(args.kind.as_deref().unwrap_or_default())?;
        if !kind.is_namespaced() && args.namespace.namespace.is_some() {
            return Err(CommandError::new(format!("{kind} is not namespaced")));
        }
        // `-A` on a cluster-scoped kind lists it all, as a habit from namespaced kinds.
        let all_namespaces = args.all_namespaces && kind.is_namespaced();
        if args.names.is_empty() {
            let namespace = if all_namespaces {
                None
            } else {
                cli_namespace(kind, &args.namespace)?
            };
            list = Some((kind, namespace));
        } else {
            if args.all_namespaces {
                return Err(CommandError::new(
                    "a resource name cannot be combined with --all-namespaces",
                ));
            }
            let namespace = cli_namespace(kind, &args.namespace)?;
            for name in &args.names {
                check_name(name)?;
                named.push(Key {
                    kind,
                    namespace: namespace.clone(),
                    name: name.clone(),
                });
            }
        }
    }

    let show_policies = args.show_policies;
    if show_policies && (named.is_empty() || named.iter().any(|k| k.kind != Kind::WorkloadEndpoint))
    {
        return Err(CommandError::new(
            "--show-policies works with named workload endpoints: calicoctl get workloadendpoint NAME --show-policies",
        ));
    }
    let ds = (ctx.open)(OpenMode::Existing)?;
    let mut results = Vec::new();
    let mut missing = Vec::new();
    let mut shown = Vec::new();
    // Unreadable records are named after the readable ones are printed, and fail the command.
    let mut unreadable = Vec::new();
    if let Some((kind, namespace)) = list {
        let listed = ds
            .list(kind, namespace.as_deref())
            .map_err(|e| CommandError::new(format!("listing {}: {e}", kind.plural())))?;
        unreadable.extend(listed.unreadable.into_iter().map(|u| {
            format!(
                "unreadable datastore content at {}: {}; repair it with `calicoctl apply` or remove it with `calicoctl delete`",
                u.key, u.reason
            )
        }));
        results.push(Printable::List {
            kind,
            items: listed.items.into_iter().map(|kv| kv.value).collect(),
            revision: listed.revision,
        });
    }
    for key in named {
        match get_existing(ds.as_ref(), &key)? {
            Some(kv) => {
                shown.push(kv.key);
                let mut value = kv.value;
                if args.export {
                    export(&mut value);
                }
                results.push(Printable::Object(value));
            }
            None => missing.push(key),
        }
    }
    let as_number = configured_as_number(ds.as_ref());
    output::print(ctx.out, &format, &results, args.all_namespaces, &as_number)
        .map_err(|e| CommandError::new(e.to_string()))?;
    if show_policies {
        for key in &shown {
            let text = crate::policy_cmd::show_policies(
                ds.as_ref(),
                key.namespace.as_deref().unwrap_or("default"),
                &key.name,
            )?;
            write!(ctx.out, "{text}").map_err(io_error)?;
        }
    }
    let problems: Vec<String> = unreadable
        .into_iter()
        .chain(
            missing
                .iter()
                .map(|k| format!("resource does not exist: {k}")),
        )
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(CommandError::new(problems.join("\n")))
    }
}

/// The cluster-wide AS number shown for nodes without their own (upstream's default 64512).
fn configured_as_number(ds: &dyn Datastore) -> String {
    ds.get(&Key::global(Kind::BgpConfiguration, "default"))
        .ok()
        .flatten()
        .and_then(|kv| {
            kv.value
                .pointer("/spec/asNumber")
                .map(crate::template::to_text)
        })
        .unwrap_or_else(|| "64512".into())
}

fn export(value: &mut Value) {
    if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in ["namespace", "uid", "resourceVersion", "creationTimestamp"] {
            meta.remove(field);
        }
    }
}

/// Read-modify-write of one resource with compare-and-swap, retried when another writer got
/// in between.
fn modify(
    ds: &dyn Datastore,
    key: &Key,
    mut change: impl FnMut(&mut Value) -> Result<(), CommandError>,
) -> Result<(), CommandError> {
    const ATTEMPTS: usize = 5;
    for _ in 0..ATTEMPTS {
        let current = get_existing(ds, key)?
            .ok_or_else(|| CommandError::new(format!("resource does not exist: {key}")))?;
        let mut value = current.value.clone();
        change(&mut value)?;
        let resource = calico_api::parse_resource(value)
            .and_then(|r| calico_api::check_supported(&r).map(|()| r))
            .map_err(|e| {
                CommandError::new(format!("the result is not a valid {}: {e}", key.kind))
            })?;
        if key_of(&resource) != *key {
            return Err(CommandError::new(
                "kind, name and namespace of a resource cannot be changed",
            ));
        }
        let op = WriteOp::Update {
            key: key.clone(),
            value: resource.value.clone(),
            expected_revision: Some(current.mod_revision),
        };
        if let Err(e) = calico_datastore::cluster::check_batch(ds, std::slice::from_ref(&op)) {
            let reason = match e {
                DatastoreError::Batch { source, .. } => match *source {
                    DatastoreError::Refused { reason, .. } => reason,
                    other => other.to_string(),
                },
                other => other.to_string(),
            };
            return Err(CommandError::new(format!("updating {key}: {reason}")));
        }
        match ds.update(key, resource.value, Some(current.mod_revision)) {
            Ok(_) => return Ok(()),
            Err(DatastoreError::Conflict { .. }) => continue,
            Err(e) => return Err(CommandError::new(format!("updating {key}: {e}"))),
        }
    }
    Err(CommandError::new(format!(
        "updating {key}: it kept changing under us ({ATTEMPTS} attempts); try again"
    )))
}

fn patch(args: PatchArgs, ctx: &mut Context<'_>) -> Result<(), CommandError> {
    check_name(&args.name)?;
    let kind = resolve_kind(&args.kind)?;
    let patch_doc =
        input::parse_text("--patch", &args.patch).map_err(|e| CommandError::new(e.to_string()))?;
    let change = match (args.patch_type.as_str(), patch_doc.as_slice()) {
        // Calico's types carry no patch merge keys: a strategic merge patch merges maps and
        // replaces lists, exactly as a JSON merge patch does.
        ("strategic" | "merge", [doc]) if doc.value.is_object() => Patch::Merge(doc.value.clone()),
        ("strategic" | "merge", _) => {
            return Err(CommandError::new(format!(
                "--patch {:?}: a {} patch must be one JSON or YAML object",
                args.patch, args.patch_type
            )));
        }
        ("json", _) => {
            // The operations list itself, not a stream of documents.
            let ops: Value = serde_json::from_str(&args.patch)
                .or_else(|_| serde_saphyr::from_str(&args.patch))
                .unwrap_or(Value::Null);
            let ops: json_patch::Patch = serde_json::from_value(ops).map_err(|e| {
                CommandError::new(format!(
                    "--patch {:?}: a json patch must be a list of RFC 6902 operations: {e}",
                    args.patch
                ))
            })?;
            Patch::Json(ops)
        }
        (other, _) => {
            return Err(CommandError::new(format!(
                "--type {other:?}: use strategic (the default), merge or json"
            )));
        }
    };
    let key = Key {
        kind,
        namespace: cli_namespace(kind, &args.namespace)?,
        name: args.name.clone(),
    };
    let ds = (ctx.open)(OpenMode::Existing)?;
    modify(ds.as_ref(), &key, |value| match &change {
        Patch::Merge(p) => {
            json_patch::merge(value, p);
            Ok(())
        }
        Patch::Json(ops) => json_patch::patch(value, ops)
            .map_err(|e| CommandError::new(format!("applying the json patch: {e}"))),
    })?;
    writeln!(ctx.out, "Successfully patched 1 '{kind}' resource").map_err(io_error)?;
    Ok(())
}

/// A patch as `--type` reads it.
enum Patch {
    /// strategic or merge: RFC 7396.
    Merge(Value),
    /// json: RFC 6902 operations.
    Json(json_patch::Patch),
}

fn label(args: LabelArgs, ctx: &mut Context<'_>) -> Result<(), CommandError> {
    check_name(&args.name)?;
    let kind = resolve_kind(&args.kind)?;
    let (label_key, label_value) = match (args.label.split_once('='), args.remove) {
        (None, true) => (args.label.clone(), None),
        (Some(_), true) => {
            return Err(CommandError::new(format!(
                "--remove takes a label key, not {:?}",
                args.label
            )));
        }
        (Some((k, v)), false) => (k.to_owned(), Some(v.to_owned())),
        (None, false) => {
            return Err(CommandError::new(format!(
                "label {:?} must be key=value (or key with --remove)",
                args.label
            )));
        }
    };
    if label_key.is_empty() {
        return Err(CommandError::new("label key may not be empty"));
    }
    let key = Key {
        kind,
        namespace: cli_namespace(kind, &args.namespace)?,
        name: args.name.clone(),
    };
    // Upstream's wording names the kind as typed: `nodes node1`.
    let shown = format!("{} {}", args.kind, args.name);
    let ds = (ctx.open)(OpenMode::Existing)?;
    let mut updated = false;
    modify(ds.as_ref(), &key, |value| {
        let meta = value
            .get_mut("metadata")
            .and_then(Value::as_object_mut)
            .ok_or_else(|| CommandError::new(format!("{key} has no metadata")))?;
        let labels = meta
            .entry("labels")
            .or_insert_with(|| Value::Object(Default::default()));
        let labels = labels
            .as_object_mut()
            .ok_or_else(|| CommandError::new(format!("{key}: metadata.labels is not a map")))?;
        match &label_value {
            None => {
                if labels.remove(&label_key).is_none() {
                    return Err(CommandError::new(format!(
                        "cannot remove label of {shown}, key {label_key} does not exist"
                    )));
                }
            }
            Some(v) => {
                updated = false;
                if let Some(old) = labels.get(&label_key) {
                    if !args.overwrite && old.as_str() != Some(v) {
                        return Err(CommandError::new(format!(
                            "failed to update label of {shown}, key {label_key} is already \
                             present. please use '--overwrite' to set a new value"
                        )));
                    }
                    updated = true;
                }
                labels.insert(label_key.clone(), Value::String(v.clone()));
            }
        }
        if labels.is_empty() {
            meta.remove("labels");
        }
        Ok(())
    })?;
    let verb = match (&label_value, updated) {
        (None, _) => "removed",
        (Some(_), true) => "updated",
        (Some(_), false) => "set",
    };
    let place = if label_value.is_some() { "on" } else { "from" };
    writeln!(
        ctx.out,
        "Successfully {verb} label {label_key} {place} {shown}"
    )
    .map_err(io_error)
}

fn validate(args: ValidateArgs, ctx: &mut Context<'_>) -> Result<(), CommandError> {
    let docs = input::read_documents(&args.filename, args.files.read_options())?;
    let resources = input::validate_documents(docs, &ns_args(&args.namespace, false))?;
    let phrase = kind_phrase(resources.iter().map(|(_, r)| r.kind));
    writeln!(
        ctx.out,
        "Successfully validated {} {phrase}resource(s)",
        resources.len()
    )
    .map_err(io_error)
}

/// The commit this build was made from (`unknown` outside a git checkout).
const GIT_COMMIT: &str = env!("CALICO_GIT_COMMIT");

fn version(args: &VersionArgs, ctx: &mut Context<'_>) -> Result<(), CommandError> {
    writeln!(ctx.out, "{:<19}{VERSION}", "Client Version:").map_err(io_error)?;
    writeln!(ctx.out, "{:<19}{GIT_COMMIT}", "Git commit:").map_err(io_error)?;
    if args.client {
        return Ok(());
    }
    let read_cluster = || {
        let cluster = (ctx.open)(OpenMode::Existing).ok().and_then(|ds| {
            ds.get(&Key::global(Kind::ClusterInformation, "default"))
                .ok()
                .flatten()
        });
        ["calicoVersion", "clusterType"].map(|name| {
            cluster
                .as_ref()
                .and_then(|kv| kv.value.pointer(&format!("/spec/{name}")))
                .and_then(Value::as_str)
                .unwrap_or("unknown")
                .to_owned()
        })
    };
    let mut shown = read_cluster();
    let print = |out: &mut dyn Write, [version, cluster_type]: &[String; 2]| {
        writeln!(out, "{:<19}{version}", "Cluster Version:")?;
        writeln!(out, "{:<19}{cluster_type}", "Cluster Type:")?;
        out.flush()
    };
    print(ctx.out, &shown).map_err(io_error)?;
    let Some(every) = args.poll.filter(|d| !d.is_zero()) else {
        return Ok(());
    };
    loop {
        std::thread::sleep(every);
        let now = read_cluster();
        if now != shown {
            print(ctx.out, &now).map_err(io_error)?;
            shown = now;
        }
    }
}

fn policy(args: PolicyArgs, ctx: &mut Context<'_>) -> Result<(), CommandError> {
    match args.command {
        PolicyCommand::Trace(t) => {
            let json = match t.output.as_str() {
                "text" => false,
                "json" => true,
                other => {
                    return Err(CommandError::new(format!(
                        "-o {other:?}: policy trace prints text or json"
                    )));
                }
            };
            let request = crate::policy_cmd::TraceRequest {
                src: t.src,
                dst: t.dst,
                protocol: t.protocol,
                port: t.port,
                src_port: t.src_port,
                icmp_type: t.icmp_type,
                icmp_code: t.icmp_code,
                json,
                staged: t.staged,
            };
            let ds = (ctx.open)(OpenMode::Existing)?;
            let text = crate::policy_cmd::trace(ds.as_ref(), &request)?;
            write!(ctx.out, "{text}").map_err(io_error)
        }
    }
}
