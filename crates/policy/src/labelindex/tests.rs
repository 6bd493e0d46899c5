//! Unit tests of each event path.

use std::collections::BTreeSet;

use super::*;

type Index = LabelIndex<&'static str, &'static str>;
type Events = Vec<MatchEvent<&'static str, &'static str>>;

fn sel(s: &str) -> Selector {
    calico_selector::parse(s).unwrap()
}

fn started(selector: &'static str, item: &'static str) -> MatchEvent<&'static str, &'static str> {
    MatchEvent::Started { selector, item }
}

fn stopped(selector: &'static str, item: &'static str) -> MatchEvent<&'static str, &'static str> {
    MatchEvent::Stopped { selector, item }
}

/// Events as a set: their order within one update is unspecified.
fn set(events: Events) -> BTreeSet<String> {
    events.into_iter().map(|e| format!("{e:?}")).collect()
}

fn set_of(events: &[MatchEvent<&'static str, &'static str>]) -> BTreeSet<String> {
    events.iter().map(|e| format!("{e:?}")).collect()
}

const NO_PARENTS: &[&str] = &[];

fn matches(index: &Index, selector: &str) -> BTreeSet<&'static str> {
    index.matches_of_selector(selector).copied().collect()
}

fn matching(index: &Index, item: &str) -> BTreeSet<&'static str> {
    index.selectors_matching(item).copied().collect()
}

#[test]
fn selector_added_after_items() {
    let mut idx = Index::new();
    let mut ev = Events::new();
    idx.update_labels("e1", [("role", "web")], NO_PARENTS, &mut ev);
    idx.update_labels("e2", [("role", "db")], NO_PARENTS, &mut ev);
    assert!(ev.is_empty());
    idx.update_selector("s", sel("role == 'web'"), &mut ev);
    assert_eq!(ev, [started("s", "e1")]);
    assert_eq!(matches(&idx, "s"), BTreeSet::from(["e1"]));
    assert!(idx.is_match("s", "e1"));
    assert!(!idx.is_match("s", "e2"));
}

#[test]
fn item_added_after_selector() {
    let mut idx = Index::new();
    let mut ev = Events::new();
    idx.update_selector("s", sel("has(role)"), &mut ev);
    idx.update_labels("e1", [("role", "web")], NO_PARENTS, &mut ev);
    idx.update_labels("e2", [("other", "x")], NO_PARENTS, &mut ev);
    assert_eq!(ev, [started("s", "e1")]);
    assert_eq!(matching(&idx, "e1"), BTreeSet::from(["s"]));
    assert!(matching(&idx, "e2").is_empty());
}

#[test]
fn selector_changed_reports_difference() {
    let mut idx = Index::new();
    let mut ev = Events::new();
    idx.update_labels("e1", [("a", "1")], NO_PARENTS, &mut ev);
    idx.update_labels("e2", [("a", "2")], NO_PARENTS, &mut ev);
    idx.update_labels("e3", [("b", "1")], NO_PARENTS, &mut ev);
    idx.update_selector("s", sel("has(a)"), &mut ev);
    assert_eq!(
        set(std::mem::take(&mut ev)),
        set_of(&[started("s", "e1"), started("s", "e2")])
    );
    idx.update_selector("s", sel("a == '2' || has(b)"), &mut ev);
    // Only the difference: e2 matches both selectors and is not restarted.
    assert_eq!(
        set(std::mem::take(&mut ev)),
        set_of(&[stopped("s", "e1"), started("s", "e3")])
    );
    assert_eq!(matches(&idx, "s"), BTreeSet::from(["e2", "e3"]));
    assert_eq!(idx.num_distinct_selectors(), 1, "old selector dropped");
}

#[test]
fn same_selector_update_is_silent() {
    let mut idx = Index::new();
    let mut ev = Events::new();
    idx.update_labels("e1", [("a", "1")], NO_PARENTS, &mut ev);
    idx.update_selector("s", sel("a == '1'"), &mut ev);
    ev.clear();
    // Same canonical form, different spelling.
    idx.update_selector("s", sel("a=='1'"), &mut ev);
    assert!(ev.is_empty());
}

#[test]
fn selector_deleted() {
    let mut idx = Index::new();
    let mut ev = Events::new();
    idx.update_labels("e1", [("a", "1")], NO_PARENTS, &mut ev);
    idx.update_selector("s", sel("has(a)"), &mut ev);
    ev.clear();
    idx.delete_selector("s", &mut ev);
    assert_eq!(ev, [stopped("s", "e1")]);
    assert_eq!(idx.num_selectors(), 0);
    assert_eq!(idx.num_distinct_selectors(), 0);
    ev.clear();
    idx.delete_selector("s", &mut ev);
    idx.update_labels("e1", [("a", "2")], NO_PARENTS, &mut ev);
    assert!(ev.is_empty());
}

