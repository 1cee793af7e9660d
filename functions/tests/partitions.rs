//! The image's binary on a three-server JetStream cluster spread over network-namespace hosts,
//! under partitions (`jetfn_test_support::Hosts`): two pods run `reserve_inventory` on their own
//! hosts while the test publishes a steady load of acknowledged orders; a fault is made and
//! healed; then every order must have its reservation stored exactly once, nothing
//! dead-lettered. Each scenario prints its figures: inputs, outputs, duplicates, lost, longest
//! processing stall (the largest gap between two stored outputs) and recovery after the heal.
//!
//! At the edge: a hub cluster in JetStream domain `hub` and a leaf server in domain `leaf` on a
//! host of its own; a pod connected to the leaf with `NATS_JS_DOMAIN=hub` consumes the hub's
//! stream and stores its outputs there, while the leaf link is cut and restored.
//!
//! Needs root, `ip` and `iptables` (fails in one line saying which is missing).

mod common;

use common::BINARY;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use async_nats::jetstream::{self, stream};
use functions::{sample_order, subjects};
use futures::StreamExt;
use jetfn::testing::{eventually, http_get};
use jetfn_test_support::{DelayRelay, Hosts, NetLeaf, NetNats};

/// Servers on hosts 0..3, pods on hosts 3 and 4.
const SERVERS: [usize; 3] = [0, 1, 2];
const PODS: [usize; 2] = [3, 4];
/// At the edge: the leaf server on host 3, one pod on host 4, the domains.
const LEAF: usize = 3;
const EDGE_POD: usize = 4;
const HUB_DOMAIN: &str = "hub";
const LEAF_DOMAIN: &str = "leaf";
/// The lossy, slow links: each packet into or out of every host dropped with this
/// probability, and every route and pod connection delayed this long each way.
const LOSS: f64 = 0.05;
const DELAY: Duration = Duration::from_millis(50);
/// The steady load: orders per second, and how many.
const RATE: u64 = 50;
const ORDERS: u64 = 500;
/// When the fault starts and how long it lasts, from the start of the load.
const FAULT_AT: Duration = Duration::from_secs(3);
const FAULT_FOR: Duration = Duration::from_secs(5);
/// How long anything may take to settle on a shared machine.
const PATIENCE: Duration = Duration::from_secs(90);
/// What a pod cut off from every server holds comes back to the other pod after this.
const ACK_WAIT: &str = "4s";

/// One scenario at a time: each runs five hosts, three servers and two pods.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Cluster {
    hosts: Hosts,
    nats: NetNats,
    /// The test's JetStream, on the cluster's servers.
    js: jetstream::Context,
    /// Where the pods connect: `NATS_URL`, and `NATS_JS_DOMAIN` if any.
    pod_url: String,
    pod_domain: Option<&'static str>,
    leaf: Option<NetLeaf>,
    /// The delay relays every route and pod connection goes through, if any.
    relays: Vec<DelayRelay>,
}

/// Where the pods connect.
enum Edge {
    /// To the cluster's servers.
    Direct,
    /// To a leaf server of the cluster (the hub), in the hub's JetStream domain.
    Leaf,
    /// To the cluster's servers through delay relays; the routes go through relays too.
    Relayed,
}

async fn cluster() -> Cluster {
    cluster_with(Edge::Direct).await
}

