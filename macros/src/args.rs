//! Step 1, parse: the attribute list, `key = literal` pairs separated by commas.
//!
//! This step knows the keys and the kind of literal each one takes; it reports unknown keys,
//! duplicate keys and literals of the wrong kind. What a literal *means* (subject grammar,
//! durations, ranges) is [`crate::validate`]'s job.

use proc_macro2::TokenStream;
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::{Expr, ExprLit, Ident, Lit, LitInt, LitStr, Token};

pub(crate) use jetfn_grammar::keys::{Key, Kind, REQUEST_KEYS};

/// The key `ident` names (raw identifiers like `r#type` unprefixed), if any.
fn key_from_ident(ident: &Ident) -> Option<Key> {
    Key::from_name(&ident.unraw().to_string())
}

/// The literal given to a key, of the kind the key takes.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    Str(LitStr),
    Int(LitInt),
}

/// One entry of the attribute list.
pub(crate) enum Arg {
    /// A known key, at its first occurrence, with a literal of the kind it takes.
    Given(Key, Value),
    /// A mistake, already described; with the key it concerns when that key now counts as
    /// given (a literal of the wrong kind), so that it is not also reported missing.
    Rejected(Option<Key>, syn::Error),
}

/// The attribute list, in the order written.
pub(crate) struct Args {
    pub(crate) list: Vec<Arg>,
}

impl Args {
    /// Whether `key` was written, even with a rejected literal.
    pub(crate) fn given(&self, key: Key) -> bool {
        self.list.iter().any(|arg| match arg {
            Arg::Given(k, _) | Arg::Rejected(Some(k), _) => *k == key,
            Arg::Rejected(None, _) => false,
        })
    }
}

/// One `key = value` pair as written. The value is any expression so that `max_deliver = -1`
/// or `timeout = TIMEOUT` get a message about the literal instead of a parse error.
struct Pair {
    key: Ident,
    value: Expr,
}

impl Parse for Pair {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let key = Ident::parse_any(input)?;
        input.parse::<Token![=]>()?;
        let value = input.parse()?;
        Ok(Pair { key, value })
    }
}

/// Parses the tokens inside `#[event_handler(...)]` or `#[request_handler(...)]`, whose keys
/// are `keys`.
///
/// `Err` means the list is not `key = value, ...` at all: nothing about the keys can be said.
pub(crate) fn parse(tokens: TokenStream, keys: &[Key]) -> syn::Result<Args> {
    let pairs = Punctuated::<Pair, Token![,]>::parse_terminated.parse2(tokens)?;
    let mut args = Args { list: Vec::new() };
    for Pair { key: ident, value } in pairs {
        let arg = match key_from_ident(&ident).filter(|key| keys.contains(key)) {
            None => {
                let message = format!(
                    "unsupported argument `{}`; supported arguments are: {}",
                    ident.unraw(),
                    supported(keys)
                );
                Arg::Rejected(None, syn::Error::new_spanned(&ident, message))
            }
            Some(key) if args.given(key) => {
                let message = format!("duplicate argument `{}`", key.as_str());
                Arg::Rejected(None, syn::Error::new_spanned(&ident, message))
            }
            Some(key) => match literal(key, value) {
                Ok(value) => Arg::Given(key, value),
                Err(error) => Arg::Rejected(Some(key), error),
            },
        };
        args.list.push(arg);
    }
    Ok(args)
}

