//! Step 2, validate: turn the parsed attribute and the user's signature into a [`Handler`], or
//! into every error found, each spanned on the offending token.
//!
//! The grammar checks (subjects, names, durations, backoff) are pure functions over `&str` with
//! typed errors, unit-tested below.

use std::fmt;

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::{
    FnArg, GenericArgument, Ident, ItemFn, LitInt, PathArguments, ReturnType, Signature, Type,
};

use crate::args::{Arg, Args, Key, Kind, Value};

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

/// A validated `#[event_handler]`: everything the expansion needs, nothing left to check.
pub(crate) struct Handler {
    /// The function's name (the `name` key, else the fn ident).
    pub(crate) name: String,
    pub(crate) subject: String,
    /// The optional keys that were written, in the order written.
    pub(crate) attrs: Vec<(Key, Attr)>,
    /// `T` in `event: Event<T>`, as the user wrote it.
    pub(crate) payload: Type,
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
pub(crate) fn handler(args: syn::Result<Args>, function: &ItemFn) -> syn::Result<Handler> {
    let mut errors = Errors::default();
    let checked = match args {
        Ok(args) => attributes(&args, &mut errors),
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
    let payload = signature(function, &mut errors);
    match (checked, name, payload, errors.0) {
        (Some(checked), Some(name), Some(payload), None) => Ok(Handler {
            name,
            subject: checked.subject,
            attrs: checked.attrs,
            payload,
        }),
        (.., Some(error)) => Err(error),
        // Every `None` above comes with an error; this is only a safety net.
        _ => Err(syn::Error::new(
            Span::call_site(),
            "invalid `#[event_handler]`",
        )),
    }
}

/// The attribute, checked.
struct Checked {
    subject: String,
    name: Option<String>,
    /// The optional keys, in the order written.
    attrs: Vec<(Key, Attr)>,
}

/// Checks every entry of the attribute, reporting errors in the order of its tokens; `None`
/// after an error.
fn attributes(args: &Args, errors: &mut Errors) -> Option<Checked> {
    let before = errors.0.is_some();
    if !args.given(Key::Subject) {
        errors.push(syn::Error::new(
            Span::call_site(),
            "missing `subject`: write `#[event_handler(subject = \"orders.created\")]`",
        ));
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
    if errors.0.is_some() != before {
        return None;
    }
    Some(Checked {
        subject: subject?,
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

/// The expected signature, for error messages.
const SIGNATURE: &str =
    "`async fn NAME(ctx: Context, event: Event<T>) -> Result<(), HandlerError>`";

/// Checks the signature; returns the payload type `T` of `event: Event<T>`.
fn signature(function: &ItemFn, errors: &mut Errors) -> Option<Type> {
    let sig = &function.sig;
    if sig.asyncness.is_none() {
        let message = "`#[event_handler]` functions must be `async`";
        errors.push(syn::Error::new_spanned(sig.fn_token, message));
    }
    if let Some(unsafety) = sig.unsafety {
        let message = "`#[event_handler]` functions cannot be `unsafe`";
        errors.push(syn::Error::new_spanned(unsafety, message));
    }
    let generic = "`#[event_handler]` functions cannot be generic";
    if !sig.generics.params.is_empty() {
        errors.push(syn::Error::new_spanned(&sig.generics, generic));
    } else if let Some(clause) = &sig.generics.where_clause {
        errors.push(syn::Error::new_spanned(clause, generic));
    }
    let payload = parameters(sig, errors);
    if let ReturnType::Default = sig.output {
        let message = format!(
            "`#[event_handler]` functions must return `Result<(), HandlerError>`: {SIGNATURE}"
        );
        errors.push(syn::Error::new(sig.paren_token.span.close(), message));
    }
    payload
}

/// Checks the parameters: no `self`, `ctx` and `event: Event<T>`; returns `T`.
fn parameters(sig: &Signature, errors: &mut Errors) -> Option<Type> {
    let mut params = Vec::new();
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(receiver) => {
                let message = format!(
                    "`#[event_handler]` functions cannot take `self`; \
                     write a free function: {SIGNATURE}"
                );
                errors.push(syn::Error::new_spanned(receiver, message));
            }
            FnArg::Typed(param) => params.push(&*param.ty),
        }
    }
    let arity = "expected 2 parameters: `ctx: Context, event: Event<T>`";
    if params.len() < 2 {
        let message = format!("{arity}, found {}", params.len());
        errors.push(syn::Error::new(sig.paren_token.span.join(), message));
    } else if params.len() > 2 {
        let extra: TokenStream = sig
            .inputs
            .iter()
            .skip(2)
            .map(ToTokens::into_token_stream)
            .collect();
        let message = format!("{arity}, found {}", params.len());
        errors.push(syn::Error::new_spanned(extra, message));
    }
    for ty in &params {
        if let Type::ImplTrait(ty) = ty {
            let message = "`#[event_handler]` functions cannot be generic";
            errors.push(syn::Error::new_spanned(ty, message));
        }
    }
    let event = *params.get(1)?;
    let payload = event_payload(event);
    if payload.is_none() && !matches!(event, Type::ImplTrait(_)) {
        let message =
            "the second parameter must be `Event<T>`, where `T: serde::de::DeserializeOwned` \
                       is the payload type";
        errors.push(syn::Error::new_spanned(event, message));
    }
    payload
}

/// `T` when `ty` is a path ending in `Event<T>`.
fn event_payload(ty: &Type) -> Option<Type> {
    let path = match ty {
        Type::Group(group) => return event_payload(&group.elem),
        Type::Paren(paren) => return event_payload(&paren.elem),
        Type::Path(path) if path.qself.is_none() => &path.path,
        _ => return None,
    };
    let last = path
        .segments
        .last()
        .filter(|segment| segment.ident == "Event")?;
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.iter().collect::<Vec<_>>()[..] {
        [GenericArgument::Type(payload)] => Some(payload.clone()),
        _ => None,
    }
}

/// Whether a subject may hold the wildcards `*` and `>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wildcards {
    /// A subject to consume: wildcards select several subjects.
    Allowed,
    /// A subject to publish to.
    Forbidden,
}

/// Why a string is not a NATS subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SubjectError {
    Empty,
    Whitespace(String),
    EmptyToken(String),
    PartialWildcard(String),
    GtNotLast(String),
    Wildcard(String),
}

impl fmt::Display for SubjectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("it is empty; write a subject like \"orders.created\""),
            Self::Whitespace(s) => write!(f, "{s:?} contains whitespace"),
            Self::EmptyToken(s) => write!(
                f,
                "{s:?} has an empty token; subjects are non-empty tokens separated by single dots \
                 (no leading, trailing or double `.`)"
            ),
            Self::PartialWildcard(s) => write!(
                f,
                "{s:?} has a partial wildcard; `*` and `>` must be whole tokens, \
                 like \"orders.*\" or \"orders.>\""
            ),
            Self::GtNotLast(s) => write!(
                f,
                "{s:?} has `>` before its last token; `>` is only allowed as the last token"
            ),
            Self::Wildcard(s) => write!(
                f,
                "{s:?} is published to, so it cannot contain the wildcards `*` or `>`"
            ),
        }
    }
}

