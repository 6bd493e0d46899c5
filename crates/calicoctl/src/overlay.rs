//! `calicoctl migrate-overlay`: move apps and services from the DC/OS overlay network (`dcos`)
//! to Calico (`calico`) by rewriting their definitions, as the seed's migration section asks:
//! Marathon apps, app lists, groups and pods (`networks[].name` and the older
//! `ipAddress.networkName`), dcos-commons service specs (`pods.<pod>.networks.dcos`), their
//! `config.json` (`virtual_network_name`) and scheduler `marathon.json.mustache`
//! (`VIRTUAL_NETWORK_NAME`). Only the network names change: every other byte of a file stays
//! as it was, so a diff shows exactly the migration.

use std::path::Path;

use jsonc_parser::ast::{Array, Object, Value as Json};
use jsonc_parser::common::Ranged;

/// Which network names to rewrite.
#[derive(Debug, Clone)]
pub struct Networks {
    /// The overlay's name (`dcos`).
    pub from: String,
    /// Calico's network name (`calico`).
    pub to: String,
}

/// What migrating one file found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FileReport {
    /// The rewritten text, when anything changes.
    pub new_text: Option<String>,
    /// What changes, one line each (`app /web: networks[0].name dcos -> calico`).
    pub changes: Vec<String>,
    /// What is left as it is, and why (`app /db: on the host network`).
    pub untouched: Vec<String>,
}

/// Why a file cannot be migrated.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// Not valid JSON.
    #[error("{path}: not valid JSON ({reason}); left untouched")]
    Json {
        /// The file.
        path: String,
        /// The parser's message.
        reason: String,
    },
    /// Not valid YAML.
    #[error("{path}: not valid YAML ({reason}); left untouched")]
    Yaml {
        /// The file.
        path: String,
        /// The parser's message.
        reason: String,
    },
    /// Not a kind of file this tool knows.
    #[error(
        "{path}: not a Marathon app, group or pod, a dcos-commons service spec, config.json or \
         marathon.json.mustache; left untouched"
    )]
    Unknown {
        /// The file.
        path: String,
    },
}

/// One text replacement: the byte range and what goes there.
struct Edit {
    start: usize,
    end: usize,
    text: String,
}

fn apply(text: &str, mut edits: Vec<Edit>) -> String {
    edits.sort_by_key(|e| e.start);
    let mut out = String::with_capacity(text.len() + edits.len() * 8);
    let mut at = 0;
    for e in edits {
        out.push_str(&text[at..e.start]);
        out.push_str(&e.text);
        at = e.end;
    }
    out.push_str(&text[at..]);
    out
}

/// A JSON string literal holding `value`, quoted as the original was (`"` or `'`).
fn string_literal(original: &str, value: &str) -> String {
    let quote = original.chars().next().unwrap_or('"');
    format!("{quote}{value}{quote}")
}

/// Migrate one file's text; `path` decides the kind by name and names it in messages.
pub fn migrate_text(path: &Path, text: &str, nets: &Networks) -> Result<FileReport, MigrateError> {
    let shown = path.display().to_string();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name.ends_with(".mustache") {
        return Ok(mustache(text, nets));
    }
    if name.ends_with(".yml") || name.ends_with(".yaml") {
        return service_spec(&shown, text, nets);
    }
    let strict = jsonc_parser::ParseOptions {
        allow_comments: false,
        allow_loose_object_property_names: false,
        allow_trailing_commas: false,
        allow_missing_commas: false,
        allow_single_quoted_strings: false,
        allow_hexadecimal_numbers: false,
        allow_unary_plus_numbers: false,
        allow_bare_decimal_point_numbers: false,
        allow_non_finite_numbers: false,
        allow_extended_string_escapes: false,
    };
    let parsed = jsonc_parser::parse_to_ast(text, &Default::default(), &strict).map_err(|e| {
        MigrateError::Json {
            path: shown.clone(),
            reason: e.to_string(),
        }
    })?;
    let Some(root) = parsed.value else {
        return Err(MigrateError::Unknown { path: shown });
    };
    let mut report = FileReport::default();
    let mut edits = Vec::new();
    let recognised = if name == "config.json" {
        config_json(&root, text, nets, &mut report, &mut edits);
        true
    } else {
        marathon(&root, text, nets, &mut report, &mut edits)
    };
    if !recognised {
        return Err(MigrateError::Unknown { path: shown });
    }
    if !edits.is_empty() {
        report.new_text = Some(apply(text, edits));
    }
    Ok(report)
}

