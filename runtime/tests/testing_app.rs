//! `jetfn::testing::TestApp` and `TestContext`, as a user's tests drive their functions: state,
//! replaced state, retries followed to their end, dead letters by kind, requests, outputs, and
//! assertions that bite.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use jetfn::testing::{TestApp, TestContext};
use jetfn::{event_handler, request_handler, App, Context, Event, HandlerError, Request, State};

#[derive(Debug, serde::Serialize, serde::Deserialize, PartialEq)]
struct Order {
    id: String,
    amount: u32,
}

#[derive(Debug, serde::Serialize, serde::Deserialize, PartialEq)]
struct Charged {
    id: String,
    by: String,
}

/// A payment gateway: fails its first `failures` calls.
struct Gateway {
    name: String,
    failures: AtomicU32,
}

impl Gateway {
    fn new(name: &str, failures: u32) -> Self {
        Self {
            name: name.to_owned(),
            failures: AtomicU32::new(failures),
        }
    }

    fn charge(&self) -> Result<String, HandlerError> {
        let left = self.failures.load(Ordering::SeqCst);
        if left > 0 {
            self.failures.store(left - 1, Ordering::SeqCst);
            return Err(HandlerError::retryable("gateway unavailable"));
        }
        Ok(self.name.clone())
    }
}

#[event_handler(subject = "tapp.orders", max_deliver = 4)]
async fn tapp_charge(
    ctx: Context,
    event: Event<Order>,
    gateway: State<Gateway>,
) -> Result<(), HandlerError> {
    if event.data.amount == 0 {
        return Err(HandlerError::permanent("nothing to charge"));
    }
    let by = gateway.charge()?;
    let charged = Charged {
        id: event.data.id.clone(),
        by,
    };
    ctx.publish("tapp.charged", &charged).await?;
    Ok(())
}

fn production() -> App {
    App::new().state(Gateway::new("production", 0))
}

#[tokio::test]
async fn state_replaced_by_the_test_and_retries_followed_to_the_ack() {
    let app = TestApp::new()
        .app(production())
        .state(Gateway::new("fake", 2))
        .functions(["tapp_charge"])
        .start()
        .await;
    let started = Instant::now();
    let order = Order {
        id: "o-1".into(),
        amount: 5,
    };
    let settled = app.publish("tapp.orders", &order).await;
    println!(
        "a message retried twice settled in {:?} (shortened backoff)",
        started.elapsed()
    );
    assert!(settled.is_acked(), "{settled:?}");
    assert!(!settled.is_dead_lettered());
    assert_eq!(settled.attempts(), 3);
    assert_eq!(settled.error(), Some("gateway unavailable"));
    let charged: Vec<Charged> = app.published("tapp.charged").await;
    assert_eq!(
        charged,
        [Charged {
            id: "o-1".into(),
            by: "fake".into()
        }]
    );
    assert!(app.dead_letters("tapp_charge").await.is_empty());
}

#[tokio::test]
async fn a_failing_function_settles_dead_lettered_exhausted_after_max_deliver() {
    let app = TestApp::new()
        .app(App::new().state(Gateway::new("down", u32::MAX)))
        .functions(["tapp_charge"])
        .start()
        .await;
    let settled = app
        .publish(
            "tapp.orders",
            &Order {
                id: "o-2".into(),
                amount: 5,
            },
        )
        .await;
    assert!(settled.is_dead_lettered());
    assert!(
        !settled.is_acked(),
        "a dead-lettered message is not 'acked'"
    );
    assert_eq!(settled.attempts(), 4, "max_deliver");
    assert_eq!(settled.dead_letter_kind(), Some("exhausted"));
    let letters = app.dead_letters("tapp_charge").await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].error_kind(), "exhausted");
    assert_eq!(
        serde_json::from_slice::<Order>(letters[0].payload()).expect("json"),
        Order {
            id: "o-2".into(),
            amount: 5
        }
    );
    assert_eq!(
        letters[0]
            .headers()
            .get("Jetfn-Deliveries")
            .map(|v| v.as_str()),
        Some("4")
    );
    assert!(app.published::<Charged>("tapp.charged").await.is_empty());
}

