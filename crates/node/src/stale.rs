//! Workload endpoints a crashed runtime leaves behind: a CNI ADD killed mid-way and never
//! followed by DEL (the runtime died too) leaves this host's WorkloadEndpoint, and the
//! addresses it holds, for a container that no longer exists. Its interface is the tell.
//!
//! An endpoint of this host whose interface is missing is noted, and marked with
//! [`INTERFACE_MISSING_ANNOTATION`] so that `calicoctl ipam check` reports it; when it has been
//! missing for the grace period and the endpoint is still the very same record (same revision:
//! nothing re-created or changed it meanwhile), it is deleted with compare-and-swap on that
//! revision. An interface that comes back clears the mark.
//! Its addresses are then leaked in IPAM's eyes, and the IPAM leak collector releases them
//! with its own two-observations-then-revalidate rule.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use calico_api::v3;
use calico_datastore::{Datastore, DatastoreError, Key, Kind, Revision};
use calico_ipam::check::INTERFACE_MISSING_ANNOTATION;
use calico_sync::Resource;

/// Remembers when each endpoint was first seen without its interface.
#[derive(Debug)]
pub struct StaleEndpoints {
    grace: Duration,
    /// Endpoint → (its revision, when its interface was first seen missing).
    missing: HashMap<Key, (Revision, Instant)>,
}

/// What one pass found and did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pass {
    /// This host's endpoints whose interface is missing now (not yet past the grace period
    /// included).
    pub stale: Vec<Key>,
    /// Endpoints deleted by this pass.
    pub removed: Vec<Key>,
}

impl StaleEndpoints {
    /// A collector deleting endpoints whose interface has been missing for `grace`.
    pub fn new(grace: Duration) -> Self {
        StaleEndpoints {
            grace,
            missing: HashMap::new(),
        }
    }

    /// One pass over host `node`'s endpoints, with `links` the interfaces that exist now.
    pub fn run_once(
        &mut self,
        ds: &dyn Datastore,
        node: &str,
        links: &BTreeSet<String>,
        now: Instant,
    ) -> Result<Pass, DatastoreError> {
        let listed = ds.list(Kind::WorkloadEndpoint, None)?;
        let mut pass = Pass::default();
        let mut still_missing = HashMap::new();
        for kv in listed.items {
            // One that does not decode is not judged here (the sync layer names it).
            let Ok(Resource::WorkloadEndpoint(w)) = Resource::decode(&kv.key, kv.value) else {
                continue;
            };
            if w.spec.node != node {
                continue;
            }
            let marked = w
                .metadata
                .annotations
                .contains_key(INTERFACE_MISSING_ANNOTATION);
            if links.contains(&w.spec.interface_name) {
                if marked {
                    // Back in time: the mark goes (a lost race just leaves it for next time).
                    let _ = mark(ds, &kv.key, w, kv.mod_revision, false);
                }
                continue;
            }
            let (revision, since) = match self.missing.get(&kv.key) {
                Some(&(rev, since)) if rev == kv.mod_revision => (rev, since),
                // New, or changed since: its grace period starts now, marked for ipam check.
                _ if marked => (kv.mod_revision, now),
                _ => match mark(ds, &kv.key, w, kv.mod_revision, true) {
                    Ok(rev) => (rev, now),
                    Err(DatastoreError::Conflict { .. } | DatastoreError::NotFound { .. }) => {
                        continue;
                    }
                    Err(e) => return Err(e),
                },
            };
            pass.stale.push(kv.key.clone());
            if now.duration_since(since) < self.grace {
                still_missing.insert(kv.key, (revision, since));
                continue;
            }
            match ds.delete(&kv.key, Some(revision)) {
                Ok(_) => pass.removed.push(kv.key),
                // Re-created, changed or deleted meanwhile: not ours to remove.
                Err(DatastoreError::Conflict { .. } | DatastoreError::NotFound { .. }) => {}
                Err(e) => {
                    still_missing.insert(kv.key, (revision, since));
                    self.missing = still_missing;
                    return Err(e);
                }
            }
        }
        self.missing = still_missing;
        Ok(pass)
    }
}

