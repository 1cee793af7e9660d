//! The peer: RustStream (`ruststream` + `ruststream-nats`), written as its guide shows, reading
//! the same stream with the same no-op handler (the payload decoded as JSON and ignored).
//!
//! - default: a per-message handler `async fn(&T) -> HandlerOutcome` on a `JetStreamSubject`
//!   (the pull consumer's `messages()` stream, async-nats' batch of 200), on the benchmark's
//!   multi-threaded runtime;
//! - best: the same handler over `&[T]` with `.batch(1000)` (one pull fetch per batch), on a
//!   current-thread runtime of its own thread (its fastest form in our runs).
//!
//! Each run reads from a fresh durable consumer (`max_ack_pending` of the settings), timed from
//! its first handler run until N handled and no ack pending, like jetfn's rows.

use std::num::NonZeroUsize;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use ruststream_nats::prelude::*;
use serde::de::IgnoredAny;

use crate::measure::now_nanos;
use crate::settings::Settings;
use crate::sides::wait_all_acked;
use crate::{count_handled, BENCH_STREAM, BENCH_SUBJECT, FIRST_HANDLED, HANDLED};

/// The durable name and `max_ack_pending` of the next run's consumer (read when the app mounts
/// its subscriber).
static CONSUMER: Mutex<(String, i64)> = Mutex::new((String::new(), 0));

fn durable() -> String {
    CONSUMER.lock().expect("consumer settings").0.clone()
}

fn max_ack_pending() -> i64 {
    CONSUMER.lock().expect("consumer settings").1
}

#[subscriber(JetStreamSubject::new(BENCH_SUBJECT, BENCH_STREAM).durable(durable()).max_ack_pending(max_ack_pending()))]
async fn peer_noop(_event: &IgnoredAny) -> HandlerOutcome {
    count_handled();
    HandlerOutcome::ack()
}

#[subscriber(JetStreamSubject::new(BENCH_SUBJECT, BENCH_STREAM).durable(durable()).max_ack_pending(max_ack_pending()))]
async fn peer_batch(events: &[IgnoredAny]) -> HandlerOutcome {
    for _ in events {
        count_handled();
    }
    HandlerOutcome::ack()
}

/// How the peer runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Peer {
    /// A per-message handler on the shared multi-threaded runtime.
    Default,
    /// A batch handler (`.batch(n)`) on a current-thread runtime of its own.
    Batch(usize),
}

fn app(url: &str, peer: Peer) -> impl App {
    RustStream::new(AppInfo::new("bench-peer", "0.1.0")).with_broker(
        NatsBroker::new(url.to_owned()),
        move |b| match peer {
            Peer::Default => {
                b.include(peer_noop);
            }
            Peer::Batch(size) => {
                let size = NonZeroUsize::new(size).expect("a batch of at least 1");
                b.include(peer_batch.batch(size));
            }
        },
    )
}

/// One peer run: the steady time from its first handler run to N handled and no ack pending.
pub(crate) async fn peer_throughput(
    url: &str,
    control: &jetstream::Context,
    settings: &Settings,
    durable: &str,
    peer: Peer,
) -> Duration {
    HANDLED.store(0, Ordering::SeqCst);
    FIRST_HANDLED.store(0, Ordering::SeqCst);
    *CONSUMER.lock().expect("consumer settings") =
        (durable.to_owned(), i64::from(settings.max_ack_pending));
    let messages = settings.messages;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let url = url.to_owned();
    let running = async move {
        app(&url, peer)
            .run_until(async {
                let _ = stopped.await;
            })
            .await
            .expect("the peer app runs");
    };
    let app_done = match peer {
        Peer::Default => tokio::spawn(running),
        // A thread of its own (a panic there surfaces through the join handle).
        Peer::Batch(_) => tokio::task::spawn_blocking(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("current-thread runtime")
                .block_on(running);
        }),
    };
    let work = async {
        while HANDLED.load(Ordering::Relaxed) < messages {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // The consumer exists once the first message was handled.
        wait_all_acked(control, BENCH_STREAM, durable).await;
        now_nanos()
    };
    let wait = Instant::now();
    let finished = tokio::time::timeout(settings.patience(messages), work)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "peer run did not finish in time ({:.0?}): {} of {messages} handled",
                wait.elapsed(),
                HANDLED.load(Ordering::SeqCst)
            )
        });
    let _ = stop.send(());
    app_done.await.expect("the peer app stops");
    assert_eq!(
        HANDLED.load(Ordering::SeqCst),
        messages,
        "every message handled exactly once"
    );
    control
        .get_stream(BENCH_STREAM)
        .await
        .expect("bench stream")
        .delete_consumer(durable)
        .await
        .expect("delete the peer's durable");
    let first = FIRST_HANDLED.load(Ordering::SeqCst);
    Duration::from_nanos(finished.saturating_sub(first))
}
