//! The backend contract (`calico_datastore::contract`) run against etcd: every check on its
//! own freshly started single-node server (`/usr/bin/etcd`, see `etcd::testing`).

use std::process::{Command, Stdio};
use std::sync::Arc;

use calico_datastore::Datastore;
use calico_datastore::contract;
use calico_datastore::etcd::testing::{EtcdServer, WithServer, etcd_or_skip};
use calico_datastore::etcd::{EtcdDatastore, EtcdTls};

/// Tells a re-executed test binary to act as a writer child: `<endpoints>|<writer>|<iterations>`.
const CHILD_ENV: &str = "CALICO_DATASTORE_ETCD_CONTRACT_CHILD";
const CHILD_TEST: &str = "multi_process_writer_child";

/// Run `check` with a factory that starts a new etcd for every store.
fn with_fresh(name: &str, check: fn(contract::Factory<'_>)) {
    let Some(bin) = etcd_or_skip(name) else {
        return;
    };
    let fresh = || -> Box<dyn Datastore> { Box::new(WithServer::fresh(&bin)) };
    check(&fresh);
}

macro_rules! contract_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                with_fresh(stringify!($name), contract::$name);
            }
        )*
    };
}

contract_tests!(
    crud_basics,
    metadata_stamping,
    invalid_values_rejected,
    create_existing_fails,
    missing_key_errors,
    update_cas_conflict,
    delete_cas_conflict,
    batch_consecutive_revisions,
    batch_atomicity,
    list_sorted_and_filtered,
    watch_resume_in_order,
    watch_filters,
    watch_timeout,
    compaction_then_relist,
);

#[test]
fn concurrent_cas_counter() {
    let Some(bin) = etcd_or_skip("concurrent_cas_counter") else {
        return;
    };
    let server = Arc::new(EtcdServer::single(&bin));
    contract::concurrent_cas_counter(&|| Box::new(WithServer::on(server.clone())));
}

#[test]
fn multi_process_writers_watched() {
    const WRITERS: usize = 4;
    const ITERATIONS: usize = 120;
    let Some(bin) = etcd_or_skip("multi_process_writers_watched") else {
        return;
    };
    let store = WithServer::fresh(&bin);
    let endpoints = store.server.endpoints().join(",");
    let exe = std::env::current_exe().unwrap();
    let spawn = |writer: usize| {
        Command::new(&exe)
            .args(["--exact", CHILD_TEST, "--nocapture", "--include-ignored"])
            .env(CHILD_ENV, format!("{endpoints}|{writer}|{ITERATIONS}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    contract::multi_process_watch(&store, WRITERS, ITERATIONS, &spawn);
}

/// The writer half of `multi_process_writers_watched`, run in child processes it spawns;
/// does nothing when run directly.
#[test]
#[ignore = "helper: runs only when spawned by multi_process_writers_watched"]
fn multi_process_writer_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut parts = spec.rsplitn(3, '|');
    let iterations: usize = parts.next().unwrap().parse().unwrap();
    let writer: usize = parts.next().unwrap().parse().unwrap();
    let endpoints: Vec<String> = parts.next().unwrap().split(',').map(String::from).collect();
    let store = EtcdDatastore::connect(&endpoints, &EtcdTls::default()).unwrap();
    contract::multi_process_writer(&store, writer, iterations);
}

#[test]
fn unreadable_values() {
    let Some(bin) = etcd_or_skip("unreadable_values") else {
        return;
    };
    let server = Arc::new(EtcdServer::single(&bin));
    let store = WithServer::on(server.clone());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = rt
        .block_on(etcd_client::Client::connect(server.endpoints(), None))
        .unwrap();
    contract::unreadable_values(&store, &|key| {
        // A hand-run `etcdctl put` of garbage.
        let etcd_key = calico_datastore::etcd::layout::encode_key(key, None).unwrap();
        let mut c = client.clone();
        rt.block_on(c.put(etcd_key, "not json", None)).unwrap();
    });
}
