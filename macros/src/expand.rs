//! Step 3, expand: the user's fn exactly as written, its `static HandlerSpec` in the distributed
//! slice, and bound checks spanned on the user's tokens. Nothing here checks anything: a
//! [`Handler`] is already valid.

use proc_macro2::{Ident, Literal, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::ItemFn;

use crate::validate::{Attr, Handler};

/// The user's fn (`item`, the tokens as written), plus its registration.
pub(crate) fn handler(item: TokenStream, function: &ItemFn, handler: &Handler) -> TokenStream {
    let spec = format_ident!("__JETFN_HANDLER_{}", function.sig.ident.unraw());
    let ctx = Ident::new("ctx", Span::mixed_site());
    let incoming = Ident::new("incoming", Span::mixed_site());
    let (single, batch) = if handler.batch {
        let batch = batch_invoke(function, handler, &ctx, &incoming);
        let single = quote! {
            ::jetfn::__private::batch_of_one(#ctx, #incoming, |#ctx, #incoming| #batch)
        };
        (
            single,
            quote!(::core::option::Option::Some(|#ctx, #incoming| #batch)),
        )
    } else {
        (
            invoke(function, handler, &ctx, &incoming),
            quote!(::core::option::Option::None),
        )
    };
    let payload = payload_spec(&handler.payload);
    let states = state_types(handler);
    let fields = quote! {
        handler: |#ctx, #incoming| #single,
        batch: #batch,
        payload: || #payload,
        states: #states,
    };
    registration(
        item,
        quote!(HANDLERS),
        quote!(HandlerSpec),
        &spec,
        handler,
        fields,
    )
}

/// A request function (`#[request_handler]`): its `static RequestSpec` in `REQUESTS`.
pub(crate) fn request(item: TokenStream, function: &ItemFn, handler: &Handler) -> TokenStream {
    let ident = &function.sig.ident;
    let spec = format_ident!("__JETFN_REQUEST_{}", ident.unraw());
    let ctx = Ident::new("ctx", Span::mixed_site());
    let incoming = Ident::new("incoming", Span::mixed_site());
    let payload = &handler.payload;
    let reply = handler
        .reply
        .clone()
        .unwrap_or_else(|| syn::parse_quote!(()));
    let (payload_codec, reply_codec) = (codec(payload), codec(&reply));
    let chosen = Ident::new("codec", Span::mixed_site());
    let chosen_reply = Ident::new("reply_codec", Span::mixed_site());
    let check = Ident::new("check", Span::mixed_site());
    let validation = validation(payload);
    let user = user_fn(function, handler);
    let call = quote_spanned! {ident.span()=>
        ::jetfn::__private::invoke_request::<#payload, #reply, _, _, _, _, _>(
            #ctx, #incoming, #user, #chosen, #chosen_reply, #check,
        )
    };
    let (payload_spec, reply_spec) = (payload_spec(payload), payload_spec(&reply));
    let states = state_types(handler);
    let fields = quote! {
        handler: |#ctx, #incoming| {
            let #chosen = #payload_codec;
            let #chosen_reply = #reply_codec;
            let #check = #validation;
            #call
        },
        payload: || #payload_spec,
        reply: || #reply_spec,
        states: #states,
    };
    registration(
        item,
        quote!(REQUESTS),
        quote!(RequestSpec),
        &spec,
        handler,
        fields,
    )
}

/// The user's fn as written, then the `static #spec: #ty` registering it in the distributed
/// slice `#slice` with its name, subject, attributes and location; `fields` are the kind's own.
fn registration(
    item: TokenStream,
    slice: TokenStream,
    ty: TokenStream,
    spec: &Ident,
    handler: &Handler,
    fields: TokenStream,
) -> TokenStream {
    let name = Literal::string(&handler.name);
    let subject = Literal::string(&handler.subject);
    let attrs = handler.attrs.iter().map(|(key, attr)| {
        let field = format_ident!("{}", key.as_str());
        let value = attr_value(attr);
        quote!(#field: ::core::option::Option::Some(#value),)
    });
    quote! {
        #item

        #[::jetfn::__private::linkme::distributed_slice(::jetfn::__private::#slice)]
        #[linkme(crate = ::jetfn::__private::linkme)]
        #[doc(hidden)]
        #[allow(non_upper_case_globals)]
        static #spec: ::jetfn::__private::#ty = ::jetfn::__private::#ty {
            name: #name,
            subject: #subject,
            attrs: ::jetfn::__private::Attributes {
                #(#attrs)*
                ..::jetfn::__private::Attributes::NONE
            },
            #fields
            location: ::jetfn::__private::Location {
                module_path: ::core::module_path!(),
                file: ::core::file!(),
                line: ::core::line!(),
            },
        };
    }
}

/// The call to the user's function. It is the only place with bounds on the user's types, and
/// its tokens carry the user's spans: a payload that fits no codec is reported on `T`, a
/// future that is not `Send` (or a wrong signature) on the fn's name.
///
/// The codec is chosen on the concrete payload type by autoref specialization (see
/// `jetfn::__private::Select`): `Bytes`, `String`, `Protobuf<M>`, else JSON. The choice itself
/// has no bound, so it cannot fail; `invoke`'s `T: Payload<C>` is the one check.
fn invoke(function: &ItemFn, handler: &Handler, ctx: &Ident, incoming: &Ident) -> TokenStream {
    call(function, handler, ctx, incoming, "invoke")
}

/// The call to the user's batch function with the messages `incoming` (a `Vec<Incoming>`), each
/// decoded with the codec chosen for `T` as in [`invoke`].
fn batch_invoke(
    function: &ItemFn,
    handler: &Handler,
    ctx: &Ident,
    incoming: &Ident,
) -> TokenStream {
    call(function, handler, ctx, incoming, "invoke_batch")
}

/// `jetfn::__private::<entry>::<T, ..>(ctx, incoming, <the fn>, codec)`, spanned on the fn's
/// name, with the codec chosen in a statement before it.
fn call(
    function: &ItemFn,
    handler: &Handler,
    ctx: &Ident,
    incoming: &Ident,
    entry: &str,
) -> TokenStream {
    let ident = &function.sig.ident;
    let entry = Ident::new(entry, ident.span());
    let payload = &handler.payload;
    let codec = codec(payload);
    // Chosen in a statement of its own, so the codec is known when the entry's bounds are
    // checked: `Protobuf<NotAMessage>` then names the missing `prost::Message`.
    let chosen = Ident::new("codec", Span::mixed_site());
    let check = Ident::new("check", Span::mixed_site());
    let validation = validation(payload);
    let user = user_fn(function, handler);
    let call = quote_spanned! {ident.span()=>
        ::jetfn::__private::#entry::<#payload, _, _, _, _>(#ctx, #incoming, #user, #chosen, #check)
    };
    quote! {{
        let #chosen = #codec;
        let #check = #validation;
        #call
    }}
}

/// The user's fn as the entry point calls it: the fn itself, or, when it takes `State<T>`
/// arguments, a closure that takes them from the context first (provided, as the start-up
/// check made sure) and then calls it.
fn user_fn(function: &ItemFn, handler: &Handler) -> TokenStream {
    let ident = &function.sig.ident;
    if handler.states.is_empty() {
        return ident.to_token_stream();
    }
    let ctx = Ident::new("ctx", Span::mixed_site());
    let input = Ident::new("input", Span::mixed_site());
    let names: Vec<Ident> = (0..handler.states.len())
        .map(|index| Ident::new(&format!("state_{index}"), Span::mixed_site()))
        .collect();
    let takes = handler.states.iter().zip(&names).map(|(ty, name)| {
        quote_spanned! {ty.span()=>
            let #name = ::jetfn::__private::state::<#ty>(&#ctx);
        }
    });
    let call = quote_spanned! {ident.span()=>
        #ident(#ctx, #input, #(#names?),*).await
    };
    quote! {
        move |#ctx, #input| {
            #(#takes)*
            async move { #call }
        }
    }
}

/// The `StateType` of each `State<T>` argument, for the registration.
fn state_types(handler: &Handler) -> TokenStream {
    let types = handler.states.iter().map(|ty| {
        quote_spanned! {ty.span()=> ::jetfn::__private::StateType::of::<#ty>() }
    });
    quote!(&[#(#types),*])
}

/// The validation chosen for the payload type: `validator::Validate` when it implements it
/// (cargo feature `validate`), else none (again by autoref; never an error).
fn validation(payload: &syn::Type) -> TokenStream {
    quote! {{
        #[allow(unused_imports)]
        use ::jetfn::__private::{WithValidation as _, WithoutValidation as _};
        (&&::jetfn::__private::Select::<#payload>::NEW).validation()
    }}
}

/// The codec marker chosen for `payload`.
fn codec(payload: &syn::Type) -> TokenStream {
    quote! {{
        #[allow(unused_imports)]
        use ::jetfn::__private::{JsonCodec as _, SpecificCodec as _};
        (&&::jetfn::__private::Select::<#payload>::NEW).codec()
    }}
}

/// A payload's description for `asyncapi`: codec, type name, and a JSON Schema generator when
/// the type implements `schemars::JsonSchema` (again by autoref; never an error).
fn payload_spec(payload: &syn::Type) -> TokenStream {
    let codec = codec(payload);
    quote! {{
        #[allow(unused_imports)]
        use ::jetfn::__private::{WithSchema as _, WithoutSchema as _};
        ::jetfn::__private::payload_spec::<#payload, _>(
            #codec,
            (&&::jetfn::__private::Select::<#payload>::NEW).schema(),
        )
    }}
}

fn attr_value(attr: &Attr) -> TokenStream {
    let millis = |millis: u64| {
        let millis = Literal::u64_suffixed(millis);
        quote!(::core::time::Duration::from_millis(#millis))
    };
    match attr {
        Attr::Str(text) => Literal::string(text).into_token_stream(),
        Attr::U32(value) => Literal::u32_suffixed(*value).into_token_stream(),
        Attr::Millis(value) => millis(*value),
        Attr::Backoff(initial, max) => {
            let (initial, max) = (millis(*initial), millis(*max));
            quote!((#initial, #max))
        }
    }
}

/// The user's item exactly as written, and the errors: no registration, so nothing cascades.
pub(crate) fn with_errors(item: TokenStream, errors: &syn::Error) -> TokenStream {
    let errors = errors.to_compile_error();
    quote! {
        #errors
        #item
    }
}
