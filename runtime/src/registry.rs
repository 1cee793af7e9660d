//! The functions linked into this binary.
//!
//! Each `#[event_handler]` emits one `static` [`HandlerSpec`] into the distributed slice
//! [`HANDLERS`]; [`Registry::collect`] reads the slice at start-up, sorts it by name and rejects
//! duplicate names.
//!
//! We use `linkme` rather than `inventory`: the slice is built by the linker, so there is no code
//! running before `main`, no allocation, and the descriptors are plain `static` data that the
//! compiler checks like any other constant.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;

use crate::app_state::StateType;
use crate::batch::BatchFn;
use crate::codec::{Incoming, PayloadKind};
use crate::handler::{Context, HandlerError};

/// The future a registered handler returns.
pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<(), HandlerError>> + Send + 'static>>;

/// The type-erased entry point of a registered handler: decodes the payload, then calls the
/// user's function.
pub(crate) type HandlerFn = fn(Context, Incoming) -> HandlerFuture;

/// Every `#[event_handler]` in the binary.
#[linkme::distributed_slice]
pub static HANDLERS: [HandlerSpec];

/// The future a registered request function returns: the encoded reply.
pub type ReplyFuture = Pin<Box<dyn Future<Output = Result<Bytes, HandlerError>> + Send + 'static>>;

/// The type-erased entry point of a request function: decodes the request, calls the user's
/// function, encodes its reply.
pub(crate) type RequestFn = fn(Context, Incoming) -> ReplyFuture;

/// Every `#[request_handler]` in the binary.
#[linkme::distributed_slice]
pub static REQUESTS: [RequestSpec];

/// The static description of one request function, written by `#[request_handler]`.
#[derive(Debug)]
pub struct RequestSpec {
    /// The function's name: the `name` attribute, else the Rust fn's name.
    pub name: &'static str,
    /// The subject it answers (core NATS, queue group `jetfn`).
    pub subject: &'static str,
    /// The optional attributes as written; only `timeout` and `max_workers` apply.
    pub attrs: Attributes,
    /// The type-erased entry point.
    pub handler: RequestFn,
    /// What the request payload is (for `asyncapi`).
    pub payload: fn() -> PayloadSpec,
    /// What the reply is (for `asyncapi`).
    pub reply: fn() -> PayloadSpec,
    /// The `State<T>` types the function takes, in argument order.
    pub states: &'static [StateType],
    /// Where the function is defined, for error messages.
    pub location: Location,
}

/// The static description of one registered function, written by `#[event_handler]`.
#[derive(Debug)]
pub struct HandlerSpec {
    /// The function's name: the `name` attribute, else the Rust fn's name.
    pub name: &'static str,
    /// The subject the function consumes.
    pub subject: &'static str,
    /// The optional attributes, as written on the function.
    pub attrs: Attributes,
    /// The type-erased entry point.
    pub handler: HandlerFn,
    /// For a batch function (`batch = N`): the entry point taking up to `N` messages.
    pub batch: Option<BatchFn>,
    /// What the payload is (for `asyncapi`); a function so that `#[event_handler]` can choose
    /// it on the concrete type, and so it costs nothing until asked.
    pub payload: fn() -> PayloadSpec,
    /// The `State<T>` types the function takes, in argument order.
    pub states: &'static [StateType],
    /// Where the function is defined, for error messages.
    pub location: Location,
}

/// The optional attributes of `#[event_handler]`, validated at compile time.
///
/// `None` means "not written on the function": the configured or built-in default applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attributes {
    /// `schedule`: the schedule of a scheduled function (cron, `@hourly`..., `@every 30s`).
    pub schedule: Option<&'static str>,
    /// `schedule_ttl`: how long each tick of a scheduled function lives.
    pub schedule_ttl: Option<Duration>,
    /// `stream`: the stream to bind to.
    pub stream: Option<&'static str>,
    /// `max_deliver`: deliveries before dead-lettering.
    pub max_deliver: Option<u32>,
    /// `backoff = "initial..max"`: the retry delays.
    pub backoff: Option<(Duration, Duration)>,
    /// `ack_wait`: how long the server waits for an ack before redelivering.
    pub ack_wait: Option<Duration>,
    /// `timeout`: the bound on one handler run.
    pub timeout: Option<Duration>,
    /// `min_workers`: the fewest concurrent handler runs kept ready.
    pub min_workers: Option<u32>,
    /// `max_workers`: the most concurrent handler runs.
    pub max_workers: Option<u32>,
    /// `max_ack_pending`: the most unacknowledged messages the consumer hands out.
    pub max_ack_pending: Option<u32>,
    /// `dlq`: the dead-letter subject.
    pub dlq: Option<&'static str>,
    /// `breaker_failures`: consecutive failures that open the breaker (0 = off).
    pub breaker_failures: Option<u32>,
    /// `breaker_cooldown`: how long the breaker stays open.
    pub breaker_cooldown: Option<Duration>,
    /// `batch`: the most events per call of a batch function.
    pub batch: Option<u32>,
    /// `batch_wait`: how long a batch waits to fill up.
    pub batch_wait: Option<Duration>,
    /// `once_retention`: how long the records of once-only steps live.
    pub once_retention: Option<Duration>,
    /// `ordered_by`: `"subject"` or `"header:<Name>"`, for an ordered function.
    pub ordered_by: Option<&'static str>,
}

