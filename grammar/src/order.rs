//! `ordered_by`: what makes two messages of an ordered function the same key.

use std::fmt;

/// Where an ordered function reads each message's key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum OrderedBy {
    /// `"subject"`: the message's whole subject.
    Subject,
    /// `"header:<Name>"`: the value of the header `<Name>`.
    Header(String),
}

/// An `ordered_by` value that is neither `"subject"` nor `"header:<Name>"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderedByError(String);

impl fmt::Display for OrderedByError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OrderedByError {}

impl OrderedBy {
    /// Parses `"subject"` or `"header:<Name>"` (a header name: visible ASCII, no `:`).
    ///
    /// ```
    /// use jetfn_grammar::order::OrderedBy;
    ///
    /// assert_eq!(OrderedBy::parse("subject"), Ok(OrderedBy::Subject));
    /// assert_eq!(OrderedBy::parse("header:Order-Id"), Ok(OrderedBy::Header("Order-Id".into())));
    /// assert!(OrderedBy::parse("payload").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<Self, OrderedByError> {
        if text == "subject" {
            return Ok(Self::Subject);
        }
        let Some(name) = text.strip_prefix("header:") else {
            return Err(OrderedByError(format!(
                "expected \"subject\" or \"header:<Name>\", got {text:?}"
            )));
        };
        if name.is_empty() {
            return Err(OrderedByError(
                "the header name is missing: write \"header:<Name>\", like \"header:Order-Id\""
                    .to_owned(),
            ));
        }
        if let Some(bad) = name.chars().find(|c| !c.is_ascii_graphic() || *c == ':') {
            return Err(OrderedByError(format!(
                "the header name {name:?} contains {bad:?}: a header name is visible ASCII \
                 without `:`"
            )));
        }
        Ok(Self::Header(name.to_owned()))
    }
}

impl fmt::Display for OrderedBy {
    /// The form it is written in: `subject` or `header:<Name>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Subject => f.write_str("subject"),
            Self::Header(name) => write!(f, "header:{name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_or_a_header() {
        assert_eq!(OrderedBy::parse("subject"), Ok(OrderedBy::Subject));
        let header = OrderedBy::parse("header:Order-Id").expect("valid");
        assert_eq!(header, OrderedBy::Header("Order-Id".to_owned()));
        assert_eq!(header.to_string(), "header:Order-Id");
        for bad in [
            "",
            "Subject",
            "payload",
            "header:",
            "header:a b",
            "header:a:b",
            "key",
        ] {
            assert!(OrderedBy::parse(bad).is_err(), "{bad:?}");
        }
    }
}
