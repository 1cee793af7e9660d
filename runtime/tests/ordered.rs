//! Ordered functions (`ordered_by`) against a real nats-server, with the pods as processes:
//! 20 keys x 25 steps (5-25 ms each, ~4 % failing twice, two poison steps) over two pods while
//! the lease holder is SIGTERMed, a third pod joins and the next holder is killed with SIGKILL.
//! Checked from the handlers' own start/end records (published without dedup ids): per key
//! every step done in publish order, no two runs of a key overlapping in time, poison steps
//! dead-lettered and their keys going on. And header keys, with a message that has none.
//!
//! The pods are this test binary run again as a child (`ordered_child`, an ignored test that
//! only does anything when the parent sets `JETFN_ORDERED_CHILD_URL`).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::jetstream;
use common::{publish_all, stored, PATIENCE};
use jetfn::testing::{eventually, NatsServer};
use jetfn::{event_handler, Context, Event, HandlerError};
use serde::{Deserialize, Serialize};
use tokio::process::{Child, Command};
use tokio::sync::OnceCell;

const CHILD_URL: &str = "JETFN_ORDERED_CHILD_URL";
const CHILD_POD: &str = "JETFN_ORDERED_CHILD_POD";
const KEYS: u32 = 20;
const STEPS: u32 = 25;

/// One step of one key, as published.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Step {
    key: u32,
    step: u32,
    millis: u64,
    /// Fails on its first two attempts.
    fail_twice: bool,
    /// Fails on every attempt: dead-lettered after `max_deliver`.
    poison: bool,
}

/// What a handler run records, published to `ordlog` (JetStream, no dedup id).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    key: u32,
    step: u32,
    phase: String,
    pod: String,
    attempt: u32,
    nanos: u64,
}

fn nanos_now() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    u64::try_from(since.as_nanos()).expect("nanos")
}

static RECORDS: OnceCell<jetstream::Context> = OnceCell::const_new();

async fn record(step: &Step, phase: &str, attempt: u32) -> Result<(), HandlerError> {
    record_at(step, phase, attempt, nanos_now()).await
}

async fn record_at(step: &Step, phase: &str, attempt: u32, nanos: u64) -> Result<(), HandlerError> {
    let js = RECORDS
        .get_or_init(|| async {
            let url = std::env::var(CHILD_URL).expect("child url");
            jetstream::new(async_nats::connect(url).await.expect("records connection"))
        })
        .await;
    let record = Record {
        key: step.key,
        step: step.step,
        phase: phase.to_owned(),
        pod: std::env::var(CHILD_POD).unwrap_or_default(),
        attempt,
        nanos,
    };
    let payload = serde_json::to_vec(&record).expect("json");
    js.publish("ordlog", payload.into())
        .await
        .map_err(HandlerError::retryable)?
        .await
        .map_err(HandlerError::retryable)?;
    Ok(())
}

#[event_handler(
    subject = "ordseq.*",
    ordered_by = "subject",
    ack_wait = "2s",
    backoff = "50ms..100ms",
    max_deliver = 3,
    max_workers = 8
)]
async fn apply_step(_ctx: Context, event: Event<Step>) -> Result<(), HandlerError> {
    let attempt = event.attempt();
    let step = event.data;
    record(&step, "start", attempt).await?;
    // A run its pod aborts (a lease it could not renew in time) records when it stopped.
    let mut aborted = Aborted {
        step: step.clone(),
        attempt,
        armed: true,
    };
    tokio::time::sleep(Duration::from_millis(step.millis)).await;
    let failed = step.poison || (step.fail_twice && attempt <= 2);
    let phase = if failed { "fail" } else { "end" };
    let recorded = record(&step, phase, attempt).await;
    aborted.armed = false;
    recorded?;
    if failed {
        return Err(HandlerError::retryable("this step fails"));
    }
    Ok(())
}

/// Records `aborted` (with the time it was dropped) for a run dropped before it finished.
struct Aborted {
    step: Step,
    attempt: u32,
    armed: bool,
}

impl Drop for Aborted {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (step, attempt, nanos) = (self.step.clone(), self.attempt, nanos_now());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = record_at(&step, "aborted", attempt, nanos).await;
            });
        }
    }
}

