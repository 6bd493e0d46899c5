//! Runs the upstream-derived `selectors.json` conformance vectors.
//!
//! Reads `$CALICO_CONFORMANCE_DIR/selectors.json`, or the workspace's
//! `conformance/selectors.json`. Every case runs; a case of unknown shape is
//! a failure. Prints one summary line `selectors: N passed, M failed` (plus
//! `, K unsupported` when K > 0) and exits non-zero if anything failed.
//! Runs without the libtest harness so the summary is always printed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use calico_selector::{LabelRestriction, Selector, parse, tokenizer};
use serde_json::{Map, Value};

/// Cases we deliberately do not support: `(id, reason)`. Currently none.
const UNSUPPORTED: &[(&str, &str)] = &[];

/// Keys every case may carry that are informational only.
const INFO_KEYS: [&str; 3] = ["id", "source", "description"];

type Outcome = Result<(), String>;

#[test]
fn selectors_corpus() {
    let dir = std::env::var_os("CALICO_CONFORMANCE_DIR").map_or_else(
        || PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../conformance")),
        PathBuf::from,
    );
    let path = dir.join("selectors.json");
    let cases: Vec<Value> = match std::fs::read_to_string(&path)
        .map_err(|e| e.to_string())
        .and_then(|text| serde_json::from_str(&text).map_err(|e| e.to_string()))
    {
        Ok(cases) => cases,
        Err(e) => {
            println!("cannot load {}: {e}", path.display());
            println!("selectors: 0 passed, 1 failed");
            panic!("cannot load the selectors corpus");
        }
    };

    let (mut passed, mut failed, mut unsupported) = (0, 0, 0);
    for (index, case) in cases.iter().enumerate() {
        let id = case
            .get("id")
            .and_then(Value::as_str)
            .map_or_else(|| format!("#{index} (no id)"), str::to_owned);
        if let Some((_, reason)) = UNSUPPORTED.iter().find(|(u, _)| *u == id) {
            println!("UNSUPPORTED {id}: {reason}");
            unsupported += 1;
            continue;
        }
        match run_case(case) {
            Ok(()) => passed += 1,
            Err(reason) => {
                println!("FAIL {id}: {reason}");
                failed += 1;
            }
        }
    }
    let extra = if unsupported > 0 {
        format!(", {unsupported} unsupported")
    } else {
        String::new()
    };
    println!("selectors: {passed} passed, {failed} failed{extra}");
    assert_eq!(failed, 0, "{failed} selector conformance case(s) failed");
}

fn run_case(case: &Value) -> Outcome {
    let obj = case.as_object().ok_or("case is not a JSON object")?;
    let selector = obj
        .get("selector")
        .and_then(Value::as_str)
        .ok_or("case has no string \"selector\"")?;
    let keys: BTreeSet<&str> = obj
        .keys()
        .map(String::as_str)
        .filter(|k| !INFO_KEYS.contains(k) && *k != "selector")
        .collect();
    let shape: Vec<&str> = keys.iter().copied().collect();
    match shape.as_slice() {
        ["match", "nomatch"] => check_matches(selector, obj),
        ["invalid"] | ["invalid", "stage"] => check_invalid(selector, obj),
        ["canonical"] | ["canonical", "uid"] => check_canonical(selector, obj),
        ["tokens"] => check_tokens(selector, &obj["tokens"]),
        ["prefix_visitor"] => check_prefix(selector, &obj["prefix_visitor"]),
        ["label_restrictions"] => check_restrictions(selector, &obj["label_restrictions"]),
        other => Err(format!("unrecognised case shape (keys {other:?})")),
    }
}

fn parse_ok(selector: &str) -> Result<Selector, String> {
    parse(selector).map_err(|e| format!("parse failed: {e}"))
}

/// Parses the canonical form again and requires it to be a fixed point.
fn reparse(sel: &Selector) -> Result<Selector, String> {
    let again =
        parse(sel.canonical()).map_err(|e| format!("canonical form does not re-parse: {e}"))?;
    if again.canonical() != sel.canonical() {
        return Err(format!(
            "canonical form {:?} re-parses to {:?}",
            sel.canonical(),
            again.canonical()
        ));
    }
    Ok(again)
}

fn label_map(v: &Value) -> Result<BTreeMap<String, String>, String> {
    v.as_object()
        .ok_or_else(|| format!("label map is not an object: {v}"))?
        .iter()
        .map(|(k, v)| {
            v.as_str()
                .map(|s| (k.clone(), s.to_owned()))
                .ok_or_else(|| format!("label {k:?} has non-string value {v}"))
        })
        .collect()
}

fn check_matches(selector: &str, obj: &Map<String, Value>) -> Outcome {
    let sel = parse_ok(selector)?;
    let again = reparse(&sel)?;
    for (key, want) in [("match", true), ("nomatch", false)] {
        let maps = obj[key]
            .as_array()
            .ok_or(format!("{key:?} is not a list"))?;
        for m in maps {
            let labels = label_map(m)?;
            for (what, s) in [("selector", &sel), ("re-parsed canonical form", &again)] {
                if s.evaluate(&labels) != want {
                    return Err(format!(
                        "{what} {:?} should {}match {m}",
                        s.canonical(),
                        if want { "" } else { "not " }
                    ));
                }
            }
        }
    }
    Ok(())
}

