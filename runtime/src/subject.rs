//! NATS subject and name grammar, for values that arrive through configuration (the macro checks
//! the attributes written in code at compile time).

/// A subject or name that NATS would reject.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SubjectError {
    #[error("is empty")]
    Empty,
    #[error("{0:?} has an empty token (a leading, trailing or doubled `.`)")]
    EmptyToken(String),
    #[error("{0:?} contains whitespace")]
    Whitespace(String),
    #[error("{0:?}: `>` may only be the last token")]
    TailNotLast(String),
    #[error("{0:?}: `*` and `>` must be whole tokens")]
    PartialWildcard(String),
    #[error("{0:?}: wildcards are not allowed here")]
    Wildcard(String),
    #[error("{0:?}: only ASCII letters, digits, `_` and `-` are allowed")]
    BadName(String),
}

/// Checks a subject; `wildcards` allows `*` and a final `>`.
pub(crate) fn validate(subject: &str, wildcards: bool) -> Result<(), SubjectError> {
    let owned = || subject.to_owned();
    if subject.is_empty() {
        return Err(SubjectError::Empty);
    }
    if subject.chars().any(char::is_whitespace) {
        return Err(SubjectError::Whitespace(owned()));
    }
    let tokens: Vec<&str> = subject.split('.').collect();
    for (index, token) in tokens.iter().enumerate() {
        match *token {
            "" => return Err(SubjectError::EmptyToken(owned())),
            "*" | ">" if !wildcards => return Err(SubjectError::Wildcard(owned())),
            ">" if index + 1 != tokens.len() => return Err(SubjectError::TailNotLast(owned())),
            "*" | ">" => {}
            _ if token.contains(['*', '>']) => return Err(SubjectError::PartialWildcard(owned())),
            _ => {}
        }
    }
    Ok(())
}

/// Checks a stream or consumer name.
pub(crate) fn validate_name(name: &str) -> Result<(), SubjectError> {
    if name.is_empty() {
        return Err(SubjectError::Empty);
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(SubjectError::BadName(name.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_grammar() {
        let table: &[(&str, bool, bool)] = &[
            ("orders.created", false, true),
            ("orders.*", true, true),
            ("orders.>", true, true),
            ("orders.*", false, false),
            ("", true, false),
            ("orders..created", true, false),
            (".orders", true, false),
            ("orders.", true, false),
            ("orders created", true, false),
            ("orders.>.x", true, false),
            ("orders.cre*", true, false),
        ];
        for (subject, wildcards, ok) in table {
            assert_eq!(validate(subject, *wildcards).is_ok(), *ok, "{subject:?}");
        }
    }

    #[test]
    fn name_grammar() {
        assert!(validate_name("charge_payment-2").is_ok());
        for bad in ["", "a.b", "a b", "a*", "a>"] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }
}
