//! Unit and property tests for parsing, printing and evaluation.

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;

use super::*;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn canon(s: &str) -> String {
    parse(s).unwrap().to_string()
}

#[test]
fn error_message_format() {
    let err = parse("a ==").unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"invalid selector "a ==": expected a string literal after '==' at position 4"#
    );
    assert_eq!(err.selector, "a ==");
    assert_eq!(err.position, 4);
    assert_eq!(err.kind, ErrorKind::ExpectedString { operator: "==" });
}

#[test]
fn error_positions_count_characters() {
    let err = parse("é == 'x'").unwrap_err();
    assert_eq!(err.kind, ErrorKind::UnexpectedChar('é'));
    assert_eq!(err.position, 0);
    let err = parse("a == 'é' &").unwrap_err();
    assert_eq!(err.position, 9, "{err}");
}

#[test]
fn error_kinds() {
    let kind = |s: &str| parse(s).unwrap_err().kind;
    assert!(matches!(
        kind("a == 'b' )"),
        ErrorKind::TrailingInput { .. }
    ));
    assert!(matches!(
        kind("(a == 'b'"),
        ErrorKind::ExpectedCloseParen { .. }
    ));
    assert!(matches!(
        kind("a in {'x' 'y'}"),
        ErrorKind::ExpectedSetSeparator { .. }
    ));
    assert!(matches!(
        kind("a in {,}"),
        ErrorKind::ExpectedSetValue { .. }
    ));
    assert!(matches!(kind("a in 'x'"), ErrorKind::ExpectedSet { .. }));
    assert!(matches!(kind("a ("), ErrorKind::ExpectedOperator { .. }));
    assert!(matches!(kind("a b"), ErrorKind::ExpectedOperator { .. }));
    assert!(matches!(kind("!"), ErrorKind::ExpectedOperand { .. }));
    assert!(matches!(
        kind("a = 'b'"),
        ErrorKind::IncompleteOperator { .. }
    ));
    assert!(matches!(kind("has(a"), ErrorKind::UnclosedFunction { .. }));
    assert!(matches!(
        kind("'x"),
        ErrorKind::UnterminatedString { quote: '\'' }
    ));
}