/// Checks the NATS subject grammar: dot-separated non-empty tokens, no whitespace, `*` and `>`
/// only as whole tokens and `>` only last.
pub(crate) fn check_subject(subject: &str, wildcards: Wildcards) -> Result<(), SubjectError> {
    let error = |make: fn(String) -> SubjectError| Err(make(subject.to_owned()));
    if subject.is_empty() {
        return Err(SubjectError::Empty);
    }
    if subject.chars().any(char::is_whitespace) {
        return error(SubjectError::Whitespace);
    }
    let tokens: Vec<&str> = subject.split('.').collect();
    if tokens.iter().any(|token| token.is_empty()) {
        return error(SubjectError::EmptyToken);
    }
    if tokens
        .iter()
        .any(|token| token.len() > 1 && token.contains(['*', '>']))
    {
        return error(SubjectError::PartialWildcard);
    }
    if tokens[..tokens.len() - 1].contains(&">") {
        return error(SubjectError::GtNotLast);
    }
    if wildcards == Wildcards::Forbidden && tokens.iter().any(|token| matches!(*token, "*" | ">")) {
        return error(SubjectError::Wildcard);
    }
    Ok(())
}

/// Why a string cannot be a JetStream stream or consumer name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NameError {
    Empty,
    Char(String, char),
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("it is empty"),
            Self::Char(name, c) => write!(
                f,
                "{name:?} contains {c:?}; names hold only ASCII letters, digits, `_` and `-`"
            ),
        }
    }
}

/// Checks a stream or consumer name: non-empty, ASCII letters, digits, `_` and `-`.
pub(crate) fn check_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    match name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-')))
    {
        Some(c) => Err(NameError::Char(name.to_owned(), c)),
        None => Ok(()),
    }
}