/// A Marathon definition: an app or pod, a group (`apps`, `pods`, `groups`), or a list of
/// them. False when the value is none of these.
fn marathon(
    v: &Json<'_>,
    text: &str,
    nets: &Networks,
    report: &mut FileReport,
    edits: &mut Vec<Edit>,
) -> bool {
    match v {
        Json::Array(list) => {
            let mut any = false;
            for item in &list.elements {
                any |= marathon(item, text, nets, report, edits);
            }
            any
        }
        Json::Object(obj) => {
            let is_group = obj.get("apps").is_some()
                || obj.get("groups").is_some()
                || (obj.get("pods").is_some() && obj.get("containers").is_none());
            if is_group {
                for key in ["apps", "pods", "groups"] {
                    if let Some(list) = obj.get_array(key) {
                        for item in &list.elements {
                            marathon(item, text, nets, report, edits);
                        }
                    }
                }
                return true;
            }
            if obj.get("id").is_none() {
                return false;
            }
            app(obj, text, nets, report, edits);
            true
        }
        _ => false,
    }
}

/// One app or pod: its `networks` and `ipAddress.networkName`.
fn app(
    obj: &Object<'_>,
    text: &str,
    nets: &Networks,
    report: &mut FileReport,
    edits: &mut Vec<Edit>,
) {
    let id = obj
        .get_string("id")
        .map_or_else(|| "(no id)".to_owned(), |s| s.value.to_string());
    let mut moved = false;
    let mut modes = Vec::new();
    if let Some(networks) = obj.get_array("networks") {
        for (i, n) in networks.elements.iter().enumerate() {
            let Some(n) = n.as_object() else { continue };
            let mode = n
                .get_string("mode")
                .map_or("container", |m| m.value.as_ref())
                .to_owned();
            if let Some(name) = n.get_string("name")
                && name.value == nets.from
            {
                edits.push(replacement(text, name.range(), &nets.to));
                report.changes.push(format!(
                    "app {id}: networks[{i}].name {} -> {}",
                    nets.from, nets.to
                ));
                moved = true;
            }
            modes.push(mode);
        }
    }
    if let Some(ip) = obj.get_object("ipAddress")
        && let Some(name) = ip.get_string("networkName")
        && name.value == nets.from
    {
        edits.push(replacement(text, name.range(), &nets.to));
        report.changes.push(format!(
            "app {id}: ipAddress.networkName {} -> {}",
            nets.from, nets.to
        ));
        moved = true;
    }
    if !moved {
        let why = if modes.iter().any(|m| m == "host") || modes.is_empty() {
            "on the host network"
        } else if modes.iter().any(|m| m == "container/bridge") {
            "on the bridge network"
        } else {
            "not on the overlay"
        };
        report.untouched.push(format!("app {id}: {why}"));
    }
}

fn replacement(text: &str, range: jsonc_parser::common::Range, value: &str) -> Edit {
    Edit {
        start: range.start,
        end: range.end,
        text: string_literal(&text[range.start..range.end], value),
    }
}

/// dcos-commons `config.json`: the `default` of a `virtual_network_name` property.
fn config_json(
    v: &Json<'_>,
    text: &str,
    nets: &Networks,
    report: &mut FileReport,
    edits: &mut Vec<Edit>,
) {
    match v {
        Json::Object(obj) => {
            for prop in &obj.properties {
                let key = prop.name.as_str();
                if key.eq_ignore_ascii_case("virtual_network_name")
                    && let Some(def) = prop.value.as_object().and_then(|o| o.get_string("default"))
                    && def.value == nets.from
                {
                    edits.push(replacement(text, def.range(), &nets.to));
                    report
                        .changes
                        .push(format!("{key}: default {} -> {}", nets.from, nets.to));
                }
                config_json(&prop.value, text, nets, report, edits);
            }
        }
        Json::Array(Array { elements, .. }) => {
            for e in elements {
                config_json(e, text, nets, report, edits);
            }
        }
        _ => {}
    }
}

