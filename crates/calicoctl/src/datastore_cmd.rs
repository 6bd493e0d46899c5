//! `calicoctl datastore migrate lock|unlock|export|import`: move a cluster between datastores
//! (the embedded single-host store and an etcd cluster, either way) with every resource and the
//! IPAM state, as upstream's migration does. While locked (ClusterInformation
//! `datastoreReady: false`) IPAM hands out no addresses, so nothing changes under the export.

use std::io::Write;

use calico_api::Kind;
use calico_datastore::{Datastore, Key, OpenMode, WriteOp};
use serde_json::Value;

use crate::cli::{DatastoreArgs, DatastoreCommand, MigrateArgs, MigrateCommand};
use crate::commands::{CommandError, Context};
use crate::input;

/// Most keys written per datastore transaction on import (etcd refuses more than its
/// `--max-txn-ops`, 128 by default).
const IMPORT_CHUNK: usize = 100;

/// IPAM's own kinds, exported beside the resources.
const IPAM_KINDS: [Kind; 3] = [Kind::IpamBlock, Kind::BlockAffinity, Kind::IpamHandle];

/// Run `calicoctl datastore ...`.
pub fn run(args: DatastoreArgs, ctx: &mut Context<'_>) -> Result<(), CommandError> {
    match args.command {
        DatastoreCommand::Migrate(MigrateArgs { command }) => match command {
            MigrateCommand::Lock => {
                let ds = (ctx.open)(OpenMode::Existing)?;
                set_ready(ds.as_ref(), false)?;
                writeln!(ctx.out, "Datastore locked.").map_err(io)
            }
            MigrateCommand::Unlock => {
                let ds = (ctx.open)(OpenMode::Existing)?;
                set_ready(ds.as_ref(), true)?;
                writeln!(ctx.out, "Datastore unlocked.").map_err(io)
            }
            MigrateCommand::Export => {
                let ds = (ctx.open)(OpenMode::Existing)?;
                export(ds.as_ref(), ctx.out)
            }
            MigrateCommand::Import(a) => {
                let docs = input::read_documents(&a.filename, a.files.read_options())?;
                let ds = (ctx.open)(OpenMode::Create)?;
                let written = import(ds.as_ref(), docs)?;
                writeln!(
                    ctx.out,
                    "Imported {written} resource(s). The datastore stays locked: check it, then \
                     run `calicoctl datastore migrate unlock`."
                )
                .map_err(io)
            }
        },
    }
}

fn io(e: std::io::Error) -> CommandError {
    CommandError::new(format!("writing output: {e}"))
}

fn cluster_info_key() -> Key {
    Key::global(Kind::ClusterInformation, "default")
}

/// Whether the datastore is locked for migration.
pub fn is_locked(ds: &dyn Datastore) -> Result<bool, CommandError> {
    calico_ipam::pools::is_locked(ds).map_err(|e| CommandError::new(e.to_string()))
}

/// Set ClusterInformation `datastoreReady` (creating the resource if missing).
fn set_ready(ds: &dyn Datastore, ready: bool) -> Result<(), CommandError> {
    let fail = |e: calico_datastore::DatastoreError| {
        CommandError::new(format!("updating ClusterInformation default: {e}"))
    };
    calico_datastore::cluster::ensure_initialized(ds, crate::commands::VERSION).map_err(fail)?;
    for _ in 0..5 {
        let Some(kv) = ds.get(&cluster_info_key()).map_err(fail)? else {
            continue;
        };
        let mut value = kv.value;
        value["spec"]["datastoreReady"] = Value::Bool(ready);
        match ds.update(&cluster_info_key(), value, Some(kv.mod_revision)) {
            Ok(_) => return Ok(()),
            Err(calico_datastore::DatastoreError::Conflict { .. }) => continue,
            Err(e) => return Err(fail(e)),
        }
    }
    Err(CommandError::new(
        "updating ClusterInformation default: it kept changing; try again",
    ))
}

/// The value as it moves between datastores: without what each store assigns itself.
fn portable(mut value: Value) -> Value {
    if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in ["uid", "resourceVersion", "creationTimestamp"] {
            meta.remove(field);
        }
    }
    value
}

