//! Label index benchmarks at felix scale: `cargo bench -p calico-policy`.
//!
//! Scenario from the scale target: 250,000 endpoints, each with one of 31
//! marker labels plus a few ordinary ones, and 10,000 selectors `has(markerK)`
//! (so 31 distinct selectors, each under ~322 ids, ~80 million
//! (selector id, endpoint) matches in all).

use calico_policy::{LabelIndex, MatchSink};
use calico_selector::Selector;
use divan::{Bencher, black_box};

fn main() {
    divan::main();
}

const ITEMS: u32 = 250_000;
const SELECTORS: u32 = 10_000;
const MARKERS: u32 = 31;

/// Counts events, so the fan-out is really done but costs no memory.
#[derive(Default)]
struct Count {
    started: u64,
    stopped: u64,
}

impl MatchSink<u32, u32> for Count {
    fn match_started(&mut self, _: &u32, _: &u32) {
        self.started += 1;
    }

    fn match_stopped(&mut self, _: &u32, _: &u32) {
        self.stopped += 1;
    }
}

type Labels = Vec<(String, String)>;

fn endpoint_labels(i: u32, marker: u32) -> Labels {
    vec![
        (format!("marker{marker}"), String::new()),
        ("app".to_owned(), format!("app{}", i % 100)),
        (
            "tier".to_owned(),
            ["frontend", "backend", "db"][i as usize % 3].to_owned(),
        ),
        ("name".to_owned(), format!("ep{i}")),
    ]
}

fn endpoints() -> Vec<Labels> {
    (0..ITEMS)
        .map(|i| endpoint_labels(i, i % MARKERS))
        .collect()
}

fn marker_selectors() -> Vec<Selector> {
    (0..SELECTORS)
        .map(|s| calico_selector::parse(&format!("has(marker{})", s % MARKERS)).unwrap())
        .collect()
}

fn build(
    items: Vec<Labels>,
    selectors: Vec<Selector>,
    selectors_first: bool,
) -> (LabelIndex<u32, u32>, Count) {
    let mut index = LabelIndex::new();
    let mut count = Count::default();
    let add_selectors =
        |index: &mut LabelIndex<u32, u32>, count: &mut Count, selectors: Vec<Selector>| {
            for (s, sel) in (0..).zip(selectors) {
                index.update_selector(s, sel, count);
            }
        };
    let add_items = |index: &mut LabelIndex<u32, u32>, count: &mut Count, items: Vec<Labels>| {
        for (i, labels) in (0..).zip(items) {
            index.update_labels(i, labels, &[], count);
        }
    };
    if selectors_first {
        add_selectors(&mut index, &mut count, selectors);
        add_items(&mut index, &mut count, items);
    } else {
        add_items(&mut index, &mut count, items);
        add_selectors(&mut index, &mut count, selectors);
    }
    (index, count)
}

/// Number of (selector id, endpoint) matches in the marker scenario.
fn expected_matches() -> u64 {
    (0..MARKERS)
        .map(|k| {
            let selectors = (0..SELECTORS).filter(|s| s % MARKERS == k).count() as u64;
            let items = (0..ITEMS).filter(|i| i % MARKERS == k).count() as u64;
            selectors * items
        })
        .sum()
}

/// Cold start: 250k endpoints and 10k `has(markerK)` selectors, in either order.
#[divan::bench(args = ["selectors_first", "items_first"], sample_count = 3, sample_size = 1)]
fn cold_start_250k_x_10k(bencher: Bencher<'_, '_>, order: &str) {
    let items = endpoints();
    let selectors = marker_selectors();
    bencher
        .with_inputs(|| (items.clone(), selectors.clone()))
        .bench_values(|(items, selectors)| {
            let (index, count) = build(items, selectors, order == "selectors_first");
            assert_eq!(count.started, expected_matches());
            index
        });
}

/// One endpoint's marker label changes (stops ~322 matches, starts ~322) in
/// the full 250k x 10k index.
#[divan::bench(sample_count = 200, sample_size = 10)]
fn label_change_at_250k_x_10k(bencher: Bencher<'_, '_>) {
    let (mut index, _) = build(endpoints(), marker_selectors(), true);
    let mut count = Count::default();
    let mut n: u32 = 0;
    bencher.bench_local(|| {
        n += 1;
        let item = (n * 7919) % ITEMS;
        let labels = endpoint_labels(item, (item + n) % MARKERS);
        index.update_labels(item, black_box(labels), &[], &mut count);
    });
    black_box(count.started + count.stopped);
}

/// One endpoint's non-selected label changes (no selector reads it): the
/// cost of the label index bookkeeping alone.
#[divan::bench(sample_count = 200, sample_size = 10)]
fn unread_label_change_at_250k_x_10k(bencher: Bencher<'_, '_>) {
    let (mut index, _) = build(endpoints(), marker_selectors(), true);
    let mut count = Count::default();
    let mut n: u32 = 0;
    bencher.bench_local(|| {
        n += 1;
        let item = (n * 7919) % ITEMS;
        let mut labels = endpoint_labels(item, item % MARKERS);
        labels[1].1 = format!("app{}", n % 100);
        index.update_labels(item, black_box(labels), &[], &mut count);
    });
    assert_eq!(count.started + count.stopped, 0);
}

/// 10k endpoints x 10k distinct selectors `name == "x<i>"`: each selector
/// matches exactly one endpoint.
#[divan::bench(args = ["selectors_first", "items_first"], sample_count = 5, sample_size = 1)]
fn cold_start_10k_x_10k_distinct(bencher: Bencher<'_, '_>, order: &str) {
    let items: Vec<Labels> = (0..10_000)
        .map(|i| {
            vec![
                ("name".to_owned(), format!("x{i}")),
                ("app".to_owned(), "web".to_owned()),
            ]
        })
        .collect();
    let selectors: Vec<Selector> = (0..10_000)
        .map(|i| calico_selector::parse(&format!("name == \"x{i}\"")).unwrap())
        .collect();
    bencher
        .with_inputs(|| (items.clone(), selectors.clone()))
        .bench_values(|(items, selectors)| {
            let (index, count) = build(items, selectors, order == "selectors_first");
            assert_eq!(count.started, 10_000);
            index
        });
}

/// A parent (profile) label change: 250k endpoints spread over 10 profiles,
/// 100 selectors `team == "tN"` on the inherited label; flipping one
/// profile's `team` re-evaluates its 25,000 endpoints and nothing else.
#[divan::bench(sample_count = 10, sample_size = 1)]
fn parent_label_change_25k_children(bencher: Bencher<'_, '_>) {
    let mut index: LabelIndex<u32, u32> = LabelIndex::new();
    let mut count = Count::default();
    for p in 0..10 {
        index.update_parent_labels(1_000_000 + p, [("team", format!("t{p}"))], &mut count);
    }
    for s in 0..100 {
        let sel = calico_selector::parse(&format!("team == 't{}'", s % 10)).unwrap();
        index.update_selector(s, sel, &mut count);
    }
    for (i, labels) in (0..).zip(endpoints()) {
        index.update_labels(i, labels, &[1_000_000 + i % 10], &mut count);
    }
    let mut flip = false;
    bencher.bench_local(|| {
        flip = !flip;
        let team = if flip { "t-other" } else { "t3" };
        index.update_parent_labels(1_000_003, [("team", team)], &mut count);
    });
    black_box(count.started + count.stopped);
}