/// Why a string is not a duration the runtime takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DurationError {
    /// Not `humantime` syntax; humantime's reason when it names the units it knows.
    Malformed(Option<String>),
    Zero,
    /// Not a whole number of milliseconds, like `1.5ms` or `500us`.
    SubMillisecond,
    TooLarge,
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(None) => {
                f.write_str("expected a duration like \"250ms\", \"30s\" or \"5m\"")
            }
            Self::Malformed(Some(reason)) => write!(
                f,
                "expected a duration like \"250ms\", \"30s\" or \"5m\" ({reason})"
            ),
            Self::Zero => f.write_str("the duration must be greater than zero"),
            Self::SubMillisecond => f.write_str(
                "durations are whole milliseconds: \"1.5ms\" or \"500us\" are not accepted",
            ),
            Self::TooLarge => f.write_str("the duration is too large"),
        }
    }
}

/// Parses a duration (`humantime` syntax) into whole milliseconds, greater than zero.
pub(crate) fn parse_duration(text: &str) -> Result<u64, DurationError> {
    let parsed = humantime::parse_duration(text).map_err(|error| match error {
        // "unknown time unit "x", supported units: ..." or "time unit needed, for example ...".
        humantime::DurationError::UnknownUnit { .. } => {
            DurationError::Malformed(Some(error.to_string()))
        }
        // Reasons as byte offsets: "expected number at 0".
        _ => DurationError::Malformed(None),
    })?;
    if parsed.is_zero() {
        return Err(DurationError::Zero);
    }
    if parsed.subsec_nanos() % 1_000_000 != 0 {
        return Err(DurationError::SubMillisecond);
    }
    u64::try_from(parsed.as_millis()).map_err(|_| DurationError::TooLarge)
}

/// Why a string is not a backoff `initial..max`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BackoffError {
    /// No `..` between two durations.
    Malformed,
    Initial(DurationError),
    Max(DurationError),
    InitialAboveMax,
}

impl fmt::Display for BackoffError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed => f.write_str(
                "expected \"INITIAL..MAX\", two durations like \"100ms..60s\"",
            ),
            Self::Initial(error) => write!(f, "the initial delay: {error}"),
            Self::Max(error) => write!(f, "the maximum delay: {error}"),
            Self::InitialAboveMax => f.write_str(
                "the initial delay exceeds the maximum; write \"INITIAL..MAX\", like \"100ms..60s\"",
            ),
        }
    }
}

/// Parses `initial..max` into milliseconds, `initial <= max`.
pub(crate) fn parse_backoff(text: &str) -> Result<(u64, u64), BackoffError> {
    let (initial, max) = text.split_once("..").ok_or(BackoffError::Malformed)?;
    if max.contains("..") {
        return Err(BackoffError::Malformed);
    }
    let initial = parse_duration(initial.trim()).map_err(BackoffError::Initial)?;
    let max = parse_duration(max.trim()).map_err(BackoffError::Max)?;
    if initial > max {
        return Err(BackoffError::InitialAboveMax);
    }
    Ok((initial, max))
}

#[cfg(test)]
mod tests {
    use quote::quote;
    use syn::parse_quote;

    use super::*;
    use crate::args;

