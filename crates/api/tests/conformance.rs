//! Runs the upstream-derived conformance corpora (`validation.json`, `numorstring.json`,
//! `names.json`; see `conformance/README.md`) against this crate.
//!
//! Every case is run. A case of a shape this harness does not know is a failure; cases we
//! deliberately do not support are listed in [`UNSUPPORTED`] with a reason and reported as
//! unsupported, never dropped silently.

use std::fmt::Write as _;
use std::path::PathBuf;

use calico_api::names::{self, WorkloadEndpointIdentifiers};
use calico_api::numorstring::{self, ASNumber, Dscp, Port, Protocol};
use calico_api::{FragmentError, Kind, parse_resource, validate_fragment};
use serde_json::{Map, Value};

/// What an [`UNSUPPORTED`] entry matches.
enum Matcher {
    /// A `validation.json` case with this `kind`.
    Kind(&'static str),
    /// A `validation.json` case with this `type`.
    Type(&'static str),
    /// One case, by id.
    Id(&'static str),
}

/// Cases we do not run, and why.
const UNSUPPORTED: &[(Matcher, &str)] = &[
    (
        Matcher::Kind("KubeControllersConfiguration"),
        "kube-controllers do not run on Mesos/DC/OS; kind not modelled",
    ),
    (
        Matcher::Type("v3.Template"),
        "host-endpoint templates (kube-controllers) are not modelled",
    ),
    (
        Matcher::Type("v3.KubeControllersConfigurationSpec"),
        "KubeControllersConfiguration is not modelled",
    ),
    (
        Matcher::Type("v3.NodeControllerConfig"),
        "KubeControllersConfiguration is not modelled",
    ),
    (
        Matcher::Type("v3.PolicyControllerConfig"),
        "KubeControllersConfiguration is not modelled",
    ),
    (
        Matcher::Type("v3.ServiceAccountControllerConfig"),
        "KubeControllersConfiguration is not modelled",
    ),
    (
        Matcher::Type("v3.WorkloadEndpointControllerConfig"),
        "KubeControllersConfiguration is not modelled",
    ),
    (
        Matcher::Id("hash.length_limited_id[4]"),
        "corpus expects \"felix_\" for prefix \"felix\", empty suffix, max 10, which contradicts \
         the README's rule (\"felix\" fits); likely a conversion artefact of upstream's table",
    ),
];

/// Runs one case of a corpus.
type CaseRunner = dyn Fn(&Map<String, Value>) -> Outcome;

enum Outcome {
    Pass,
    Fail(String),
    Unsupported(&'static str),
}

fn corpus_dir() -> PathBuf {
    match std::env::var_os("CALICO_CONFORMANCE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../conformance"),
    }
}

fn load(file: &str) -> Vec<Value> {
    let path = corpus_dir().join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    match serde_json::from_str(&text) {
        Ok(Value::Array(cases)) => cases,
        _ => panic!("{} is not a JSON array", path.display()),
    }
}

/// Expands `{"$repeat": {"char": c, "count": n}}` into the string.
fn expand(v: Value) -> Value {
    match v {
        Value::Object(map) => {
            if map.len() == 1
                && let Some(Value::Object(r)) = map.get("$repeat")
                && let (Some(Value::String(c)), Some(n)) =
                    (r.get("char"), r.get("count").and_then(Value::as_u64))
            {
                let n = usize::try_from(n).expect("repeat count fits usize");
                return Value::String(c.repeat(n));
            }
            Value::Object(map.into_iter().map(|(k, v)| (k, expand(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(expand).collect()),
        other => other,
    }
}

/// Fails unless every key of `case` is in `allowed` (plus the common keys).
fn check_keys(case: &Map<String, Value>, allowed: &[&str]) -> Result<(), String> {
    const COMMON: [&str; 4] = ["id", "source", "description", "op"];
    for k in case.keys() {
        if !COMMON.contains(&k.as_str()) && !allowed.contains(&k.as_str()) {
            return Err(format!("unrecognised case shape: unexpected key {k:?}"));
        }
    }
    Ok(())
}

fn get<'a>(case: &'a Map<String, Value>, key: &str) -> Result<&'a Value, String> {
    case.get(key)
        .ok_or_else(|| format!("unrecognised case shape: missing key {key:?}"))
}

fn get_str<'a>(case: &'a Map<String, Value>, key: &str) -> Result<&'a str, String> {
    get(case, key)?
        .as_str()
        .ok_or_else(|| format!("unrecognised case shape: {key:?} is not a string"))
}

fn get_bool(case: &Map<String, Value>, key: &str) -> Result<bool, String> {
    get(case, key)?
        .as_bool()
        .ok_or_else(|| format!("unrecognised case shape: {key:?} is not a boolean"))
}

fn unsupported_for(id: &str, kind: Option<&str>, ty: Option<&str>) -> Option<&'static str> {
    UNSUPPORTED.iter().find_map(|(m, reason)| {
        let hit = match m {
            Matcher::Kind(k) => kind == Some(*k),
            Matcher::Type(t) => ty == Some(*t),
            Matcher::Id(i) => id == *i,
        };
        hit.then_some(*reason)
    })
}

fn verdict(expected_valid: bool, result: Result<(), String>) -> Outcome {
    match (expected_valid, result) {
        (true, Ok(())) | (false, Err(_)) => Outcome::Pass,
        (true, Err(e)) => Outcome::Fail(format!("expected valid, got error: {e}")),
        (false, Ok(())) => Outcome::Fail("expected invalid, but it was accepted".to_owned()),
    }
}

fn validation_case(case: &Map<String, Value>) -> Outcome {
    let run = || -> Result<Outcome, String> {
        check_keys(
            case,
            &[
                "kind",
                "type",
                "value",
                "valid",
                "error",
                "error_contains",
                "context",
            ],
        )?;
        let id = get_str(case, "id")?;
        let valid = get_bool(case, "valid")?;
        let value = expand(get(case, "value")?.clone());
        if let Some(ctx) = case.get("context")
            && ctx != "datastore"
        {
            return Err(format!("unrecognised context {ctx}"));
        }
        match (case.get("kind"), case.get("type")) {
            (Some(Value::String(kind)), None) => {
                if let Some(reason) = unsupported_for(id, Some(kind), None) {
                    return Ok(Outcome::Unsupported(reason));
                }
                let mut doc = value;
                // calicoctl fills in the `default` namespace for namespaced kinds before
                // validating; the corpus (taken from upstream's validator tests) omits it.
                if let Some(k) = Kind::from_document_kind(kind)
                    && k.is_namespaced()
                    && let Some(meta) = doc.get_mut("metadata").and_then(Value::as_object_mut)
                    && !meta.contains_key("namespace")
                {
                    meta.insert("namespace".to_owned(), Value::String("default".to_owned()));
                }
                let result = parse_resource(doc).map(drop).map_err(|e| e.to_string());
                if let (Err(msg), Some(Value::String(want))) = (&result, case.get("error_contains"))
                    && !msg.contains(want.as_str())
                {
                    // Messages are informative only (the verdict is normative); show drift.
                    println!("  note {id}: message {msg:?} lacks upstream's {want:?}");
                }
                Ok(verdict(valid, result))
            }
            (None, Some(Value::String(ty))) => {
                if let Some(reason) = unsupported_for(id, None, Some(ty)) {
                    return Ok(Outcome::Unsupported(reason));
                }
                match validate_fragment(ty, &value) {
                    Err(FragmentError::Unsupported(t)) => {
                        Err(format!("fragment type {t} is neither supported nor listed"))
                    }
                    Err(FragmentError::Invalid(e)) => Ok(verdict(valid, Err(e.to_string()))),
                    Ok(()) => Ok(verdict(valid, Ok(()))),
                }
            }
            _ => Err("unrecognised case shape: need exactly one of kind/type".to_owned()),
        }
    };
    run().unwrap_or_else(Outcome::Fail)
}

fn to_port(v: &Value) -> Result<Port, String> {
    let o = v.as_object().ok_or("port value is not an object")?;
    let num = |k: &str| {
        o.get(k)
            .and_then(Value::as_u64)
            .and_then(|n| u16::try_from(n).ok())
            .ok_or_else(|| format!("bad port field {k}"))
    };
    Ok(Port {
        min_port: num("min_port")?,
        max_port: num("max_port")?,
        port_name: o
            .get("port_name")
            .and_then(Value::as_str)
            .ok_or("bad port_name")?
            .to_owned(),
    })
}

fn to_num_or_str(v: &Value) -> Result<(Option<u8>, Option<String>), String> {
    let o = v.as_object().ok_or("value is not an object")?;
    match (o.get("num"), o.get("str")) {
        (Some(n), None) => Ok((
            Some(
                n.as_u64()
                    .and_then(|n| u8::try_from(n).ok())
                    .ok_or("bad num")?,
            ),
            None,
        )),
        (None, Some(Value::String(s))) => Ok((None, Some(s.clone()))),
        _ => Err("expected {num} or {str}".to_owned()),
    }
}

fn to_protocol(v: &Value) -> Result<Protocol, String> {
    Ok(match to_num_or_str(v)? {
        (Some(n), _) => Protocol::Num(n),
        (_, Some(s)) => Protocol::Str(s),
        _ => unreachable!("to_num_or_str returns one of the two"),
    })
}

fn to_dscp(v: &Value) -> Result<Dscp, String> {
    Ok(match to_num_or_str(v)? {
        (Some(n), _) => Dscp::Num(n),
        (_, Some(s)) => Dscp::Str(s),
        _ => unreachable!("to_num_or_str returns one of the two"),
    })
}

fn to_asn(v: &Value) -> Result<ASNumber, String> {
    v.as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .map(ASNumber)
        .ok_or_else(|| "bad AS number".to_owned())
}

fn expect_eq<T: PartialEq + std::fmt::Debug>(got: T, want: T) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("got {got:?}, want {want:?}"))
    }
}

