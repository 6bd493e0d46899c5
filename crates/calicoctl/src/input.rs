//! Reading resource documents from files, directories and stdin, and checking them all before
//! anything is written.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use calico_api::{Kind, Resource};
use serde_json::Value;

/// Where a document came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The file (`-` for stdin).
    pub file: String,
    /// Zero-based index of the document in its file (list items count as documents of their
    /// own, numbered in order).
    pub index: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: document {}", self.file, self.index)
    }
}

/// A raw document read from input.
#[derive(Debug, Clone)]
pub struct Document {
    /// Where it came from.
    pub origin: Origin,
    /// Its content, converted to JSON.
    pub value: Value,
}

/// Everything that went wrong reading or checking input; nothing is written when this is
/// returned.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// A file is not valid YAML/JSON.
    #[error("parsing {path}: {reason}")]
    Syntax { path: String, reason: String },
    /// No document in the input.
    #[error("No resources specified in {0}")]
    Empty(String),
    /// One or more documents are invalid.
    #[error("{}", render_invalid(.0))]
    Invalid(Vec<(Origin, String)>),
}

fn render_invalid(errors: &[(Origin, String)]) -> String {
    let mut out = format!(
        "{} invalid resource document(s); nothing was written:",
        errors.len()
    );
    for (origin, reason) in errors {
        out.push_str(&format!("\n  {origin}: {reason}"));
    }
    out
}

/// How `-f` is read: `-R` descends into subdirectories, `--skip-empty` accepts files and
/// directories without documents.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadOptions {
    /// Read directories recursively.
    pub recursive: bool,
    /// An empty file or directory is not an error.
    pub skip_empty: bool,
}

/// Read the documents of `filename`: a file, a directory of `.yaml`/`.yml`/`.json` files (in
/// name order; with `recursive`, subdirectories too, depth first), or `-` for stdin.
pub fn read_documents(filename: &str, opts: ReadOptions) -> Result<Vec<Document>, InputError> {
    let empty = |what: String, docs: Vec<Document>| {
        if docs.is_empty() && !opts.skip_empty {
            Err(InputError::Empty(what))
        } else {
            Ok(docs)
        }
    };
    if filename == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|source| InputError::Read {
                path: "-".into(),
                source,
            })?;
        return empty("stdin".into(), parse_text("-", &text)?);
    }
    let path = Path::new(filename);
    let metadata = std::fs::metadata(path).map_err(|source| InputError::Read {
        path: filename.into(),
        source,
    })?;
    if metadata.is_dir() {
        let mut files = Vec::new();
        list_files(path, opts.recursive, &mut files)?;
        let mut docs = Vec::new();
        for file in files {
            docs.extend(read_file(&file)?);
        }
        empty(format!("directory {filename}"), docs)
    } else {
        empty(format!("file {filename}"), read_file(path)?)
    }
}

/// The document files of `dir` in name order, and with `recursive` those of its
/// subdirectories in place of each subdirectory's name.
fn list_files(dir: &Path, recursive: bool, out: &mut Vec<PathBuf>) -> Result<(), InputError> {
    let read_err = |source| InputError::Read {
        path: dir.display().to_string(),
        source,
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(read_err)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for entry in entries {
        if entry.is_dir() {
            if recursive {
                list_files(&entry, true, out)?;
            }
        } else if entry.is_file()
            && matches!(
                entry.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml" | "json")
            )
        {
            out.push(entry);
        }
    }
    Ok(())
}

fn read_file(path: &Path) -> Result<Vec<Document>, InputError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| InputError::Read {
        path: name.clone(),
        source,
    })?;
    parse_text(&name, &text)
}

