//! etcd over TLS with client certificates, configured the way calicoctl users do it
//! (`ETCD_ENDPOINTS`, `ETCD_CA_CERT_FILE`, `ETCD_CERT_FILE`, `ETCD_KEY_FILE`).

use std::time::{Duration, Instant};

use calico_datastore::etcd::testing::{EtcdServer, etcd_or_skip, generate_tls};
use calico_datastore::etcd::{EtcdDatastore, EtcdOptions, EtcdTls, Pem};
use calico_datastore::{DatastoreConfig, Key, Kind};
use serde_json::json;

#[test]
fn client_certificates_over_https() {
    let Some(bin) = etcd_or_skip("client_certificates_over_https") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (server_tls, cert, key) = match generate_tls(dir.path()) {
        Ok(files) => files,
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => panic!("{e}"),
        Err(e) => {
            println!("SKIP client_certificates_over_https: {e}");
            return;
        }
    };
    let server = EtcdServer::single_tls(&bin, &server_tls);
    let endpoint = server.endpoints()[0].clone();
    assert!(endpoint.starts_with("https://"));

    let env = |name: &str| match name {
        "DATASTORE_TYPE" => Some("etcdv3".to_string()),
        "ETCD_ENDPOINTS" => Some(endpoint.clone()),
        "ETCD_CA_CERT_FILE" => Some(server_tls.ca.display().to_string()),
        "ETCD_CERT_FILE" => Some(cert.display().to_string()),
        "ETCD_KEY_FILE" => Some(key.display().to_string()),
        _ => None,
    };
    let cfg = DatastoreConfig::load_with(None, None, &env).unwrap();
    let Ok(store) = calico_datastore::open(&cfg) else {
        panic!("connecting over TLS failed");
    };
    let k = Key::global(Kind::GlobalNetworkPolicy, "tls");
    let created = store.create(&k, json!({"spec": {}})).unwrap();
    assert_eq!(store.get(&k).unwrap(), Some(created.clone()));

    // The same certificates inline in a calicoctl.cfg (upstream's etcdCACert, etcdCert,
    // etcdKey), with no datastoreType: the endpoints select etcd.
    let indent = |path: &std::path::Path| {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    };
    let cfg_path = dir.path().join("calicoctl.cfg");
    std::fs::write(
        &cfg_path,
        format!(
            "apiVersion: projectcalico.org/v3\nkind: CalicoAPIConfig\nmetadata: {{}}\nspec:\n  \
             etcdEndpoints: {endpoint}\n  etcdCACert: |\n{}  etcdCert: |\n{}  etcdKey: |\n{}",
            indent(&server_tls.ca),
            indent(&cert),
            indent(&key)
        ),
    )
    .unwrap();
    let cfg = DatastoreConfig::load_with(Some(&cfg_path), None, &|_| None).unwrap();
    let store = calico_datastore::open(&cfg).expect("connecting with inline certificates");
    assert_eq!(store.get(&k).unwrap(), Some(created));
    // An item given both ways is refused, naming both settings.
    let both = |name: &str| match name {
        "ETCD_CA_CERT_FILE" => Some(server_tls.ca.display().to_string()),
        _ => None,
    };
    let err = DatastoreConfig::load_with(Some(&cfg_path), None, &both).unwrap_err();
    assert!(
        err.to_string().contains("ETCD_CA_CERT_FILE")
            && err.to_string().contains("spec.etcdCACert in"),
        "{err}"
    );

    // Without a client certificate the server refuses, and connect says so in bounded time.
    let options = EtcdOptions {
        connect_timeout: Duration::from_secs(3),
        ..EtcdOptions::default()
    };
    let started = Instant::now();
    let err = EtcdDatastore::connect_with(
        std::slice::from_ref(&endpoint),
        &EtcdTls {
            ca_cert: Some(Pem::File(server_tls.ca.clone())),
            ..EtcdTls::default()
        },
        options,
    )
    .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(8));
    assert!(
        err.to_string().contains("connecting to etcd at https://"),
        "{err}"
    );
}
