//! Applying a rendered [`Ruleset`] to the kernel in one atomic batch.

use std::process::Command;

use nftables::batch::Batch;
use nftables::schema::{NfListObject, Nftables, Table};

use crate::render::{Ruleset, TABLE_FAMILY, TABLE_NAME};

/// Why talking to nftables failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `nft` could not be run or rejected the batch (nothing was changed:
    /// the batch is one transaction).
    #[error("applying nftables batch: {0}")]
    Apply(#[from] nftables::helper::NftablesError),
    /// `nft list` could not be run.
    #[error("running {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// `nft list` failed (e.g. the table does not exist).
    #[error("{program} list failed: {stderr}")]
    List {
        /// The program.
        program: String,
        /// Its standard error.
        stderr: String,
    },
    /// `nft list` printed something that is not the JSON schema.
    #[error("parsing nft JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// The table we own, as the schema names it.
fn owned_table() -> Table<'static> {
    Table {
        family: TABLE_FAMILY,
        name: TABLE_NAME.into(),
        handle: None,
    }
}

/// The one batch that makes our table exactly `ruleset`.
///
/// `add table; delete table; add table; add ...`: the first add makes the
/// delete valid when the table does not exist yet (nft 1.0.6 has no
/// `destroy`). Deleting rather than flushing also drops chains and sets
/// that are no longer wanted and lets a set change its type; nft applies
/// the batch as one transaction, so traffic never sees an empty table and
/// other tables are never named.
pub fn batch(ruleset: &Ruleset) -> Nftables<'static> {
    let mut b = Batch::new();
    b.add(NfListObject::Table(owned_table()));
    b.delete(NfListObject::Table(owned_table()));
    b.add(NfListObject::Table(owned_table()));
    for o in &ruleset.objects {
        b.add(o.clone());
    }
    b.to_nftables()
}

/// Something that applies nftables batches and reads our table back.
pub trait Nft {
    /// Applies `batch` atomically.
    fn apply(&mut self, batch: &Nftables<'_>) -> Result<(), Error>;
    /// Reads back the table we own.
    fn list_owned(&mut self) -> Result<Nftables<'static>, Error>;
}

/// The real `nft`, optionally run through a wrapper (e.g. `ip netns exec
/// NAME nft` to work inside a named network namespace).
#[derive(Debug, Clone)]
pub struct NftCli {
    program: String,
    prefix_args: Vec<String>,
}

impl Default for NftCli {
    fn default() -> Self {
        NftCli {
            program: "nft".to_owned(),
            prefix_args: Vec::new(),
        }
    }
}

impl NftCli {
    /// `nft` through `program prefix_args... ` (which must end by running
    /// `nft` with the arguments that follow).
    pub fn with_wrapper(program: impl Into<String>, prefix_args: Vec<String>) -> Self {
        NftCli {
            program: program.into(),
            prefix_args,
        }
    }
}

impl Nft for NftCli {
    fn apply(&mut self, batch: &Nftables<'_>) -> Result<(), Error> {
        nftables::helper::apply_ruleset_with_args(
            batch,
            Some(self.program.as_str()),
            &self.prefix_args,
        )?;
        Ok(())
    }

    fn list_owned(&mut self) -> Result<Nftables<'static>, Error> {
        // Not the crate's list helper: it puts `-j` right after the program,
        // which breaks a wrapper.
        let family = serde_json::to_value(TABLE_FAMILY)?;
        let family = family.as_str().unwrap_or("inet");
        let out = Command::new(&self.program)
            .args(&self.prefix_args)
            .args(["-j", "list", "table", family, TABLE_NAME])
            .output()
            .map_err(|source| Error::Spawn {
                program: self.program.clone(),
                source,
            })?;
        if !out.status.success() {
            return Err(Error::List {
                program: self.program.clone(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    }
}

/// Records batches instead of applying them, for tests.
#[derive(Debug, Default)]
pub struct RecordingNft {
    /// Every batch applied, serialized, in order.
    pub batches: Vec<serde_json::Value>,
}

impl Nft for RecordingNft {
    fn apply(&mut self, batch: &Nftables<'_>) -> Result<(), Error> {
        self.batches.push(serde_json::to_value(batch)?);
        Ok(())
    }

    fn list_owned(&mut self) -> Result<Nftables<'static>, Error> {
        // What the last batch added is what the table now holds.
        let added: Vec<serde_json::Value> = self
            .batches
            .last()
            .and_then(|b| b["nftables"].as_array())
            .into_iter()
            .flatten()
            .filter_map(|cmd| cmd.get("add").cloned())
            .skip(1) // the table, added before the delete
            .collect();
        Ok(serde_json::from_value(
            serde_json::json!({ "nftables": added }),
        )?)
    }
}