impl Attributes {
    /// No attribute written: every value comes from configuration or defaults.
    pub const NONE: Self = Self {
        schedule: None,
        schedule_ttl: None,
        stream: None,
        max_deliver: None,
        backoff: None,
        ack_wait: None,
        timeout: None,
        min_workers: None,
        max_workers: None,
        max_ack_pending: None,
        dlq: None,
        breaker_failures: None,
        breaker_cooldown: None,
        batch: None,
        batch_wait: None,
        once_retention: None,
        ordered_by: None,
    };
}

/// A function's payload type, as `asyncapi` describes it.
#[derive(Debug, Clone, Copy)]
pub struct PayloadSpec {
    /// The payload type (`std::any::type_name`).
    pub type_name: &'static str,
    /// How the payload is encoded: the codec the payload type chose.
    pub kind: PayloadKind,
    /// The payload's JSON Schema (draft 07), when the type implements `schemars::JsonSchema`
    /// and the cargo feature `schema` is on. Its definitions sit under `/components/schemas`.
    pub schema: Option<fn() -> serde_json::Value>,
}

/// Where a function is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// `module_path!()` at the function.
    pub module_path: &'static str,
    /// `file!()` at the function.
    pub file: &'static str,
    /// `line!()` at the function.
    pub line: u32,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// The registry could not be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegistryError {
    /// Two functions share a name.
    #[error("two functions are named `{name}`: one at {first}, one at {second}; give one of them another `name = \"...\"`")]
    DuplicateName {
        /// The shared name.
        name: &'static str,
        /// Where the first is defined.
        first: Location,
        /// Where the second is defined.
        second: Location,
    },
}

/// The registered functions, sorted by name, names unique across event and request functions.
#[derive(Debug, Clone)]
pub struct Registry {
    specs: Vec<&'static HandlerSpec>,
    requests: Vec<&'static RequestSpec>,
}

impl Registry {
    /// Every function registered in this binary with `#[event_handler]` or `#[request_handler]`.
    pub fn collect() -> Result<Self, RegistryError> {
        Self::from_parts(HANDLERS.iter(), REQUESTS.iter())
    }

    /// A registry of the given event function descriptors (the seam tests use).
    #[doc(hidden)] // returns or takes the macro's descriptors (`__private`)
    pub fn from_specs(
        specs: impl IntoIterator<Item = &'static HandlerSpec>,
    ) -> Result<Self, RegistryError> {
        Self::from_parts(specs, [])
    }

