//! An OTLP/HTTP receiver standing in for the collector, so exported spans cost what they cost.
//!
//! It runs on a thread of its own (with its own single-threaded runtime), and that thread's CPU
//! time is left out of the client's (see [`crate::measure::process_cpu`]): in production the
//! collector is another process; what the exporter spends encoding and sending is still counted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// `ExportTraceServiceRequest` down to its spans, left undecoded: enough to count them without
/// spending (much) sink time, which competes with the client for the cores.
#[derive(Clone, PartialEq, prost::Message)]
struct Export {
    #[prost(message, repeated, tag = "1")]
    resource_spans: Vec<ResourceSpans>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ResourceSpans {
    #[prost(message, repeated, tag = "2")]
    scope_spans: Vec<ScopeSpans>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ScopeSpans {
    #[prost(bytes = "bytes", repeated, tag = "2")]
    spans: Vec<bytes::Bytes>,
}

/// An OTLP/HTTP receiver that answers every request with 200 and counts what it got: requests,
/// bytes, and spans (each request is decoded).
pub(crate) struct OtlpSink {
    addr: std::net::SocketAddr,
    received: Arc<[AtomicU64; 3]>,
}

impl OtlpSink {
    /// Starts the receiver on its own thread; returns once it listens.
    pub(crate) fn start() -> Self {
        let received = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
        let counts = received.clone();
        let (ready, listening) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("otlp-sink".to_owned())
            .spawn(move || {
                crate::measure::exclude_this_thread();
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("sink runtime");
                runtime.block_on(async move {
                    let app = axum::Router::new().fallback(move |body: axum::body::Bytes| {
                        let counts = counts.clone();
                        async move {
                            use prost::Message;
                            let request =
                                Export::decode(body.clone()).expect("an OTLP trace export");
                            let spans: usize = request
                                .resource_spans
                                .iter()
                                .flat_map(|resource| &resource.scope_spans)
                                .map(|scope| scope.spans.len())
                                .sum();
                            counts[0].fetch_add(1, Ordering::Relaxed);
                            counts[1].fetch_add(body.len() as u64, Ordering::Relaxed);
                            counts[2].fetch_add(spans as u64, Ordering::Relaxed);
                            axum::http::StatusCode::OK
                        }
                    });
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                        .await
                        .expect("bind the OTLP sink");
                    let _ = ready.send(listener.local_addr().expect("sink address"));
                    let _ = axum::serve(listener, app).await;
                });
            })
            .expect("sink thread");
        let addr = listening.recv().expect("the sink listens");
        Self { addr, received }
    }

    pub(crate) fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Spans received so far.
    pub(crate) fn spans(&self) -> u64 {
        self.received[2].load(Ordering::Relaxed)
    }

    pub(crate) fn report(&self) -> String {
        format!(
            "OTLP sink: {} export requests, {} bytes, {} spans",
            self.received[0].load(Ordering::Relaxed),
            self.received[1].load(Ordering::Relaxed),
            self.spans()
        )
    }
}