    fn validate(attr: TokenStream, function: ItemFn) -> syn::Result<Handler> {
        handler(args::parse(attr), &function)
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
            "expected 2 parameters: `ctx: Context, event: Event<T>`, found 1",
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
    fn subjects() {
        use SubjectError as E;
        type Expected = Result<(), fn(String) -> E>;
        let table: &[(&str, Expected)] = &[
            ("orders", Ok(())),
            ("orders.created", Ok(())),
            ("orders.*", Ok(())),
            ("orders.>", Ok(())),
            ("*.created", Ok(())),
            (">", Ok(())),
            ("*", Ok(())),
            ("$JS.API.x", Ok(())),
            ("orders-eu.created_v2", Ok(())),
            ("orders created", Err(E::Whitespace)),
            ("orders.created ", Err(E::Whitespace)),
            ("orders\t.x", Err(E::Whitespace)),
            (".orders", Err(E::EmptyToken)),
            ("orders.", Err(E::EmptyToken)),
            ("orders..created", Err(E::EmptyToken)),
            (".", Err(E::EmptyToken)),
            ("orders.cre*", Err(E::PartialWildcard)),
            ("orders.*x", Err(E::PartialWildcard)),
            ("orders.>>", Err(E::PartialWildcard)),
            ("orders.a>", Err(E::PartialWildcard)),
            ("orders.>.created", Err(E::GtNotLast)),
            (">.orders", Err(E::GtNotLast)),
        ];
        for (text, expected) in table {
            let expected = expected.map_err(|make| make((*text).to_owned()));
            assert_eq!(
                check_subject(text, Wildcards::Allowed),
                expected,
                "{text:?}"
            );
        }
        assert_eq!(check_subject("", Wildcards::Allowed), Err(E::Empty));
    }

    #[test]
    fn published_subjects_have_no_wildcards() {
        assert_eq!(check_subject("orders.dead", Wildcards::Forbidden), Ok(()));
        for text in ["orders.*", "orders.>", "*"] {
            assert_eq!(
                check_subject(text, Wildcards::Forbidden),
                Err(SubjectError::Wildcard(text.to_owned()))
            );
        }
        // Grammar errors come first.
        assert!(matches!(
            check_subject("a..>", Wildcards::Forbidden),
            Err(SubjectError::EmptyToken(_))
        ));
    }

    #[test]
    fn names() {
        for ok in ["reserve_inventory", "ORDERS", "billing-v2", "a", "_x", "9"] {
            assert_eq!(check_name(ok), Ok(()), "{ok:?}");
        }
        assert_eq!(check_name(""), Err(NameError::Empty));
        for (bad, c) in [
            ("a.b", '.'),
            ("a b", ' '),
            ("a*", '*'),
            ("a>", '>'),
            ("a/b", '/'),
            ("é", 'é'),
        ] {
            assert_eq!(
                check_name(bad),
                Err(NameError::Char(bad.to_owned(), c)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn durations() {
        for (text, millis) in [
            ("250ms", 250),
            ("30s", 30_000),
            ("5m", 300_000),
            ("1h", 3_600_000),
            ("1m 30s", 90_000),
            ("1.5s", 1_500),
            ("1ms", 1),
            ("2000us", 2),
        ] {
            assert_eq!(parse_duration(text), Ok(millis), "{text:?}");
        }
        for text in ["", "30", "thirty seconds", "30 parsecs", "-5s", "5s!"] {
            assert!(
                matches!(parse_duration(text), Err(DurationError::Malformed(_))),
                "{text:?}"
            );
        }
        // humantime's reason is kept when it helps, dropped when it is a byte offset.
        let reason = |text| match parse_duration(text) {
            Err(DurationError::Malformed(reason)) => reason,
            other => panic!("{text:?}: {other:?}"),
        };
        assert!(reason("30").is_some_and(|r| r.contains("time unit needed")));
        assert!(reason("30 parsecs").is_some_and(|r| r.contains("supported units")));
        assert_eq!(reason("soon"), None);
        assert_eq!(parse_duration("0s"), Err(DurationError::Zero));
        assert_eq!(parse_duration("0"), Err(DurationError::Zero));
        assert_eq!(parse_duration("500us"), Err(DurationError::SubMillisecond));
        assert_eq!(parse_duration("1.5ms"), Err(DurationError::SubMillisecond));
        assert_eq!(
            parse_duration("600000000000000000s"),
            Err(DurationError::TooLarge)
        );
    }

    #[test]
    fn backoffs() {
        assert_eq!(parse_backoff("100ms..60s"), Ok((100, 60_000)));
        assert_eq!(parse_backoff("1s..1s"), Ok((1_000, 1_000)));
        assert_eq!(parse_backoff("1s .. 5m"), Ok((1_000, 300_000)));
        for text in ["", "1s", "1s-5s", "1s...5s", "1s..5s..10s"] {
            assert!(
                matches!(
                    parse_backoff(text),
                    Err(BackoffError::Malformed | BackoffError::Max(_))
                ),
                "{text:?}"
            );
        }
        assert_eq!(parse_backoff("1s-5s"), Err(BackoffError::Malformed));
        assert!(matches!(
            parse_backoff("..5s"),
            Err(BackoffError::Initial(DurationError::Malformed(_)))
        ));
        assert!(matches!(
            parse_backoff("1s.."),
            Err(BackoffError::Max(DurationError::Malformed(_)))
        ));
        assert_eq!(
            parse_backoff("0s..5s"),
            Err(BackoffError::Initial(DurationError::Zero))
        );
        assert_eq!(parse_backoff("1m..1s"), Err(BackoffError::InitialAboveMax));
    }
}