/// Parse YAML or JSON text holding one or more documents; `List` documents (kind `List` or
/// `<Kind>List`) are expanded into their items.
pub fn parse_text(file: &str, text: &str) -> Result<Vec<Document>, InputError> {
    // JSON is a subset of YAML, but a JSON stream of several objects is not; try JSON first
    // so a plain JSON file gets serde_json's error messages.
    let trimmed = text.trim_start();
    let raw: Vec<Value> = if trimmed.starts_with('{') || trimmed.starts_with('[') {
        let mut out = Vec::new();
        for item in serde_json::Deserializer::from_str(text).into_iter::<Value>() {
            out.push(item.map_err(|e| InputError::Syntax {
                path: file.into(),
                reason: e.to_string(),
            })?);
        }
        out
    } else {
        // The parser's default budget (1,024 documents, 250,000 nodes) guards against hostile
        // input but refuses ordinary large files; scale it with the input instead, which still
        // bounds the work (anchor and alias limits stay at their defaults).
        let scaled = text.len().saturating_mul(2).max(1_000_000);
        let options = serde_saphyr::options! {
            budget: serde_saphyr::budget! {
                max_documents: scaled,
                max_nodes: scaled,
                max_events: scaled,
            },
        };
        serde_saphyr::from_multiple_with_options::<Value>(text, options).map_err(|e| {
            InputError::Syntax {
                path: file.into(),
                reason: e.to_string(),
            }
        })?
    };
    let mut docs = Vec::with_capacity(raw.len());
    for value in raw {
        if value.is_null() {
            continue; // an empty document between `---` separators
        }
        expand_lists(file, value, &mut docs);
    }
    Ok(docs)
}

/// Append `value` to `out` (which holds only documents of `file`), replacing lists by their
/// items.
fn expand_lists(file: &str, value: Value, out: &mut Vec<Document>) {
    let is_list = value
        .get("kind")
        .and_then(Value::as_str)
        .is_some_and(|k| k == "List" || (k.ends_with("List") && value.get("items").is_some()));
    if is_list && let Value::Object(mut map) = value {
        if let Some(Value::Array(items)) = map.remove("items") {
            for item in items {
                expand_lists(file, item, out);
            }
        }
        return;
    }
    if let Value::Array(items) = value {
        for item in items {
            expand_lists(file, item, out);
        }
        return;
    }
    let index = out.len();
    out.push(Document {
        origin: Origin {
            file: file.into(),
            index,
        },
        value,
    });
}

/// How the command line scopes namespaces.
#[derive(Debug, Clone, Default)]
pub struct NamespaceArgs {
    /// `-n/--namespace`.
    pub namespace: Option<String>,
    /// `-A/--all-namespaces`.
    pub all_namespaces: bool,
}

/// Fill in or check a document's namespace the way calicoctl does: namespaced kinds take the
/// document's namespace, else `-n`, else `default`; a mismatch with `-n` is an error; a
/// namespace on a cluster-scoped kind is an error.
pub fn resolve_namespace(doc: &mut Value, ns: &NamespaceArgs) -> Result<(), String> {
    let Some(kind) = doc
        .get("kind")
        .and_then(Value::as_str)
        .and_then(Kind::from_document_kind)
    else {
        return Ok(()); // the kind error is reported by validation
    };
    let doc_ns = doc
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    if kind.is_namespaced() {
        if ns.all_namespaces && ns.namespace.is_some() {
            return Err(
                "cannot use both --namespace and --all-namespaces flags at the same time".into(),
            );
        }
        let chosen = match (doc_ns, &ns.namespace) {
            (Some(d), Some(c)) if &d != c => {
                return Err(format!(
                    "resource namespace does not match client namespace. {d} != {c}"
                ));
            }
            (Some(d), _) => d,
            (None, Some(c)) => c.clone(),
            (None, None) => "default".into(),
        };
        if let Some(meta) = doc.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("namespace".into(), Value::String(chosen));
        }
        Ok(())
    } else if doc_ns.is_some() {
        Err(format!(
            "namespace should not be specified for a non-namespaced resource. {kind} is not a namespaced resource"
        ))
    } else if ns.all_namespaces || ns.namespace.is_some() {
        Err(format!("{kind} is not namespaced"))
    } else {
        Ok(())
    }
}