/// Sets (or clears) the interface-missing mark on endpoint `w`, with compare-and-swap on
/// `revision`; the revision written.
fn mark(
    ds: &dyn Datastore,
    key: &Key,
    mut w: v3::WorkloadEndpoint,
    revision: Revision,
    set: bool,
) -> Result<Revision, DatastoreError> {
    if set {
        w.metadata.annotations.insert(
            INTERFACE_MISSING_ANNOTATION.to_owned(),
            calico_ipam::model::now_rfc3339(),
        );
    } else {
        w.metadata.annotations.remove(INTERFACE_MISSING_ANNOTATION);
    }
    let value = serde_json::to_value(&w).map_err(|e| DatastoreError::InvalidValue {
        key: key.clone(),
        reason: e.to_string(),
    })?;
    Ok(ds.update(key, value, Some(revision))?.mod_revision)
}

#[cfg(test)]
mod tests {
    use super::*;
    use calico_datastore::sqlite::SqliteDatastore;
    use serde_json::json;

    fn wep(ds: &dyn Datastore, name: &str, node: &str, iface: &str) -> Key {
        let key = Key::namespaced(Kind::WorkloadEndpoint, "default", name);
        ds.write_batch(vec![calico_datastore::WriteOp::Upsert {
            key: key.clone(),
            value: json!({"apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"node": node, "orchestrator": "mesos", "workload": name,
                         "endpoint": "eth0", "interfaceName": iface,
                         "ipNetworks": ["10.65.1.2/32"]}}),
        }])
        .unwrap();
        key
    }

    #[test]
    fn an_endpoint_without_its_interface_goes_after_the_grace_period_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let ds = SqliteDatastore::open(&dir.path().join("c.db")).unwrap();
        let live = wep(&ds, "live", "h1", "calilive");
        let gone = wep(&ds, "gone", "h1", "caligone");
        let other = wep(&ds, "other", "h2", "caliother");
        let links = BTreeSet::from(["calilive".to_owned(), "lo".to_owned()]);
        let grace = Duration::from_secs(600);
        let mut c = StaleEndpoints::new(grace);
        let t0 = Instant::now();
        let pass = c.run_once(&ds, "h1", &links, t0).unwrap();
        assert_eq!(
            pass.stale,
            std::slice::from_ref(&gone),
            "only this host's, only without interface"
        );
        assert!(pass.removed.is_empty(), "not before the grace period");
        // Marked, so that `calicoctl ipam check` reports it meanwhile.
        let report = calico_ipam::check::check(&ds).unwrap();
        assert_eq!(report.stale_endpoints, ["default/gone"]);
        // Changed meanwhile (say, the runtime retried the ADD): its grace period restarts.
        wep(&ds, "gone", "h1", "caligone");
        let t1 = t0 + grace / 2;
        assert!(
            c.run_once(&ds, "h1", &links, t1)
                .unwrap()
                .removed
                .is_empty()
        );
        assert!(
            c.run_once(&ds, "h1", &links, t0 + grace)
                .unwrap()
                .removed
                .is_empty(),
            "the change restarted the clock"
        );
        let pass = c.run_once(&ds, "h1", &links, t1 + grace).unwrap();
        assert_eq!(pass.removed, std::slice::from_ref(&gone));
        assert!(ds.get(&gone).unwrap().is_none());
        assert!(ds.get(&live).unwrap().is_some());
        assert!(
            ds.get(&other).unwrap().is_some(),
            "another host's is not judged here"
        );
        // Its interface back (the container restarted in time): never removed.
        let back = wep(&ds, "back", "h1", "caliback");
        c.run_once(&ds, "h1", &links, t1 + grace).unwrap();
        let mut with_back = links.clone();
        with_back.insert("caliback".into());
        c.run_once(&ds, "h1", &with_back, t1 + grace * 2).unwrap();
        let pass = c.run_once(&ds, "h1", &links, t1 + grace * 2).unwrap();
        assert!(
            pass.removed.is_empty(),
            "missing again: its clock starts again"
        );
        assert!(ds.get(&back).unwrap().is_some());
    }
}
