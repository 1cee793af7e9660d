//! Middleware: [`tower::Layer`]s around every call of a function, and [`from_fn`] to write one
//! as an async closure.
//!
//! [`App::layer`](crate::App::layer) takes any `tower::Layer` whose service is
//! `tower::Service<Call, Response = (), Error = HandlerError>`: tower's own
//! (`ConcurrencyLimitLayer`, `RateLimitLayer`, `ServiceBuilder` stacks) fit. The stack is built
//! once per function per process and driven as tower requires: `ready()` before every `call()`.
//! What the outermost layer returns is what the retry / dead-letter / breaker policy sees.
//!
//! ```no_run
//! use jetfn::middleware::{from_fn, Next};
//! use jetfn::{App, Call, HandlerError};
//!
//! #[derive(Clone)]
//! struct Tenant(String);
//!
//! fn main() -> std::process::ExitCode {
//!     App::new()
//!         .layer(from_fn(|mut call: Call, next: Next| async move {
//!             let Some(tenant) = call.headers().get("Tenant").map(|v| v.to_string()) else {
//!                 return Err(HandlerError::permanent("no Tenant header"));   // never handled
//!             };
//!             call.extensions_mut().insert(Tenant(tenant));   // ctx.extension::<Tenant>()
//!             next.run(call).await
//!         }))
//!         .main()
//! }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use tower::util::{BoxCloneService, BoxService};
use tower::{Layer, Service, ServiceExt};

use super::call::Call;
use crate::handler::HandlerError;

/// The future of a call through the stack.
pub(crate) type CallFuture = Pin<Box<dyn Future<Output = Result<(), HandlerError>> + Send>>;

/// What a user layer wraps: the rest of the stack, down to the handler (cloneable, so
/// `from_fn`'s `Next` and tower's own layers can take a copy per call).
pub(crate) type Inner = BoxCloneService<Call, (), HandlerError>;

/// One user layer, type-erased: it wraps the rest of the stack once, at start-up.
pub(crate) type LayerFn = Arc<dyn Fn(Inner) -> Shared + Send + Sync>;

/// Erases `layer` (as [`App::layer`](crate::App::layer) stores it).
pub(crate) fn erase<L>(layer: L) -> LayerFn
where
    L: Layer<Inner> + Send + Sync + 'static,
    L::Service: Service<Call, Response = (), Error = HandlerError> + Send + 'static,
    <L::Service as Service<Call>>::Future: Send + 'static,
{
    Arc::new(move |inner| Shared::new(layer.layer(inner)))
}

/// One layer's service, shared by every worker of the function: a call locks it, drives
/// `ready()` then `call()`, unlocks, and awaits the response outside the lock. So a service
/// that is not `Clone` (tower's `RateLimit`) is one instance per function, and a
/// `ConcurrencyLimit` bounds the function in this process.
#[derive(Clone)]
pub(crate) struct Shared(Arc<tokio::sync::Mutex<BoxService<Call, (), HandlerError>>>);

impl Shared {
    fn new<S>(service: S) -> Self
    where
        S: Service<Call, Response = (), Error = HandlerError> + Send + 'static,
        S::Future: Send + 'static,
    {
        Self(Arc::new(tokio::sync::Mutex::new(BoxService::new(service))))
    }

    /// Calls the service once it is ready.
    pub(crate) async fn run(&self, call: Call) -> Result<(), HandlerError> {
        let response = {
            // Uncontended (the common case): no await, so a call that finishes at once still
            // finishes on its first poll, inline in the pull loop (an awaited lock spends the
            // task's cooperative budget and may yield).
            let mut service = match self.0.try_lock() {
                Ok(service) => service,
                Err(_) => self.0.lock().await,
            };
            service.ready().await?;
            service.call(call)
        };
        response.await
    }
}

impl Service<Call> for Shared {
    type Response = ();
    type Error = HandlerError;
    type Future = CallFuture;

    fn poll_ready(&mut self, _: &mut TaskContext<'_>) -> Poll<Result<(), HandlerError>> {
        // Readiness is awaited inside `call`, under the lock.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: Call) -> CallFuture {
        let shared = self.clone();
        Box::pin(async move { shared.run(call).await })
    }
}

/// A middleware written as an async closure `|call: Call, next: Next| async move { .. }`: it may
/// change the call, run the rest of the stack with [`Next::run`] (or not: an `Err` rejects the
/// call without running the handler), and change the result.
///
/// See the [module docs](self) for an example.
pub fn from_fn<F>(f: F) -> FromFnLayer<F> {
    FromFnLayer { f }
}

/// The layer [`from_fn`] makes.
#[derive(Clone)]
pub struct FromFnLayer<F> {
    f: F,
}

impl<F> std::fmt::Debug for FromFnLayer<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FromFnLayer")
    }
}

impl<S, F: Clone> Layer<S> for FromFnLayer<F> {
    type Service = FromFn<F, S>;

    fn layer(&self, inner: S) -> Self::Service {
        FromFn {
            f: self.f.clone(),
            inner,
        }
    }
}

/// The service [`from_fn`] makes.
#[derive(Clone)]
pub struct FromFn<F, S> {
    f: F,
    inner: S,
}

impl<F, S> std::fmt::Debug for FromFn<F, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FromFn")
    }
}

impl<F, Fut, S> Service<Call> for FromFn<F, S>
where
    F: FnMut(Call, Next) -> Fut,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    S: Service<Call, Response = (), Error = HandlerError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = ();
    type Error = HandlerError;
    type Future = CallFuture;

    fn poll_ready(&mut self, _: &mut TaskContext<'_>) -> Poll<Result<(), HandlerError>> {
        // The inner service is made ready by `Next::run`.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: Call) -> CallFuture {
        let inner = self.inner.clone();
        let next = Next {
            inner: BoxCloneService::new(inner),
        };
        Box::pin((self.f)(call, next))
    }
}

/// The rest of the stack below a [`from_fn`] middleware, down to the handler.
pub struct Next {
    inner: BoxCloneService<Call, (), HandlerError>,
}

impl std::fmt::Debug for Next {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Next")
    }
}

impl Next {
    /// Runs the rest of the stack (and the handler) on `call`; its result is the handler's,
    /// or an inner layer's.
    pub async fn run(self, call: Call) -> Result<(), HandlerError> {
        let mut inner = self.inner;
        inner.ready().await?;
        inner.call(call).await
    }
}
