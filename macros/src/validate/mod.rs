//! Step 2, validate: turn the parsed attribute and the user's signature into a [`Handler`], or
//! into every error found, each spanned on the offending token.
//!
//! The grammar checks (subjects, names, durations, backoff) are pure functions over `&str` with
//! typed errors, in [`grammar`].

use std::fmt;

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::{
    FnArg, GenericArgument, Ident, ItemFn, LitInt, PathArguments, ReturnType, Signature, Type,
};

use crate::args::{Arg, Args, Key, Kind, Value};

mod grammar;

use grammar::{
    check_name, check_schedule, check_subject, parse_backoff, parse_duration, Wildcards,
};

/// Errors collected so that one build reports every mistake.
#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(errors) => errors.combine(error),
            None => self.0 = Some(error),
        }
    }
}

/// Which attribute is being validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Macro {
    /// `#[event_handler]`: `Event<T>`, `Result<(), HandlerError>`.
    Event,
    /// `#[request_handler]`: `Request<T>`, `Result<R, HandlerError>`.
    Request,
}

impl Macro {
    /// The attribute, for messages.
    pub(crate) fn attr(self) -> &'static str {
        match self {
            Macro::Event => "`#[event_handler]`",
            Macro::Request => "`#[request_handler]`",
        }
    }

    /// The keys it takes.
    pub(crate) fn keys(self) -> &'static [Key] {
        match self {
            Macro::Event => &Key::ALL,
            Macro::Request => crate::args::REQUEST_KEYS,
        }
    }

    /// The input type's name: `Event` or `Request`.
    fn input(self) -> &'static str {
        match self {
            Macro::Event => "Event",
            Macro::Request => "Request",
        }
    }

    /// The expected signature, for messages.
    fn signature(self) -> &'static str {
        match self {
            Macro::Event => {
                "`async fn NAME(ctx: Context, event: Event<T>) -> Result<(), HandlerError>`"
            }
            Macro::Request => {
                "`async fn NAME(ctx: Context, req: Request<T>) -> Result<R, HandlerError>`"
            }
        }
    }

    fn params(self) -> &'static str {
        match self {
            Macro::Event => "`ctx: Context, event: Event<T>`",
            Macro::Request => "`ctx: Context, req: Request<T>`",
        }
    }
}

/// A validated `#[event_handler]`: everything the expansion needs, nothing left to check.
pub(crate) struct Handler {
    /// The function's name (the `name` key, else the fn ident).
    pub(crate) name: String,
    pub(crate) subject: String,
    /// The optional keys that were written, in the order written.
    pub(crate) attrs: Vec<(Key, Attr)>,
    /// `T` in `event: Event<T>` (or `req: Request<T>`), as the user wrote it.
    pub(crate) payload: Type,
    /// `R` in `Result<R, HandlerError>`, for a request function.
    pub(crate) reply: Option<Type>,
    /// A batch function (`batch = N`, `batch: Batch<T>`).
    pub(crate) batch: bool,
    /// `T` of each `State<T>` argument after the event, in order.
    pub(crate) states: Vec<Type>,
}

/// The value of one optional key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Attr {
    Str(String),
    U32(u32),
    /// A duration in whole milliseconds.
    Millis(u64),
    /// `backoff`: initial and max, in milliseconds.
    Backoff(u64, u64),
}

/// Validates the attribute and the function it is on.
pub(crate) fn handler(
    kind: Macro,
    args: syn::Result<Args>,
    function: &ItemFn,
) -> syn::Result<Handler> {
    let mut errors = Errors::default();
    let batch = args.as_ref().is_ok_and(|args| args.given(Key::Batch));
    let checked = match args {
        Ok(args) => attributes(kind, &args, &mut errors),
        // The attribute list did not parse: saying more about it would only add noise.
        Err(error) => {
            errors.push(error);
            None
        }
    };
    let name = checked.as_ref().and_then(|checked| match &checked.name {
        Some(name) => Some(name.clone()),
        None => default_name(&function.sig.ident, &mut errors),
    });
    // A scheduled function consumes its ticks.
    let subject = checked.as_ref().zip(name.as_ref()).map(|(checked, name)| {
        checked
            .subject
            .clone()
            .unwrap_or_else(|| format!("jetfn.tick.{name}"))
    });
    let (payload, states) = signature(kind, function, batch, &mut errors);
    let reply = match kind {
        Macro::Event => None,
        Macro::Request => reply_type(&function.sig, &mut errors),
    };
    match (checked, name.zip(subject), payload, errors.0) {
        (Some(checked), Some((name, subject)), Some(payload), None) => Ok(Handler {
            name,
            subject,
            attrs: checked.attrs,
            payload,
            reply,
            batch,
            states,
        }),
        (.., Some(error)) => Err(error),
        // Every `None` above comes with an error; this is only a safety net.
        _ => Err(syn::Error::new(
            Span::call_site(),
            format!("invalid {}", kind.attr()),
        )),
    }
}