fn unmarshal_case(case: &Map<String, Value>) -> Result<(), String> {
    check_keys(case, &["type", "json", "expected", "error"])?;
    let ty = get_str(case, "type")?;
    let json = get_str(case, "json")?;
    let want_error = match case.get("error") {
        Some(Value::Bool(b)) => *b,
        None => false,
        Some(_) => return Err("unrecognised case shape: error is not a boolean".to_owned()),
    };
    macro_rules! check {
        ($t:ty, $conv:expr) => {{
            let got = serde_json::from_str::<$t>(json);
            match (got, want_error) {
                (Err(_), true) => Ok(()),
                (Ok(v), true) => Err(format!("expected an error, got {v:?}")),
                (Err(e), false) => Err(format!("unexpected error: {e}")),
                (Ok(v), false) => expect_eq(v, $conv(get(case, "expected")?)?),
            }
        }};
    }
    match ty {
        "ASNumber" => check!(ASNumber, to_asn),
        "Port" => check!(Port, to_port),
        "Protocol" => check!(Protocol, to_protocol),
        "DSCP" => check!(Dscp, to_dscp),
        other => Err(format!("unrecognised type {other}")),
    }
}

fn numorstring_case(case: &Map<String, Value>) -> Outcome {
    let run = || -> Result<(), String> {
        let op = get_str(case, "op")?;
        match op {
            "unmarshal" => unmarshal_case(case),
            "marshal" | "string" => {
                check_keys(case, &["type", "value", "expected"])?;
                let v = get(case, "value")?;
                let want = get_str(case, "expected")?;
                let (json, display) = match get_str(case, "type")? {
                    "ASNumber" => {
                        let x = to_asn(v)?;
                        (serde_json::to_string(&x), x.to_string())
                    }
                    "Port" => {
                        let x = to_port(v)?;
                        (serde_json::to_string(&x), x.to_string())
                    }
                    "Protocol" => {
                        let x = to_protocol(v)?;
                        (serde_json::to_string(&x), x.to_string())
                    }
                    "DSCP" => {
                        let x = to_dscp(v)?;
                        (serde_json::to_string(&x), x.to_string())
                    }
                    other => return Err(format!("unrecognised type {other}")),
                };
                let got = if op == "marshal" {
                    json.map_err(|e| e.to_string())?
                } else {
                    display
                };
                expect_eq(got.as_str(), want)
            }
            "protocol_supports_ports" => {
                check_keys(case, &["value", "expected"])?;
                let p = to_protocol(get(case, "value")?)?;
                expect_eq(p.supports_ports(), get_bool(case, "expected")?)
            }
            "protocol_from_string" | "protocol_from_string_v1" | "dscp_from_string" => {
                check_keys(case, &["input", "expected_str"])?;
                let input = get_str(case, "input")?;
                let got = match op {
                    "protocol_from_string" => Protocol::from_string(input).to_string(),
                    "protocol_from_string_v1" => Protocol::from_string_v1(input).to_string(),
                    _ => Dscp::from_string(input).to_string(),
                };
                expect_eq(got.as_str(), get_str(case, "expected_str")?)
            }
            "protocol_to_v1" => {
                check_keys(case, &["value", "expected"])?;
                let p = to_protocol(get(case, "value")?)?;
                expect_eq(p.to_v1(), to_protocol(get(case, "expected")?)?)
            }
            "named_port" => {
                check_keys(case, &["input", "valid", "expected"])?;
                let got = Port::named(get_str(case, "input")?);
                let want = to_port(get(case, "expected")?)?;
                expect_eq(got.is_ok(), get_bool(case, "valid")?)?;
                expect_eq(got.unwrap_or_default(), want)
            }
            "dscp_to_uint8" => {
                check_keys(case, &["input", "expected"])?;
                let want = get(case, "expected")?.as_u64().ok_or("bad expected")?;
                expect_eq(
                    u64::from(Dscp::from_string(get_str(case, "input")?).to_u8()),
                    want,
                )
            }
            "dscp_validate_string" => {
                check_keys(case, &["input", "valid"])?;
                expect_eq(
                    numorstring::dscp_string_is_valid(get_str(case, "input")?),
                    get_bool(case, "valid")?,
                )
            }
            "dscp_validate_number" => {
                check_keys(case, &["input", "valid"])?;
                let n = get(case, "input")?.as_i64().ok_or("bad input")?;
                expect_eq(
                    numorstring::dscp_number_is_valid(n),
                    get_bool(case, "valid")?,
                )
            }
            other => Err(format!("unrecognised op {other}")),
        }
    };
    match run() {
        Ok(()) => Outcome::Pass,
        Err(e) => Outcome::Fail(e),
    }
}