async fn cluster_with(edge: Edge) -> Cluster {
    let mut hosts = Hosts::create(5).unwrap_or_else(|e| panic!("{e}"));
    let mut relays = Vec::new();
    let (nats, leaf, pods) = match edge {
        Edge::Relayed => {
            // One relay in front of each server's cluster port and one in front of its client
            // port, on the test process's address (reached from every host).
            for port in [6222, 4222] {
                for &host in &SERVERS {
                    let upstream = SocketAddr::from((hosts.addr(host), port));
                    let relay = DelayRelay::start(hosts.gateway().into(), upstream)
                        .await
                        .unwrap_or_else(|e| panic!("a relay: {e}"));
                    relays.push(relay);
                }
            }
            let routes = relays[..SERVERS.len()]
                .iter()
                .map(|relay| relay.addr().to_string())
                .collect();
            let nats = NetNats::start_routed(&mut hosts, &SERVERS, routes)
                .unwrap_or_else(|e| panic!("{e}"));
            (nats, None, PODS.to_vec())
        }
        Edge::Direct => (
            NetNats::start(&mut hosts, &SERVERS).unwrap_or_else(|e| panic!("{e}")),
            None,
            PODS.to_vec(),
        ),
        Edge::Leaf => {
            let hub = NetNats::start_in(&mut hosts, &SERVERS, Some(HUB_DOMAIN))
                .unwrap_or_else(|e| panic!("{e}"));
            let leaf = NetLeaf::start(&mut hosts, LEAF, LEAF_DOMAIN, &hub)
                .unwrap_or_else(|e| panic!("{e}"));
            (hub, Some(leaf), vec![EDGE_POD])
        }
    };
    let js = jetstream::new(nats.client(&hosts).await);
    let up = eventually(PATIENCE, || async { js.query_account().await.is_ok() }).await;
    assert!(up, "the cluster's JetStream answers");
    for (name, subject, window) in [
        ("SHOP", "shop.>", Duration::from_secs(120)),
        ("JETFN_DLQ", "jetfn.dlq.>", Duration::from_secs(24 * 3600)),
        (
            "JETFN_ADVISORIES",
            "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.>",
            Duration::from_secs(120),
        ),
    ] {
        let config = stream::Config {
            name: name.to_owned(),
            subjects: vec![subject.to_owned()],
            num_replicas: 3,
            duplicate_window: window,
            ..Default::default()
        };
        let created = eventually(PATIENCE, || async {
            js.get_or_create_stream(config.clone()).await.is_ok()
        });
        assert!(created.await, "stream {name} (R3)");
    }
    let (pod_url, pod_domain) = match &leaf {
        Some(leaf) => (leaf.url(&hosts), Some(HUB_DOMAIN)),
        None if !relays.is_empty() => {
            let clients = relays[SERVERS.len()..]
                .iter()
                .map(|relay| format!("nats://{}", relay.addr()))
                .collect::<Vec<_>>();
            (clients.join(","), None)
        }
        None => (nats.urls(&hosts), None),
    };
    let mut cluster = Cluster {
        hosts,
        nats,
        js,
        pod_url,
        pod_domain,
        leaf,
        relays,
    };
    for &pod in &pods {
        cluster.start_pod(pod);
    }
    for pod in pods {
        let addr = SocketAddr::from((cluster.hosts.addr(pod), 8080));
        let ready = eventually(PATIENCE, || async {
            matches!(http_get(addr, "/ready").await, Ok((200, _)))
        });
        assert!(ready.await, "pod on host {pod} ready");
    }
    cluster
}

impl Cluster {
    fn start_pod(&mut self, host: usize) {
        let mut command = self.hosts.command(host, BINARY);
        command
            .arg("run")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("NATS_URL", &self.pod_url)
            .env("JETFN_FUNCTIONS", "reserve_inventory")
            .env("JETFN_HTTP_ADDR", format!("{}:8080", self.hosts.addr(host)))
            .env("JETFN__FUNCTIONS__RESERVE_INVENTORY__ACK_WAIT", ACK_WAIT)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or("warn".into()),
            )
            .stdout(Stdio::null());
        if let Some(domain) = self.pod_domain {
            command.env("NATS_JS_DOMAIN", domain);
        }
        self.hosts.spawn(command).expect("pod");
    }

    /// The server (index) that leads `stream`, and the one that leads its consumer.
    async fn leaders(&self) -> (usize, usize) {
        let mut stream = self.js.get_stream("SHOP").await.expect("SHOP");
        let info = stream.info().await.expect("stream info");
        let leader = |cluster: Option<&jetstream::stream::ClusterInfo>| {
            let name = cluster.and_then(|c| c.leader.clone()).expect("a leader");
            self.nats.index_of(&name).expect("a server of the cluster")
        };
        let stream_leader = leader(info.cluster.as_ref());
        let mut consumer: jetstream::consumer::PullConsumer = stream
            .get_consumer("reserve_inventory")
            .await
            .expect("consumer");
        let info = consumer.info().await.expect("consumer info");
        (stream_leader, leader(info.cluster.as_ref()))
    }

    /// A JetStream context whose client knows every server but the one on `host` (if any): the
    /// load's publisher, which must not sit on a server the fault cuts off from the cluster (its
    /// own stall is not what is measured; the test process itself is never partitioned).
    async fn js_avoiding(&self, host: usize) -> jetstream::Context {
        let addrs: Vec<async_nats::ServerAddr> = (0..SERVERS.len())
            .filter(|&i| self.nats.host(i) != host)
            .map(|i| self.nats.url(&self.hosts, i).parse().expect("a server URL"))
            .collect();
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(2))
            .connect(addrs)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the cluster: {e}"));
        jetstream::new(client)
    }

    /// Every host but `host`.
    fn others(&self, host: usize) -> Vec<usize> {
        (0..self.hosts.len()).filter(|&h| h != host).collect()
    }
}