#[test]
fn set_syntax() {
    assert_eq!(canon("a in {}"), "a in {}");
    assert_eq!(canon("a in {'x',}"), r#"a in {"x"}"#);
    assert_eq!(
        canon("a not in {'b', \"a\", 'b'}"),
        r#"a not in {"a", "b"}"#
    );
}

#[test]
fn canonical_forms() {
    assert_eq!(canon(""), "all()");
    assert_eq!(canon("\t"), "all()");
    assert_eq!(
        canon("a=='1'&&b=='2'&&c=='3'"),
        r#"(a == "1" && b == "2" && c == "3")"#
    );
    assert_eq!(
        canon("(a=='1'&&b=='2')&&c=='3'"),
        r#"((a == "1" && b == "2") && c == "3")"#
    );
    assert_eq!(
        canon("a=='1'||b=='2'&&c=='3'"),
        r#"(a == "1" || (b == "2" && c == "3"))"#
    );
    assert_eq!(canon("!!has(a)"), "has(a)");
    assert_eq!(canon("!(!has(a))"), "has(a)");
    assert_eq!(canon("!(!(!has(a)))"), "!has(a)");
    assert_eq!(canon("!all()"), "!all()");
    assert_eq!(canon("a ends  with 'x'"), r#"a ends with "x""#);
    assert_eq!(canon("global( )"), "global()");
}

#[test]
fn evaluation_semantics() {
    let l = labels(&[("a", "hello"), ("b", "")]);
    let t = |s: &str| parse(s).unwrap().evaluate(&l);
    assert!(t("a starts with 'he'"));
    assert!(t("a ends with 'llo'"));
    assert!(t("a contains ''"));
    assert!(!t("c contains ''"), "absent label never contains");
    assert!(t("b == ''"));
    assert!(t("c != 'x'"));
    assert!(t("c not in {'x'}"));
    assert!(!t("c in {}"));
    assert!(t("a not in {}"));
    assert!(t("has(b)"));
    assert!(!t("!(has(a) && has(b))"));
    // Larger sets take the binary-search path.
    let big: Vec<String> = (0..20).map(|i| format!("'v{i}'")).collect();
    let big = big.join(", ");
    let l = labels(&[("a", "v17")]);
    assert!(parse(&format!("a in {{{big}}}")).unwrap().evaluate(&l));
    assert!(!parse(&format!("a not in {{{big}}}")).unwrap().evaluate(&l));
    let l = labels(&[("a", "v170")]);
    assert!(!parse(&format!("a in {{{big}}}")).unwrap().evaluate(&l));
}

#[test]
fn labels_impls() {
    let sel = parse("a == 'b'").unwrap();
    let hm: HashMap<String, String> = HashMap::from([("a".into(), "b".into())]);
    assert!(sel.evaluate(&hm));
    let dyn_labels: &dyn Labels = &hm;
    assert!(sel.evaluate(dyn_labels));
    assert!(sel.evaluate(&&hm));
    assert!(sel.evaluate(&BTreeMap::from([("a", "b")])));
    assert!(!sel.evaluate(&HashMap::from([("a", "c")])));
}

#[test]
fn uid_matches_upstream() {
    assert_eq!(
        parse("").unwrap().uid(),
        "s:5y5I3VdRZfDU01O--xXAPx2yxCQQqMf0M6IWug"
    );
}

#[test]
fn equality_by_canonical_form() {
    assert_eq!(parse("a=='b'").unwrap(), parse(r#" a == "b" "#).unwrap());
    assert_ne!(parse("a=='b'").unwrap(), parse("a=='c'").unwrap());
    assert_eq!(Selector::default(), parse("all()").unwrap());
    assert_eq!("has(x)".parse::<Selector>().unwrap().canonical(), "has(x)");
}

#[test]
fn prefix_and_labels() {
    let sel = parse("a == 'x' && (has(b) || c not in {'y'}) && !d contains 'z'").unwrap();
    assert_eq!(
        sel.with_label_prefix("p/").to_string(),
        r#"(p/a == "x" && (has(p/b) || p/c not in {"y"}) && !p/d contains "z")"#
    );
    assert_eq!(
        sel.labels().into_iter().collect::<Vec<_>>(),
        ["a", "b", "c", "d"]
    );
}

#[test]
fn restrictions_satisfiability() {
    let r = parse("a == 'x' && a == 'y'").unwrap().label_restrictions();
    assert!(!r["a"].possible_to_satisfy());
    let r = parse("has(a) && !has(a)").unwrap().label_restrictions();
    assert!(!r["a"].possible_to_satisfy());
    let r = parse("a in {'x', 'y'} && b starts with 'q'")
        .unwrap()
        .label_restrictions();
    assert!(r.values().all(LabelRestriction::possible_to_satisfy));
}

#[test]
fn nesting_limit() {
    let ok = format!(
        "{}has(a){}",
        "(".repeat(MAX_NESTING),
        ")".repeat(MAX_NESTING)
    );
    assert_eq!(canon(&ok), "has(a)");
    let deep = format!("({ok})");
    assert_eq!(parse(&deep).unwrap_err().kind, ErrorKind::TooDeep);
    // Deeply nested &&/|| trees print, evaluate and drop without trouble.
    let mut s = "has(a)".to_owned();
    for i in 0..MAX_NESTING {
        s = format!("({s} {} has(b{i}))", if i % 2 == 0 { "&&" } else { "||" });
    }
    let sel = parse(&s).unwrap();
    assert_eq!(canon(sel.canonical()), sel.canonical());
    assert!(sel.evaluate(&labels(&[("b127", "")])));
}

/// A reference selector AST for property tests: rendered to text in
/// randomised (but valid) spellings and evaluated independently.
#[derive(Debug, Clone)]
enum Ref {
    All,
    Has(String),
    Cmp(String, &'static str, String),
    Set(String, bool, Vec<String>),
    Not(Box<Ref>),
    And(Vec<Ref>),
    Or(Vec<Ref>),
}

impl Ref {
    fn eval(&self, l: &BTreeMap<String, String>) -> bool {
        match self {
            Ref::All => true,
            Ref::Has(k) => l.contains_key(k),
            Ref::Cmp(k, op, v) => {
                let got = l.get(k).map(String::as_str);
                match *op {
                    "==" => got == Some(v),
                    "!=" => got != Some(v),
                    "contains" => got.is_some_and(|g| g.contains(v.as_str())),
                    "starts with" | "startswith" => got.is_some_and(|g| g.starts_with(v.as_str())),
                    _ => got.is_some_and(|g| g.ends_with(v.as_str())),
                }
            }
            Ref::Set(k, negated, vs) => {
                let hit = l.get(k).is_some_and(|g| vs.contains(g));
                hit != *negated
            }
            Ref::Not(r) => !r.eval(l),
            Ref::And(rs) => rs.iter().all(|r| r.eval(l)),
            Ref::Or(rs) => rs.iter().any(|r| r.eval(l)),
        }
    }

    /// Renders with parentheses around every compound operand, so the text
    /// has exactly this tree's meaning whatever the precedence rules.
    fn render(&self, ws: &str) -> String {
        let quote = |v: &str| {
            if v.contains('"') {
                format!("'{v}'")
            } else {
                format!("\"{v}\"")
            }
        };
        match self {
            Ref::All => format!("all({ws})"),
            Ref::Has(k) => format!("has({ws}{k}{ws})"),
            Ref::Cmp(k, op, v) => format!("{k}{ws} {op} {ws}{}", quote(v)),
            Ref::Set(k, negated, vs) => {
                let op = if *negated { "not in" } else { "in" };
                let vs: Vec<String> = vs.iter().map(|v| quote(v)).collect();
                format!("{k} {op}{ws}{{{}}}", vs.join(&format!(",{ws}")))
            }
            Ref::Not(r) => format!("!{ws}({})", r.render(ws)),
            Ref::And(rs) | Ref::Or(rs) => {
                let sep = if matches!(self, Ref::And(_)) {
                    "&&"
                } else {
                    "||"
                };
                let parts: Vec<String> = rs.iter().map(|r| format!("({})", r.render(ws))).collect();
                parts.join(&format!("{ws}{sep}{ws}"))
            }
        }
    }
}

fn label_name() -> impl Strategy<Value = String> {
    // Small alphabet so generated label maps actually hit the selector's labels;
    // includes operator words, which are legal label names.
    prop::sample::select(vec!["a", "b", "in", "contains", "has", "x.y/z-1_"])
        .prop_map(str::to_owned)
}

fn value() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["", "v", "vv", "'", "\"", "a b", "x&&y", "é"]).prop_map(str::to_owned)
}

fn reference() -> impl Strategy<Value = Ref> {
    let ops = prop::sample::select(vec![
        "==",
        "!=",
        "contains",
        "starts with",
        "startswith",
        "ends with",
        "endswith",
    ]);
    let leaf = prop_oneof![
        Just(Ref::All),
        label_name().prop_map(Ref::Has),
        (label_name(), ops, value()).prop_map(|(k, op, v)| Ref::Cmp(k, op, v)),
        (
            label_name(),
            any::<bool>(),
            prop::collection::vec(value(), 0..4)
        )
            .prop_map(|(k, n, vs)| Ref::Set(k, n, vs)),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            inner.clone().prop_map(|r| Ref::Not(Box::new(r))),
            prop::collection::vec(inner.clone(), 2..4).prop_map(Ref::And),
            prop::collection::vec(inner, 2..4).prop_map(Ref::Or),
        ]
    })
}

fn label_map() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(label_name(), value(), 0..4)
}

