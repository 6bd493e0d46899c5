//! Printing resources: `ps` (default), `wide`, `custom-columns=`, `yaml`, `json`,
//! `go-template=` and `go-template-file=`, as calicoctl prints them.

use std::io::Write;

use calico_api::Kind;
use serde_json::{Map, Value};
use tabwriter::TabWriter;

use crate::template::{Template, TemplateError};

/// The output format chosen with `-o`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputFormat {
    /// The kind's default columns.
    Ps,
    /// The kind's wide columns.
    Wide,
    /// Named columns from the kind's column set.
    CustomColumns(Vec<String>),
    /// YAML (keys sorted, as Go's YAML printer does).
    Yaml,
    /// JSON (indented, fields in API order).
    Json,
    /// A Go template over the printed objects.
    GoTemplate(String),
}

impl OutputFormat {
    /// Parse the `-o` value; `go-template-file=` reads the file now.
    pub fn parse(spec: &str) -> Result<Self, String> {
        Ok(match spec {
            "ps" => Self::Ps,
            "wide" => Self::Wide,
            "yaml" => Self::Yaml,
            "json" => Self::Json,
            _ => {
                if let Some(cols) = spec.strip_prefix("custom-columns=") {
                    let cols: Vec<String> = cols
                        .split(',')
                        .map(|c| c.trim().to_ascii_uppercase())
                        .filter(|c| !c.is_empty())
                        .collect();
                    if cols.is_empty() {
                        return Err("-o custom-columns= needs at least one column name".into());
                    }
                    Self::CustomColumns(cols)
                } else if let Some(t) = spec.strip_prefix("go-template=") {
                    Template::parse(t).map_err(|e| format!("-o go-template: {e}"))?;
                    Self::GoTemplate(t.to_owned())
                } else if let Some(path) = spec.strip_prefix("go-template-file=") {
                    let t = std::fs::read_to_string(path)
                        .map_err(|e| format!("reading go-template-file {path}: {e}"))?;
                    Template::parse(&t).map_err(|e| format!("-o go-template-file {path}: {e}"))?;
                    Self::GoTemplate(t)
                } else {
                    return Err(format!(
                        "unrecognized output format {spec:?}: use ps, wide, custom-columns=<COL>,..., yaml, json, go-template=<TEMPLATE> or go-template-file=<FILE>"
                    ));
                }
            }
        })
    }
}

/// What a `get` produced: either individually named objects or one list per kind.
#[derive(Debug, Clone)]
pub enum Printable {
    /// Objects fetched by name.
    Object(Value),
    /// A list of one kind, read at `revision`.
    List {
        kind: Kind,
        items: Vec<Value>,
        revision: i64,
    },
}

impl Printable {
    fn to_value(&self) -> Value {
        match self {
            Printable::Object(v) => v.clone(),
            Printable::List {
                kind,
                items,
                revision,
            } => {
                let mut m = Map::new();
                m.insert("apiVersion".into(), calico_api::API_VERSION.into());
                m.insert("kind".into(), format!("{kind}List").into());
                m.insert(
                    "metadata".into(),
                    serde_json::json!({"resourceVersion": revision.to_string()}),
                );
                m.insert("items".into(), Value::Array(items.clone()));
                Value::Object(m)
            }
        }
    }

    fn kind_and_items(&self) -> Option<(Kind, Vec<&Value>)> {
        match self {
            Printable::Object(v) => {
                let kind = Kind::from_document_kind(v["kind"].as_str()?)?;
                Some((kind, vec![v]))
            }
            Printable::List { kind, items, .. } => Some((*kind, items.iter().collect())),
        }
    }
}

/// Errors printing.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// A template failed.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// A custom column does not exist for a kind.
    #[error("unknown column {column:?} for {kind}; valid columns: {valid}")]
    UnknownColumn {
        column: String,
        kind: Kind,
        valid: String,
    },
    /// Writing failed.
    #[error("writing output: {0}")]
    Io(#[from] std::io::Error),
    /// YAML serialisation failed.
    #[error("formatting YAML: {0}")]
    Yaml(String),
}

