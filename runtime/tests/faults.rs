//! Faults under load, each counting every message: the server restarting under the runtime, and
//! the node leading the function's consumer dying in a 3-node cluster.

mod common;

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use async_nats::jetstream;
use common::{consumer_counts, publish_all, start, start_unready, PATIENCE};
use jetfn::testing::{eventually, http_get, NatsCluster, NatsServer};
use jetfn::{event_handler, Context, Event, HandlerError};

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
async fn publish_surely(js: &jetstream::Context, n: u32) {
    for _ in 0..100 {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", format!("job-{n}"));
        let payload = format!(r#"{{"n":{n}}}"#);
        if let Ok(ack) = js
            .publish_with_headers("ha.jobs", headers, payload.into())
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
                publish_surely(&js, n).await;
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