/// The attribute, checked.
struct Checked {
    /// `None` for a scheduled function.
    subject: Option<String>,
    name: Option<String>,
    /// The optional keys, in the order written.
    attrs: Vec<(Key, Attr)>,
}

/// Checks every entry of the attribute, reporting errors in the order of its tokens; `None`
/// after an error.
fn attributes(kind: Macro, args: &Args, errors: &mut Errors) -> Option<Checked> {
    let before = errors.0.is_some();
    if !args.given(Key::Subject) && !args.given(Key::Schedule) {
        let message = match kind {
            Macro::Event => {
                "missing `subject`: write `#[event_handler(subject = \"orders.created\")]`, \
                 or `schedule = \"@every 30s\"` for a scheduled function"
            }
            Macro::Request => {
                "missing `subject`: write `#[request_handler(subject = \"inventory.check\")]`"
            }
        };
        errors.push(syn::Error::new(Span::call_site(), message));
    }
    let (mut subject, mut name, mut attrs) = (None, None, Vec::new());
    for arg in &args.list {
        match arg {
            Arg::Rejected(_, error) => errors.push(error.clone()),
            Arg::Given(key, value) => match (key, check(*key, value)) {
                (Key::Subject, Ok(Attr::Str(text))) => subject = Some(text),
                (Key::Name, Ok(Attr::Str(text))) => name = Some(text),
                (_, Ok(attr)) => attrs.push((*key, attr)),
                (_, Err(error)) => errors.push(error),
            },
        }
    }
    let find = |key| attrs.iter().find(|(k, _)| *k == key).map(|(_, v)| v);
    if let (Some(Attr::U32(min)), Some(Attr::U32(max))) =
        (find(Key::MinWorkers), find(Key::MaxWorkers))
    {
        if max < min {
            let message = format!("`max_workers` ({max}) must be at least `min_workers` ({min})");
            let span = args.list.iter().find_map(|arg| match arg {
                Arg::Given(Key::MaxWorkers, Value::Int(lit)) => Some(lit.span()),
                _ => None,
            });
            errors.push(syn::Error::new(
                span.unwrap_or_else(Span::call_site),
                message,
            ));
        }
    }
    let lit_of = |key| {
        args.list.iter().find_map(|arg| match arg {
            Arg::Given(k, Value::Str(lit)) if *k == key => Some(lit.span()),
            Arg::Given(k, Value::Int(lit)) if *k == key => Some(lit.span()),
            _ => None,
        })
    };
    if args.given(Key::Schedule) {
        if args.given(Key::Subject) {
            errors.push(syn::Error::new(
                lit_of(Key::Schedule).unwrap_or_else(Span::call_site),
                "a function has either `subject` or `schedule`, not both: a scheduled \
                 function consumes its ticks (`jetfn.tick.<name>`); remove one",
            ));
        }
        if let Some(span) = lit_of(Key::Stream) {
            errors.push(syn::Error::new(
                span,
                "a scheduled function reads its ticks from the stream `JETFN_SCHEDULES`; \
                 remove `stream`",
            ));
        }
    } else if let Some(span) = lit_of(Key::ScheduleTtl) {
        errors.push(syn::Error::new(
            span,
            "`schedule_ttl` applies to a scheduled function only; add `schedule = \"...\"` \
             or remove it",
        ));
    }
    if let (Some(span), false) = (lit_of(Key::BatchWait), args.given(Key::Batch)) {
        errors.push(syn::Error::new(
            span,
            "`batch_wait` applies to batch functions: add `batch = N` and take `batch: Batch<T>`",
        ));
    }
    if let Some(span) = lit_of(Key::OrderedBy) {
        let other = if args.given(Key::Batch) {
            Some("`ordered_by` cannot be used with `batch`: an ordered function handles one message of a key at a time; remove one")
        } else if args.given(Key::Schedule) {
            Some("`ordered_by` applies to functions with a `subject`: a scheduled function's ticks are already one at a time")
        } else {
            None
        };
        if let Some(message) = other {
            errors.push(syn::Error::new(span, message));
        }
    }
    if errors.0.is_some() != before {
        return None;
    }
    if subject.is_none() && !args.given(Key::Schedule) {
        return None;
    }
    Some(Checked {
        subject,
        name,
        attrs,
    })
}

