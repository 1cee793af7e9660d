//! An OTLP/HTTP receiver in the benchmark process, so exported spans cost what they cost.

use std::sync::atomic::{AtomicU64, Ordering};

/// An OTLP/HTTP receiver that answers every request with 200 and counts what it got.
pub(crate) struct OtlpSink {
    addr: std::net::SocketAddr,
    received: std::sync::Arc<(AtomicU64, AtomicU64)>,
}

impl OtlpSink {
    pub(crate) async fn start() -> Self {
        let received = std::sync::Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
        let counts = received.clone();
        let app = axum::Router::new().fallback(move |body: axum::body::Bytes| {
            let counts = counts.clone();
            async move {
                counts.0.fetch_add(1, Ordering::Relaxed);
                counts.1.fetch_add(body.len() as u64, Ordering::Relaxed);
                axum::http::StatusCode::OK
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the OTLP sink");
        let addr = listener.local_addr().expect("sink address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, received }
    }

    pub(crate) fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub(crate) fn report(&self) -> String {
        format!(
            "OTLP sink: {} export requests, {} bytes",
            self.received.0.load(Ordering::Relaxed),
            self.received.1.load(Ordering::Relaxed)
        )
    }
}
