//! Applying a rendered [`Ruleset`] to the kernel in one atomic batch.

use std::net::IpAddr;
use std::process::Command;

use nftables::batch::Batch;
use nftables::schema::{NfListObject, Nftables, Table};

use crate::elements::ElementSocket;
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
    /// The second thread sending pieces of a split batch panicked.
    #[error("applying nftables pieces: the second thread panicked")]
    PieceThreadPanicked,
    /// libnftables could not be loaded or refused a batch.
    #[error("libnftables: {0}")]
    Lib(#[from] calico_nftlib::Error),
    /// Set elements sent over nfnetlink were refused or could not be sent.
    #[error("IP set elements: {0}")]
    Elements(#[from] crate::elements::Error),
    /// `conntrack -D` failed.
    #[error("deleting conntrack entries ({filter}): {stderr}")]
    Conntrack {
        /// The filter given.
        filter: String,
        /// Its standard error.
        stderr: String,
    },
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
    /// Applies the pieces [`crate::diff::split`] made, each atomically,
    /// calling `before(i)` before piece `i` goes to the kernel; stops at
    /// the first refusal. The first piece goes alone and the last goes
    /// last; an implementation may send the ones between in any order, or
    /// at once.
    fn apply_split(
        &mut self,
        pieces: &[Nftables<'_>],
        before: &mut dyn FnMut(usize),
    ) -> Result<(), Error> {
        apply_in_order(self, pieces, before)
    }
    /// Whether the kernel would accept `batch` (`nft --check`): nothing is changed.
    fn check(&mut self, batch: &Nftables<'_>) -> Result<(), Error>;
    /// Reads back the table we own.
    fn list_owned(&mut self) -> Result<Nftables<'static>, Error>;
}

/// `pieces` one after the other, `before(i)` ahead of each.
fn apply_in_order<N: Nft + ?Sized>(
    nft: &mut N,
    pieces: &[Nftables<'_>],
    before: &mut dyn FnMut(usize),
) -> Result<(), Error> {
    for (i, piece) in pieces.iter().enumerate() {
        before(i);
        nft.apply(piece)?;
    }
    Ok(())
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

    fn check(&mut self, batch: &Nftables<'_>) -> Result<(), Error> {
        let mut args = self.prefix_args.clone();
        args.push("--check".to_owned());
        nftables::helper::apply_ruleset_with_args(batch, Some(self.program.as_str()), &args)?;
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

/// nftables through libnftables in this process: one persistent context,
/// no process start or cache load per batch. Batches of IP set elements
/// alone go to the kernel over nfnetlink directly ([`crate::elements`]).
#[derive(Debug)]
pub struct NftLib(
    calico_nftlib::Libnftables,
    ElementSocket,
    /// A second context for the pieces of a split batch, opened at the first.
    Option<calico_nftlib::Libnftables>,
);

impl NftLib {
    /// Opens libnftables in the calling thread's network namespace.
    pub fn open() -> Result<Self, Error> {
        Ok(NftLib(
            calico_nftlib::Libnftables::open()?,
            ElementSocket::open()?,
            None,
        ))
    }
}

impl NftLib {
    /// The batch as libnftables parses it fastest: nft's own syntax, else JSON.
    fn commands(batch: &Nftables<'_>) -> Result<String, Error> {
        match crate::text::to_text(batch) {
            Some(text) => Ok(text),
            None => Ok(serde_json::to_string(batch)?),
        }
    }
}

impl Nft for NftLib {
    fn apply(&mut self, batch: &Nftables<'_>) -> Result<(), Error> {
        if !self.1.apply(batch)? {
            self.0.run(&Self::commands(batch)?, false)?;
        }
        Ok(())
    }

    /// The pieces between the first and the last go through two contexts
    /// on two threads: one piece's text is written and parsed by
    /// libnftables while the kernel takes the other's (the kernel commits
    /// one at a time). At a cold start this was a third of the time.
    fn apply_split(
        &mut self,
        pieces: &[Nftables<'_>],
        before: &mut dyn FnMut(usize),
    ) -> Result<(), Error> {
        let [first, middle @ .., last] = pieces else {
            return apply_in_order(self, pieces, before);
        };
        before(0);
        self.apply(first)?;
        if !middle.is_empty() {
            for i in 1..=middle.len() {
                before(i);
            }
            let NftLib(mine, _, second) = self;
            let other = match second {
                Some(lib) => lib,
                empty => empty.insert(calico_nftlib::Libnftables::open()?),
            };
            let next = std::sync::atomic::AtomicUsize::new(0);
            let failed = std::sync::atomic::AtomicBool::new(false);
            let work = |lib: &mut calico_nftlib::Libnftables| -> Result<(), Error> {
                use std::sync::atomic::Ordering::Relaxed;
                while !failed.load(Relaxed) {
                    let Some(piece) = middle.get(next.fetch_add(1, Relaxed)) else {
                        break;
                    };
                    let ran = Self::commands(piece)
                        .and_then(|text| lib.run(&text, false).map_err(Error::from));
                    if let Err(e) = ran {
                        failed.store(true, Relaxed);
                        return Err(e);
                    }
                }
                Ok(())
            };
            std::thread::scope(|scope| {
                let helper = scope.spawn(|| work(other));
                let here = work(mine);
                let there = helper.join().unwrap_or(Err(Error::PieceThreadPanicked));
                here.and(there)
            })?;
        }
        before(pieces.len() - 1);
        self.apply(last)
    }

    fn check(&mut self, batch: &Nftables<'_>) -> Result<(), Error> {
        self.0.run(&Self::commands(batch)?, true)?;
        Ok(())
    }

    fn list_owned(&mut self) -> Result<Nftables<'static>, Error> {
        let family = serde_json::to_value(TABLE_FAMILY)?;
        let family = family.as_str().unwrap_or("inet");
        let out = self
            .0
            .run(&format!("list table {family} {TABLE_NAME}"), false)?;
        Ok(serde_json::from_str(&out)?)
    }
}

/// The best way to nftables on this host: libnftables in process, else the
/// `nft` command.
#[derive(Debug)]
pub enum KernelNft {
    /// libnftables.
    Lib(NftLib),
    /// The `nft` command.
    Cli(NftCli),
}

impl KernelNft {
    /// libnftables when it loads, else `nft` (with why, to be logged).
    pub fn open() -> (Self, Option<Error>) {
        match NftLib::open() {
            Ok(lib) => (KernelNft::Lib(lib), None),
            Err(e) => (KernelNft::Cli(NftCli::default()), Some(e)),
        }
    }
}

impl Nft for KernelNft {
    fn apply(&mut self, batch: &Nftables<'_>) -> Result<(), Error> {
        match self {
            KernelNft::Lib(n) => n.apply(batch),
            KernelNft::Cli(n) => n.apply(batch),
        }
    }

    fn apply_split(
        &mut self,
        pieces: &[Nftables<'_>],
        before: &mut dyn FnMut(usize),
    ) -> Result<(), Error> {
        match self {
            KernelNft::Lib(n) => n.apply_split(pieces, before),
            KernelNft::Cli(n) => n.apply_split(pieces, before),
        }
    }

    fn check(&mut self, batch: &Nftables<'_>) -> Result<(), Error> {
        match self {
            KernelNft::Lib(n) => n.check(batch),
            KernelNft::Cli(n) => n.check(batch),
        }
    }

    fn list_owned(&mut self) -> Result<Nftables<'static>, Error> {
        match self {
            KernelNft::Lib(n) => n.list_owned(),
            KernelNft::Cli(n) => n.list_owned(),
        }
    }
}

/// Records batches instead of applying them, for tests.
#[derive(Debug, Default)]
pub struct RecordingNft {
    /// Every batch applied, serialized, in order.
    pub batches: Vec<serde_json::Value>,
    /// Batches adding a rule whose comment contains one of these are
    /// rejected, as the kernel rejects a rule it cannot take (apply and
    /// check alike).
    pub reject_comments: Vec<String>,
    /// Number of checks run.
    pub checks: usize,
    /// What the table holds after every batch applied so far, as the
    /// objects `nft -j list table` would print (without handles).
    pub table: Vec<serde_json::Value>,
}

impl RecordingNft {
    fn rejects(&self, batch: &serde_json::Value) -> Option<String> {
        batch["nftables"].as_array()?.iter().find_map(|cmd| {
            let comment = cmd.pointer("/add/rule/comment")?.as_str()?;
            self.reject_comments
                .iter()
                .any(|c| comment.contains(c.as_str()))
                .then(|| format!("rule {comment:?} rejected"))
        })
    }

    fn rejection(why: String) -> Error {
        Error::Apply(nftables::helper::NftablesError::NftFailed {
            program: "recording-nft".into(),
            hint: "applying ruleset".to_owned(),
            stdout: String::new(),
            stderr: why,
        })
    }
}

impl Nft for RecordingNft {
    fn apply(&mut self, batch: &Nftables<'_>) -> Result<(), Error> {
        let json = serde_json::to_value(batch)?;
        if let Some(why) = self.rejects(&json) {
            return Err(Self::rejection(why));
        }
        self.play(&json);
        self.batches.push(json);
        Ok(())
    }

    fn check(&mut self, batch: &Nftables<'_>) -> Result<(), Error> {
        self.checks += 1;
        match self.rejects(&serde_json::to_value(batch)?) {
            Some(why) => Err(Self::rejection(why)),
            None => Ok(()),
        }
    }

    fn list_owned(&mut self) -> Result<Nftables<'static>, Error> {
        if self.batches.is_empty() {
            return Err(Error::List {
                program: "recording-nft".into(),
                stderr: "No such file or directory: table inet calico".into(),
            });
        }
        let mut objects = vec![serde_json::json!({
            "table": {"family": "inet", "name": TABLE_NAME}
        })];
        objects.extend(self.table.iter().cloned());
        Ok(serde_json::from_value(
            serde_json::json!({ "nftables": objects }),
        )?)
    }
}

impl RecordingNft {
    /// Plays one batch onto [`RecordingNft::table`] as the kernel would:
    /// table replacement, chains, sets, rules, elements, flushes, deletes.
    fn play(&mut self, batch: &serde_json::Value) {
        use serde_json::Value;
        let name_of = |o: &Value| o["name"].as_str().unwrap_or_default().to_owned();
        for cmd in batch["nftables"].as_array().into_iter().flatten() {
            let Some((verb, body)) = cmd.as_object().and_then(|o| o.iter().next()) else {
                continue;
            };
            let Some((kind, obj)) = body.as_object().and_then(|o| o.iter().next()) else {
                continue;
            };
            match (verb.as_str(), kind.as_str()) {
                ("delete", "table") => self.table.clear(),
                ("add", "table") => {}
                ("add", "rule") => self.table.push(serde_json::json!({ "rule": obj })),
                ("add", k @ ("chain" | "set" | "map")) => {
                    let exists = self
                        .table
                        .iter()
                        .any(|o| o.get(k).is_some_and(|x| name_of(x) == name_of(obj)));
                    if !exists {
                        let mut o = serde_json::Map::new();
                        o.insert(k.to_owned(), obj.clone());
                        self.table.push(Value::Object(o));
                    }
                }
                ("add" | "delete", "element") => {
                    let set = self
                        .table
                        .iter_mut()
                        .find_map(|o| o.get_mut("set").filter(|x| name_of(x) == name_of(obj)));
                    if let Some(set) = set {
                        let elems = set
                            .as_object_mut()
                            .map(|m| m.entry("elem").or_insert_with(|| Value::Array(Vec::new())));
                        if let Some(Value::Array(elems)) = elems {
                            for e in obj["elem"].as_array().into_iter().flatten() {
                                if verb == "add" {
                                    elems.push(e.clone());
                                } else {
                                    elems.retain(|x| x != e);
                                }
                            }
                        }
                    }
                }
                ("flush", "chain") => self.table.retain(|o| {
                    o.get("rule")
                        .is_none_or(|r| r["chain"].as_str() != Some(&name_of(obj)))
                }),
                ("delete", k @ ("chain" | "set" | "map")) => self
                    .table
                    .retain(|o| o.get(k).is_none_or(|x| name_of(x) != name_of(obj))),
                _ => {}
            }
        }
    }
}

/// Conntrack work: forgetting the flows of removed endpoints and the flows
/// that carry a policy generation about to be reused.
pub trait Conntrack {
    /// Deletes every flow from or to `ip`.
    fn flush_address(&mut self, ip: IpAddr) -> Result<(), Error>;
    /// Deletes every flow whose conntrack mark has `mark` in the bits of `mask`.
    fn flush_mark(&mut self, mark: u32, mask: u32) -> Result<(), Error>;
}

/// The `conntrack` command (Debian `conntrack`), optionally through a
/// wrapper such as `ip netns exec NAME conntrack`.
#[derive(Debug, Clone)]
pub struct ConntrackCli {
    program: String,
    prefix_args: Vec<String>,
}

impl Default for ConntrackCli {
    fn default() -> Self {
        ConntrackCli {
            program: "conntrack".to_owned(),
            prefix_args: Vec::new(),
        }
    }
}

impl ConntrackCli {
    /// `conntrack` through `program prefix_args...`.
    pub fn with_wrapper(program: impl Into<String>, prefix_args: Vec<String>) -> Self {
        ConntrackCli {
            program: program.into(),
            prefix_args,
        }
    }

    fn delete(&self, filter: &[String]) -> Result<(), Error> {
        let out = Command::new(&self.program)
            .args(&self.prefix_args)
            .arg("-D")
            .args(filter)
            .output()
            .map_err(|source| Error::Spawn {
                program: self.program.clone(),
                source,
            })?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Exit 1 with "0 flow entries have been deleted" is not an error.
        if out.status.success() || stderr.contains("flow entries have been deleted") {
            Ok(())
        } else {
            Err(Error::Conntrack {
                filter: filter.join(" "),
                stderr: stderr.trim().to_owned(),
            })
        }
    }
}

impl Conntrack for ConntrackCli {
    fn flush_address(&mut self, ip: IpAddr) -> Result<(), Error> {
        let family = if ip.is_ipv6() { "ipv6" } else { "ipv4" };
        for side in ["-s", "-d"] {
            self.delete(&["-f".into(), family.into(), side.into(), ip.to_string()])?;
        }
        Ok(())
    }

    fn flush_mark(&mut self, mark: u32, mask: u32) -> Result<(), Error> {
        for family in ["ipv4", "ipv6"] {
            self.delete(&[
                "-f".into(),
                family.into(),
                "-m".into(),
                format!("{mark:#x}/{mask:#x}"),
            ])?;
        }
        Ok(())
    }
}

/// One recorded conntrack call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConntrackCall {
    /// [`Conntrack::flush_address`].
    FlushAddress(IpAddr),
    /// [`Conntrack::flush_mark`].
    FlushMark(u32, u32),
}

/// Records conntrack calls instead of making them, for tests.
#[derive(Debug, Default)]
pub struct RecordingConntrack {
    /// Every call, in order.
    pub calls: Vec<ConntrackCall>,
}

impl Conntrack for RecordingConntrack {
    fn flush_address(&mut self, ip: IpAddr) -> Result<(), Error> {
        self.calls.push(ConntrackCall::FlushAddress(ip));
        Ok(())
    }

    fn flush_mark(&mut self, mark: u32, mask: u32) -> Result<(), Error> {
        self.calls.push(ConntrackCall::FlushMark(mark, mask));
        Ok(())
    }
}