/// Checks the literal of one key.
fn check(key: Key, value: &Value) -> syn::Result<Attr> {
    let lit = match value {
        Value::Int(lit) => return integer(key, lit).map(Attr::U32),
        Value::Str(lit) => lit,
    };
    let invalid = |reason: &dyn fmt::Display| {
        syn::Error::new_spanned(lit, format!("invalid `{}`: {reason}", key.as_str()))
    };
    let text = lit.value();
    match (key, key.kind()) {
        (_, Kind::Duration) => parse_duration(&text)
            .map(Attr::Millis)
            .map_err(|e| invalid(&e)),
        (_, Kind::Schedule) => check_schedule(&text)
            .map_err(|e| invalid(&e))
            .map(|()| Attr::Str(text)),
        (_, Kind::OrderedBy) => jetfn_grammar::order::OrderedBy::parse(&text)
            .map_err(|e| invalid(&e))
            .map(|_| Attr::Str(text)),
        (_, Kind::Backoff) => parse_backoff(&text)
            .map(|(initial, max)| Attr::Backoff(initial, max))
            .map_err(|e| invalid(&e)),
        (Key::Subject, _) => check_subject(&text, Wildcards::Allowed)
            .map_err(|e| invalid(&e))
            .map(|()| Attr::Str(text)),
        (Key::Dlq, _) => check_subject(&text, Wildcards::Forbidden)
            .map_err(|e| invalid(&e))
            .map(|()| Attr::Str(text)),
        (_, Kind::Str | Kind::Int) => check_name(&text)
            .map_err(|e| invalid(&e))
            .map(|()| Attr::Str(text)),
    }
}

/// The fn's name, when it is a valid consumer name.
fn default_name(ident: &Ident, errors: &mut Errors) -> Option<String> {
    let name = ident.unraw().to_string();
    match check_name(&name) {
        Ok(()) => Some(name),
        Err(error) => {
            let message = format!(
                "the function's name cannot be a consumer name: {error}; \
                 choose one with `name = \"...\"`"
            );
            errors.push(syn::Error::new_spanned(ident, message));
            None
        }
    }
}

fn integer(key: Key, lit: &LitInt) -> syn::Result<u32> {
    let value = lit.base10_parse::<u32>().map_err(|_| {
        syn::Error::new_spanned(lit, format!("`{}` must fit in 32 bits", key.as_str()))
    })?;
    if value == 0 && key != Key::BreakerFailures {
        let message = format!("`{}` must be at least 1", key.as_str());
        return Err(syn::Error::new_spanned(lit, message));
    }
    Ok(value)
}

/// The expected signature of a batch function, for error messages.
const BATCH_SIGNATURE: &str =
    "`async fn NAME(ctx: Context, batch: Batch<T>) -> Result<(), BatchError>`";

