//! What a test [`Context`](crate::Context) records instead of publishing (feature `testing`;
//! `jetfn::testing::TestContext` is its face).

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::SystemTime;

use async_nats::HeaderMap;
use bytes::Bytes;

/// One output a handler published through a test [`Context`](crate::Context).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Output {
    /// The subject it was published to.
    pub subject: String,
    /// Its payload (JSON for `publish`, as given for `publish_bytes`).
    pub payload: Bytes,
    /// Its headers: the derived `Nats-Msg-Id` and the trace context.
    pub headers: HeaderMap,
    /// For `publish_after` / `publish_at`: when it would be published.
    pub at: Option<SystemTime>,
}

impl Output {
    /// The payload decoded from JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.payload)
    }
}

/// What a test context records, and which subjects it fails.
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    outputs: Mutex<Vec<Output>>,
    failing: Mutex<HashSet<String>>,
}

impl Recorder {
    pub(crate) fn record(
        &self,
        subject: &str,
        headers: HeaderMap,
        payload: Bytes,
        at: Option<SystemTime>,
    ) -> Result<(), String> {
        let failing = self
            .failing
            .lock()
            .map(|failing| failing.contains(subject))
            .unwrap_or(false);
        if failing {
            return Err("the test context was told to fail publishes to it".to_owned());
        }
        if let Ok(mut outputs) = self.outputs.lock() {
            outputs.push(Output {
                subject: subject.to_owned(),
                payload,
                headers,
                at,
            });
        }
        Ok(())
    }
}

impl Recorder {
    /// Publishes to `subject` fail from now on.
    pub(crate) fn fail(&self, subject: &str) {
        if let Ok(mut failing) = self.failing.lock() {
            failing.insert(subject.to_owned());
        }
    }

    /// Every output so far, in order.
    pub(crate) fn outputs(&self) -> Vec<Output> {
        self.outputs
            .lock()
            .map(|outputs| outputs.clone())
            .unwrap_or_default()
    }
}