/// A scheduler's `marathon.json.mustache`: a literal `"VIRTUAL_NETWORK_NAME": "dcos"`. The
/// template is not JSON until rendered, so it is read as text.
fn mustache(text: &str, nets: &Networks) -> FileReport {
    let pattern = format!(
        r#"("VIRTUAL_NETWORK_NAME"\s*:\s*)"{}""#,
        regex::escape(&nets.from)
    );
    let mut report = FileReport::default();
    let Ok(re) = regex::Regex::new(&pattern) else {
        return report;
    };
    let mut count = 0;
    let new = re.replace_all(text, |c: &regex::Captures<'_>| {
        count += 1;
        format!("{}\"{}\"", &c[1], nets.to)
    });
    if count > 0 {
        report.changes.push(format!(
            "VIRTUAL_NETWORK_NAME {} -> {} ({count} place(s))",
            nets.from, nets.to
        ));
        report.new_text = Some(new.into_owned());
    } else if text.contains("VIRTUAL_NETWORK_NAME") {
        report
            .untouched
            .push("VIRTUAL_NETWORK_NAME: set from a template variable; check config.json".into());
    }
    report
}

/// A dcos-commons service spec (`svc.yml`): the `dcos` key under `pods.<pod>.networks`. The
/// YAML is checked with a parser, and the key renamed in place on its own line.
fn service_spec(shown: &str, text: &str, nets: &Networks) -> Result<FileReport, MigrateError> {
    // dcos-commons specs are mustache templates too (`count: {{COUNT}}`); blank the
    // placeholders so the structure parses.
    let blanked = regex::Regex::new(r"\{\{[^}]*\}\}")
        .map(|re| re.replace_all(text, "x").into_owned())
        .unwrap_or_else(|_| text.to_owned());
    let doc: serde_json::Value =
        serde_saphyr::from_str(&blanked).map_err(|e| MigrateError::Yaml {
            path: shown.to_owned(),
            reason: e.to_string(),
        })?;
    let Some(pods) = doc.get("pods").and_then(serde_json::Value::as_object) else {
        return Err(MigrateError::Unknown {
            path: shown.to_owned(),
        });
    };
    let mut report = FileReport::default();
    let wanted: Vec<&String> = pods
        .iter()
        .filter(|(_, pod)| {
            pod.get("networks")
                .and_then(serde_json::Value::as_object)
                .is_some_and(|n| n.contains_key(&nets.from))
        })
        .map(|(name, _)| name)
        .collect();
    for (name, pod) in pods {
        if !wanted.contains(&name) {
            let why = if pod.get("networks").is_some() {
                "not on the overlay"
            } else {
                "on the host network"
            };
            report.untouched.push(format!("pod {name}: {why}"));
        }
    }
    if wanted.is_empty() {
        return Ok(report);
    }
    // Walk the lines by indentation: pods: / <pod>: / networks: / dcos:.
    let mut out = String::with_capacity(text.len());
    let mut path: Vec<(usize, String)> = Vec::new();
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        let trimmed = body.trim_start();
        let indent = body.len() - trimmed.len();
        let key = (!trimmed.starts_with('#') && !trimmed.starts_with('-'))
            .then(|| {
                trimmed
                    .split_once(':')
                    .map(|(k, _)| k.trim().trim_matches(['"', '\'']))
            })
            .flatten();
        let mut replaced = None;
        if let Some(key) = key {
            while path.last().is_some_and(|(i, _)| *i >= indent) {
                path.pop();
            }
            let keys: Vec<&str> = path.iter().map(|(_, k)| k.as_str()).collect();
            if let [first, pod, networks] = keys.as_slice()
                && *first == "pods"
                && *networks == "networks"
                && key == nets.from
                && wanted.iter().any(|w| w.as_str() == *pod)
            {
                let at = body.find(&nets.from).unwrap_or(indent);
                replaced = Some(format!(
                    "{}{}{}",
                    &line[..at],
                    nets.to,
                    &line[at + nets.from.len()..]
                ));
                report.changes.push(format!(
                    "pod {pod}: networks.{} -> networks.{}",
                    nets.from, nets.to
                ));
            }
            path.push((indent, key.to_owned()));
        }
        out.push_str(replaced.as_deref().unwrap_or(line));
    }
    report.new_text = Some(out);
    Ok(report)
}

/// A unified diff of a file's migration, for the dry run.
pub fn diff(path: &Path, old: &str, new: &str) -> String {
    let shown = path.display().to_string();
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(&format!("a/{shown}"), &format!("b/{shown}"))
        .to_string()
}
