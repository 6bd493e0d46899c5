//! Noticing that someone else changed our table, from the kernel's own
//! change notifications (`nft monitor rules`), so drift is repaired within a
//! moment without reading the table back on a timer.
//!
//! Every rule added to or deleted from `inet calico` is an event. Before
//! each transaction the agent says how many rules it adds to and deletes
//! from each chain ([`NftMonitor::expect`], counted from the batch); an
//! event beyond those counts is someone else's. A whole-table replacement
//! deletes whatever was there: when the agent does not know what that is
//! (someone else changed it), the rules the events showed per chain stand
//! for it. Only rule events are watched: deleting or flushing a table or
//! chain shows as its rules deleted, and nft 1.0.6 misprints (and can die
//! on) concatenated interval set elements in its full monitor output.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use nftables::schema::{FlushObject, NfCmd, NfListObject, NfObject, Nftables};

use crate::diff::TableModel;
use crate::render::TABLE_NAME;

/// Rule events still to come from our own transactions, and the rules the
/// events say each chain holds.
#[derive(Debug, Default)]
struct Expected {
    adds: HashMap<String, usize>,
    deletes: HashMap<String, usize>,
    seen: HashMap<String, usize>,
}

impl Expected {
    /// Takes one event into account; false when it was not expected.
    fn consume(&mut self, add: bool, chain: &str) -> bool {
        let seen = self.seen.entry(chain.to_owned()).or_default();
        *seen = if add {
            *seen + 1
        } else {
            seen.saturating_sub(1)
        };
        let counts = if add {
            &mut self.adds
        } else {
            &mut self.deletes
        };
        match counts.get_mut(chain) {
            Some(n) => {
                *n -= 1;
                if *n == 0 {
                    counts.remove(chain);
                }
                true
            }
            None => false,
        }
    }
}

/// A running `nft monitor rules` watching for foreign changes to our table.
#[derive(Debug)]
pub struct NftMonitor {
    child: Child,
    foreign: Arc<AtomicBool>,
    expected: Arc<Mutex<Expected>>,
}

impl NftMonitor {
    /// Starts `nft monitor rules` in the calling thread's network namespace.
    pub fn spawn() -> std::io::Result<Self> {
        // nft writes through stdio, block-buffered into a pipe: line
        // buffering (coreutils' stdbuf) hands each event over at once.
        let mut child = Command::new("stdbuf")
            .args(["-oL", "nft", "monitor", "rules"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let out = child
            .stdout
            .take()
            .ok_or_else(|| std::io::Error::other("nft monitor has no standard output"))?;
        let foreign = Arc::new(AtomicBool::new(false));
        let expected: Arc<Mutex<Expected>> = Arc::default();
        let (flag, ours) = (foreign.clone(), expected.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let Some((add, chain)) = rule_event(&line) else {
                    continue;
                };
                let mine = ours
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .consume(add, chain);
                if !mine {
                    flag.store(true, Ordering::Relaxed);
                }
            }
        });
        Ok(NftMonitor {
            child,
            foreign,
            expected,
        })
    }

    /// Our next transaction is `batch`; `have` is what the kernel holds
    /// before it (None: not known, e.g. after someone else changed it; what
    /// the events showed stands for it). Its rule events count as ours.
    pub fn expect(&self, batch: &Nftables<'_>, have: Option<&TableModel>) {
        let mut e = self.expected.lock().unwrap_or_else(PoisonError::into_inner);
        for cmd in batch.objects.iter() {
            match cmd {
                NfObject::CmdObject(NfCmd::Add(NfListObject::Rule(r))) => {
                    *e.adds.entry(r.chain.to_string()).or_default() += 1;
                }
                // Replacing the table deletes every rule it held.
                NfObject::CmdObject(NfCmd::Delete(NfListObject::Table(_))) => {
                    let held: Vec<(String, usize)> = match have {
                        Some(h) => h.rule_counts().map(|(c, n)| (c.to_owned(), n)).collect(),
                        None => e.seen.iter().map(|(c, n)| (c.clone(), *n)).collect(),
                    };
                    for (chain, n) in held.into_iter().filter(|(_, n)| *n > 0) {
                        *e.deletes.entry(chain).or_default() += n;
                    }
                }
                NfObject::CmdObject(NfCmd::Flush(FlushObject::Chain(c))) => {
                    let n = have
                        .and_then(|h| h.chain_rule_count(&c.name))
                        .or_else(|| e.seen.get(c.name.as_ref()).copied())
                        .unwrap_or(0);
                    if n > 0 {
                        *e.deletes.entry(c.name.to_string()).or_default() += n;
                    }
                }
                _ => {}
            }
        }
    }

    /// Our transaction was refused: none of its events will come.
    pub fn forget(&self) {
        let mut e = self.expected.lock().unwrap_or_else(PoisonError::into_inner);
        e.adds.clear();
        e.deletes.clear();
    }

    /// Whether a foreign change was seen since the last call.
    pub fn take_foreign_change(&self) -> bool {
        self.foreign.swap(false, Ordering::Relaxed)
    }

    /// Whether `nft monitor` is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// (added, chain) of `add rule inet calico CHAIN ...` or `delete rule inet
/// calico CHAIN handle N`; None for anything else.
fn rule_event(line: &str) -> Option<(bool, &str)> {
    let mut words = line.split_whitespace();
    let add = match words.next()? {
        "add" | "insert" | "replace" => true,
        "delete" => false,
        _ => return None,
    };
    (words.next()? == "rule" && words.next()? == "inet" && words.next()? == TABLE_NAME)
        .then(|| words.next())
        .flatten()
        .map(|c| (add, c.trim_matches('"')))
}

impl Drop for NftMonitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::{Expected, rule_event};

    #[test]
    fn rule_events_name_their_chain() {
        assert_eq!(
            rule_event("delete rule inet calico forward handle 6"),
            Some((false, "forward"))
        );
        assert_eq!(
            rule_event("add rule inet calico pi-default/web ip saddr 1.2.3.4 accept"),
            Some((true, "pi-default/web"))
        );
        assert_eq!(rule_event("add rule inet other forward accept"), None);
        assert_eq!(rule_event("delete table inet calico"), None);
    }

    #[test]
    fn events_beyond_what_we_said_are_foreign() {
        let mut e = Expected::default();
        e.adds.insert("forward".into(), 2);
        e.deletes.insert("forward".into(), 1);
        assert!(e.consume(true, "forward") && e.consume(true, "forward"));
        assert!(!e.consume(true, "forward"), "a third rule is not ours");
        assert!(e.consume(false, "forward"));
        assert!(!e.consume(false, "forward"));
        assert!(!e.consume(false, "input"));
        assert_eq!(e.seen["forward"], 1, "three added, two deleted");
    }
}
