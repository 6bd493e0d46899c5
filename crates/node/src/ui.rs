//! The web view calico-node serves (read-only): the page, and the JSON it reads: the
//! cluster (hosts, endpoints, policies in tier order with what they select), every host's
//! flows, and why one flow got its verdict (the deciding rule the kernel reported, and
//! `calicoctl policy trace` of the same packet).

use std::collections::BTreeMap;
use std::time::Duration;

use calico_api::{Kind, v3};
use calico_datastore::Datastore;
use calico_flows::view::{Directory, Flow, list};
use calico_policy::model::Direction;
use serde::Serialize;
use serde_json::{Value, json};

/// The page (self-contained: styles and script inline, no other request but the API).
pub const INDEX_HTML: &str = include_str!("ui/index.html");

/// Why an API request failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The datastore or a host could not be read.
    #[error(transparent)]
    Flows(#[from] calico_flows::view::Error),
    /// The request names nothing there is.
    #[error("{0}")]
    NotFound(String),
    /// The request is malformed.
    #[error("{0}")]
    BadRequest(String),
}

impl Error {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> u16 {
        match self {
            Error::NotFound(_) => 404,
            Error::BadRequest(_) => 400,
            Error::Flows(_) => 500,
        }
    }
}

/// A policy as the page lists it.
#[derive(Debug, Serialize)]
struct PolicyRow {
    #[serde(rename = "tier")]
    tier: String,
    #[serde(rename = "tierOrder")]
    tier_order: Option<f64>,
    #[serde(rename = "order")]
    order: Option<f64>,
    #[serde(rename = "kind")]
    kind: &'static str,
    #[serde(rename = "name")]
    name: String,
    #[serde(rename = "namespace")]
    namespace: Option<String>,
    #[serde(rename = "selector")]
    selector: String,
    #[serde(rename = "types")]
    types: Vec<String>,
    #[serde(rename = "rules")]
    rules: Vec<String>,
    #[serde(rename = "selects")]
    selects: Vec<String>,
}

fn rule_lines(direction: &str, rules: &[v3::Rule]) -> Vec<String> {
    rules
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut doc = serde_json::to_value(r).unwrap_or(Value::Null);
            let action = doc
                .as_object_mut()
                .and_then(|o| o.remove("action"))
                .and_then(|a| a.as_str().map(str::to_owned))
                .unwrap_or_default();
            let rest = match &doc {
                Value::Object(o) if o.is_empty() => String::new(),
                other => format!(" {other}"),
            };
            format!("{direction} {i}: {action}{rest}")
        })
        .collect()
}

/// `GET /api/cluster`.
pub fn cluster(ds: &dyn Datastore) -> Result<Value, Error> {
    let dir = Directory::load(ds)?;
    let hosts: Vec<Value> = dir
        .nodes
        .iter()
        .map(|n| {
            json!({
                "name": n.name,
                "address": n.address,
                "flows": n.flows.is_some(),
                "error": n.flows.is_none().then_some("its calico-node does not serve flows"),
            })
        })
        .collect();
    // Endpoint labels as selectors see them.
    let endpoints: Vec<(String, String, BTreeMap<String, String>)> = dir
        .workloads
        .iter()
        .map(|w| {
            let mut labels = w.metadata.labels.clone();
            labels.insert(v3::NAMESPACE_LABEL.into(), w.metadata.namespace.clone());
            labels.insert(v3::ORCHESTRATOR_LABEL.into(), w.spec.orchestrator.clone());
            (
                w.metadata.namespace.clone(),
                format!("{}/{}", w.metadata.namespace, w.metadata.name),
                labels,
            )
        })
        .collect();
    let tier_orders: BTreeMap<String, Option<f64>> = list::<v3::Tier>(ds, Kind::Tier, "tiers")?
        .into_iter()
        .map(|t| (t.metadata.name.clone(), t.spec.order))
        .collect();
    let selects = |selector: &str, namespace: Option<&str>| -> Vec<String> {
        let Ok(sel) = calico_selector::parse(if selector.is_empty() {
            "all()"
        } else {
            selector
        }) else {
            return vec![format!("(selector does not parse: {selector})")];
        };
        endpoints
            .iter()
            .filter(|(ns, _, labels)| namespace.is_none_or(|n| n == ns) && sel.evaluate(labels))
            .map(|(_, name, _)| name.clone())
            .collect()
    };
    let row = |kind: &'static str,
               meta: &v3::ObjectMeta,
               namespace: Option<String>,
               (tier, order, selector, types): (&str, Option<f64>, &str, &[String]),
               (ingress, egress): (&[v3::Rule], &[v3::Rule])| {
        let mut rules = rule_lines("ingress", ingress);
        rules.extend(rule_lines("egress", egress));
        PolicyRow {
            tier_order: tier_orders.get(tier).copied().flatten(),
            tier: tier.to_owned(),
            order,
            kind,
            name: meta.name.clone(),
            selects: selects(selector, namespace.as_deref()),
            namespace,
            selector: selector.to_owned(),
            types: types.to_vec(),
            rules,
        }
    };
    let mut policies = Vec::new();
    for p in list::<v3::GlobalNetworkPolicy>(ds, Kind::GlobalNetworkPolicy, "global policies")? {
        let s = &p.spec;
        policies.push(row(
            "GlobalNetworkPolicy",
            &p.metadata,
            None,
            (&s.tier, s.order, &s.selector, &s.types),
            (&s.ingress, &s.egress),
        ));
    }
    for p in list::<v3::NetworkPolicy>(ds, Kind::NetworkPolicy, "policies")? {
        let s = &p.spec;
        policies.push(row(
            "NetworkPolicy",
            &p.metadata,
            Some(p.metadata.namespace.clone()),
            (&s.tier, s.order, &s.selector, &s.types),
            (&s.ingress, &s.egress),
        ));
    }
    // Evaluation order: tier order, then policy order (none last), then name.
    let key = |o: Option<f64>| o.unwrap_or(f64::INFINITY);
    policies.sort_by(|a, b| {
        key(a.tier_order)
            .total_cmp(&key(b.tier_order))
            .then_with(|| a.tier.cmp(&b.tier))
            .then_with(|| key(a.order).total_cmp(&key(b.order)))
            .then_with(|| a.name.cmp(&b.name))
    });
    let endpoint_rows: Vec<Value> = dir
        .workloads
        .iter()
        .map(|w| {
            let (app, task) = calico_flows::view::app_and_task(w);
            let ips: Vec<&str> = w
                .spec
                .ip_networks
                .iter()
                .map(|n| n.split('/').next().unwrap_or(n))
                .collect();
            json!({
                "host": w.spec.node,
                "namespace": w.metadata.namespace,
                "name": w.metadata.name,
                "workload": w.spec.workload,
                "app": app,
                "task": task,
                "ips": ips,
                "labels": w.metadata.labels,
            })
        })
        .collect();
    Ok(json!({
        "hosts": hosts,
        "endpoints": endpoint_rows,
        "policies": policies,
    }))
}