/// Print `results` in `format` to `out`. `print_namespace` adds the NAMESPACE column for
/// namespaced kinds (calicoctl does this with `-A`).
pub fn print(
    out: &mut dyn Write,
    format: &OutputFormat,
    results: &[Printable],
    print_namespace: bool,
    as_number: &str,
) -> Result<(), OutputError> {
    match format {
        OutputFormat::Yaml => {
            let value = single_or_all(results);
            let text = serde_saphyr::to_string(&sorted_keys(&value))
                .map_err(|e| OutputError::Yaml(e.to_string()))?;
            out.write_all(text.as_bytes())?;
        }
        OutputFormat::Json => {
            let value = single_or_all(results);
            let text = serde_json::to_string_pretty(&value).map_err(std::io::Error::other)?;
            writeln!(out, "{text}")?;
        }
        OutputFormat::GoTemplate(t) => {
            let data = Value::Array(results.iter().map(Printable::to_value).collect());
            // A field the resource's type does not have is an error, as upstream's Go
            // templates fail on a struct; an omitted zero-valued field prints as nothing.
            let text = Template::parse(t)?.execute_checked(&data, &|resource, path, field| {
                calico_api::has_field(resource, path, field)
            })?;
            out.write_all(text.as_bytes())?;
        }
        OutputFormat::Ps | OutputFormat::Wide | OutputFormat::CustomColumns(_) => {
            print_tables(out, format, results, print_namespace, as_number)?;
        }
    }
    Ok(())
}

fn single_or_all(results: &[Printable]) -> Value {
    match results {
        [one] => one.to_value(),
        many => Value::Array(many.iter().map(Printable::to_value).collect()),
    }
}

/// A copy with every object's keys sorted, as Go's JSON-to-YAML printer produces them.
pub fn sorted_keys(value: &Value) -> Value {
    match value {
        Value::Object(m) => {
            let mut entries: Vec<(&String, &Value)> = m.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.clone(), sorted_keys(v)))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted_keys).collect()),
        other => other.clone(),
    }
}

fn print_tables(
    out: &mut dyn Write,
    format: &OutputFormat,
    results: &[Printable],
    print_namespace: bool,
    as_number: &str,
) -> Result<(), OutputError> {
    // Objects fetched by name print as one table per kind, like a list would.
    let mut groups: Vec<(Kind, Vec<&Value>)> = Vec::new();
    for result in results {
        let Some((kind, items)) = result.kind_and_items() else {
            continue;
        };
        match groups.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, existing)) => existing.extend(items),
            None => groups.push((kind, items)),
        }
    }
    for (kind, items) in groups {
        let columns = columns(kind, as_number);
        let mut headings: Vec<String> = match format {
            OutputFormat::Wide => columns.wide.iter().map(|s| (*s).to_owned()).collect(),
            OutputFormat::CustomColumns(cols) => cols.clone(),
            _ => columns.default.iter().map(|s| (*s).to_owned()).collect(),
        };
        if print_namespace && kind.is_namespaced() && !headings.iter().any(|h| h == "NAMESPACE") {
            headings.insert(0, "NAMESPACE".into());
        }
        let mut templates = Vec::with_capacity(headings.len());
        for heading in &headings {
            let Some((_, t)) = columns.templates.iter().find(|(h, _)| h == heading) else {
                let mut valid: Vec<&str> =
                    columns.templates.iter().map(|(h, _)| h.as_str()).collect();
                valid.sort_unstable();
                return Err(OutputError::UnknownColumn {
                    column: heading.clone(),
                    kind,
                    valid: valid.join(", "),
                });
            };
            templates.push(Template::parse(t)?);
        }
        // Go's tabwriter (minwidth 5, padding 3 in calicoctl) counts padding inside minwidth;
        // this crate adds padding after it, so 2 + 3 gives the same column widths.
        let mut tw = TabWriter::new(Vec::new()).minwidth(2).padding(3);
        writeln!(tw, "{}\t", headings.join("\t"))?;
        for item in items {
            let cells = templates
                .iter()
                .map(|t| t.execute(item))
                .collect::<Result<Vec<_>, _>>()?;
            writeln!(tw, "{}\t", cells.join("\t"))?;
        }
        tw.flush()?;
        let table = tw
            .into_inner()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        // tabwriter pads the trailing cell; calicoctl's rows end in the padding too, but
        // trailing blanks only make diffs noisy.
        for line in String::from_utf8_lossy(&table).lines() {
            writeln!(out, "{}", line.trim_end())?;
        }
        writeln!(out)?;
    }
    Ok(())
}