fn to_ids(v: &Value) -> Result<WorkloadEndpointIdentifiers, String> {
    let o = v.as_object().ok_or("ids is not an object")?;
    let mut ids = WorkloadEndpointIdentifiers::default();
    for (k, v) in o {
        let s = v.as_str().ok_or("identifier is not a string")?.to_owned();
        match k.as_str() {
            "node" => ids.node = s,
            "orchestrator" => ids.orchestrator = s,
            "endpoint" => ids.endpoint = s,
            "workload" => ids.workload = s,
            "pod" => ids.pod = s,
            "containerID" => ids.container_id = s,
            other => return Err(format!("unrecognised identifier {other}")),
        }
    }
    Ok(ids)
}

fn expect_name_error<T: std::fmt::Debug>(
    got: Result<T, names::NameError>,
    case: &Map<String, Value>,
    check_ok: impl FnOnce(T) -> Result<(), String>,
) -> Result<(), String> {
    match (got, case.get("error_field")) {
        (Err(e), Some(Value::String(f))) => expect_eq(e.field(), Some(f.as_str())),
        (Ok(v), Some(_)) => Err(format!("expected an error, got {v:?}")),
        (Err(e), None) => Err(format!("unexpected error: {e}")),
        (Ok(v), None) => check_ok(v),
        (Err(_), Some(_)) => Err("unrecognised case shape: error_field is not a string".into()),
    }
}

