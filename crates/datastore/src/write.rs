//! The write rules, written once for every backend: which op may act on which state of a key
//! (create needs it absent, update and delete need it present, compare-and-swap compares its
//! mod revision), and how a written value is stamped (`uid` and `creationTimestamp` new on
//! create and kept across updates).

use serde_json::{Map, Value};

use crate::{DatastoreError, Key, Revision, WriteOp};

/// What a key holds when an op is checked against it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Current {
    /// `metadata.uid` of the stored value, if it has one.
    pub uid: Option<String>,
    /// `metadata.creationTimestamp` of the stored value, if it has one.
    pub created: Option<String>,
    /// The revision of the key's last write.
    pub mod_revision: Revision,
}

impl Current {
    /// What a stored value says of itself, with the key's mod revision.
    pub fn of(value: &Value, mod_revision: Revision) -> Self {
        let meta = |field: &str| {
            value
                .get("metadata")
                .and_then(|m| m.get(field))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        Current {
            uid: meta("uid"),
            created: meta("creationTimestamp"),
            mod_revision,
        }
    }
}

/// Whether `op` may act on a key in state `current` (None: absent).
pub(crate) fn check(op: &WriteOp, current: Option<&Current>) -> Result<(), DatastoreError> {
    let (key, expected) = match op {
        WriteOp::Create { key, .. } => {
            return match current {
                Some(_) => Err(DatastoreError::AlreadyExists { key: key.clone() }),
                None => Ok(()),
            };
        }
        WriteOp::Upsert { .. } => return Ok(()),
        WriteOp::Update {
            key,
            expected_revision,
            ..
        }
        | WriteOp::Delete {
            key,
            expected_revision,
        } => (key, *expected_revision),
    };
    let Some(current) = current else {
        return Err(DatastoreError::NotFound { key: key.clone() });
    };
    match expected {
        Some(expected) if expected != current.mod_revision => Err(DatastoreError::Conflict {
            key: key.clone(),
            expected,
            actual: current.mod_revision,
        }),
        _ => Ok(()),
    }
}

/// Stamps the store-owned metadata on a value about to replace `current` (None: a new key):
/// its `uid` and `creationTimestamp` are kept, or new ones given. `resourceVersion` is set to
/// `revision` when the backend stores it in the value, removed when it keeps it elsewhere.
pub(crate) fn stamp(
    key: &Key,
    value: &mut Value,
    current: Option<&Current>,
    now: &str,
    revision: Option<Revision>,
) -> Result<(), DatastoreError> {
    let invalid = |reason: &str| DatastoreError::InvalidValue {
        key: key.clone(),
        reason: reason.into(),
    };
    let uid = current
        .and_then(|c| c.uid.clone())
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let created = current
        .and_then(|c| c.created.clone())
        .unwrap_or_else(|| now.to_owned());
    let obj = value
        .as_object_mut()
        .ok_or_else(|| invalid("the value must be a JSON object"))?;
    if !obj.contains_key("metadata") {
        // Documents conventionally show metadata before spec; keep that order when adding it.
        let at = obj.keys().position(|k| k == "spec").unwrap_or(obj.len());
        obj.shift_insert(at, "metadata".into(), Value::Object(Map::new()));
    }
    let meta = obj
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| invalid("metadata must be a JSON object"))?;
    meta.insert("uid".into(), Value::String(uid));
    meta.insert("creationTimestamp".into(), Value::String(created));
    match revision {
        Some(rev) => {
            meta.insert("resourceVersion".into(), Value::String(rev.to_string()));
        }
        None => {
            meta.shift_remove("resourceVersion");
        }
    }
    Ok(())
}

/// Now, as `creationTimestamp` writes it (RFC 3339, seconds, UTC).
pub(crate) fn now_timestamp() -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    time::OffsetDateTime::now_utc()
        .format(fmt)
        .expect("formatting a UTC timestamp cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;
    use calico_api::Kind;
    use serde_json::json;

    fn key() -> Key {
        Key::global(Kind::Profile, "p")
    }

    #[test]
    fn each_op_needs_its_state() {
        let k = key();
        let at = |rev| Current {
            uid: None,
            created: None,
            mod_revision: rev,
        };
        let create = WriteOp::Create {
            key: k.clone(),
            value: json!({}),
        };
        let update = |expected| WriteOp::Update {
            key: k.clone(),
            value: json!({}),
            expected_revision: expected,
        };
        let delete = |expected| WriteOp::Delete {
            key: k.clone(),
            expected_revision: expected,
        };
        assert!(check(&create, None).is_ok());
        assert!(matches!(
            check(&create, Some(&at(3))),
            Err(DatastoreError::AlreadyExists { .. })
        ));
        for op in [update(None), delete(None)] {
            assert!(matches!(
                check(&op, None),
                Err(DatastoreError::NotFound { .. })
            ));
            assert!(check(&op, Some(&at(3))).is_ok());
        }
        for op in [update(Some(2)), delete(Some(2))] {
            assert!(matches!(
                check(&op, Some(&at(3))),
                Err(DatastoreError::Conflict {
                    expected: 2,
                    actual: 3,
                    ..
                })
            ));
        }
        assert!(check(&update(Some(3)), Some(&at(3))).is_ok());
        let upsert = WriteOp::Upsert {
            key: k,
            value: json!({}),
        };
        assert!(check(&upsert, None).is_ok() && check(&upsert, Some(&at(1))).is_ok());
    }

    #[test]
    fn stamping_keeps_identity_across_updates() {
        let k = key();
        let mut v = json!({"spec": {}, "metadata": {"name": "p", "uid": "forged"}});
        stamp(&k, &mut v, None, "2026-01-01T00:00:00Z", Some(7)).unwrap();
        let uid = v["metadata"]["uid"].as_str().unwrap().to_owned();
        assert_ne!(
            uid, "forged",
            "a new key gets a new uid whatever the writer sent"
        );
        assert_eq!(v["metadata"]["resourceVersion"], "7");
        let current = Current::of(&v, 7);
        let mut next = json!({"metadata": {"name": "p", "resourceVersion": "1"}});
        stamp(&k, &mut next, Some(&current), "2027-01-01T00:00:00Z", None).unwrap();
        assert_eq!(next["metadata"]["uid"], uid.as_str());
        assert_eq!(
            next["metadata"]["creationTimestamp"],
            "2026-01-01T00:00:00Z"
        );
        assert!(next["metadata"].get("resourceVersion").is_none());
        let mut bad = json!([1]);
        assert!(matches!(
            stamp(&k, &mut bad, None, "x", None),
            Err(DatastoreError::InvalidValue { .. })
        ));
        // Metadata goes before spec when added.
        let mut v = json!({"apiVersion": "v", "spec": {}});
        stamp(&k, &mut v, None, "x", None).unwrap();
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["apiVersion", "metadata", "spec"]);
    }
}
