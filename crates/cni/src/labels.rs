//! Mesos labels as Calico labels, and the names derived for an endpoint.

use std::collections::BTreeMap;

use sha1::Digest as _;

pub use calico_api::v3::{NAMESPACE_LABEL, ORCHESTRATOR_LABEL};
/// The namespace when no label names one.
pub const DEFAULT_NAMESPACE: &str = "default";
/// The orchestrator this plugin records.
pub const ORCHESTRATOR_MESOS: &str = "mesos";
/// Longest label value Calico accepts.
pub const MAX_LABEL_VALUE: usize = 63;

/// Turn a Mesos label key or value (any Unicode) into a valid Calico one, as upstream's
/// `SanitizeMesosLabel` does: `/` becomes `.`, every run of other characters outside
/// `[-_.a-zA-Z0-9]` becomes `-`, every run of `[-.]` holding a `.` becomes one `.`, and leading
/// and trailing `.`/`-` are dropped.
pub fn sanitize(s: &str) -> String {
    let s = s.replace('/', ".");
    // Runs of invalid characters -> '-'.
    let mut out = String::with_capacity(s.len());
    let mut in_invalid = false;
    for c in s.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
            out.push(c);
            in_invalid = false;
        } else if !in_invalid {
            out.push('-');
            in_invalid = true;
        }
    }
    // Runs of [-.] containing a '.' -> '.'.
    let chars: Vec<char> = out.chars().collect();
    let mut collapsed = String::with_capacity(out.len());
    let mut i = 0;
    while i < chars.len() {
        if matches!(chars[i], '-' | '.') {
            let start = i;
            while i < chars.len() && matches!(chars[i], '-' | '.') {
                i += 1;
            }
            let run = &chars[start..i];
            if run.contains(&'.') {
                collapsed.push('.');
            } else {
                collapsed.extend(run);
            }
        } else {
            collapsed.push(chars[i]);
            i += 1;
        }
    }
    collapsed.trim_matches(['.', '-']).to_owned()
}

/// A label value that fits: values longer than 63 characters become the first 7 hex
/// characters of their SHA-256, `...`, then their last 53 characters.
pub fn limit_value(v: &str) -> String {
    if v.len() <= MAX_LABEL_VALUE {
        return v.to_owned();
    }
    let digest = sha2::Sha256::digest(v.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    // Sanitised values are ASCII, so byte offsets are character offsets.
    format!("{}...{}", &hex[..7], &v[v.len() - 53..])
}

/// The endpoint's labels and namespace from Mesos `{key, value}` pairs: keys and values
/// sanitised, values limited to 63 characters; `projectcalico.org/namespace` names the
/// namespace (default `default`). The namespace and orchestrator labels are added as
/// libcalico-go adds them.
pub fn from_mesos(pairs: &[(String, String)]) -> (BTreeMap<String, String>, String) {
    let mut labels = BTreeMap::new();
    let mut namespace = DEFAULT_NAMESPACE.to_owned();
    for (k, v) in pairs {
        let value = limit_value(&sanitize(v));
        if k == NAMESPACE_LABEL {
            if !value.is_empty() {
                namespace = value.to_ascii_lowercase();
            }
            continue;
        }
        let key = sanitize(k);
        if key.is_empty() {
            continue;
        }
        labels.insert(key, value);
    }
    labels.insert(NAMESPACE_LABEL.to_owned(), namespace.clone());
    labels.insert(ORCHESTRATOR_LABEL.to_owned(), ORCHESTRATOR_MESOS.to_owned());
    (labels, namespace)
}

/// The host-side veth name: `cali` + the first 11 hex characters of the SHA-1 of
/// `<namespace>.<workload>`, as upstream names it.
pub fn veth_name(namespace: &str, workload: &str) -> String {
    let digest = sha1::Sha1::digest(format!("{namespace}.{workload}").as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    calico_netlink::workload::host_iface_name(&hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_as_upstream() {
        assert_eq!(sanitize("org.apache/mesos"), "org.apache.mesos");
        assert_eq!(sanitize("a b"), "a-b");
        assert_eq!(sanitize("a  §§ b"), "a-b");
        assert_eq!(sanitize("--a.-.b--"), "a.b");
        assert_eq!(sanitize("a--b"), "a--b");
        assert_eq!(sanitize("/x/"), "x");
        assert_eq!(sanitize("Ünïcode"), "n-code");
        assert_eq!(sanitize("ok_Value-1"), "ok_Value-1");
    }

    #[test]
    fn long_values_are_hashed_then_tail() {
        let v = "a".repeat(60) + &"b".repeat(10);
        let got = limit_value(&v);
        // sha256("a"*60 + "b"*10) starts with 6c058b9.
        let expected = format!("6c058b9...{}{}", "a".repeat(43), "b".repeat(10));
        assert_eq!(got, expected);
        assert_eq!(got.len(), 63);
        assert_eq!(limit_value(&"x".repeat(63)), "x".repeat(63));
    }

    #[test]
    fn labels_and_namespace() {
        let pairs = vec![
            ("app name".to_owned(), "web/front".to_owned()),
            (NAMESPACE_LABEL.to_owned(), "Team-A".to_owned()),
            ("§".to_owned(), "dropped".to_owned()),
        ];
        let (labels, ns) = from_mesos(&pairs);
        assert_eq!(ns, "team-a");
        assert_eq!(labels["app-name"], "web.front");
        assert_eq!(labels[NAMESPACE_LABEL], "team-a");
        assert_eq!(labels[ORCHESTRATOR_LABEL], "mesos");
        assert_eq!(labels.len(), 3);
        assert_eq!(from_mesos(&[]).1, "default");
    }

    #[test]
    fn veth_name_is_sha1_prefix() {
        // sha1("default.abc") = 426f97701eb...
        let n = veth_name("default", "abc");
        assert_eq!(n, "cali426f97701eb");
        assert_ne!(n, veth_name("other", "abc"));
    }
}