/// Check every document; return them all as resources, or every problem found. Two documents
/// naming the same resource are an error too.
pub fn validate_documents(
    docs: Vec<Document>,
    ns: &NamespaceArgs,
) -> Result<Vec<(Origin, Resource)>, InputError> {
    let mut errors = Vec::new();
    let mut resources: Vec<(Origin, Resource)> = Vec::with_capacity(docs.len());
    let mut seen = std::collections::HashMap::with_capacity(docs.len());
    for mut doc in docs {
        if !doc.value.is_object() {
            errors.push((
                doc.origin,
                format!("a resource must be a mapping, found {}", short(&doc.value)),
            ));
            continue;
        }
        if let Err(reason) = resolve_namespace(&mut doc.value, ns) {
            errors.push((doc.origin, reason));
            continue;
        }
        match calico_api::parse_resource(doc.value)
            .and_then(|r| calico_api::check_supported(&r).map(|()| r))
        {
            Ok(resource) => {
                let id = (
                    resource.kind,
                    resource.namespace().map(str::to_owned),
                    resource.name().to_owned(),
                );
                if let Some(first) = seen.get(&id) {
                    errors.push((
                        doc.origin,
                        format!(
                            "duplicate resource: {} {:?} is also defined in {first}",
                            resource.kind,
                            qualified_name(&resource)
                        ),
                    ));
                    continue;
                }
                seen.insert(id, doc.origin.clone());
                resources.push((doc.origin, resource));
            }
            Err(e) => errors.push((doc.origin, e.to_string())),
        }
    }
    if errors.is_empty() {
        Ok(resources)
    } else {
        Err(InputError::Invalid(errors))
    }
}

/// `namespace/name` for namespaced resources, `name` otherwise.
pub fn qualified_name(resource: &Resource) -> String {
    match resource.namespace() {
        Some(ns) => format!("{ns}/{}", resource.name()),
        None => resource.name().to_owned(),
    }
}

fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.len() > 40 {
        format!(
            "{}...",
            &text[..text.char_indices().nth(37).map_or(text.len(), |(i, _)| i)]
        )
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_yaml_and_lists_expand_in_order() {
        let text = "kind: A\n---\nkind: List\nitems:\n- kind: B\n- kind: C\n---\n";
        let docs = parse_text("f.yaml", text).unwrap();
        let kinds: Vec<_> = docs.iter().map(|d| d.value["kind"].clone()).collect();
        assert_eq!(kinds, vec!["A", "B", "C"]);
        assert_eq!(docs[2].origin.index, 2);
    }

    #[test]
    fn json_stream_is_accepted() {
        let docs = parse_text("f.json", "{\"kind\":\"A\"}\n{\"kind\":\"B\"}").unwrap();
        assert_eq!(docs.len(), 2);
    }

    #[test]
    fn syntax_errors_name_the_file() {
        let err = parse_text("bad.yaml", "a: b\n  c: d\n").unwrap_err();
        assert!(err.to_string().starts_with("parsing bad.yaml: "), "{err}");
    }

    #[test]
    fn namespace_rules_follow_calicoctl() {
        let ns = NamespaceArgs::default();
        let mut doc = serde_json::json!({"kind": "NetworkPolicy", "metadata": {"name": "a"}});
        resolve_namespace(&mut doc, &ns).unwrap();
        assert_eq!(doc["metadata"]["namespace"], "default");

        let other = NamespaceArgs {
            namespace: Some("x".into()),
            all_namespaces: false,
        };
        let mut doc = serde_json::json!({"kind": "NetworkPolicy", "metadata": {"name": "a", "namespace": "y"}});
        let err = resolve_namespace(&mut doc, &other).unwrap_err();
        assert!(err.contains("y != x"), "{err}");

        let mut doc =
            serde_json::json!({"kind": "IPPool", "metadata": {"name": "a", "namespace": "y"}});
        let err = resolve_namespace(&mut doc, &ns).unwrap_err();
        assert!(err.contains("IPPool is not a namespaced resource"), "{err}");
    }
}