#[test]
#[ignore = "a pod of ordered_steps_survive_sigterm_a_join_and_sigkill"]
fn ordered_child() {
    let Ok(url) = std::env::var(CHILD_URL) else {
        return;
    };
    let tokio = tokio::runtime::Runtime::new().expect("tokio");
    tokio.block_on(async {
        let runtime = common::start_unready(&url, "apply_step", &[]).await;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        // Runs until the parent stops it; never longer than two minutes.
        tokio::select! {
            _ = term.recv() => {}
            () = tokio::time::sleep(Duration::from_secs(120)) => {}
        }
        runtime.stop().await;
    });
}

fn pod(server: &NatsServer, name: &str) -> Child {
    Command::new(std::env::current_exe().expect("test binary"))
        .args(["ordered_child", "--exact", "--ignored", "--test-threads=1"])
        .env(CHILD_URL, server.url())
        .env(CHILD_POD, name)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn a pod")
}

/// The steps to publish, key by key in step order, interleaved: ~4 % fail twice, two poison.
fn steps() -> Vec<Step> {
    let mut steps = Vec::new();
    for step in 0..STEPS {
        for key in 0..KEYS {
            let n = step * KEYS + key;
            steps.push(Step {
                key,
                step,
                millis: 5 + u64::from(n * 7919 % 21),
                fail_twice: n % 25 == 7,
                poison: (key, step) == (3, 10) || (key, step) == (11, 17),
            });
        }
    }
    steps
}

