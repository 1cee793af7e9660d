//! Faults under load, each counting every message: the server restarting under the runtime, and
//! the node leading the function's consumer dying in a 3-node cluster.

mod common;

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use async_nats::jetstream;
use common::{consumer_counts, publish_all, start, start_unready, stored, PATIENCE};
use jetfn::testing::{eventually, http_get, NatsServer};
use jetfn::{event_handler, Context, Event, HandlerError};
use jetfn_test_support::NatsCluster;

#[derive(serde::Deserialize)]
struct Job {
    n: u32,
}

fn jobs(range: std::ops::Range<u32>) -> impl Iterator<Item = String> {
    range.map(|n| format!(r#"{{"n":{n}}}"#))
}

// --- nats-server restarted under the runtime -------------------------------------------------

static RESTART_SEEN: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

#[event_handler(subject = "restart.jobs", ack_wait = "2s")]
async fn survives_restarts(_ctx: Context, event: Event<Job>) -> Result<(), HandlerError> {
    RESTART_SEEN.lock().expect("lock").insert(event.data.n);
    Ok(())
}

#[tokio::test]
async fn the_runtime_rides_out_a_server_restart() {
    let mut server = NatsServer::start();
    let runtime = start(&server, "survives_restarts", &[]).await;
    let addr = runtime.http_addr();
    let ready = || async { http_get(addr, "/ready").await.map(|r| r.0).ok() };
    {
        let js = jetstream::new(server.client().await);
        publish_all(&js, "restart.jobs", jobs(0..100)).await;
    }
    assert!(
        eventually(PATIENCE, || async {
            RESTART_SEEN.lock().expect("lock").len() == 100
        })
        .await
    );

    server.stop();
    assert!(
        eventually(PATIENCE, || async { ready().await == Some(503) }).await,
        "503 while the server is down"
    );
    server.restart();
    assert!(
        eventually(PATIENCE, || async { ready().await == Some(200) }).await,
        "200 again, same process"
    );

    let js = jetstream::new(server.client().await);
    publish_all(&js, "restart.jobs", jobs(100..200)).await;
    assert!(
        eventually(PATIENCE, || async {
            RESTART_SEEN.lock().expect("lock").len() == 200
        })
        .await,
        "processing resumed: {} of 200",
        RESTART_SEEN.lock().expect("lock").len()
    );
    assert!(
        eventually(PATIENCE, || async {
            consumer_counts(&js, "RESTART", "survives_restarts").await == (0, 0)
        })
        .await
    );
    runtime.stop().await;
}

// --- the consumer's leader dies in a 3-node cluster ----------------------------------------------

static CLUSTER_SEEN: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

#[event_handler(subject = "ha.jobs", stream = "HA", ack_wait = "2s")]
async fn highly_available(_ctx: Context, event: Event<Job>) -> Result<(), HandlerError> {
    tokio::time::sleep(Duration::from_millis(2)).await;
    CLUSTER_SEEN.lock().expect("lock").insert(event.data.n);
    Ok(())
}

/// Publishes until stored, retrying through the failover with the same message id.
async fn publish_surely(js: &jetstream::Context, subject: &str, n: u32) {
    for _ in 0..100 {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", format!("job-{n}"));
        let payload = format!(r#"{{"n":{n}}}"#);
        if let Ok(ack) = js
            .publish_with_headers(subject.to_owned(), headers, payload.into())
            .await
        {
            if ack.await.is_ok() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("job {n} could not be published");
}

#[tokio::test]
async fn killing_the_consumer_leader_of_an_r3_stream_loses_nothing() {
    let mut cluster = NatsCluster::start(3);
    assert!(
        cluster.wait_for_jetstream(PATIENCE).await,
        "cluster JetStream up"
    );
    let js = jetstream::new(cluster.client().await);
    let created = eventually(PATIENCE, || async {
        js.get_or_create_stream(jetstream::stream::Config {
            name: "HA".to_owned(),
            subjects: vec!["ha.>".to_owned()],
            num_replicas: 3,
            ..Default::default()
        })
        .await
        .is_ok()
    })
    .await;
    assert!(created, "R3 stream created");

    let runtime = start_unready(&cluster.urls(), "highly_available", &[]).await;
    assert!(runtime.wait_ready(PATIENCE).await);
    const N: u32 = 600;
    let publisher = {
        let js = js.clone();
        tokio::spawn(async move {
            for n in 0..N {
                publish_surely(&js, "ha.jobs", n).await;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    assert!(
        eventually(PATIENCE, || async {
            CLUSTER_SEEN.lock().expect("lock").len() >= 150
        })
        .await
    );
    let leader = {
        let mut consumer: jetstream::consumer::PullConsumer = js
            .get_stream("HA")
            .await
            .expect("stream")
            .get_consumer("highly_available")
            .await
            .expect("consumer");
        let info = consumer.info().await.expect("info");
        info.cluster
            .clone()
            .and_then(|c| c.leader)
            .expect("a consumer leader")
    };
    cluster.node_mut(&leader).expect("leader node").stop();
    println!(
        "failover: killed {leader}, the consumer's leader, after {} jobs",
        CLUSTER_SEEN.lock().expect("lock").len()
    );

    publisher.await.expect("publisher");
    assert!(
        eventually(PATIENCE * 3, || async {
            CLUSTER_SEEN.lock().expect("lock").len() == N as usize
        })
        .await,
        "every job handled: {} of {N}",
        CLUSTER_SEEN.lock().expect("lock").len()
    );
    assert!(
        eventually(PATIENCE, || async {
            consumer_counts(&js, "HA", "highly_available").await == (0, 0)
        })
        .await
    );
    runtime.stop().await;
}

// --- an output stream without a leader: ctx.publish waits for it ------------------------------

static ELECTION_RUNS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// One delivery only: a handler failure would dead-letter the job at once.
#[event_handler(subject = "elect.jobs", stream = "ELECT", max_deliver = 1)]
async fn publishes_through_an_election(
    ctx: Context,
    event: Event<Job>,
) -> Result<(), HandlerError> {
    ELECTION_RUNS.lock().expect("lock").push(event.data.n);
    ctx.publish("electout.done", &event.data.n).await?;
    Ok(())
}

/// The output stream (R1) loses its only server for 30 s: while it has no leader, a publish gets
/// "no responders", the answer a missing stream gets too. Before, jetfn read it as a missing
/// stream: it asked to create the stream (which existed), logged `created stream`, published
/// once more, failed the handler, and with `max_deliver = 1` dead-lettered the job. Now the
/// publish waits and is sent again inside `ctx.publish`: no handler failure, no create request,
/// every output stored once.
#[tokio::test]
async fn a_publish_to_a_stream_without_a_leader_waits_instead_of_creating_it() {
    let mut cluster = NatsCluster::start(3);
    assert!(
        cluster.wait_for_jetstream(PATIENCE).await,
        "cluster JetStream up"
    );
    let client = cluster.client().await;
    let js = jetstream::new(client.clone());
    let create = |name: &str, subject: &str, replicas| {
        let js = js.clone();
        let config = jetstream::stream::Config {
            name: name.to_owned(),
            subjects: vec![subject.to_owned()],
            num_replicas: replicas,
            ..Default::default()
        };
        async move {
            eventually(PATIENCE, || async {
                js.get_or_create_stream(config.clone()).await.is_ok()
            })
            .await
        }
    };
    assert!(create("ELECT", "elect.>", 3).await, "input stream (R3)");
    assert!(
        create("ELECTOUT", "electout.>", 1).await,
        "output stream (R1)"
    );
    let host = js
        .get_stream("ELECTOUT")
        .await
        .expect("stream")
        .info()
        .await
        .expect("info")
        .cluster
        .clone()
        .and_then(|c| c.leader)
        .expect("the output stream's server");
    // The pod talks to a server that stays up.
    let other = (0..3)
        .map(|i| format!("node{i}"))
        .find(|name| *name != host)
        .expect("another node");
    let url = cluster.node_mut(&other).expect("node").url();
    let mut creates = client
        .subscribe("$JS.API.STREAM.CREATE.>")
        .await
        .expect("subscribe");
    let runtime = start_unready(&url, "publishes_through_an_election", &[]).await;
    assert!(runtime.wait_ready(PATIENCE).await);
    publish_all(&js, "elect.jobs", jobs(0..10)).await;
    assert!(
        eventually(PATIENCE, || async {
            stored(&js, "ELECTOUT", "electout.done").await == 10
        })
        .await
    );

    cluster.node_mut(&host).expect("node").stop();
    for n in 10..20 {
        // The input stream may be electing a leader too.
        publish_surely(&js, "elect.jobs", n).await;
    }
    // The handlers run and wait in ctx.publish while the stream has no server.
    assert!(
        eventually(PATIENCE, || async {
            ELECTION_RUNS.lock().expect("lock").len() >= 20
        })
        .await
    );
    // A 30 s election (the outage; not a proof of anything by itself): the handlers wait in
    // ctx.publish, their messages kept alive, none dead-lettered.
    tokio::time::sleep(Duration::from_secs(30)).await;
    cluster.node_mut(&host).expect("node").restart();
    // Back once it answers stream info again (`stored` fails the test on any other error).
    for stream in ["ELECTOUT", "JETFN_DLQ"] {
        let back = eventually(PATIENCE, || async {
            match js.get_stream(stream).await {
                Ok(mut stream) => stream.info().await.is_ok(),
                Err(_) => false,
            }
        });
        assert!(back.await, "{stream} answers again");
    }

    assert!(
        eventually(PATIENCE * 2, || async {
            stored(&js, "ELECTOUT", "electout.done").await == 20
        })
        .await,
        "every output stored once: {}",
        stored(&js, "ELECTOUT", "electout.done").await
    );
    assert!(
        eventually(PATIENCE, || async {
            consumer_counts(&js, "ELECT", "publishes_through_an_election").await == (0, 0)
        })
        .await
    );
    assert_eq!(
        stored(&js, "JETFN_DLQ", "jetfn.dlq.publishes_through_an_election").await,
        0
    );
    let runs = ELECTION_RUNS.lock().expect("lock").clone();
    assert_eq!(runs.len(), 20, "one run per job, no retry: {runs:?}");
    client.flush().await.expect("flush");
    let create_requests: Vec<String> = std::iter::from_fn(|| {
        futures::FutureExt::now_or_never(futures::StreamExt::next(&mut creates)).flatten()
    })
    .map(|m| m.subject.to_string())
    .filter(|s| s.ends_with(".ELECTOUT"))
    .collect();
    assert!(
        create_requests.is_empty(),
        "no stream creation for an existing stream: {create_requests:?}"
    );
    runtime.stop().await;
}
