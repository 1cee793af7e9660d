//! A rolling restart of two pods under load, at the binary level: two `functions run` processes
//! share the consumers; while orders flow, each in turn is SIGTERMed (it drains and exits 0) and
//! replaced. Every order completes, and every output is stored once: counted by distinct order
//! and by total.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer};
use common::{free_addr, ready, stored, terminate, PATIENCE, SHOP_FUNCTIONS};
use functions::{sample_order, subjects, ShopEvent};
use futures::StreamExt;
use jetfn::testing::{eventually, NatsServer};

const ORDERS: u64 = 400;

/// One pod: the shop binary's `run`, with a payment gateway given room to recover.
fn pod(url: &str, addr: SocketAddr) -> tokio::process::Child {
    tokio::process::Command::new(common::BINARY)
        .arg("run")
        .env("NATS_URL", url)
        .env("JETFN_HTTP_ADDR", addr.to_string())
        .env("JETFN_SHUTDOWN_TIMEOUT", "10s")
        .env_remove("JETFN_FUNCTIONS")
        .env("JETFN__FUNCTIONS__CHARGE_PAYMENT__MAX_DELIVER", "30")
        .env("JETFN__FUNCTIONS__CHARGE_PAYMENT__BACKOFF", "50ms..200ms")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn a pod")
}

/// Every message stored on `subject` in SHOP: order id -> how many.
async fn outputs(js: &jetstream::Context, subject: &str) -> BTreeMap<String, u64> {
    let stream = js.get_stream("SHOP").await.expect("SHOP");
    let reader = stream
        .create_consumer(consumer::pull::Config {
            filter_subject: subject.to_owned(),
            ack_policy: consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .expect("reader");
    let mut counts = BTreeMap::new();
    let mut total = 0;
    let expected = reader.cached_info().num_pending;
    let mut messages = reader.messages().await.expect("messages");
    while total < expected {
        let message = tokio::time::timeout(PATIENCE, messages.next())
            .await
            .expect("every stored message read")
            .expect("a message")
            .expect("no error");
        let event: ShopEvent<serde_json::Value> =
            serde_json::from_slice(&message.payload).expect("a shop event");
        *counts.entry(event.correlation_id).or_insert(0) += 1;
        total += 1;
    }
    counts
}

#[tokio::test]
async fn a_rolling_restart_of_two_pods_under_load_loses_nothing_and_stores_outputs_once() {
    let server = NatsServer::start();
    let js = jetstream::new(server.client().await);
    let mut addrs = [free_addr(), free_addr()];
    let mut pods = [pod(&server.url(), addrs[0]), pod(&server.url(), addrs[1])];
    for addr in addrs {
        assert!(ready(addr).await, "pod on {addr} ready");
    }

    // Orders arrive steadily through the whole restart.
    let publisher = {
        let js = js.clone();
        tokio::spawn(async move {
            for n in 0..ORDERS {
                let order = serde_json::to_vec(&sample_order(n)).expect("JSON");
                js.publish(subjects::ORDER_CREATED, order.into())
                    .await
                    .expect("publish")
                    .await
                    .expect("ack");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };

    let started = Instant::now();
    for (index, threshold) in [(0, ORDERS / 5), (1, ORDERS / 2)] {
        assert!(
            eventually(PATIENCE, || async {
                stored(&js, subjects::NOTIFICATION_SENT).await >= threshold
            })
            .await,
            "orders flowing"
        );
        let done = stored(&js, subjects::NOTIFICATION_SENT).await;
        let replacement_addr = free_addr();
        let replacement = pod(&server.url(), replacement_addr);
        let mut old = std::mem::replace(&mut pods[index], replacement);
        let status = terminate(&mut old).await;
        assert!(
            status.success(),
            "pod {index} drained and exited 0: {status}"
        );
        addrs[index] = replacement_addr;
        assert!(ready(replacement_addr).await, "replacement {index} ready");
        println!(
            "rolling restart: pod {index} SIGTERMed after {done} of {ORDERS} orders ({:.1} s in), \
             replaced",
            started.elapsed().as_secs_f64()
        );
    }
    publisher.await.expect("every order published");

    assert!(
        eventually(PATIENCE * 2, || async {
            stored(&js, subjects::NOTIFICATION_SENT).await == ORDERS
        })
        .await,
        "every order completed: {} of {ORDERS}",
        stored(&js, subjects::NOTIFICATION_SENT).await
    );
    for name in SHOP_FUNCTIONS {
        let stream = js.get_stream("SHOP").await.expect("SHOP");
        assert!(
            eventually(PATIENCE, || async {
                let mut consumer: consumer::PullConsumer =
                    stream.get_consumer(name).await.expect("consumer");
                let info = consumer.info().await.expect("info");
                info.num_pending == 0 && info.num_ack_pending == 0
            })
            .await,
            "{name}: everything acked"
        );
    }
    for subject in [
        subjects::INVENTORY_RESERVED,
        subjects::PAYMENT_COMPLETED,
        subjects::NOTIFICATION_SENT,
    ] {
        let counts = outputs(&js, subject).await;
        let total: u64 = counts.values().sum();
        let doubled: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
        assert_eq!(counts.len() as u64, ORDERS, "{subject}: one per order");
        assert_eq!(total, ORDERS, "{subject}: no duplicates: {doubled:?}");
    }
    println!(
        "rolling restart: {ORDERS} of {ORDERS} orders completed; each output stored once \
         ({ORDERS} distinct = {ORDERS} stored, for each of 3 output subjects)"
    );
    for mut pod in pods {
        assert!(terminate(&mut pod).await.success());
    }
}
