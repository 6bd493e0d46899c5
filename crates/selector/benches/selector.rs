//! Parse and evaluate benchmarks: `cargo bench -p calico-selector`.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use divan::{Bencher, black_box};

fn main() {
    divan::main();
}

const TYPICAL: &str = "biz_type == 'bookstore' && role == 'server'";

/// Twenty terms mixing every operator, as a large policy selector might.
const TWENTY: &str = "projectcalico.org/namespace == 'prod' && app in {'web', 'api', 'db', 'cache'} \
    && tier != 'test' && has(team) && !has(deprecated) && version starts with 'v2' \
    && image ends with ':latest' && owner contains 'ops' && zone not in {'us-east-1a', 'us-east-1b'} \
    && (role == 'server' || role == 'worker') && env == 'production' && has(kubernetes.io/hostname) \
    && region in {'eu', 'us'} && !(debug == 'true') && cost-center != '' && all() \
    && team starts with 'plat' && app.kubernetes.io/name contains 'store'";

/// Labels on which both selectors match, so evaluation visits every term.
static LABELS: LazyLock<BTreeMap<String, String>> = LazyLock::new(|| {
    [
        ("biz_type", "bookstore"),
        ("role", "server"),
        ("projectcalico.org/namespace", "prod"),
        ("app", "api"),
        ("tier", "backend"),
        ("team", "platform"),
        ("version", "v2.3.1"),
        ("image", "store:latest"),
        ("owner", "devops-team"),
        ("zone", "eu-west-1a"),
        ("env", "production"),
        ("kubernetes.io/hostname", "node-1"),
        ("region", "eu"),
        ("cost-center", "1234"),
        ("app.kubernetes.io/name", "bookstore-frontend"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
});

fn bench_parse(selector: &str) -> calico_selector::Selector {
    calico_selector::parse(black_box(selector)).unwrap()
}

/// Evaluates `selector` against [`LABELS`], on which it matches, so every term is visited.
fn bench_evaluate(bencher: Bencher<'_, '_>, selector: &str) {
    let sel = calico_selector::parse(selector).unwrap();
    let labels = &*LABELS;
    assert!(
        sel.evaluate(labels),
        "benchmark labels must match {selector}"
    );
    bencher.bench(|| black_box(&sel).evaluate(black_box(labels)));
}

#[divan::bench]
fn parse_typical() -> calico_selector::Selector {
    bench_parse(TYPICAL)
}

#[divan::bench]
fn parse_twenty_terms() -> calico_selector::Selector {
    bench_parse(TWENTY)
}

#[divan::bench]
fn evaluate_typical(bencher: Bencher<'_, '_>) {
    bench_evaluate(bencher, TYPICAL);
}

#[divan::bench]
fn evaluate_twenty_terms(bencher: Bencher<'_, '_>) {
    bench_evaluate(bencher, TWENTY);
}

#[divan::bench]
fn evaluate_typical_nomatch(bencher: Bencher<'_, '_>) {
    let sel = calico_selector::parse(TYPICAL).unwrap();
    let labels: BTreeMap<String, String> = [("biz_type", "grocery"), ("role", "server")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    bencher.bench(|| black_box(&sel).evaluate(black_box(&labels)));
}

#[divan::bench]
fn uid(bencher: Bencher<'_, '_>) {
    bencher
        .with_inputs(|| calico_selector::parse(TWENTY).unwrap())
        .bench_local_refs(|sel| black_box(sel.uid().len()));
}