/// `GET /api/flows?since=SECONDS`.
pub fn flows(ds: &dyn Datastore, since: Duration) -> Result<Value, Error> {
    let (view, _) = calico_flows::collect(ds, since)?;
    Ok(serde_json::to_value(view).unwrap_or(Value::Null))
}

/// The flow `id` of the last 15 minutes.
fn find(ds: &dyn Datastore, id: &str) -> Result<Flow, Error> {
    let (view, _) = calico_flows::collect(ds, Duration::from_secs(15 * 60))?;
    view.flows
        .into_iter()
        .find(|f| f.id == id)
        .ok_or_else(|| Error::NotFound(format!("no flow {id} in the last 15 minutes")))
}

/// `GET /api/why?id=ID`: the flow, the rule the kernel said decided it, the trace of the
/// same packet through the current policy, and whether they agree.
pub fn why(ds: &dyn Datastore, id: &str) -> Result<Value, Error> {
    let flow = find(ds, id)?;
    let trace = trace_of(ds, &flow);
    let (text, agrees) = match &trace {
        Ok((text, decision)) => (text.clone(), decision.as_ref() == Some(&flow.decision)),
        Err(e) => (format!("the trace could not be run: {e}"), false),
    };
    Ok(json!({
        "decidedBy": flow.decided_by.text,
        "trace": text,
        "agrees": agrees,
        "flow": flow,
    }))
}

/// `calicoctl policy trace` of `flow`'s packet: its text, and the decision in the
/// direction the flow was reported from.
pub fn trace_of(
    ds: &dyn Datastore,
    flow: &Flow,
) -> Result<(String, Option<calico_policy::Decision>), String> {
    let req = calicoctl::policy_cmd::TraceRequest {
        src: flow.source.ip.to_string(),
        dst: flow.destination.ip.to_string(),
        protocol: flow.protocol.clone(),
        port: flow.port,
        src_port: None,
        icmp_type: None,
        icmp_code: None,
        json: false,
        staged: false,
    };
    let (text, doc) = calicoctl::policy_cmd::trace_both(ds, &req).map_err(|e| e.to_string())?;
    let side = match flow.reporter {
        Direction::Ingress => "ingress",
        Direction::Egress => "egress",
    };
    let decision = serde_json::from_value(doc[side]["trace"]["decision"].clone()).ok();
    Ok((text, decision))
}

/// The value of `name` in a URL's query, decoded.
pub fn query_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_decode() {
        assert_eq!(
            query_param("/api/why?id=h1%7Cingress%7C10.0.0.1+x&z=1", "id").as_deref(),
            Some("h1|ingress|10.0.0.1 x")
        );
        assert_eq!(
            query_param("/api/flows?since=300", "since").as_deref(),
            Some("300")
        );
        assert_eq!(query_param("/api/flows", "since"), None);
        assert_eq!(query_param("/a?id=%zz%4", "id").as_deref(), Some("%zz%4"));
        assert_eq!(query_param("/a?id=%41", "id").as_deref(), Some("A"));
    }
}
