//! Values that would change BIRD's configuration if written as they are:
//! refused, and passwords never shown.

use std::collections::BTreeMap;

use calico_api::v3;
use calico_confd::{Error, Inputs, Settings};
use serde_json::{Value, json};

fn typed<T: calico_api::ApiResource>(doc: Value) -> T {
    let checked = calico_api::parse_resource(doc).expect("valid resource");
    calico_api::decode(checked.value).expect("typed")
}

fn two_nodes_and_a_peer_with_a_password() -> Inputs {
    let mut inputs = Inputs::default();
    for (name, ip) in [("a", "10.0.0.1/24"), ("b", "10.0.0.2/24")] {
        inputs.nodes.insert(
            name.to_owned(),
            typed::<v3::Node>(json!({"apiVersion": "projectcalico.org/v3", "kind": "Node",
                "metadata": {"name": name}, "spec": {"bgp": {"ipv4Address": ip}}})),
        );
    }
    inputs.peers.insert(
        "tor".to_owned(),
        typed::<v3::BGPPeer>(
            json!({"apiVersion": "projectcalico.org/v3", "kind": "BGPPeer",
            "metadata": {"name": "tor"},
            "spec": {"peerIP": "10.0.0.254", "asNumber": 65000,
                     "password": {"secretKeyRef": {"name": "bgp", "key": "tor"}}}}),
        ),
    );
    inputs
}

fn secrets(password: &str) -> BTreeMap<(String, String), String> {
    BTreeMap::from([(("bgp".to_owned(), "tor".to_owned()), password.to_owned())])
}

fn settings() -> Settings {
    Settings {
        node_name: "a".to_owned(),
        router_id: String::new(),
    }
}

#[test]
fn a_password_is_written_quoted_for_its_session_only() {
    let files = calico_confd::render(
        &two_nodes_and_a_peer_with_a_password(),
        &settings(),
        &secrets("s3cret"),
    )
    .expect("renders");
    let bird = &files["bird.cfg"];
    assert!(
        bird.contains("protocol bgp Global_10_0_0_254 from bgp_template"),
        "{bird}"
    );
    assert_eq!(bird.matches("password \"s3cret\";").count(), 1, "{bird}");
}

#[test]
fn a_password_that_would_escape_its_quotes_fails_the_render_without_showing_it() {
    for hostile in [
        "x\"; } protocol bgp evil { neighbor 6.6.6.6 as 666; ",
        "line\nbreak",
        "nul\0",
    ] {
        let err = calico_confd::render(
            &two_nodes_and_a_peer_with_a_password(),
            &settings(),
            &secrets(hostile),
        )
        .expect_err("refused");
        assert_eq!(
            err,
            Error::UnwritablePassword("Global_10_0_0_254".to_owned())
        );
        let message = err.to_string();
        assert!(!message.contains(hostile), "{message}");
        assert!(message.contains("Global_10_0_0_254"), "{message}");
    }
}

#[test]
fn debug_output_never_shows_a_password() {
    let inputs = two_nodes_and_a_peer_with_a_password();
    let view = calico_confd::model::View::of(&inputs, &secrets("s3cret"));
    let c =
        calico_confd::config::BirdConfig::of(&inputs, &view, &settings(), 4, &secrets("s3cret"))
            .expect("config");
    let shown = format!("{view:?} {c:?}");
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(shown.contains("<redacted>"), "{shown}");
}

#[test]
fn an_interface_pattern_that_would_break_out_of_its_quotes_is_refused() {
    let err = calico_api::parse_resource(json!({"apiVersion": "projectcalico.org/v3",
        "kind": "BGPConfiguration", "metadata": {"name": "default"},
        "spec": {"ignoredInterfaces": ["eth0\", \"*"]}}))
    .expect_err("refused");
    assert_eq!(err.field, "spec.ignoredInterfaces[0]", "{err}");
    calico_api::parse_resource(json!({"apiVersion": "projectcalico.org/v3",
        "kind": "BGPConfiguration", "metadata": {"name": "default"},
        "spec": {"ignoredInterfaces": ["docker*", "veth_1.2-x"]}}))
    .expect("upstream's patterns are accepted");
}

#[test]
fn a_node_without_its_node_resource_is_an_error_not_an_empty_configuration() {
    let err = calico_confd::render(
        &two_nodes_and_a_peer_with_a_password(),
        &Settings {
            node_name: "missing".to_owned(),
            router_id: String::new(),
        },
        &calico_confd::NoSecrets,
    )
    .expect_err("no such node");
    assert_eq!(err, Error::NoSuchNode("missing".to_owned()));
}

#[test]
fn long_filter_names_are_cut_to_birds_symbol_length_with_a_hash() {
    let long = "a".repeat(60);
    let name = calico_confd::filters::function_name(&long, "import", 4);
    // The quotes aside, BIRD's limit is 64 characters.
    assert_eq!(name.len() - 2, 64, "{name}");
    assert!(name.starts_with("'bgp_aaaa"), "{name}");
    assert_eq!(
        calico_confd::filters::function_name("short", "export", 6),
        "'bgp_short_exportFilterV6'"
    );
    assert_eq!(
        calico_confd::config::hash_to_ipv4("kube-master"),
        "25.79.212.8"
    );
}

#[test]
fn secrets_come_from_their_own_files_and_names_cannot_leave_the_directory() {
    use calico_confd::Secrets as _;
    use calico_confd::daemon::SecretSources;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("secrets");
    std::fs::create_dir_all(dir.join("bgp")).unwrap();
    std::fs::write(dir.join("bgp").join("tor"), "s3cret\n").unwrap();
    std::fs::write(tmp.path().join("outside"), "not a secret").unwrap();
    let s = SecretSources { dir: Some(dir) };
    assert_eq!(s.secret("bgp", "tor").as_deref(), Some("s3cret"));
    assert_eq!(s.secret("..", "outside"), None);
    assert_eq!(s.secret("bgp", "../../outside"), None);
    assert_eq!(
        SecretSources::env_name("bgp-secrets", "tor.password"),
        "CALICO_BGP_SECRET_BGP_SECRETS_TOR_PASSWORD"
    );
}

#[test]
fn a_router_id_that_is_not_an_ipv4_address_or_hash_is_refused() {
    for ok in ["", "hash", "10.0.0.1"] {
        calico_confd::Settings::new("a".to_owned(), ok.to_owned()).expect("accepted");
    }
    let err =
        calico_confd::Settings::new("a".to_owned(), "10.0.0.1; }".to_owned()).expect_err("refused");
    assert_eq!(err, Error::BadRouterId("10.0.0.1; }".to_owned()));
}