/// The supported keys, comma separated.
fn supported(keys: &[Key]) -> String {
    keys.iter()
        .map(|key| key.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The literal of `value`, when it is of the kind `key` takes.
fn literal(key: Key, value: Expr) -> syn::Result<Value> {
    let expected = match key.kind() {
        Kind::Str => "a string literal",
        Kind::Duration => "a duration string",
        Kind::Backoff => "a backoff string",
        Kind::Schedule => "a schedule string",
        Kind::OrderedBy => "\"subject\" or \"header:<Name>\"",
        Kind::Int => "an integer literal",
    };
    let wrong = |value: &Expr| {
        syn::Error::new_spanned(
            value,
            format!(
                "`{}` takes {expected}, like `{}`",
                key.as_str(),
                key.example()
            ),
        )
    };
    match (key.kind(), &value) {
        (
            Kind::Int,
            Expr::Lit(ExprLit {
                lit: Lit::Int(lit), ..
            }),
        ) => Ok(Value::Int(lit.clone())),
        (Kind::Int, Expr::Unary(unary)) if matches!(unary.op, syn::UnOp::Neg(_)) => Err(
            syn::Error::new_spanned(&value, format!("`{}` cannot be negative", key.as_str())),
        ),
        (
            Kind::Str | Kind::Duration | Kind::Backoff | Kind::Schedule | Kind::OrderedBy,
            Expr::Lit(ExprLit {
                lit: Lit::Str(lit), ..
            }),
        ) => Ok(Value::Str(lit.clone())),
        _ => Err(wrong(&value)),
    }
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::*;

    fn messages(args: &Args) -> Vec<String> {
        let rejected = args.list.iter().filter_map(|arg| match arg {
            Arg::Rejected(_, error) => Some(error.to_string()),
            Arg::Given(..) => None,
        });
        rejected.collect()
    }

    #[test]
    fn keeps_pairs_in_order_with_their_literals() {
        let args = parse(
            quote!(subject = "a.b", max_deliver = 3, timeout = "5s",),
            &Key::ALL,
        )
        .expect("parses");
        let given: Vec<_> = args
            .list
            .iter()
            .map(|arg| match arg {
                Arg::Given(key, Value::Str(lit)) => (*key, lit.value()),
                Arg::Given(key, Value::Int(lit)) => (*key, lit.to_string()),
                Arg::Rejected(_, error) => panic!("unexpected error: {error}"),
            })
            .collect();
        assert_eq!(
            given,
            [
                (Key::Subject, "a.b".to_owned()),
                (Key::MaxDeliver, "3".to_owned()),
                (Key::Timeout, "5s".to_owned()),
            ]
        );
    }

    #[test]
    fn reports_unknown_duplicate_and_mistyped_keys() {
        let args = parse(
            quote!(
                retries = 3,
                subject = "a",
                subject = "b",
                max_deliver = "5",
                stream = ORDERS,
                breaker_failures = -1,
                r#type = 1
            ),
            &Key::ALL,
        )
        .expect("parses");
        let messages = messages(&args);
        assert_eq!(messages.len(), 6, "{messages:#?}");
        assert_eq!(
            messages[0],
            "unsupported argument `retries`; supported arguments are: subject, schedule, \
             schedule_ttl, name, stream, max_deliver, backoff, ack_wait, timeout, min_workers, \
             max_workers, max_ack_pending, dlq, breaker_failures, breaker_cooldown, batch, \
             batch_wait, once_retention, ordered_by"
        );
        assert_eq!(messages[1], "duplicate argument `subject`");
        assert_eq!(
            messages[2],
            "`max_deliver` takes an integer literal, like `max_deliver = 5`"
        );
        assert_eq!(
            messages[3],
            "`stream` takes a string literal, like `stream = \"ORDERS\"`"
        );
        assert_eq!(messages[4], "`breaker_failures` cannot be negative");
        assert!(messages[5].starts_with("unsupported argument `type`"));
        // A mistyped key still counts as given: it is not also reported missing.
        assert!(args.given(Key::MaxDeliver) && args.given(Key::Subject));
        assert!(!args.given(Key::Name));
    }

    #[test]
    fn a_request_function_takes_fewer_keys() {
        let args = parse(
            quote!(subject = "a", max_deliver = 3, timeout = "1s"),
            REQUEST_KEYS,
        )
        .expect("parses");
        assert_eq!(
            messages(&args),
            [
                "unsupported argument `max_deliver`; supported arguments are: subject, name, \
              timeout, max_workers"
            ]
        );
    }

    #[test]
    fn rejects_what_is_not_a_list_of_pairs() {
        for tokens in [
            quote!(subject),
            quote!(subject: "a"),
            quote!(subject = "a" name = "b"),
        ] {
            assert!(parse(tokens.clone(), &Key::ALL).is_err(), "{tokens}");
        }
        assert!(parse(quote!(), &Key::ALL).is_ok_and(|args| args.list.is_empty()));
    }

    #[test]
    fn every_key_has_a_well_typed_example() {
        for key in Key::ALL {
            let example: TokenStream = key.example().parse().expect("tokens");
            let args = parse(example, &Key::ALL).expect("parses");
            assert!(
                matches!(&args.list[..], [Arg::Given(k, _)] if *k == key),
                "{}",
                key.example()
            );
        }
    }
}