/// Checks the signature; returns the payload type `T` of `event: Event<T>` (`req: Request<T>`,
/// `batch: Batch<T>` for a batch function), and the `T` of each `State<T>` after it.
fn signature(
    kind: Macro,
    function: &ItemFn,
    batch: bool,
    errors: &mut Errors,
) -> (Option<Type>, Vec<Type>) {
    let sig = &function.sig;
    let attr = kind.attr();
    if sig.asyncness.is_none() {
        let message = format!("{attr} functions must be `async`");
        errors.push(syn::Error::new_spanned(sig.fn_token, message));
    }
    if let Some(unsafety) = sig.unsafety {
        let message = format!("{attr} functions cannot be `unsafe`");
        errors.push(syn::Error::new_spanned(unsafety, message));
    }
    let generic = format!("{attr} functions cannot be generic");
    if !sig.generics.params.is_empty() {
        errors.push(syn::Error::new_spanned(&sig.generics, &generic));
    } else if let Some(clause) = &sig.generics.where_clause {
        errors.push(syn::Error::new_spanned(clause, &generic));
    }
    let (payload, states) = parameters(kind, sig, batch, errors);
    match &sig.output {
        ReturnType::Default => {
            let message = match kind {
                Macro::Event if batch => format!(
                    "batch functions must return `Result<(), BatchError>`: {BATCH_SIGNATURE}"
                ),
                Macro::Event => format!(
                    "{attr} functions must return `Result<(), HandlerError>`: {}",
                    kind.signature()
                ),
                Macro::Request => format!(
                    "{attr} functions must return `Result<R, HandlerError>`: {}",
                    kind.signature()
                ),
            };
            errors.push(syn::Error::new(sig.paren_token.span.close(), message));
        }
        ReturnType::Type(_, ty) if kind == Macro::Event => {
            match (batch, error_type(ty).as_deref()) {
                (true, Some("HandlerError")) => errors.push(syn::Error::new_spanned(
                    ty,
                    format!(
                        "a batch function returns `Result<(), BatchError>`, so it can fail some \
                         events and not others: {BATCH_SIGNATURE}"
                    ),
                )),
                // (A `Batch<T>` parameter without `batch` is reported already.)
                (false, Some("BatchError")) if payload.is_some() => {
                    errors.push(syn::Error::new_spanned(
                        ty,
                        format!(
                            "`BatchError` is for batch functions (`batch = N`); this one returns \
                             `Result<(), HandlerError>`: {}",
                            kind.signature()
                        ),
                    ))
                }
                _ => {}
            }
        }
        ReturnType::Type(..) => {}
    }
    (payload, states)
}

/// The last path segment of `E` in a return type `Result<_, E>`.
fn error_type(ty: &Type) -> Option<String> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.iter().collect::<Vec<_>>()[..] {
        [_, GenericArgument::Type(Type::Path(error))] => {
            error.path.segments.last().map(|s| s.ident.to_string())
        }
        _ => None,
    }
}

/// `R` of a request function's `-> Result<R, HandlerError>`.
fn reply_type(sig: &Signature, errors: &mut Errors) -> Option<Type> {
    let ReturnType::Type(_, ty) = &sig.output else {
        return None; // reported by `signature`
    };
    let reply = generic_of(ty, "Result", 2);
    if reply.is_none() {
        let message = format!(
            "`#[request_handler]` functions must return `Result<R, HandlerError>` where `R` is \
             the reply (`serde::Serialize`, `String` or `bytes::Bytes`): {}",
            Macro::Request.signature()
        );
        errors.push(syn::Error::new_spanned(ty, message));
    }
    reply
}

/// Checks the parameters: no `self`, `ctx` and `event: Event<T>` (`batch: Batch<T>` for a batch
/// function, `req: Request<T>` for a request function), then any number of `State<S>`; returns
/// `T` and each `S`.
fn parameters(
    kind: Macro,
    sig: &Signature,
    batch: bool,
    errors: &mut Errors,
) -> (Option<Type>, Vec<Type>) {
    let attr = kind.attr();
    let mut params = Vec::new();
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(receiver) => {
                let message = format!(
                    "{attr} functions cannot take `self`; write a free function: {}",
                    kind.signature()
                );
                errors.push(syn::Error::new_spanned(receiver, message));
            }
            FnArg::Typed(param) => params.push(&*param.ty),
        }
    }
    if params.len() < 2 {
        let message = format!(
            "expected 2 parameters: {}, found {} (`State<T>` arguments may follow)",
            kind.params(),
            params.len()
        );
        errors.push(syn::Error::new(sig.paren_token.span.join(), message));
    }
    for ty in &params {
        if let Type::ImplTrait(ty) = ty {
            let message = format!("{attr} functions cannot be generic");
            errors.push(syn::Error::new_spanned(ty, message));
        }
    }
    let Some(event) = params.get(1).copied() else {
        return (None, Vec::new());
    };
    let payload = payload(kind, event, batch, errors);
    // A `State<T>` where the event goes: said once, not again for the event after it.
    if generic_of(event, "State", 1).is_some() {
        return (payload, Vec::new());
    }
    (
        payload,
        states(kind, params.get(2..).unwrap_or_default(), errors),
    )
}