#[test]
fn one_selector_under_two_ids() {
    let mut idx = Index::new();
    let mut ev = Events::new();
    idx.update_labels("e1", [("a", "1")], NO_PARENTS, &mut ev);
    idx.update_selector("s1", sel("a == '1'"), &mut ev);
    idx.update_selector("s2", sel("a in {'1'}"), &mut ev);
    assert_eq!(
        idx.num_distinct_selectors(),
        2,
        "`in` and `==` print differently"
    );
    idx.update_selector("s3", sel("a == \"1\""), &mut ev);
    assert_eq!(idx.num_distinct_selectors(), 2);
    assert_eq!(
        set(std::mem::take(&mut ev)),
        set_of(&[
            started("s1", "e1"),
            started("s2", "e1"),
            started("s3", "e1")
        ])
    );
    // An item change fans out to both ids sharing the selector.
    idx.update_labels("e2", [("a", "1")], NO_PARENTS, &mut ev);
    assert_eq!(
        set(std::mem::take(&mut ev)),
        set_of(&[
            started("s1", "e2"),
            started("s2", "e2"),
            started("s3", "e2")
        ])
    );
    // Deleting one id leaves the other's matches alone.
    idx.delete_selector("s1", &mut ev);
    assert_eq!(
        set(std::mem::take(&mut ev)),
        set_of(&[stopped("s1", "e1"), stopped("s1", "e2")])
    );
    assert_eq!(matches(&idx, "s3"), BTreeSet::from(["e1", "e2"]));
    idx.delete_labels("e1", &mut ev);
    assert_eq!(
        set(std::mem::take(&mut ev)),
        set_of(&[stopped("s2", "e1"), stopped("s3", "e1")])
    );
    assert_eq!(matching(&idx, "e2"), BTreeSet::from(["s2", "s3"]));
}

#[test]
fn item_moves_in_and_out() {
    let mut idx = Index::new();
    let mut ev = Events::new();
    idx.update_selector("web", sel("role == 'web' && env != 'test'"), &mut ev);
    idx.update_selector("db", sel("role == 'db'"), &mut ev);
    idx.update_labels("e", [("role", "web")], NO_PARENTS, &mut ev);
    assert_eq!(std::mem::take(&mut ev), [started("web", "e")]);
    idx.update_labels("e", [("role", "web"), ("env", "test")], NO_PARENTS, &mut ev);
    assert_eq!(std::mem::take(&mut ev), [stopped("web", "e")]);
    idx.update_labels("e", [("role", "db"), ("env", "test")], NO_PARENTS, &mut ev);
    assert_eq!(std::mem::take(&mut ev), [started("db", "e")]);
    idx.update_labels("e", [("role", "web"), ("env", "prod")], NO_PARENTS, &mut ev);
    assert_eq!(
        set(std::mem::take(&mut ev)),
        set_of(&[stopped("db", "e"), started("web", "e")])
    );
    // Unchanged labels: nothing.
    idx.update_labels("e", [("env", "prod"), ("role", "web")], NO_PARENTS, &mut ev);
    assert!(ev.is_empty());
    idx.delete_labels("e", &mut ev);
    assert_eq!(ev, [stopped("web", "e")]);
    assert_eq!(idx.num_items(), 0);
}

#[test]
fn unindexed_selectors() {
    let mut idx = Index::new();
    let mut ev = Events::new();
    idx.update_selector("all", sel("all()"), &mut ev);
    idx.update_selector("nohas", sel("!has(a)"), &mut ev);
    idx.update_selector("ne", sel("a != 'x'"), &mut ev);
    assert_eq!(idx.num_unindexed_selectors(), 3);
    idx.update_labels("e", [("a", "x")], NO_PARENTS, &mut ev);
    assert_eq!(std::mem::take(&mut ev), [started("all", "e")]);
    idx.update_labels("e", [("a", "y")], NO_PARENTS, &mut ev);
    assert_eq!(std::mem::take(&mut ev), [started("ne", "e")]);
    idx.update_labels("e", [("b", "y")], NO_PARENTS, &mut ev);
    assert_eq!(std::mem::take(&mut ev), [started("nohas", "e")]);
    idx.update_labels("e2", Vec::<(&str, &str)>::new(), NO_PARENTS, &mut ev);
    assert_eq!(
        set(std::mem::take(&mut ev)),
        set_of(&[
            started("all", "e2"),
            started("nohas", "e2"),
            started("ne", "e2")
        ])
    );
}