/// Every record stored so far (read without acks: more than any `max_ack_pending`).
async fn records(js: &jetstream::Context) -> Vec<Record> {
    use futures::StreamExt;
    let stream = js.get_stream("ORDLOG").await.expect("stream");
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::Config {
            ack_policy: jetstream::consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .expect("consumer");
    let count = consumer.cached_info().num_pending as usize;
    let mut found = Vec::with_capacity(count);
    while found.len() < count {
        let mut batch = consumer
            .fetch()
            .max_messages(count - found.len())
            .expires(Duration::from_secs(1))
            .messages()
            .await
            .expect("fetch");
        while let Some(message) = batch.next().await {
            let message = message.expect("message");
            found.push(serde_json::from_slice(&message.payload).expect("a record"));
        }
    }
    found
}

/// The highest step any key has ended, and the pod that recorded last.
fn progress(records: &[Record]) -> (Option<u32>, Option<String>) {
    let step = records
        .iter()
        .filter(|r| r.phase == "end")
        .map(|r| r.step)
        .max();
    let last = records
        .iter()
        .max_by_key(|r| r.nanos)
        .map(|r| r.pod.clone());
    (step, last)
}

/// Waits until some key has ended `step`; the pod that recorded last then.
async fn wait_for_step(js: &jetstream::Context, step: u32) -> String {
    let found = Mutex::new(None);
    let reached = eventually(PATIENCE * 2, || async {
        let (reached, pod) = progress(&records(js).await);
        *found.lock().expect("lock") = pod;
        reached.is_some_and(|reached| reached >= step)
    })
    .await;
    assert!(reached, "no key reached step {step}");
    found.into_inner().expect("lock").expect("a pod recorded")
}

#[tokio::test]
async fn ordered_steps_survive_sigterm_a_join_and_sigkill() {
    let server = NatsServer::start();
    let js = jetstream::new(server.client().await);
    for (name, subject) in [("ORDSEQ", "ordseq.*"), ("ORDLOG", "ordlog")] {
        js.create_stream(jetstream::stream::Config {
            name: name.to_owned(),
            subjects: vec![subject.to_owned()],
            ..Default::default()
        })
        .await
        .expect("stream");
    }
    let mut pods: HashMap<String, Child> = HashMap::new();
    for name in ["a", "b"] {
        pods.insert(name.to_owned(), pod(&server, name));
    }
    let steps = steps();
    let started = Instant::now();
    for step in &steps {
        let payload = serde_json::to_vec(step).expect("json");
        js.publish(format!("ordseq.k{}", step.key), payload.into())
            .await
            .expect("publish")
            .await
            .expect("publish ack");
    }

    // At step 4 the holder is SIGTERMed; at step 8 a third pod joins; at step 16 the holder
    // then is killed.
    let holder = wait_for_step(&js, 4).await;
    let term = pods.remove(&holder).expect("the holder is a pod");
    let pid = term.id().expect("pid");
    assert!(Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await
        .expect("kill")
        .success());
    pods.insert("c".to_owned(), pod(&server, "c"));
    let _ = wait_for_step(&js, 8).await;
    let holder = wait_for_step(&js, 16).await;
    let mut killed = pods.remove(&holder).expect("the holder is a pod");
    killed.kill().await.expect("SIGKILL the holder");
    let killed_at = nanos_now();

    let expected_ends = steps.iter().filter(|s| !s.poison).count();
    let done = eventually(PATIENCE * 3, || async {
        let records = records(&js).await;
        let ends: std::collections::HashSet<_> = records
            .iter()
            .filter(|r| r.phase == "end")
            .map(|r| (r.key, r.step))
            .collect();
        ends.len() == expected_ends && stored(&js, "JETFN_DLQ", "jetfn.dlq.apply_step").await == 2
    })
    .await;
    let took = started.elapsed();
    let records = records(&js).await;
    assert!(
        done,
        "every step ended and two were dead-lettered ({} records)",
        records.len()
    );
    check(&records, &holder, killed_at, took);
}

/// Per key: runs never overlap, steps end in publish order, each once (twice only when the first
/// end is the killed pod's, before it died, and its ack died with it).
fn check(records: &[Record], killed: &str, killed_at: u64, took: Duration) {
    let mut by_key: BTreeMap<u32, Vec<&Record>> = BTreeMap::new();
    for record in records {
        by_key.entry(record.key).or_default().push(record);
    }
    let mut serial = Duration::ZERO;
    let (mut reruns, mut ended_twice) = (0, 0);
    for (key, mut runs) in by_key {
        runs.sort_by_key(|r| r.nanos);
        // Overlap: after a start, the next record of the key is that run's end, fail or
        // aborted (its pod lost the lease and dropped it), or the run died with the killed pod
        // (then the next start comes after the kill).
        let mut open: Option<&Record> = None;
        let mut ended: Vec<(u32, &str)> = Vec::new();
        for record in &runs {
            match (record.phase.as_str(), open) {
                ("start", None) => open = Some(record),
                ("start", Some(running)) => {
                    assert!(
                        running.pod == killed && record.nanos > killed_at,
                        "key {key}: step {} started at {} while step {} ran on {}",
                        record.step,
                        record.nanos,
                        running.step,
                        running.pod
                    );
                    reruns += 1;
                    open = Some(record);
                }
                (_, Some(running)) => {
                    assert_eq!(
                        (running.step, &running.pod),
                        (record.step, &record.pod),
                        "key {key}"
                    );
                    serial += Duration::from_nanos(record.nanos - running.nanos);
                    if record.phase == "end" {
                        ended.push((record.step, record.pod.as_str()));
                    }
                    open = None;
                }
                (_, None) => panic!(
                    "key {key}: {} of step {} without a start",
                    record.phase, record.step
                ),
            }
        }
        for pair in ended.windows(2) {
            if pair[0].0 == pair[1].0 {
                assert_eq!(
                    pair[0].1, killed,
                    "key {key}: step {} ended twice",
                    pair[0].0
                );
            }
        }
        let mut deduped: Vec<u32> = ended.iter().map(|(step, _)| *step).collect();
        deduped.dedup();
        let expected: Vec<u32> = (0..STEPS)
            .filter(|s| !((key, *s) == (3, 10) || (key, *s) == (11, 17)))
            .collect();
        assert_eq!(deduped, expected, "key {key}: steps ended in publish order");
        let twice = ended.len() - deduped.len();
        assert!(twice <= 1, "key {key}: {twice} steps ended twice");
        ended_twice += twice;
    }
    println!(
        "ordered: {KEYS} keys x {STEPS} steps in {took:?}; handler time (serial) {serial:?}; \
         runs cut by the kill and run again: {reruns}; steps ended twice (their ack died with the \
         killed pod): {ended_twice}"
    );
    assert!(
        took < serial,
        "keys ran in parallel: {took:?} against {serial:?} serial"
    );
}

// --- header keys ------------------------------------------------------------------------------

static HEADER_SEEN: Mutex<Vec<(String, u64)>> = Mutex::new(Vec::new());

#[event_handler(
    subject = "ordhdr.events",
    ordered_by = "header:Order-Id",
    backoff = "50ms..50ms"
)]
async fn by_header(_ctx: Context, event: Event<u64>) -> Result<(), HandlerError> {
    let order = event
        .headers()
        .get("Order-Id")
        .map(|v| v.as_str().to_owned())
        .unwrap_or_default();
    let n = event.data;
    tokio::time::sleep(Duration::from_millis(5 + n % 7)).await;
    if n == 3 && event.attempt() == 1 {
        return Err(HandlerError::retryable("fails once: its key waits"));
    }
    HEADER_SEEN.lock().expect("lock").push((order, n));
    Ok(())
}