/// The `T` of each `State<T>` parameter after the event; anything else there is an error.
fn states(kind: Macro, params: &[&Type], errors: &mut Errors) -> Vec<Type> {
    let mut states = Vec::new();
    for ty in params {
        let Some(state) = generic_of(ty, "State", 1) else {
            let message = format!(
                "after the {} argument a handler takes only `State<T>` arguments (shared state \
                 from `App::state` or an `App::on_startup` hook)",
                kind.input().to_lowercase()
            );
            errors.push(syn::Error::new_spanned(ty, message));
            continue;
        };
        if let Some(borrowed) = borrowed(&state) {
            errors.push(syn::Error::new_spanned(
                borrowed,
                "a `State<T>` type must be owned and `'static` (it is shared by every call): \
                 use an owned type, or an `Arc` inside it",
            ));
            continue;
        }
        states.push(state);
    }
    states
}

/// A reference or a lifetime other than `'static` inside `ty`, if any.
fn borrowed(ty: &Type) -> Option<TokenStream> {
    let mut found = None;
    let tokens = ty.to_token_stream();
    find_borrow(tokens, &mut found);
    found
}

fn find_borrow(tokens: TokenStream, found: &mut Option<TokenStream>) {
    let mut iter = tokens.into_iter().peekable();
    while let Some(token) = iter.next() {
        if found.is_some() {
            return;
        }
        match &token {
            proc_macro2::TokenTree::Punct(punct) if punct.as_char() == '&' => {
                *found = Some(token.clone().into());
            }
            proc_macro2::TokenTree::Punct(punct) if punct.as_char() == '\'' => {
                if let Some(proc_macro2::TokenTree::Ident(name)) = iter.peek() {
                    if name != "static" {
                        let mut lifetime: TokenStream = token.clone().into();
                        lifetime.extend([proc_macro2::TokenTree::Ident(name.clone())]);
                        *found = Some(lifetime);
                    }
                }
            }
            proc_macro2::TokenTree::Group(group) => find_borrow(group.stream(), found),
            _ => {}
        }
    }
}

/// The payload `T` of the event parameter (`Event<T>`, `Batch<T>`, `Request<T>`).
fn payload(kind: Macro, event: &Type, batch: bool, errors: &mut Errors) -> Option<Type> {
    let input = if batch { "Batch" } else { kind.input() };
    if generic_of(event, "State", 1).is_some() {
        let message = format!(
            "`State<T>` arguments come after the {} argument: {}",
            input.to_lowercase(),
            kind.signature()
        );
        errors.push(syn::Error::new_spanned(event, message));
        return None;
    }
    if kind == Macro::Event {
        let other = if batch { "Event" } else { "Batch" };
        if generic_of(event, other, 1).is_some() {
            let message = if batch {
                "a function with `batch = N` takes `batch: Batch<T>`, the events of one call"
            } else {
                "a `Batch<T>` parameter makes a batch function: add `batch = N` (the most \
                 events per call) to the attribute"
            };
            errors.push(syn::Error::new_spanned(event, message));
            return None;
        }
    }
    let payload = generic_of(event, input, 1);
    if payload.is_none() && !matches!(event, Type::ImplTrait(_)) {
        let message = format!(
            "the second parameter must be `{input}<T>`, where `T` is the payload type: \
             `bytes::Bytes`, `String`, `jetfn::Protobuf<M>` or a \
             `serde::de::DeserializeOwned` type"
        );
        errors.push(syn::Error::new_spanned(event, message));
    }
    if let Some(Type::Reference(reference)) = &payload {
        let what = match kind {
            Macro::Event => "an event payload",
            Macro::Request => "a request payload",
        };
        let message = format!(
            "{what} cannot borrow from the message: use an owned type \
             (`String` for text, `bytes::Bytes` for bytes)"
        );
        errors.push(syn::Error::new_spanned(reference, message));
        return None;
    }
    payload
}