fn names_case(case: &Map<String, Value>) -> Outcome {
    let run = || -> Result<Outcome, String> {
        let id = get_str(case, "id")?;
        if let Some(reason) = unsupported_for(id, None, None) {
            return Ok(Outcome::Unsupported(reason));
        }
        let op = get_str(case, "op")?;
        match op {
            "calculate_name" | "calculate_name_prefix" => {
                check_keys(case, &["ids", "expected", "error_field"])?;
                let ids = to_ids(get(case, "ids")?)?;
                let got = if op == "calculate_name" {
                    ids.calculate_name()
                } else {
                    ids.calculate_name_prefix()
                };
                expect_name_error(got, case, |name| {
                    expect_eq(name.as_str(), get_str(case, "expected")?)
                })?;
            }
            "name_matches" => {
                check_keys(case, &["ids", "name", "expected", "error_field"])?;
                let ids = to_ids(get(case, "ids")?)?;
                let got = ids.name_matches(get_str(case, "name")?);
                expect_name_error(got, case, |m| expect_eq(m, get_bool(case, "expected")?))?;
            }
            "parse_name" => {
                check_keys(case, &["name", "expected", "error"])?;
                let got = names::parse_workload_endpoint_name(get_str(case, "name")?);
                match (got, case.get("error")) {
                    (Err(_), Some(Value::Bool(true))) => {}
                    (Ok(v), Some(_)) => return Err(format!("expected an error, got {v:?}")),
                    (Err(e), None) => return Err(format!("unexpected error: {e}")),
                    (Ok(v), None) => {
                        let want = get(case, "expected")?;
                        let want_obj = want.as_object().ok_or("expected is not an object")?;
                        if want_obj.len() != 6 {
                            return Err("unrecognised case shape: expected needs 6 fields".into());
                        }
                        expect_eq(v, to_ids(want)?)?;
                    }
                    (Err(_), Some(_)) => return Err("unrecognised error value".to_owned()),
                }
            }
            "length_limited_id" => {
                check_keys(case, &["prefix", "suffix", "max_length", "expected"])?;
                let max = get(case, "max_length")?
                    .as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or("bad max_length")?;
                let got = names::length_limited_id(
                    get_str(case, "prefix")?,
                    get_str(case, "suffix")?,
                    max,
                );
                expect_eq(got.as_str(), get_str(case, "expected")?)?;
            }
            other => return Err(format!("unrecognised op {other}")),
        }
        Ok(Outcome::Pass)
    };
    run().unwrap_or_else(Outcome::Fail)
}