/// Every resource (but ClusterInformation, which belongs to each datastore) and the IPAM
/// state, as a YAML stream. Needs the datastore locked, so that nothing changes between the
/// lists.
fn export(ds: &dyn Datastore, out: &mut dyn Write) -> Result<(), CommandError> {
    if !is_locked(ds)? {
        return Err(CommandError::new(
            "the datastore is not locked: run `calicoctl datastore migrate lock` first, so that \
             nothing changes while it is exported",
        ));
    }
    let kinds = calico_api::kind::ALL_KINDS
        .into_iter()
        .filter(|k| *k != Kind::ClusterInformation)
        .chain(IPAM_KINDS);
    let mut first = true;
    for kind in kinds {
        let list = ds
            .list(kind, None)
            .map_err(|e| CommandError::new(format!("listing {kind}: {e}")))?;
        if let Some(bad) = list.unreadable.first() {
            return Err(CommandError::new(format!(
                "{kind} {} cannot be read ({}): repair or delete it before exporting",
                bad.key, bad.reason
            )));
        }
        for kv in list.items {
            let text = serde_saphyr::to_string(&crate::output::sorted_keys(&portable(kv.value)))
                .map_err(|e| CommandError::new(format!("writing {}: {e}", kv.key)))?;
            if !first {
                writeln!(out, "---").map_err(io)?;
            }
            first = false;
            out.write_all(text.as_bytes()).map_err(io)?;
        }
    }
    Ok(())
}

/// The key an exported IPAM object is stored under, after checking it is one.
fn ipam_key(kind: Kind, value: &Value) -> Result<Key, String> {
    let check = match kind {
        Kind::IpamBlock => {
            serde_json::from_value::<calico_ipam::model::Block>(value.clone()).map(drop)
        }
        Kind::BlockAffinity => {
            serde_json::from_value::<calico_ipam::model::Affinity>(value.clone()).map(drop)
        }
        _ => serde_json::from_value::<calico_ipam::model::Handle>(value.clone()).map(drop),
    };
    check.map_err(|e| e.to_string())?;
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or("metadata.name is missing")?;
    Ok(Key::global(kind, name))
}

/// Write an export into an empty datastore, locked. Every document is checked before
/// anything is written.
fn import(ds: &dyn Datastore, docs: Vec<input::Document>) -> Result<usize, CommandError> {
    let mut ops = Vec::with_capacity(docs.len());
    for doc in docs {
        let kind_name = doc.value.get("kind").and_then(Value::as_str).unwrap_or("");
        let ipam = IPAM_KINDS.into_iter().find(|k| k.as_str() == kind_name);
        let (key, value) = match ipam {
            Some(kind) => {
                let key = ipam_key(kind, &doc.value)
                    .map_err(|e| CommandError::new(format!("{}: {e}", doc.origin)))?;
                (key, doc.value)
            }
            None => {
                let resource = calico_api::parse_resource(doc.value)
                    .and_then(|r| calico_api::check_supported(&r).map(|()| r))
                    .map_err(|e| CommandError::new(format!("{}: {e}", doc.origin)))?;
                if resource.kind == Kind::ClusterInformation {
                    continue;
                }
                let key = Key {
                    kind: resource.kind,
                    namespace: resource.namespace().map(str::to_owned),
                    name: resource.name().to_owned(),
                };
                (key, resource.value)
            }
        };
        ops.push(WriteOp::Upsert { key, value });
    }
    refuse_unless_empty(ds)?;
    // Locked before the first write: nothing allocates from the half-imported state.
    set_ready(ds, false)?;
    let total = ops.len();
    let mut written = 0;
    let mut chunk = Vec::with_capacity(IMPORT_CHUNK);
    for op in ops {
        chunk.push(op);
        if chunk.len() == IMPORT_CHUNK {
            written += write_chunk(ds, std::mem::take(&mut chunk), written, total)?;
        }
    }
    if !chunk.is_empty() {
        written += write_chunk(ds, chunk, written, total)?;
    }
    Ok(written)
}

fn write_chunk(
    ds: &dyn Datastore,
    chunk: Vec<WriteOp>,
    written: usize,
    total: usize,
) -> Result<usize, CommandError> {
    let n = chunk.len();
    ds.write_batch(chunk).map_err(|e| {
        CommandError::new(format!(
            "importing: {e}; {written} of {total} resources were written before this; the \
             datastore stays locked: empty it and import again"
        ))
    })?;
    Ok(n)
}

/// The defaults any client or node creates by itself; an import may overwrite them.
fn is_default(key: &Key) -> bool {
    matches!(
        (key.kind, key.name.as_str()),
        (
            Kind::ClusterInformation | Kind::Tier | Kind::FelixConfiguration,
            "default"
        )
    )
}

fn refuse_unless_empty(ds: &dyn Datastore) -> Result<(), CommandError> {
    for kind in calico_api::kind::ALL_KINDS.into_iter().chain(IPAM_KINDS) {
        let list = ds
            .list(kind, None)
            .map_err(|e| CommandError::new(format!("listing {kind}: {e}")))?;
        let present = list
            .items
            .iter()
            .map(|kv| &kv.key)
            .chain(list.unreadable.iter().map(|u| &u.key))
            .find(|k| !is_default(k));
        if let Some(key) = present {
            return Err(CommandError::new(format!(
                "the target datastore is not empty ({key} exists): import into a new datastore"
            )));
        }
    }
    Ok(())
}
