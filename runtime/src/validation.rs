//! Payload validation (cargo feature `validate`): a payload type that implements
//! `validator::Validate` is validated after decoding; an invalid event is dead-lettered at once
//! (`Jetfn-Error-Kind: invalid`, the field errors in `Jetfn-Error`), an invalid request is
//! answered `400`.
//!
//! Chosen where `#[event_handler]` expands, like the codec (see [`select`](crate::select)):
//! `(&&Select::<T>::NEW).validation()` is [`Validated`] when `T: validator::Validate` (and the
//! feature is on), else [`Unvalidated`], which costs nothing.

use crate::handler::HandlerError;
use crate::select::Select;

/// A validation, chosen on the payload type.
pub trait Check<T>: Copy + Send + 'static {
    /// `Err` with the field errors when `data` is invalid.
    fn check(self, data: &T) -> Result<(), HandlerError>;
}

/// No validation (the payload type does not implement `validator::Validate`).
#[derive(Debug, Clone, Copy)]
pub struct Unvalidated;

impl<T> Check<T> for Unvalidated {
    #[inline]
    fn check(self, _: &T) -> Result<(), HandlerError> {
        Ok(())
    }
}

/// `validator::Validate::validate` (cargo feature `validate`).
#[derive(Debug, Clone, Copy)]
pub struct Validated;

#[cfg(feature = "validate")]
impl<T: validator::Validate> Check<T> for Validated {
    fn check(self, data: &T) -> Result<(), HandlerError> {
        data.validate().map_err(|errors| {
            HandlerError::invalid(format!("invalid payload: {}", describe(&errors)))
        })
    }
}

/// `field: code (message); ...`, nested fields as `outer.inner`, sorted by field.
#[cfg(feature = "validate")]
fn describe(errors: &validator::ValidationErrors) -> String {
    fn walk(prefix: &str, errors: &validator::ValidationErrors, out: &mut Vec<String>) {
        for (field, kind) in errors.errors() {
            let path = if prefix.is_empty() {
                field.to_string()
            } else {
                format!("{prefix}.{field}")
            };
            match kind {
                validator::ValidationErrorsKind::Field(list) => {
                    for error in list {
                        match &error.message {
                            Some(message) => {
                                out.push(format!("{path}: {} ({message})", error.code))
                            }
                            None => out.push(format!("{path}: {}", error.code)),
                        }
                    }
                }
                validator::ValidationErrorsKind::Struct(inner) => walk(&path, inner, out),
                validator::ValidationErrorsKind::List(items) => {
                    for (index, inner) in items {
                        walk(&format!("{path}[{index}]"), inner, out);
                    }
                }
            }
        }
    }
    let mut out = Vec::new();
    walk("", errors, &mut out);
    out.sort();
    out.join("; ")
}

/// `Validated` for a payload type that implements `validator::Validate` (tried first).
pub trait WithValidation {
    /// `Validated`.
    fn validation(&self) -> Validated;
}

/// `Unvalidated` for every other payload type (the fallback).
pub trait WithoutValidation {
    /// `Unvalidated`.
    fn validation(&self) -> Unvalidated {
        Unvalidated
    }
}

#[cfg(feature = "validate")]
impl<T: validator::Validate> WithValidation for &Select<T> {
    fn validation(&self) -> Validated {
        Validated
    }
}

impl<T: ?Sized> WithoutValidation for Select<T> {}

#[cfg(all(test, feature = "validate"))]
mod tests {
    use super::*;
    use crate::handler::FailureKind;

    #[derive(validator::Validate)]
    struct Signup {
        #[validate(email)]
        email: String,
        #[validate(range(min = 18, message = "adults only"))]
        age: u32,
    }

    #[test]
    #[allow(clippy::needless_borrow)] // the autoref choice, as the macro writes it
    fn a_validate_type_is_validated_and_names_its_fields() {
        #[allow(unused_imports)]
        use super::{WithValidation as _, WithoutValidation as _};
        let check = (&&Select::<Signup>::NEW).validation();
        let bad = Signup {
            email: "nope".into(),
            age: 3,
        };
        let error = check.check(&bad).expect_err("invalid");
        assert_eq!(error.kind(), FailureKind::Invalid);
        assert_eq!(
            error.to_string(),
            "invalid payload: age: range (adults only); email: email"
        );
        let good = Signup {
            email: "a@b.example".into(),
            age: 30,
        };
        assert!(check.check(&good).is_ok());
        // Any other type: nothing to check.
        let unchecked = (&&Select::<String>::NEW).validation();
        assert!(Check::<String>::check(unchecked, &String::new()).is_ok());
    }
}
