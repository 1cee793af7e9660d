//! Step 3, expand: the user's fn exactly as written, its `static HandlerSpec` in the distributed
//! slice, and bound checks spanned on the user's tokens. Nothing here checks anything: a
//! [`Handler`] is already valid.

use proc_macro2::{Ident, Literal, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::ItemFn;

use crate::validate::{Attr, Handler};

/// The user's fn (`item`, the tokens as written), plus its registration.
pub(crate) fn handler(item: TokenStream, function: &ItemFn, handler: &Handler) -> TokenStream {
    let ident = &function.sig.ident;
    let spec = format_ident!("__JETFN_HANDLER_{}", ident.unraw());
    let name = Literal::string(&handler.name);
    let subject = Literal::string(&handler.subject);
    let attrs = handler.attrs.iter().map(|(key, attr)| {
        let field = format_ident!("{}", key.as_str());
        let value = attr_value(attr);
        quote!(#field: ::core::option::Option::Some(#value),)
    });
    let ctx = Ident::new("ctx", Span::mixed_site());
    let incoming = Ident::new("incoming", Span::mixed_site());
    let invoke = invoke(function, handler, &ctx, &incoming);
    quote! {
        #item

        #[::jetfn::__private::linkme::distributed_slice(::jetfn::__private::HANDLERS)]
        #[linkme(crate = ::jetfn::__private::linkme)]
        #[doc(hidden)]
        #[allow(non_upper_case_globals)]
        static #spec: ::jetfn::__private::HandlerSpec = ::jetfn::__private::HandlerSpec {
            name: #name,
            subject: #subject,
            attrs: ::jetfn::__private::Attributes {
                #(#attrs)*
                ..::jetfn::__private::Attributes::NONE
            },
            handler: |#ctx, #incoming| #invoke,
            location: ::jetfn::__private::Location {
                module_path: ::core::module_path!(),
                file: ::core::file!(),
                line: ::core::line!(),
            },
        };
    }
}

/// The call to the user's function. It is the only place with bounds on the user's types, and
/// its tokens carry the user's spans: a payload that cannot be decoded is reported on `T`, a
/// future that is not `Send` (or a wrong signature) on the fn's name.
fn invoke(function: &ItemFn, handler: &Handler, ctx: &Ident, incoming: &Ident) -> TokenStream {
    let ident = &function.sig.ident;
    let payload = &handler.payload;
    quote_spanned! {ident.span()=>
        ::jetfn::__private::invoke::<#payload, _, _>(#ctx, #incoming, #ident)
    }
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