#[tokio::test]
async fn header_keys_keep_order_and_a_message_without_one_is_dead_lettered() {
    let server = NatsServer::start();
    let js = jetstream::new(server.client().await);
    js.create_stream(jetstream::stream::Config {
        name: "ORDHDR".to_owned(),
        subjects: vec!["ordhdr.events".to_owned()],
        ..Default::default()
    })
    .await
    .expect("stream");
    let runtime = common::start(&server, "by_header", &[]).await;
    for n in 0..30u64 {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Order-Id", format!("order-{}", n % 3).as_str());
        js.publish_with_headers("ordhdr.events", headers, n.to_string().into())
            .await
            .expect("publish")
            .await
            .expect("ack");
    }
    publish_all(&js, "ordhdr.events", ["99".to_owned()]).await; // no Order-Id
    let done = eventually(PATIENCE, || async {
        HEADER_SEEN.lock().expect("lock").len() == 30
            && stored(&js, "JETFN_DLQ", "jetfn.dlq.by_header").await == 1
    })
    .await;
    assert!(done, "30 handled, the keyless one dead-lettered");
    let seen = HEADER_SEEN.lock().expect("lock").clone();
    for order in 0..3 {
        let mine: Vec<u64> = seen
            .iter()
            .filter(|(o, _)| *o == format!("order-{order}"))
            .map(|(_, n)| *n)
            .collect();
        let expected: Vec<u64> = (0..30).filter(|n| n % 3 == order).collect();
        assert_eq!(
            mine, expected,
            "order-{order} in publish order (3 failed once and held its key)"
        );
    }
    let letter = &common::messages(&js, "JETFN_DLQ", "jetfn.dlq.by_header").await[0];
    assert_eq!(common::header(letter, "Jetfn-Error-Kind"), "permanent");
    runtime.stop().await;
}

// --- leader changes in an R3 cluster ----------------------------------------------------------

/// (key, step, started, ended) of every run.
static HA_RUNS: Mutex<Vec<(u32, u32, Instant, Instant)>> = Mutex::new(Vec::new());

#[derive(Debug, Serialize, Deserialize)]
struct HaStep {
    key: u32,
    step: u32,
}

#[event_handler(
    subject = "ordha.*",
    ordered_by = "subject",
    ack_wait = "3s",
    max_workers = 8
)]
async fn ordered_through_elections(
    _ctx: Context,
    event: Event<HaStep>,
) -> Result<(), HandlerError> {
    let started = Instant::now();
    tokio::time::sleep(Duration::from_millis(2)).await;
    let HaStep { key, step } = event.data;
    HA_RUNS
        .lock()
        .expect("lock")
        .push((key, step, started, Instant::now()));
    Ok(())
}