fn check_invalid(selector: &str, obj: &Map<String, Value>) -> Outcome {
    if obj["invalid"] != Value::Bool(true) {
        return Err(format!("\"invalid\" must be true, is {}", obj["invalid"]));
    }
    if let Ok(sel) = parse(selector) {
        return Err(format!("parsed, but must be rejected (as {sel})"));
    }
    match obj.get("stage") {
        None => Ok(()),
        Some(Value::String(stage)) if stage == "tokenize" => match tokenizer::tokenize(selector) {
            Ok(tokens) => Err(format!(
                "tokenizer must reject it, gave {} tokens",
                tokens.len()
            )),
            Err(_) => Ok(()),
        },
        Some(other) => Err(format!("unknown stage {other}")),
    }
}

fn check_canonical(selector: &str, obj: &Map<String, Value>) -> Outcome {
    let want = obj["canonical"]
        .as_str()
        .ok_or("\"canonical\" is not a string")?;
    let sel = parse_ok(selector)?;
    if sel.canonical() != want {
        return Err(format!("canonical {:?}, want {want:?}", sel.canonical()));
    }
    let again = reparse(&sel)?;
    if again.uid() != sel.uid() {
        return Err("re-parsed canonical form has a different uid".to_owned());
    }
    match obj.get("uid") {
        None => Ok(()),
        Some(Value::String(uid)) if uid == sel.uid() => Ok(()),
        Some(other) => Err(format!("uid {:?}, want {other}", sel.uid())),
    }
}

fn check_tokens(selector: &str, want: &Value) -> Outcome {
    let want = want.as_array().ok_or("\"tokens\" is not a list")?;
    let got = tokenizer::tokenize(selector).map_err(|e| format!("tokenize failed: {e}"))?;
    let got: Vec<(&str, Option<&str>)> = got
        .iter()
        .map(|t| (t.token.kind_name(), t.token.value()))
        .collect();
    let want: Vec<(&str, Option<&str>)> = want
        .iter()
        .map(|t| {
            let kind = t
                .get("kind")
                .and_then(Value::as_str)
                .ok_or(format!("bad token {t}"))?;
            let value = match t.get("value") {
                None => None,
                Some(Value::String(v)) => Some(v.as_str()),
                Some(v) => return Err(format!("bad token value {v}")),
            };
            Ok((kind, value))
        })
        .collect::<Result<_, String>>()?;
    if got != want {
        return Err(format!("tokens {got:?}, want {want:?}"));
    }
    Ok(())
}

fn check_prefix(selector: &str, spec: &Value) -> Outcome {
    let prefix = spec
        .get("prefix")
        .and_then(Value::as_str)
        .ok_or("no \"prefix\"")?;
    let want = spec
        .get("canonical")
        .and_then(Value::as_str)
        .ok_or("no \"canonical\"")?;
    let sel = parse_ok(selector)?.with_label_prefix(prefix);
    if sel.canonical() != want {
        return Err(format!(
            "prefixed canonical {:?}, want {want:?}",
            sel.canonical()
        ));
    }
    reparse(&sel).map(drop)
}

fn expected_restrictions(want: &Value) -> Result<BTreeMap<String, LabelRestriction>, String> {
    let want = want
        .as_object()
        .ok_or("\"label_restrictions\" is not an object")?;
    want.iter()
        .map(|(label, r)| {
            let flag = |k: &str| {
                r.get(k)
                    .and_then(Value::as_bool)
                    .ok_or(format!("{label}: {k} is not a bool"))
            };
            let values = match r.get("must_have_one_of_values") {
                Some(Value::Null) => None,
                Some(Value::Array(vs)) => Some(
                    vs.iter()
                        .map(|v| {
                            v.as_str()
                                .map(str::to_owned)
                                .ok_or(format!("{label}: bad value {v}"))
                        })
                        .collect::<Result<BTreeSet<_>, _>>()?,
                ),
                other => return Err(format!("{label}: bad must_have_one_of_values {other:?}")),
            };
            Ok((
                label.clone(),
                LabelRestriction {
                    must_be_present: flag("must_be_present")?,
                    must_be_absent: flag("must_be_absent")?,
                    must_have_one_of_values: values,
                },
            ))
        })
        .collect()
}

fn check_restrictions(selector: &str, want: &Value) -> Outcome {
    let want = expected_restrictions(want)?;
    let sel = parse_ok(selector)?;
    let got = sel.label_restrictions();
    if got != want {
        return Err(format!("restrictions {got:?}, want {want:?}"));
    }
    if reparse(&sel)?.label_restrictions() != want {
        return Err("re-parsed canonical form has different restrictions".to_owned());
    }
    if !selector.is_empty() {
        let wrapped = parse_ok(&format!("all() && ({selector})"))?.label_restrictions();
        if wrapped != want {
            return Err(format!("`all() && (sel)` gives {wrapped:?}, want {want:?}"));
        }
    }
    Ok(())
}