#[test]
fn impossible_selector_matches_nothing() {
    let mut idx = Index::new();
    let mut ev = Events::new();
    idx.update_labels("e", [("a", "x")], NO_PARENTS, &mut ev);
    idx.update_selector("s", sel("a == 'x' && a == 'y'"), &mut ev);
    idx.update_labels("e", [("a", "y")], NO_PARENTS, &mut ev);
    assert!(ev.is_empty());
    assert_eq!(idx.num_unindexed_selectors(), 0);
}

#[test]
fn parent_labels_are_inherited_and_shadowed() {
    let mut idx = Index::new();
    let mut ev = Events::new();
    idx.update_selector("prof", sel("team == 'blue'"), &mut ev);
    idx.update_parent_labels("p1", [("team", "blue")], &mut ev);
    idx.update_labels("e1", [("role", "web")], &["p1"], &mut ev);
    // Own label shadows the parent's.
    idx.update_labels("e2", [("team", "red")], &["p1"], &mut ev);
    assert_eq!(std::mem::take(&mut ev), [started("prof", "e1")]);
    // Parent change re-evaluates its children only.
    idx.update_parent_labels("p1", [("team", "green")], &mut ev);
    assert_eq!(std::mem::take(&mut ev), [stopped("prof", "e1")]);
    idx.update_parent_labels("p1", [("team", "blue")], &mut ev);
    assert_eq!(std::mem::take(&mut ev), [started("prof", "e1")]);
    // Own label removed: the parent's shows through.
    idx.update_labels("e2", Vec::<(&str, &str)>::new(), &["p1"], &mut ev);
    assert_eq!(std::mem::take(&mut ev), [started("prof", "e2")]);
    idx.delete_parent_labels("p1", &mut ev);
    assert_eq!(
        set(std::mem::take(&mut ev)),
        set_of(&[stopped("prof", "e1"), stopped("prof", "e2")])
    );
    assert_eq!(idx.num_parents(), 1, "still listed by items");
}

#[test]
fn parent_order_and_parent_list_changes() {
    let mut idx = Index::new();
    let mut ev = Events::new();
    idx.update_selector("blue", sel("team == 'blue'"), &mut ev);
    idx.update_parent_labels("p1", [("team", "blue")], &mut ev);
    idx.update_parent_labels("p2", [("team", "red"), ("zone", "a")], &mut ev);
    idx.update_selector("zone", sel("zone == 'a'"), &mut ev);
    // An item listing an unknown parent: inherits nothing until it appears.
    idx.update_labels("e", [("x", "1")], &["p3"], &mut ev);
    assert!(ev.is_empty());
    idx.update_labels("e", [("x", "1")], &["p2", "p1"], &mut ev);
    assert_eq!(std::mem::take(&mut ev), [started("zone", "e")]);
    assert_eq!(idx.num_parents(), 2, "p3 dropped with its last child");
    idx.update_labels("e", [("x", "1")], &["p1", "p2"], &mut ev);
    assert_eq!(std::mem::take(&mut ev), [started("blue", "e")]);
    idx.update_labels("e", [("x", "1")], &["p1"], &mut ev);
    assert_eq!(std::mem::take(&mut ev), [stopped("zone", "e")]);
    idx.update_parent_labels("p3", [("zone", "a")], &mut ev);
    assert!(ev.is_empty(), "p3 has no children now");
    idx.delete_labels("e", &mut ev);
    assert_eq!(std::mem::take(&mut ev), [stopped("blue", "e")]);
}

#[test]
fn parent_change_of_unread_label_evaluates_nothing() {
    let mut idx = Index::new();
    let mut ev = Events::new();
    idx.update_selector("s", sel("has(a)"), &mut ev);
    idx.update_parent_labels("p", [("a", "1")], &mut ev);
    idx.update_labels("e", Vec::<(&str, &str)>::new(), &["p"], &mut ev);
    assert_eq!(std::mem::take(&mut ev), [started("s", "e")]);
    idx.update_parent_labels("p", [("a", "1"), ("b", "2")], &mut ev);
    idx.update_parent_labels("p", [("a", "2"), ("b", "2")], &mut ev);
    assert!(ev.is_empty());
}