/// The table columns of one kind.
struct Columns {
    default: &'static [&'static str],
    wide: &'static [&'static str],
    templates: Vec<(String, String)>,
}

fn columns(kind: Kind, as_number: &str) -> Columns {
    let name = ("NAME", "{{.ObjectMeta.Name}}".to_owned());
    let namespace = ("NAMESPACE", "{{.ObjectMeta.Namespace}}".to_owned());
    let (default, wide, extra): (&[&str], &[&str], Vec<(&str, String)>) = match kind {
        Kind::BgpConfiguration => (
            &["NAME", "LOGSEVERITY", "MESHENABLED", "ASNUMBER"],
            &["NAME", "LOGSEVERITY", "MESHENABLED", "ASNUMBER"],
            vec![
                ("LOGSEVERITY", "{{.Spec.LogSeverityScreen}}".into()),
                (
                    "MESHENABLED",
                    "{{if .Spec.NodeToNodeMeshEnabled}}{{.Spec.NodeToNodeMeshEnabled}}{{else}}-{{end}}".into(),
                ),
                ("ASNUMBER", "{{if .Spec.ASNumber}}{{.Spec.ASNumber}}{{else}}-{{end}}".into()),
            ],
        ),
        Kind::BgpPeer => (
            &["NAME", "PEERIP", "NODE", "ASN"],
            &["NAME", "PEERIP", "NODE", "ASN"],
            vec![
                ("PEERIP", "{{.Spec.PeerIP}}".into()),
                (
                    "NODE",
                    "{{ if eq .Spec.Node `` }}{{ if eq .Spec.NodeSelector `` }}(global){{ else }}{{.Spec.NodeSelector}}{{ end }}{{ else }}{{.Spec.Node}}{{ end }}".into(),
                ),
                ("ASN", "{{.Spec.ASNumber}}".into()),
            ],
        ),
        // Upstream prints a BGPFilter's name only.
        Kind::BgpFilter => (&["NAME"], &["NAME"], Vec::new()),
        Kind::ClusterInformation => (
            &["NAME"],
            &["NAME", "CLUSTERGUID", "CLUSTERTYPE", "CALICOVERSION", "DATASTOREREADY"],
            vec![
                ("CLUSTERGUID", "{{.Spec.ClusterGUID}}".into()),
                ("CLUSTERTYPE", "{{.Spec.ClusterType}}".into()),
                ("CALICOVERSION", "{{.Spec.CalicoVersion}}".into()),
                ("DATASTOREREADY", "{{.Spec.DatastoreReady}}".into()),
            ],
        ),
        Kind::FelixConfiguration | Kind::Profile => (&["NAME"], &["NAME", "LABELS"], vec![(
            "LABELS",
            "{{join .Spec.LabelsToApply \",\"}}".into(),
        )]),
        Kind::GlobalNetworkPolicy
        | Kind::NetworkPolicy
        | Kind::StagedGlobalNetworkPolicy
        | Kind::StagedNetworkPolicy => (
            &["NAME", "TIER"],
            &["NAME", "TIER", "ORDER", "SELECTOR"],
            vec![
                ("TIER", "{{.Spec.Tier}}".into()),
                ("ORDER", "{{.Spec.Order}}".into()),
                ("SELECTOR", "{{.Spec.Selector}}".into()),
            ],
        ),
        Kind::GlobalNetworkSet | Kind::NetworkSet => (
            &["NAME"],
            &["NAME", "NETS"],
            vec![("NETS", "{{join .Spec.Nets \",\"}}".into())],
        ),
        Kind::HostEndpoint => (
            &["NAME", "NODE"],
            &["NAME", "NODE", "INTERFACE", "IPS", "PROFILES"],
            vec![
                ("NODE", "{{.Spec.Node}}".into()),
                ("INTERFACE", "{{.Spec.InterfaceName}}".into()),
                ("IPS", "{{join .Spec.ExpectedIPs \",\"}}".into()),
                ("PROFILES", "{{join .Spec.Profiles \",\"}}".into()),
            ],
        ),
        Kind::IpPool => (
            &["NAME", "CIDR", "SELECTOR"],
            &["NAME", "CIDR", "NAT", "IPIPMODE", "VXLANMODE", "DISABLED", "DISABLEBGPEXPORT", "SELECTOR", "ASSIGNMENTMODE"],
            vec![
                ("CIDR", "{{.Spec.CIDR}}".into()),
                ("NAT", "{{if .Spec.NATOutgoing}}true{{else}}false{{end}}".into()),
                ("IPIPMODE", "{{if .Spec.IPIPMode}}{{.Spec.IPIPMode}}{{else}}Never{{end}}".into()),
                ("VXLANMODE", "{{if .Spec.VXLANMode}}{{.Spec.VXLANMode}}{{else}}Never{{end}}".into()),
                ("DISABLED", "{{if .Spec.Disabled}}true{{else}}false{{end}}".into()),
                (
                    "DISABLEBGPEXPORT",
                    "{{if .Spec.DisableBGPExport}}true{{else}}false{{end}}".into(),
                ),
                ("SELECTOR", "{{.Spec.NodeSelector}}".into()),
                (
                    "ASSIGNMENTMODE",
                    "{{if .Spec.AssignmentMode}}{{.Spec.AssignmentMode}}{{else}}Automatic{{end}}".into(),
                ),
            ],
        ),
        Kind::IpReservation => (
            &["NAME"],
            &["NAME", "CIDRS"],
            vec![("CIDRS", "{{join .Spec.ReservedCIDRs \",\"}}".into())],
        ),
        Kind::Node => (
            &["NAME"],
            &["NAME", "ASN", "IPV4", "IPV6"],
            vec![
                (
                    "ASN",
                    format!(
                        "{{{{if .Spec.BGP}}}}{{{{if .Spec.BGP.ASNumber}}}}{{{{.Spec.BGP.ASNumber}}}}{{{{else}}}}({as_number}){{{{end}}}}{{{{end}}}}"
                    ),
                ),
                ("IPV4", "{{if .Spec.BGP}}{{.Spec.BGP.IPv4Address}}{{end}}".into()),
                ("IPV6", "{{if .Spec.BGP}}{{.Spec.BGP.IPv6Address}}{{end}}".into()),
            ],
        ),
        Kind::Tier => (
            &["NAME", "ORDER"],
            &["NAME", "ORDER"],
            vec![("ORDER", "{{.Spec.Order}}".into())],
        ),
        Kind::WorkloadEndpoint => (
            &["WORKLOAD", "NODE", "NETWORKS", "INTERFACE"],
            &["NAME", "WORKLOAD", "NODE", "NETWORKS", "INTERFACE", "PROFILES", "NATS"],
            vec![
                ("NODE", "{{.Spec.Node}}".into()),
                ("ORCHESTRATOR", "{{.Spec.Orchestrator}}".into()),
                (
                    "WORKLOAD",
                    "{{if .Spec.Workload}}{{.Spec.Workload}}{{else}}{{.Spec.Pod}}{{end}}".into(),
                ),
                ("NETWORKS", "{{join .Spec.IPNetworks \",\"}}".into()),
                ("NATS", "{{join .Spec.IPNATs \",\"}}".into()),
                ("PROFILES", "{{join .Spec.Profiles \",\"}}".into()),
                ("INTERFACE", "{{.Spec.InterfaceName}}".into()),
            ],
        ),
        Kind::CalicoNodeStatus => (
            &["NAME"],
            &["NAME", "NODE"],
            vec![("NODE", "{{.Spec.Node}}".into())],
        ),
        Kind::IpamConfiguration => (
            &["NAME"],
            &["NAME", "STRICTAFFINITY", "MAXBLOCKSPERHOST"],
            vec![
                ("STRICTAFFINITY", "{{.Spec.StrictAffinity}}".into()),
                ("MAXBLOCKSPERHOST", "{{.Spec.MaxBlocksPerHost}}".into()),
            ],
        ),
        // Internal kinds are never listed as resources; a name column is all they would show.
        Kind::IpamBlock | Kind::BlockAffinity | Kind::IpamHandle => {
            (&["NAME"], &["NAME"], Vec::new())
        }
    };
    let mut templates = vec![(name.0.to_owned(), name.1)];
    if kind.is_namespaced() {
        templates.push((namespace.0.to_owned(), namespace.1));
    }
    templates.extend(extra.into_iter().map(|(h, t)| (h.to_owned(), t)));
    Columns {
        default,
        wide,
        templates,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(format: &OutputFormat, results: &[Printable], ns: bool) -> String {
        let mut out = Vec::new();
        print(&mut out, format, results, ns, "64512").unwrap();
        String::from_utf8(out).unwrap()
    }

    fn pool(name: &str, cidr: &str) -> Value {
        json!({"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
               "metadata": {"name": name},
               "spec": {"cidr": cidr, "nodeSelector": "all()", "natOutgoing": true}})
    }

    #[test]
    fn ps_and_wide_tables_align_like_go_tabwriter() {
        let list = Printable::List {
            kind: Kind::IpPool,
            items: vec![
                pool("default-ipv4-ippool", "172.29.0.0/16"),
                pool("net2", "10.1.0.0/16"),
            ],
            revision: 7,
        };
        let ps = render(&OutputFormat::Ps, std::slice::from_ref(&list), false);
        assert_eq!(
            ps,
            "NAME                  CIDR            SELECTOR\n\
             default-ipv4-ippool   172.29.0.0/16   all()\n\
             net2                  10.1.0.0/16     all()\n\n"
        );
        let wide = render(&OutputFormat::Wide, std::slice::from_ref(&list), false);
        assert!(
            wide.lines().nth(1).unwrap().contains("true   Never"),
            "{wide}"
        );
        let custom = render(
            &OutputFormat::CustomColumns(vec!["CIDR".into()]),
            &[list],
            false,
        );
        assert_eq!(custom, "CIDR\n172.29.0.0/16\n10.1.0.0/16\n\n");
    }

    #[test]
    fn unknown_custom_column_lists_the_valid_ones() {
        let list = Printable::List {
            kind: Kind::Tier,
            items: vec![],
            revision: 1,
        };
        let mut out = Vec::new();
        let err = print(
            &mut out,
            &OutputFormat::CustomColumns(vec!["NOPE".into()]),
            &[list],
            false,
            "1",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown column \"NOPE\" for Tier; valid columns: NAME, ORDER"
        );
    }

    #[test]
    fn yaml_list_has_sorted_keys_and_list_kind() {
        let list = Printable::List {
            kind: Kind::IpPool,
            items: vec![pool("a", "10.0.0.0/8")],
            revision: 3,
        };
        let yaml = render(&OutputFormat::Yaml, &[list], false);
        assert!(
            yaml.starts_with("apiVersion: projectcalico.org/v3\nitems:\n- apiVersion"),
            "{yaml}"
        );
        assert!(
            yaml.contains("kind: IPPoolList\nmetadata:\n  resourceVersion: \"3\"\n"),
            "{yaml}"
        );
    }

    #[test]
    fn namespace_column_with_all_namespaces() {
        let np = json!({"kind": "NetworkPolicy", "metadata": {"name": "p", "namespace": "default"}, "spec": {"tier": "default"}});
        let list = Printable::List {
            kind: Kind::NetworkPolicy,
            items: vec![np],
            revision: 3,
        };
        let out = render(&OutputFormat::Ps, &[list], true);
        assert_eq!(
            out,
            "NAMESPACE   NAME   TIER\ndefault     p      default\n\n"
        );
    }
}