/// Runs one corpus, returning its summary line and failure list.
fn run_corpus(
    name: &str,
    file: &str,
    run: impl Fn(&Map<String, Value>) -> Outcome,
) -> (String, Vec<String>) {
    let (mut passed, mut unsupported) = (0, 0);
    let mut failures = Vec::new();
    for case in load(file) {
        let outcome = match case.as_object() {
            Some(obj) => run(obj),
            None => Outcome::Fail("unrecognised case shape: not an object".to_owned()),
        };
        let id = case.get("id").and_then(Value::as_str).unwrap_or("<no id>");
        match outcome {
            Outcome::Pass => passed += 1,
            Outcome::Unsupported(reason) => {
                unsupported += 1;
                println!("  unsupported {id}: {reason}");
            }
            Outcome::Fail(reason) => failures.push(format!("{id}: {reason}")),
        }
    }
    let mut line = format!("{name}: {passed} passed, {} failed", failures.len());
    if unsupported > 0 {
        let _ = write!(line, ", {unsupported} unsupported");
    }
    (line, failures)
}

#[test]
fn conformance() {
    let corpora: [(&str, &str, &CaseRunner); 3] = [
        ("validation", "validation.json", &validation_case),
        ("numorstring", "numorstring.json", &numorstring_case),
        ("names", "names.json", &names_case),
    ];
    let mut all_failures = Vec::new();
    let mut summary = Vec::new();
    for (name, file, run) in corpora {
        let (line, failures) = run_corpus(name, file, run);
        for f in &failures {
            println!("  FAILED {f}");
        }
        println!("{line}");
        summary.push(line);
        all_failures.extend(failures);
    }
    assert!(
        all_failures.is_empty(),
        "{} conformance case(s) failed:\n{}\n{}",
        all_failures.len(),
        all_failures.join("\n"),
        summary.join("\n")
    );
}