#[tokio::test]
#[should_panic(expected = "a dead-lettered message is reported as such")]
async fn asserting_that_a_dead_lettered_message_was_acked_fails() {
    let app = TestApp::new()
        .app(production())
        .functions(["tapp_charge"])
        .start()
        .await;
    let settled = app
        .publish(
            "tapp.orders",
            &Order {
                id: "o-3".into(),
                amount: 0,
            },
        )
        .await;
    assert_eq!(settled.dead_letter_kind(), Some("permanent"));
    assert!(
        settled.is_acked(),
        "a dead-lettered message is reported as such"
    );
}

#[tokio::test]
async fn an_undecodable_payload_settles_dead_lettered_decode_and_publishes_nothing() {
    let app = TestApp::new()
        .app(production())
        .functions(["tapp_charge"])
        .start()
        .await;
    let settled = app.publish_bytes("tapp.orders", "not json").await;
    assert_eq!(settled.dead_letter_kind(), Some("decode"));
    assert_eq!(settled.attempts(), 1);
    assert!(app.published::<Charged>("tapp.charged").await.is_empty());
}

#[request_handler(subject = "quotes.tapp")]
async fn tapp_quote(
    _ctx: Context,
    req: Request<Order>,
    gateway: State<Gateway>,
) -> Result<Charged, HandlerError> {
    if req.data.amount == 0 {
        return Err(HandlerError::permanent("free orders need no quote"));
    }
    Ok(Charged {
        id: req.data.id.clone(),
        by: gateway.name.clone(),
    })
}

#[tokio::test]
async fn a_request_function_answers_through_request() {
    let app = TestApp::new()
        .app(production())
        .functions(["tapp_quote"])
        .start()
        .await;
    let quote: Charged = app
        .request(
            "quotes.tapp",
            &Order {
                id: "q".into(),
                amount: 1,
            },
        )
        .await
        .expect("reply");
    assert_eq!(quote.by, "production");
    let refused = app
        .request::<Charged>(
            "quotes.tapp",
            &Order {
                id: "q".into(),
                amount: 0,
            },
        )
        .await
        .expect_err("a 400");
    assert!(
        matches!(
            refused,
            jetfn::testing::RequestError::Service { code: 400, .. }
        ),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_handler_called_directly_with_a_test_context() {
    let test = TestContext::new("tapp_charge").for_event("ORDERS", 41);
    let event = Event::new(Order {
        id: "o-9".into(),
        amount: 3,
    })
    .with_subject("tapp.orders")
    .with_attempt(2)
    .with_stream_sequence("ORDERS", 41);
    assert_eq!((event.attempt(), event.stream_sequence()), (2, 41));
    let gateway = State::new(Gateway::new("unit", 0));
    tapp_charge(test.context(), event, gateway)
        .await
        .expect("ok");
    let outputs = test.published("tapp.charged");
    assert_eq!(outputs.len(), 1);
    assert_eq!(
        outputs[0].json::<Charged>().expect("json"),
        Charged {
            id: "o-9".into(),
            by: "unit".into()
        }
    );
    let id = outputs[0].headers.get("Nats-Msg-Id").map(|v| v.to_string());
    assert_eq!(id.as_deref(), Some("jetfn:tapp_charge:ORDERS:41:0"));
    // A publish told to fail fails the handler, retryably.
    let failing = TestContext::new("tapp_charge").fail_publish("tapp.charged");
    let error = tapp_charge(
        failing.context(),
        Event::new(Order {
            id: "o-10".into(),
            amount: 3,
        }),
        State::new(Gateway::new("unit", 0)),
    )
    .await
    .expect_err("the publish failed");
    assert_eq!(error.kind(), jetfn::FailureKind::Retryable);
    assert!(failing.outputs().is_empty());
}