    /// A registry of the given event and request function descriptors.
    #[doc(hidden)] // returns or takes the macro's descriptors (`__private`)
    pub fn from_parts(
        specs: impl IntoIterator<Item = &'static HandlerSpec>,
        requests: impl IntoIterator<Item = &'static RequestSpec>,
    ) -> Result<Self, RegistryError> {
        let mut seen: BTreeMap<&'static str, Location> = BTreeMap::new();
        let mut check = |name: &'static str, location: Location| match seen.insert(name, location) {
            Some(first) => {
                let (first, second) = ordered(first, location);
                Err(RegistryError::DuplicateName {
                    name,
                    first,
                    second,
                })
            }
            None => Ok(()),
        };
        let mut events = BTreeMap::new();
        for spec in specs {
            check(spec.name, spec.location)?;
            events.insert(spec.name, spec);
        }
        let mut by_name = BTreeMap::new();
        for spec in requests {
            check(spec.name, spec.location)?;
            by_name.insert(spec.name, spec);
        }
        Ok(Self {
            specs: events.into_values().collect(),
            requests: by_name.into_values().collect(),
        })
    }

    /// The request functions, sorted by name.
    #[doc(hidden)] // returns or takes the macro's descriptors (`__private`)
    pub fn requests(&self) -> impl ExactSizeIterator<Item = &'static RequestSpec> + '_ {
        self.requests.iter().copied()
    }

    /// The request function named `name`.
    #[doc(hidden)] // returns or takes the macro's descriptors (`__private`)
    pub fn request(&self, name: &str) -> Option<&'static RequestSpec> {
        self.requests
            .binary_search_by(|spec| spec.name.cmp(name))
            .ok()
            .map(|index| self.requests[index])
    }

    /// The event functions, sorted by name.
    #[doc(hidden)] // returns or takes the macro's descriptors (`__private`)
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &'static HandlerSpec> + '_ {
        self.specs.iter().copied()
    }

    /// The event function named `name`.
    #[doc(hidden)] // returns or takes the macro's descriptors (`__private`)
    pub fn get(&self, name: &str) -> Option<&'static HandlerSpec> {
        self.specs
            .binary_search_by(|spec| spec.name.cmp(name))
            .ok()
            .map(|index| self.specs[index])
    }

    /// The names of every function, event and request, sorted.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        let mut names: Vec<_> = self.specs.iter().map(|spec| spec.name).collect();
        names.extend(self.requests.iter().map(|spec| spec.name));
        names.sort_unstable();
        names.into_iter()
    }

    /// How many functions are registered, event and request.
    pub fn len(&self) -> usize {
        self.specs.len() + self.requests.len()
    }

    /// Whether no function is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn ordered(a: Location, b: Location) -> (Location, Location) {
    if (a.file, a.line) <= (b.file, b.line) {
        (a, b)
    } else {
        (b, a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noop(_: Context, _: Incoming) -> HandlerFuture {
        Box::pin(async { Ok(()) })
    }

    fn json() -> PayloadSpec {
        PayloadSpec {
            type_name: "serde_json::Value",
            kind: PayloadKind::Json,
            schema: None,
        }
    }

    const fn spec(name: &'static str, line: u32) -> HandlerSpec {
        HandlerSpec {
            name,
            subject: "orders.created",
            attrs: Attributes::NONE,
            handler: noop,
            batch: None,
            payload: json,
            states: &[],
            location: Location {
                module_path: "tests",
                file: "src/orders.rs",
                line,
            },
        }
    }

    static A: HandlerSpec = spec("a", 10);
    static B: HandlerSpec = spec("b", 20);
    static A_AGAIN: HandlerSpec = spec("a", 30);

    #[test]
    fn sorts_by_name() {
        let registry = Registry::from_specs([&B, &A]).expect("unique names");
        assert_eq!(registry.names().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(registry.get("b").map(|s| s.location.line), Some(20));
        assert!(registry.get("c").is_none());
    }

    fn no_reply(_: Context, _: Incoming) -> ReplyFuture {
        Box::pin(async { Ok(Bytes::new()) })
    }

    static REQUEST_A: RequestSpec = RequestSpec {
        name: "a",
        subject: "inventory.check",
        attrs: Attributes::NONE,
        handler: no_reply,
        payload: json,
        states: &[],
        reply: json,
        location: Location {
            module_path: "tests",
            file: "src/stock.rs",
            line: 5,
        },
    };

    #[test]
    fn event_and_request_functions_share_one_namespace() {
        let error = Registry::from_parts([&A, &B], [&REQUEST_A]).expect_err("duplicate");
        assert_eq!(
            error,
            RegistryError::DuplicateName {
                name: "a",
                first: A.location,
                second: REQUEST_A.location,
            }
        );
        let registry = Registry::from_parts([&B], [&REQUEST_A]).expect("unique");
        assert_eq!(registry.names().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(registry.len(), 2);
        assert!(registry.get("a").is_none() && registry.request("a").is_some());
    }

    #[test]
    fn duplicate_names_name_both_places() {
        let error = Registry::from_specs([&A_AGAIN, &B, &A]).expect_err("duplicate");
        assert_eq!(
            error,
            RegistryError::DuplicateName {
                name: "a",
                first: A.location,
                second: A_AGAIN.location,
            }
        );
        let text = error.to_string();
        assert!(text.contains("src/orders.rs:10") && text.contains("src/orders.rs:30"));
    }
}