#[test]
fn closure_and_unit_sinks() {
    let mut idx: LabelIndex<String, u32> = LabelIndex::new();
    let mut count = 0;
    let mut counter = |e: MatchEvent<&String, &u32>| {
        if matches!(e, MatchEvent::Started { .. }) {
            count += 1;
        }
    };
    idx.update_selector_str("s".to_owned(), "has(a)", &mut counter)
        .unwrap();
    idx.update_labels(1, [("a", "")], &[], &mut counter);
    idx.update_labels(2, [("a", "")], &[], &mut ());
    assert_eq!(count, 1);
    assert_eq!(idx.matches_of_selector("s").count(), 2);
    assert!(matches!(
        idx.update_selector_str("t".to_owned(), "a ==", &mut ()),
        Err(Error::Selector(_))
    ));
}

#[test]
fn selector_placement_prefers_fewest_candidates() {
    let mut idx = Index::new();
    let mut ev = Events::new();
    idx.update_labels("e1", [("app", "web"), ("name", "n1")], NO_PARENTS, &mut ev);
    idx.update_labels("e2", [("app", "web"), ("name", "n2")], NO_PARENTS, &mut ev);
    idx.update_selector("s", sel("app == 'web' && name == 'n1'"), &mut ev);
    let d = idx.selector_ids["s"].0;
    assert_eq!(
        idx.distinct[d].placement,
        Placement::Values("name".into(), Box::new(["n1".into()]))
    );
    idx.update_selector("t", sel("has(app) && has(name) && app == 'web'"), &mut ev);
    let d = idx.selector_ids["t"].0;
    assert_eq!(
        idx.distinct[d].placement,
        Placement::Values("app".into(), Box::new(["web".into()]))
    );
}

#[test]
fn placement_spreads_selectors_when_items_do_not_tell() {
    let mut idx = Index::new();
    let mut ev = Events::new();
    idx.update_selector("s1", sel("app == 'web' && name == 'n1'"), &mut ev);
    idx.update_selector("s2", sel("app == 'web' && name == 'n2'"), &mut ev);
    let d = idx.selector_ids["s2"].0;
    assert_eq!(
        idx.distinct[d].placement,
        Placement::Values("name".into(), Box::new(["n2".into()]))
    );
    idx.update_selector("s3", sel("has(a) && b == 'x'"), &mut ev);
    let d = idx.selector_ids["s3"].0;
    assert_eq!(
        idx.distinct[d].placement,
        Placement::Values("b".into(), Box::new(["x".into()]))
    );
}

#[test]
fn index_is_emptied_by_deletes() {
    let mut idx = Index::new();
    let mut ev = Events::new();
    idx.update_parent_labels("p", [("team", "blue")], &mut ev);
    idx.update_labels("e", [("a", "1")], &["p"], &mut ev);
    idx.update_selector("s", sel("a in {'1', '2'}"), &mut ev);
    idx.update_selector("t", sel("has(team)"), &mut ev);
    idx.update_selector("u", sel("all()"), &mut ev);
    idx.delete_labels("e", &mut ev);
    idx.delete_parent_labels("p", &mut ev);
    for s in ["s", "t", "u"] {
        idx.delete_selector(s, &mut ev);
    }
    assert!(idx.item_index.is_empty());
    assert!(idx.selector_index.is_empty());
    assert!(idx.unindexed.is_empty());
    assert!(idx.by_canonical.is_empty());
    assert_eq!(idx.num_parents(), 0);
}

#[test]
fn label_set_last_value_wins_and_sorted() {
    let ls = LabelSet::from_pairs([("b", "1"), ("a", "2"), ("b", "3")]);
    assert_eq!(ls.iter().collect::<Vec<_>>(), [("a", "2"), ("b", "3")]);
    assert_eq!(ls.get("b"), Some("3"));
    assert_eq!(ls.get("c"), None);
    let empty = LabelSet::from_pairs(Vec::<(String, String)>::new());
    assert_eq!(empty.get(""), None);
}

#[test]
fn id_set_grows_and_shrinks() {
    let mut s = IdSet::default();
    for i in 0..100 {
        assert!(s.insert(i));
        assert!(!s.insert(i));
    }
    assert!(matches!(s, IdSet::Large(_)));
    for i in 0..98 {
        assert!(s.remove(i));
        assert!(!s.remove(i));
    }
    assert!(matches!(s, IdSet::Small(_)));
    assert!(s.remove(98));
    assert!(matches!(s, IdSet::One(99)));
    assert!(s.insert(98));
    assert_eq!(s.iter().collect::<BTreeSet<_>>(), BTreeSet::from([98, 99]));
}