/// Publishes `ORDERS` orders at `RATE`, each until acknowledged (the same `Nats-Msg-Id` when
/// sent again); returns when each was acknowledged.
async fn load(js: jetstream::Context) -> Vec<SystemTime> {
    let mut acked = Vec::with_capacity(ORDERS as usize);
    let started = tokio::time::Instant::now();
    for n in 0..ORDERS {
        tokio::time::sleep_until(started + Duration::from_secs_f64(n as f64 / RATE as f64)).await;
        let order = sample_order(n);
        let body = serde_json::to_vec(&order).expect("JSON");
        let deadline = Instant::now() + PATIENCE;
        loop {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", order.data.order_id.as_str());
            let sent = js
                .publish_with_headers(subjects::ORDER_CREATED, headers, body.clone().into())
                .await;
            // An ack not back within a second is sent again: a publish that reached a leader
            // just before it was cut off is never answered, and waiting out the client's 5 s
            // would stall the load itself, not what is measured.
            if let Ok(ack) = sent {
                if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(1), ack).await {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "order {n} not acknowledged");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        acked.push(SystemTime::now());
    }
    acked
}

/// Every stored reservation (`subjects::INVENTORY_RESERVED`), or every stored order: its order
/// id and when it was stored.
///
/// Right after a fault the cluster may still be electing: a read that fails (the reader cannot
/// be made, or its messages stop with an error) is made again from the start until the
/// patience ends; an error past it fails the test (it never reads as "no output").
async fn outputs(js: &jetstream::Context, subject: &str) -> Vec<(String, SystemTime)> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match read_outputs(js, subject).await {
            Ok(found) => return found,
            Err(error) if Instant::now() < deadline => {
                println!("reading the outputs again: {error}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(error) => panic!("cannot read the outputs: {error}"),
        }
    }
}

/// One read of every message stored on `subject`.
async fn read_outputs(
    js: &jetstream::Context,
    subject: &str,
) -> Result<Vec<(String, SystemTime)>, String> {
    let consumer = js
        .get_stream("SHOP")
        .await
        .map_err(|e| e.to_string())?
        .create_consumer(jetstream::consumer::pull::Config {
            filter_subject: subject.to_owned(),
            ack_policy: jetstream::consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    let count = consumer.cached_info().num_pending as usize;
    let mut found = Vec::with_capacity(count);
    let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
    while found.len() < count {
        let message = tokio::time::timeout(PATIENCE, messages.next())
            .await
            .map_err(|_| {
                format!(
                    "{} of {count} stored outputs read within the patience",
                    found.len()
                )
            })?
            .ok_or("the reader ended")?
            .map_err(|e| e.to_string())?;
        let value: serde_json::Value = serde_json::from_slice(&message.payload).expect("JSON");
        let order = value["data"]["order_id"]
            .as_str()
            .expect("order_id")
            .to_owned();
        let published = message.info().map_err(|e| e.to_string())?.published;
        found.push((order, SystemTime::from(published)));
    }
    Ok(found)
}

/// How many dead letters `JETFN_DLQ` holds. Right after a fault the request may time out while
/// the cluster elects: asked again within the patience; an error past it fails the test.
async fn dead_letters(js: &jetstream::Context) -> u64 {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let info = async {
            let mut stream = js
                .get_stream("JETFN_DLQ")
                .await
                .map_err(|e| e.to_string())?;
            stream
                .info()
                .await
                .map(|i| i.state.messages)
                .map_err(|e| e.to_string())
        };
        match info.await {
            Ok(messages) => return messages,
            Err(error) if Instant::now() < deadline => {
                println!("reading the DLQ again: {error}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(error) => panic!("cannot read the DLQ: {error}"),
        }
    }
}

/// When each order was first stored.
async fn outputs_stored_first(
    js: &jetstream::Context,
    subject: &str,
) -> BTreeMap<String, SystemTime> {
    let mut first = BTreeMap::new();
    for (order, at) in outputs(js, subject).await {
        let slot = first.entry(order).or_insert(at);
        *slot = (*slot).min(at);
    }
    first
}

/// The longest processing stall: the longest time during which a stored input waited for its
/// output and no output was stored (the cluster itself refusing every write counts when an
/// input was waiting); and the longest gap between two stored inputs (when the stream took no
/// input at all, there is nothing to process).
fn stalls(
    inputs: &BTreeMap<String, SystemTime>,
    outputs: &BTreeMap<&str, Vec<SystemTime>>,
) -> (Duration, Duration) {
    // Each input's store time and the time of its first output.
    let pairs: Vec<(SystemTime, SystemTime)> = inputs
        .iter()
        .filter_map(|(order, &stored)| {
            let first = outputs.get(order.as_str())?.iter().min()?;
            Some((stored, *first))
        })
        .collect();
    let mut times: Vec<SystemTime> = pairs.iter().map(|&(_, out)| out).collect();
    times.sort();
    times.dedup();
    let processing = times
        .windows(2)
        .filter_map(|gap| {
            let (a, b) = (gap[0], gap[1]);
            // The earliest-stored input still waiting when the output at `b` came.
            let waiting = pairs
                .iter()
                .filter(|&&(stored, out)| stored < b && out >= b)
                .map(|&(stored, _)| stored)
                .min()?;
            b.duration_since(a.max(waiting)).ok()
        })
        .max()
        .unwrap_or_default();
    let mut stored: Vec<SystemTime> = inputs.values().copied().collect();
    stored.sort();
    let unstored = stored
        .windows(2)
        .filter_map(|gap| gap[1].duration_since(gap[0]).ok())
        .max()
        .unwrap_or_default();
    (processing, unstored)
}

/// What goes wrong during the load.
enum Fault {
    /// At `FAULT_AT`, cut host `.0` off from hosts `.1`; heal `FAULT_FOR` later.
    Partition(usize, Vec<usize>),
    /// From `FAULT_AT`, every server restarted, one after another, as an orchestrator rolls a
    /// StatefulSet: SIGTERM, start again, and the next only once this one reports healthy
    /// (`/healthz`: JetStream caught up).
    RollingRestart,
    /// From `FAULT_AT` for `FAULT_FOR`: `LOSS` on every link and `DELAY` on every route and
    /// pod connection.
    LossAndDelay,
}

/// Runs the load with `fault`; checks and prints.
async fn scenario(name: &str, cluster: &mut Cluster, fault: Fault) {
    let publisher = match &fault {
        Fault::Partition(host, _) => cluster.js_avoiding(*host).await,
        Fault::RollingRestart | Fault::LossAndDelay => cluster.js.clone(),
    };
    let started = tokio::time::Instant::now();
    let load = tokio::spawn(load(publisher));
    tokio::time::sleep_until(started + FAULT_AT).await; // the scenario's schedule, not a proof
    match fault {
        Fault::Partition(host, others) => {
            cluster.hosts.partition(host, &others).expect("partition");
            tokio::time::sleep(FAULT_FOR).await;
            cluster.hosts.heal().expect("heal");
        }
        Fault::LossAndDelay => {
            for relay in &cluster.relays {
                relay.set_delay(DELAY);
            }
            cluster.hosts.lose(LOSS).expect("loss");
            tokio::time::sleep(FAULT_FOR).await;
            cluster.hosts.heal().expect("heal");
            for relay in &cluster.relays {
                relay.set_delay(Duration::ZERO);
            }
        }
        Fault::RollingRestart => {
            for index in 0..SERVERS.len() {
                let Cluster { hosts, nats, .. } = cluster;
                let grace = Duration::from_secs(10);
                // It waits for the server to exit: not on the load's worker thread.
                tokio::task::block_in_place(|| nats.restart_gracefully(hosts, index, grace))
                    .expect("restart");
                let health = nats.monitoring(hosts, index);
                let healthy = eventually(PATIENCE, || async {
                    matches!(http_get(health, "/healthz").await, Ok((200, _)))
                });
                assert!(
                    healthy.await,
                    "server s{index} healthy again after its restart"
                );
            }
        }
    }
    let healed = SystemTime::now();
    let acked = load.await.expect("load");

    let js = &cluster.js;
    let distinct = || async {
        let outputs = outputs(js, subjects::INVENTORY_RESERVED).await;
        let mut orders: Vec<_> = outputs.into_iter().map(|(order, _)| order).collect();
        orders.sort();
        orders.dedup();
        orders.len() as u64
    };
    let all = eventually(PATIENCE, || async { distinct().await == ORDERS }).await;
    let outputs = outputs(js, subjects::INVENTORY_RESERVED).await;
    let inputs = outputs_stored_first(js, subjects::ORDER_CREATED).await;
    let mut per_order: BTreeMap<&str, Vec<SystemTime>> = BTreeMap::new();
    for (order, at) in &outputs {
        per_order.entry(order).or_default().push(*at);
    }
    let duplicates = outputs.len() - per_order.len();
    let lost = ORDERS as usize - per_order.len();
    let mut times: Vec<SystemTime> = outputs.iter().map(|(_, at)| *at).collect();
    times.sort();
    let (stall, stall_start) = times
        .windows(2)
        .filter_map(|pair| Some((pair[1].duration_since(pair[0]).ok()?, pair[0])))
        .max()
        .unwrap_or((Duration::ZERO, healed));
    // Where the stall began, against the heal (negative: before it).
    let stall_from_heal = match stall_start.duration_since(healed) {
        Ok(after) => after.as_secs_f64(),
        Err(before) => -before.duration().as_secs_f64(),
    };
    // Recovery: from the heal to the output of the last order acknowledged before it.
    let recovery = (0..ORDERS as usize)
        .filter(|&n| acked[n] <= healed)
        .filter_map(|n| per_order.get(sample_order(n as u64).data.order_id.as_str()))
        .flat_map(|ats| ats.iter().copied())
        .max()
        .and_then(|last| last.duration_since(healed).ok())
        .unwrap_or_default();
    let dead = dead_letters(js).await;
    let (processing, unstored) = stalls(&inputs, &per_order);
    println!(
        "{name}: inputs {ORDERS}, outputs {}, duplicates {duplicates}, lost {lost}, dead letters \
         {dead}, longest stall {:.2} s (from {stall_from_heal:+.1} s of the heal), longest \
         processing stall {:.2} s, longest time no input could be stored {:.2} s, recovery \
         after heal {:.2} s",
        outputs.len(),
        stall.as_secs_f64(),
        processing.as_secs_f64(),
        unstored.as_secs_f64(),
        recovery.as_secs_f64()
    );
    assert!(all, "{name}: every order reserved ({lost} lost)");
    assert_eq!(duplicates, 0, "{name}: every output stored once");
    assert_eq!(dead, 0, "{name}: nothing dead-lettered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minority_server_partitioned() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut cluster = cluster().await;
    // A follower of both the stream and the function's consumer (cutting a leader is the next
    // scenario).
    let (stream_leader, consumer_leader) = cluster.leaders().await;
    let follower = (0..SERVERS.len())
        .find(|&i| i != stream_leader && i != consumer_leader)
        .expect("three servers, two leaders at most");
    println!("leaders: stream s{stream_leader}, consumer s{consumer_leader}; cut s{follower}");
    let cut = cluster.nats.host(follower);
    let fault = Fault::Partition(cut, cluster.others(cut));
    scenario("minority server partitioned", &mut cluster, fault).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_and_consumer_leader_partitioned() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut cluster = cluster().await;
    let (stream_leader, consumer_leader) = cluster.leaders().await;
    println!("leaders: stream s{stream_leader}, consumer s{consumer_leader}");
    let cut = cluster.nats.host(stream_leader);
    let fault = Fault::Partition(cut, cluster.others(cut));
    scenario("stream leader partitioned", &mut cluster, fault).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_partitioned_from_every_server() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut cluster = cluster().await;
    let servers: Vec<usize> = (0..SERVERS.len()).map(|i| cluster.nats.host(i)).collect();
    let fault = Fault::Partition(PODS[0], servers);
    scenario("pod partitioned from every server", &mut cluster, fault).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_the_servers() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut cluster = cluster().await;
    scenario("rolling restart", &mut cluster, Fault::RollingRestart).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaf_link_cut_under_a_pod_using_the_hubs_domain() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut cluster = cluster_with(Edge::Leaf).await;
    let leaf = cluster.leaf.as_ref().expect("a leaf").host();
    let hub: Vec<usize> = (0..SERVERS.len()).map(|i| cluster.nats.host(i)).collect();
    scenario("leaf link cut", &mut cluster, Fault::Partition(leaf, hub)).await;

    // The commands take the domain too: through the leaf, `provision` makes the runtime's
    // streams and buckets at the hub and `dlq list` reads the hub's dead letters.
    let env = [
        ("NATS_URL", cluster.pod_url.as_str()),
        ("NATS_JS_DOMAIN", HUB_DOMAIN),
    ];
    for args in [&["provision"][..], &["dlq", "list", "reserve_inventory"]] {
        let output = common::run(args, &env);
        assert!(
            output.status.success(),
            "`{}` through the leaf: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    for name in [
        "KV_JETFN_ONCE",
        "KV_JETFN_ORDERED",
        "JETFN_DLQ",
        "JETFN_ADVISORIES",
    ] {
        cluster
            .js
            .get_stream(name)
            .await
            .unwrap_or_else(|error| panic!("{name} at the hub: {error}"));
    }

    // Everything the pod and the commands made is in the hub's domain: the leaf's own JetStream
    // holds nothing (without the domain the pod would have made its own copy of the stream there).
    let leaf_client = async_nats::connect(cluster.pod_url.as_str())
        .await
        .expect("connect to the leaf");
    let leaf_js = jetstream::with_domain(leaf_client, LEAF_DOMAIN);
    let account = leaf_js.query_account().await.expect("the leaf's JetStream");
    assert_eq!(account.streams, 0, "streams in the leaf's own domain");
    let stream = cluster
        .js
        .get_stream("SHOP")
        .await
        .expect("SHOP at the hub");
    let consumer = stream
        .consumer_info("reserve_inventory")
        .await
        .expect("the pod's consumer at the hub");
    assert_eq!(consumer.num_pending, 0, "the hub's backlog consumed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loss_and_delay_on_every_link() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut cluster = cluster_with(Edge::Relayed).await;
    // The delay applies only if nothing bypasses the relays: every route and every pod
    // connection a server holds comes from the relays' address (the test process's), none
    // straight from another server or a pod.
    let relays = cluster.hosts.gateway().to_string();
    for index in 0..SERVERS.len() {
        let monitoring = cluster.nats.monitoring(&cluster.hosts, index);
        for (path, list) in [("/routez", "routes"), ("/connz", "connections")] {
            let (status, body) = http_get(monitoring, path).await.expect(path);
            assert_eq!(status, 200, "s{index} {path}");
            let body: serde_json::Value = serde_json::from_str(&body).expect("JSON");
            let peers: Vec<&str> = body[list]
                .as_array()
                .expect(list)
                .iter()
                .map(|peer| peer["ip"].as_str().expect("ip"))
                .collect();
            assert!(
                peers.iter().all(|ip| *ip == relays),
                "s{index} {path}: {peers:?}, all through {relays}"
            );
            if list == "routes" {
                assert!(!peers.is_empty(), "s{index} has routes");
            }
        }
    }
    scenario("5 % loss + 50 ms delay", &mut cluster, Fault::LossAndDelay).await;
}