/// The first type argument when `ty` is a path ending in `NAME<A, ...>` with `count` type
/// arguments (`Event<T>`, `Request<T>`, `Result<R, E>`).
fn generic_of(ty: &Type, name: &str, count: usize) -> Option<Type> {
    let path = match ty {
        Type::Group(group) => return generic_of(&group.elem, name, count),
        Type::Paren(paren) => return generic_of(&paren.elem, name, count),
        Type::Path(path) if path.qself.is_none() => &path.path,
        _ => return None,
    };
    let last = path
        .segments
        .last()
        .filter(|segment| segment.ident == name)?;
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    let types: Vec<_> = args
        .args
        .iter()
        .filter_map(|arg| match arg {
            GenericArgument::Type(ty) => Some(ty),
            _ => None,
        })
        .collect();
    (types.len() == count && args.args.len() == count).then(|| types[0].clone())
}

#[cfg(test)]
mod tests {
    use quote::quote;
    use syn::parse_quote;

    use super::*;
    use crate::args;

    fn validate(attr: TokenStream, function: ItemFn) -> syn::Result<Handler> {
        handler(
            Macro::Event,
            args::parse(attr, Macro::Event.keys()),
            &function,
        )
    }

    #[test]
    fn a_valid_handler() {
        let handler = validate(
            quote!(
                subject = "orders.*",
                timeout = "1m",
                backoff = "1s..1m",
                max_deliver = 2
            ),
            parse_quote! {
                pub async fn r#reserve(c: Context, e: jetfn::Event<Vec<Order>>) -> Result<(), E> {
                    Ok(())
                }
            },
        )
        .map_err(|error| error.to_string())
        .expect("valid");
        assert_eq!((&*handler.name, &*handler.subject), ("reserve", "orders.*"));
        assert_eq!(
            handler.attrs,
            [
                (Key::Timeout, Attr::Millis(60_000)),
                (Key::Backoff, Attr::Backoff(1_000, 60_000)),
                (Key::MaxDeliver, Attr::U32(2)),
            ]
        );
        let payload = &handler.payload;
        assert_eq!(quote!(#payload).to_string(), quote!(Vec<Order>).to_string());
    }

    #[test]
    fn every_mistake_at_once_in_source_order() {
        let errors = validate(
            quote!(max_deliver = 0, nme = "x", timeout = "soon"),
            parse_quote! {
                unsafe fn reserve<T>(&self, e: Event<T>) {}
            },
        )
        .err()
        .expect("invalid");
        let messages: Vec<String> = errors.into_iter().map(|e| e.to_string()).collect();
        let starts = [
            "missing `subject`",
            "`max_deliver` must be at least 1",
            "unsupported argument `nme`",
            "invalid `timeout`: expected a duration",
            "`#[event_handler]` functions must be `async`",
            "`#[event_handler]` functions cannot be `unsafe`",
            "`#[event_handler]` functions cannot be generic",
            "`#[event_handler]` functions cannot take `self`",
            "expected 2 parameters: `ctx: Context, event: Event<T>`, found 1 (`State<T>`",
            "`#[event_handler]` functions must return",
        ];
        assert_eq!(messages.len(), starts.len(), "{messages:#?}");
        for (message, start) in messages.iter().zip(starts) {
            assert!(
                message.starts_with(start),
                "{message:?} should start with {start:?}"
            );
        }
    }

    #[test]
    fn subject_or_schedule() {
        let function = || -> ItemFn {
            parse_quote! {
                async fn rollup(c: Context, e: Event<Tick>) -> Result<(), HandlerError> { Ok(()) }
            }
        };
        let handler = validate(quote!(schedule = "@every 30s"), function())
            .map_err(|e| e.to_string())
            .expect("valid");
        assert_eq!(handler.subject, "jetfn.tick.rollup");
        assert_eq!(
            handler.attrs,
            [(Key::Schedule, Attr::Str("@every 30s".to_owned()))]
        );
        let error = |attr| {
            validate(attr, function())
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(
            error(quote!(subject = "a", schedule = "@hourly")).starts_with("a function has either")
        );
        assert!(error(quote!()).starts_with("missing `subject`"));
        assert!(error(quote!(schedule = "0 0 3 * *")).starts_with("invalid `schedule`"));
        assert!(error(quote!(schedule = "@every 0s")).starts_with("invalid `schedule`"));
        assert!(
            error(quote!(subject = "a", schedule_ttl = "1m")).starts_with("`schedule_ttl` applies")
        );
        assert!(error(quote!(schedule = "@daily", stream = "S")).contains("JETFN_SCHEDULES"));
    }

    #[test]
    fn workers_bounds_and_the_default_name() {
        let valid = |attr| {
            let function = parse_quote! {
                async fn réserver(c: Context, e: Event<()>) -> Result<(), HandlerError> { Ok(()) }
            };
            validate(attr, function)
                .map(|h| h.name)
                .map_err(|e| e.to_string())
        };
        assert_eq!(
            valid(quote!(subject = "a", min_workers = 4, max_workers = 2)),
            Err("`max_workers` (2) must be at least `min_workers` (4)".to_owned())
        );
        assert!(
            valid(quote!(subject = "a")).is_err_and(|e| e.contains("cannot be a consumer name"))
        );
        assert_eq!(
            valid(quote!(
                subject = "a",
                name = "reserver",
                min_workers = 2,
                max_workers = 2
            )),
            Ok("reserver".to_owned())
        );
    }

    #[test]
    fn the_second_parameter_is_an_event() {
        for ty in [
            quote!(String),
            quote!(Event),
            quote!(Event<A, B>),
            quote!(<X as Y>::Event<A>),
            quote!(&Event<A>),
        ] {
            let function = parse_quote! {
                async fn f(c: Context, e: #ty) -> Result<(), HandlerError> { Ok(()) }
            };
            let error = validate(quote!(subject = "a"), function)
                .err()
                .expect("invalid");
            assert!(
                error
                    .to_string()
                    .starts_with("the second parameter must be `Event<T>`"),
                "{ty}"
            );
        }
    }

    #[test]
    fn state_arguments_follow_the_event() {
        let states = |params: TokenStream| {
            let function = parse_quote! {
                async fn f(c: Context, #params) -> Result<(), HandlerError> { Ok(()) }
            };
            validate(quote!(subject = "a"), function)
                .map(|h| {
                    h.states
                        .iter()
                        .map(|t| quote!(#t).to_string())
                        .collect::<Vec<_>>()
                })
                .map_err(|e| e.into_iter().map(|e| e.to_string()).collect::<Vec<_>>())
        };
        assert_eq!(
            states(quote!(e: Event<u8>, a: State<Db>, b: jetfn::State<Arc<Pool>>)),
            Ok(vec!["Db".to_owned(), "Arc < Pool >".to_owned()])
        );
        let one_error = |params, start: &str| {
            let errors = states(params).expect_err("invalid");
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert!(errors[0].starts_with(start), "{errors:?}");
        };
        one_error(
            quote!(db: State<Db>, e: Event<u8>),
            "`State<T>` arguments come after",
        );
        one_error(quote!(e: Event<u8>, db: Db), "after the event argument");
        one_error(
            quote!(e: Event<u8>, s: State<&'static str>),
            "a `State<T>` type must be owned",
        );
        one_error(
            quote!(e: Event<u8>, s: State<Cow<'a, str>>),
            "a `State<T>` type must be owned",
        );
        assert!(states(quote!(e: Event<u8>, s: State<Cow<'static, str>>)).is_ok());
    }

    #[test]
    fn a_payload_cannot_borrow() {
        for ty in [quote!(&'static str), quote!(&[u8]), quote!(&'static Order)] {
            let function = parse_quote! {
                async fn f(c: Context, e: Event<#ty>) -> Result<(), HandlerError> { Ok(()) }
            };
            let error = validate(quote!(subject = "a"), function)
                .err()
                .expect("invalid");
            assert!(
                error
                    .to_string()
                    .starts_with("an event payload cannot borrow"),
                "{ty}: {error}"
            );
        }
    }
}