/// Publishes until the cluster acknowledges it (elections make a publish fail for a moment).
async fn publish_surely(js: &jetstream::Context, key: u32, step: u32) {
    let payload = serde_json::to_vec(&HaStep { key, step }).expect("json");
    for _ in 0..100 {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", format!("ha-{key}-{step}").as_str());
        let sent = js
            .publish_with_headers(format!("ordha.k{key}"), headers, payload.clone().into())
            .await;
        if let Ok(ack) = sent {
            if ack.await.is_ok() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("step {step} of key {key} could not be published");
}

/// Asks the cluster to elect another leader of `what` (`CONSUMER.LEADER.STEPDOWN.<stream>.<name>`
/// or `STREAM.LEADER.STEPDOWN.<stream>`).
async fn step_down(js: &jetstream::Context, what: &str) {
    let done = eventually(PATIENCE, || async {
        let answer: Result<serde_json::Value, _> =
            js.request(what.to_owned(), &serde_json::json!({})).await;
        answer.is_ok_and(|answer| answer["success"] == true)
    })
    .await;
    assert!(done, "{what}");
}

#[tokio::test]
async fn ordered_keys_keep_order_through_consumer_and_stream_leader_changes() {
    const HA_KEYS: u32 = 10;
    const HA_STEPS: u32 = 40;
    let cluster = jetfn_test_support::NatsCluster::start(3);
    assert!(
        cluster.wait_for_jetstream(PATIENCE).await,
        "cluster JetStream up"
    );
    let js = jetstream::new(cluster.client().await);
    let created = eventually(PATIENCE, || async {
        js.get_or_create_stream(jetstream::stream::Config {
            name: "ORDHA".to_owned(),
            subjects: vec!["ordha.*".to_owned()],
            num_replicas: 3,
            ..Default::default()
        })
        .await
        .is_ok()
    })
    .await;
    assert!(created, "R3 stream");
    let runtime = common::start_unready(&cluster.urls(), "ordered_through_elections", &[]).await;
    assert!(runtime.wait_ready(PATIENCE).await, "ready");
    // The lease outlives the loss of a server, as the stream does.
    let mut leases = js
        .get_stream("KV_JETFN_ORDERED")
        .await
        .expect("lease bucket");
    let replicas = leases.info().await.expect("info").config.num_replicas;
    assert_eq!(replicas, 3, "the lease bucket is replicated in a cluster");
    let publisher = {
        let js = js.clone();
        tokio::spawn(async move {
            for step in 0..HA_STEPS {
                for key in 0..HA_KEYS {
                    publish_surely(&js, key, step).await;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let runs = || HA_RUNS.lock().expect("lock").len();
    assert!(eventually(PATIENCE, || async { runs() >= 100 }).await);
    step_down(
        &js,
        "CONSUMER.LEADER.STEPDOWN.ORDHA.ordered_through_elections",
    )
    .await;
    assert!(eventually(PATIENCE, || async { runs() >= 200 }).await);
    step_down(&js, "STREAM.LEADER.STEPDOWN.ORDHA").await;
    publisher.await.expect("publisher");

    let all = (HA_KEYS * HA_STEPS) as usize;
    let done = eventually(PATIENCE * 2, || async {
        let seen: std::collections::HashSet<_> = HA_RUNS
            .lock()
            .expect("lock")
            .iter()
            .map(|r| (r.0, r.1))
            .collect();
        seen.len() == all
    })
    .await;
    assert!(done, "every step ran");
    runtime.stop().await;
    let runs = HA_RUNS.lock().expect("lock").clone();
    let mut again = 0;
    for key in 0..HA_KEYS {
        let mut mine: Vec<_> = runs.iter().filter(|r| r.0 == key).collect();
        mine.sort_by_key(|r| r.2);
        for pair in mine.windows(2) {
            assert!(
                pair[1].2 >= pair[0].3,
                "key {key}: runs of steps {} and {} overlap",
                pair[0].1,
                pair[1].1
            );
            // In order; the same step again only right after itself (an ack not confirmed).
            assert!(
                pair[1].1 == pair[0].1 + 1 || pair[1].1 == pair[0].1,
                "key {key}: step {} after step {}",
                pair[1].1,
                pair[0].1
            );
            again += usize::from(pair[1].1 == pair[0].1);
        }
    }
    println!(
        "ordered through two leader changes: {} runs of {all} steps ({again} again)",
        runs.len()
    );
}