proptest! {
    #[test]
    fn canonical_is_a_fixed_point_and_preserves_meaning(
        r in reference(),
        ws in prop::sample::select(vec!["", " ", "\t ", "  "]),
        maps in prop::collection::vec(label_map(), 1..6),
    ) {
        let text = r.render(ws);
        let sel = parse(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let again = parse(sel.canonical()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(again.canonical(), sel.canonical());
        prop_assert_eq!(again.uid(), sel.uid());
        for m in &maps {
            let want = r.eval(m);
            prop_assert_eq!(sel.evaluate(m), want, "{} on {:?}", text, m);
            prop_assert_eq!(again.evaluate(m), want, "{} on {:?}", sel.canonical(), m);
        }
    }

    #[test]
    fn token_soup_never_panics_and_round_trips(parts in prop::collection::vec(
        prop::sample::select(vec![
            "a", "b", " ", "\t", "==", "!=", "!", "&&", "||", "(", ")", "{", "}", ",", "'x'",
            "\"y\"", "'\"'", "in", "not", "notin", "contains", "starts", "with", "endswith",
            "has(a)", "has( b )", "all()", "global()", "has(", "=", "&",
        ]),
        0..14,
    )) {
        let s = parts.concat();
        if let Ok(sel) = parse(&s) {
            let again = parse(sel.canonical()).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(again.canonical(), sel.canonical());
        }
    }

    #[test]
    fn arbitrary_input_never_panics_and_round_trips(s in "[ a-z!=&|(){},'\"\t]{0,40}") {
        if let Ok(sel) = parse(&s) {
            let again = parse(sel.canonical()).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(again.canonical(), sel.canonical());
        }
    }
}

#[test]
fn a_shared_selector_is_parsed_once() {
    let parses = || crate::PARSES.with(std::cell::Cell::get);
    let text = "shared-test == 'once' && has(parse_shared_marker)";
    let before = parses();
    let first = crate::parse_shared(text).unwrap();
    let second = crate::parse_shared(text).unwrap();
    assert_eq!(first, second);
    assert_eq!(first, parse(text).unwrap());
    assert_eq!(parses() - before, 2, "one shared parse, one plain parse");
    // Errors are not remembered: each attempt reports it.
    assert!(crate::parse_shared("has(").is_err());
    assert!(crate::parse_shared("has(").is_err());
}
