//! Rules that span resources, enforced as upstream's clients do: tiers, IPPool overlap and
//! immutable pool fields, and what deleting a Node takes with it.

mod common;

use common::Cluster;

/// The names `calicoctl get <kind>` lists.
fn names(c: &Cluster, kind: &str) -> Vec<String> {
    c.list_names(&[kind])
}

fn tier(name: &str) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata:\n  name: {name}\nspec:\n  order: 100\n"
    )
}

fn gnp(name: &str, tier: &str) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: {name}\nspec:\n  tier: {tier}\n  selector: all()\n  ingress:\n  - action: Allow\n"
    )
}

fn pool(name: &str, cidr: &str, block_size: u8) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: {name}\nspec:\n  cidr: {cidr}\n  blockSize: {block_size}\n"
    )
}

#[test]
fn a_policy_needs_its_tier_and_a_tier_with_policies_stays() {
    let c = Cluster::new();
    let orphan = c.file("orphan.yaml", &gnp("security.p", "security"));
    let run = c.ctl(&["apply", "-f", &orphan]).fails();
    assert!(
        run.stderr
            .contains("spec.tier \"security\": that tier does not exist"),
        "{}",
        run.stderr
    );
    assert!(names(&c, "globalnetworkpolicies").is_empty());

    // The tier and its policy in one file, tier last: the batch as a whole is what counts.
    let both = c.file(
        "both.yaml",
        &format!("{}---\n{}", gnp("security.p", "security"), tier("security")),
    );
    c.ctl(&["apply", "-f", &both]).ok();

    let run = c.ctl(&["delete", "tier", "security"]).fails();
    assert!(
        run.stderr
            .contains("still holds 1 policy: GlobalNetworkPolicy security.p"),
        "{}",
        run.stderr
    );
    let run = c.ctl(&["delete", "tier", "default"]).fails();
    assert!(
        run.stderr.contains("the default tier cannot be deleted"),
        "{}",
        run.stderr
    );
    // Deleting the policy and the tier together works.
    c.ctl(&["delete", "-f", &both]).ok();
    assert!(c.ctl(&["get", "tier", "security"]).code != 0);
    // Patching a policy into a missing tier is refused as well.
    let p = c.file("p.yaml", &gnp("default.q", "default"));
    c.ctl(&["apply", "-f", &p]).ok();
    let run = c
        .ctl(&[
            "patch",
            "globalnetworkpolicy",
            "default.q",
            "-p",
            r#"{"spec":{"tier":"nope"}}"#,
        ])
        .fails();
    assert!(run.stderr.contains("tier \"nope\""), "{}", run.stderr);
}

#[test]
fn pools_may_not_overlap_and_keep_their_cidr_and_block_size() {
    let c = Cluster::new();
    c.ctl(&[
        "apply",
        "-f",
        &c.file("a.yaml", &pool("a", "10.10.0.0/16", 26)),
    ])
    .ok();
    for (file, text, expect) in [
        (
            "inside.yaml",
            pool("b", "10.10.4.0/24", 26),
            "spec.cidr 10.10.4.0/24 overlaps IPPool \"a\" (10.10.0.0/16)",
        ),
        (
            "around.yaml",
            pool("b", "10.0.0.0/8", 26),
            "overlaps IPPool \"a\"",
        ),
        (
            "two.yaml",
            format!(
                "{}---\n{}",
                pool("b", "10.20.0.0/16", 26),
                pool("c", "10.20.128.0/17", 26)
            ),
            "overlaps IPPool",
        ),
        (
            "cidr.yaml",
            pool("a", "10.11.0.0/16", 26),
            "spec.cidr cannot change (from 10.10.0.0/16 to 10.11.0.0/16)",
        ),
        (
            "block.yaml",
            pool("a", "10.10.0.0/16", 28),
            "spec.blockSize cannot change (from 26 to 28)",
        ),
    ] {
        let run = c.ctl(&["apply", "-f", &c.file(file, &text)]).fails();
        assert!(run.stderr.contains(expect), "{file}: {}", run.stderr);
    }
    assert_eq!(names(&c, "ippools"), ["a"]);
    let wide = c.ctl(&["get", "ippools", "-o", "wide"]).ok().stdout;
    assert!(
        wide.lines().next().unwrap().ends_with("ASSIGNMENTMODE")
            && wide
                .lines()
                .nth(1)
                .unwrap()
                .trim_end()
                .ends_with("Automatic"),
        "{wide}"
    );
    let run = c
        .ctl(&[
            "patch",
            "ippool",
            "a",
            "-p",
            r#"{"spec":{"cidr":"10.12.0.0/16"}}"#,
        ])
        .fails();
    assert!(
        run.stderr.contains("spec.cidr cannot change"),
        "{}",
        run.stderr
    );
    // Other fields still change, and a pool beside it is fine.
    c.ctl(&[
        "patch",
        "ippool",
        "a",
        "-p",
        r#"{"spec":{"natOutgoing":true}}"#,
    ])
    .ok();
    c.ctl(&[
        "apply",
        "-f",
        &c.file("d.yaml", &pool("d", "10.11.0.0/16", 26)),
    ])
    .ok();
}

