//! Builds the benchmark's cold-start index once and reports timings, for
//! measuring peak memory: `/usr/bin/time -v cargo run --release -p
//! calico-policy --example cold_start [items_first|selectors_first]`.

use std::time::Instant;

use calico_policy::{LabelIndex, MatchSink};

const ITEMS: u32 = 250_000;
const SELECTORS: u32 = 10_000;
const MARKERS: u32 = 31;

/// Counts events without storing them: the caller in felix turns each into
/// an ipset member update, not a stored list.
#[derive(Default)]
struct Count(u64);

impl MatchSink<u32, u32> for Count {
    fn match_started(&mut self, _: &u32, _: &u32) {
        self.0 += 1;
    }

    fn match_stopped(&mut self, _: &u32, _: &u32) {
        self.0 += 1;
    }
}

fn main() {
    let selectors_first = std::env::args().nth(1).as_deref() != Some("items_first");
    let start = Instant::now();
    let mut index: LabelIndex<u32, u32> = LabelIndex::new();
    let mut count = Count::default();
    let add_selectors = |index: &mut LabelIndex<u32, u32>, count: &mut Count| {
        for s in 0..SELECTORS {
            let sel = calico_selector::parse(&format!("has(marker{})", s % MARKERS)).unwrap();
            index.update_selector(s, sel, count);
        }
    };
    let add_items = |index: &mut LabelIndex<u32, u32>, count: &mut Count| {
        for i in 0..ITEMS {
            let labels = [
                (format!("marker{}", i % MARKERS), String::new()),
                ("app".to_owned(), format!("app{}", i % 100)),
                (
                    "tier".to_owned(),
                    ["frontend", "backend", "db"][i as usize % 3].to_owned(),
                ),
                ("name".to_owned(), format!("ep{i}")),
            ];
            index.update_labels(i, labels, &[], count);
        }
    };
    let first_phase;
    if selectors_first {
        add_selectors(&mut index, &mut count);
        first_phase = start.elapsed();
        add_items(&mut index, &mut count);
    } else {
        add_items(&mut index, &mut count);
        first_phase = start.elapsed();
        add_selectors(&mut index, &mut count);
    }
    let built = start.elapsed();
    println!("first phase took {first_phase:?}");
    let t = Instant::now();
    index.update_labels(
        7,
        [
            ("marker8", ""),
            ("app", "app7"),
            ("tier", "backend"),
            ("name", "ep7"),
        ],
        &[],
        &mut count,
    );
    let change = t.elapsed();
    println!(
        "{} order: built in {built:?}, {} match events; {index:?}; one label change: {change:?}",
        if selectors_first {
            "selectors_first"
        } else {
            "items_first"
        },
        count.0
    );
}