#[test]
fn staged_policies_node_status_and_ipam_configuration_are_resources() {
    let c = Cluster::new();
    let docs = c.file(
        "kinds.yaml",
        "apiVersion: projectcalico.org/v3\nkind: StagedGlobalNetworkPolicy\nmetadata: {name: lockdown}\n\
         spec:\n  stagedAction: Set\n  selector: app == 'db'\n  ingress:\n  - action: Deny\n---\n\
         apiVersion: projectcalico.org/v3\nkind: StagedNetworkPolicy\nmetadata: {name: knp.default.web, namespace: shop}\n\
         spec:\n  stagedAction: Delete\n---\n\
         apiVersion: projectcalico.org/v3\nkind: CalicoNodeStatus\nmetadata: {name: h1-status}\n\
         spec: {node: h1, classes: [Agent, BGP, Routes], updatePeriodSeconds: 10}\n",
    );
    let run = c.ctl(&["apply", "-f", &docs]).ok();
    assert!(
        run.stdout.contains("Successfully applied 3 resource(s)"),
        "{}",
        run.stdout
    );
    assert_eq!(names(&c, "stagedglobalnetworkpolicies"), ["lockdown"]);
    let out = c
        .ctl(&["get", "snp", "-n", "shop", "-o", "yaml"])
        .ok()
        .stdout;
    assert!(
        out.contains("kind: StagedNetworkPolicy") && out.contains("stagedAction: Delete"),
        "{out}"
    );
    let out = c
        .ctl(&["get", "sgnp", "lockdown", "-o", "yaml"])
        .ok()
        .stdout;
    assert!(
        out.contains("types:\n  - Ingress") && out.contains("tier: default"),
        "defaulted as the policy it would become: {out}"
    );
    assert_eq!(names(&c, "caliconodestatuses"), ["h1-status"]);
    for (bad, why) in [
        (
            "apiVersion: projectcalico.org/v3\nkind: StagedGlobalNetworkPolicy\nmetadata: {name: x}\nspec: {stagedAction: Warning}\n",
            "spec.stagedAction",
        ),
        (
            "apiVersion: projectcalico.org/v3\nkind: StagedGlobalNetworkPolicy\nmetadata: {name: x}\nspec: {stagedAction: Delete, selector: all()}\n",
            "spec.selector",
        ),
        (
            "apiVersion: projectcalico.org/v3\nkind: CalicoNodeStatus\nmetadata: {name: x}\nspec: {node: h1, updatePeriodSeconds: 5, classes: [Everything]}\n",
            "spec.classes[0]",
        ),
        (
            "apiVersion: projectcalico.org/v3\nkind: IPAMConfiguration\nmetadata: {name: mine}\nspec: {strictAffinity: true}\n",
            "singleton named default",
        ),
    ] {
        let run = c.ctl(&["apply", "-f", &c.file("bad.yaml", bad)]).fails();
        assert!(run.stderr.contains(why), "{bad}: {}", run.stderr);
    }

    // IPAMConfiguration is what `ipam configure` sets, both ways.
    c.ctl(&["ipam", "configure", "--strictaffinity=true"]).ok();
    let out = c
        .ctl(&["get", "ipamconfiguration", "default", "-o", "yaml"])
        .ok()
        .stdout;
    assert!(
        out.contains("kind: IPAMConfiguration") && out.contains("strictAffinity: true"),
        "{out}"
    );
    c.ctl(&[
        "apply",
        "-f",
        &c.file(
            "ipam.yaml",
            "apiVersion: projectcalico.org/v3\nkind: IPAMConfiguration\nmetadata: {name: default}\n\
             spec: {strictAffinity: false, maxBlocksPerHost: 4}\n",
        ),
    ])
    .ok();
    let out = c.ctl(&["ipam", "show", "--show-configuration"]).ok().stdout;
    assert!(
        out.contains("MaxBlocksPerHost") && out.contains('4'),
        "{out}"
    );
}
