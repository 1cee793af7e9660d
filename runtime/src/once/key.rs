//! [`OnceKey`]: the stable name of one once-only step, as an idempotency key and as a KV key.

use std::fmt;

use crate::handler::InputRef;

/// The stable key of one once-only step: the same for every delivery of the same input, on any
/// pod, after any restart; different for another function, input or step.
///
/// [`OnceKey::as_str`] is `jetfn:<function>:<stream>:<sequence>:<step>` for a message (a batch
/// has `<lowest sequence>-<digest of its sorted sequences>` in place of the sequence, a request
/// `request:<its reply subject>` in place of stream and sequence). Every part is escaped so the
/// key holds only ASCII letters, digits, `_`, `-`, `=` and the `:` separators: any character
/// outside `[A-Za-z0-9_-]` becomes `=XX` (its UTF-8 bytes in hex), and an empty step is `=`.
/// Pass it to an external provider as its idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OnceKey {
    /// `jetfn:` and the escaped parts joined by `:`.
    text: String,
    /// The escaped parts joined by `.`: the key in the bucket `JETFN_ONCE`.
    record: String,
}

impl OnceKey {
    /// The key of `step` of `function` on `input`.
    pub(crate) fn new(function: &str, input: &InputRef, step: &str) -> Self {
        let mut parts = vec![escape(function)];
        match input {
            InputRef::Message { stream, sequence } => {
                parts.push(escape(stream));
                parts.push(sequence.to_string());
            }
            // The members as a set: a retried batch redelivered in another order is the same.
            InputRef::Batch {
                stream,
                members: (lowest, digest),
                ..
            } => {
                parts.push(escape(stream));
                parts.push(format!("{lowest}-{digest:016x}"));
            }
            InputRef::Request(key) => {
                parts.push("request".to_owned());
                parts.push(escape(key));
            }
        }
        parts.push(if step.is_empty() {
            "=".to_owned()
        } else {
            escape(step)
        });
        Self {
            text: format!("jetfn:{}", parts.join(":")),
            record: parts.join("."),
        }
    }

    /// The key as a string, stable across redeliveries, pods and restarts.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The key of the step's record in the KV bucket `JETFN_ONCE`
    /// (`<function>.<stream>.<sequence>.<step>`, escaped as in [`OnceKey::as_str`]).
    pub fn record_key(&self) -> &str {
        &self.record
    }
}

impl fmt::Display for OnceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl AsRef<str> for OnceKey {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

/// `text` with every byte outside `[A-Za-z0-9_-]` written `=XX`: a valid KV key token and a
/// valid idempotency key, and reversible (so two names never share a key).
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-' {
            escaped.push(char::from(byte));
        } else {
            escaped.push_str(&format!("={byte:02X}"));
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn message(sequence: u64) -> InputRef {
        InputRef::Message {
            stream: Arc::from("SHOP"),
            sequence,
        }
    }

    #[test]
    fn a_message_step_is_named_by_function_stream_sequence_and_step() {
        let key = OnceKey::new("charge_payment", &message(42), "charge");
        assert_eq!(key.as_str(), "jetfn:charge_payment:SHOP:42:charge");
        assert_eq!(key.record_key(), "charge_payment.SHOP.42.charge");
        assert_eq!(key.to_string(), key.as_str());
        // Stable: the same inputs give the same key; any other part gives another.
        assert_eq!(key, OnceKey::new("charge_payment", &message(42), "charge"));
        assert_ne!(key, OnceKey::new("charge_payment", &message(43), "charge"));
        assert_ne!(key, OnceKey::new("refund", &message(42), "charge"));
        assert_ne!(key, OnceKey::new("charge_payment", &message(42), "email"));
    }

    #[test]
    fn step_names_are_escaped_reversibly() {
        let key = OnceKey::new("f", &message(1), "charge card.1/2 ✓");
        assert_eq!(
            key.as_str(),
            "jetfn:f:SHOP:1:charge=20card=2E1=2F2=20=E2=9C=93"
        );
        assert_eq!(
            key.record_key(),
            "f.SHOP.1.charge=20card=2E1=2F2=20=E2=9C=93"
        );
        // The escape character itself is escaped: `a=2E` and `a.` differ.
        assert_ne!(
            OnceKey::new("f", &message(1), "a=2E"),
            OnceKey::new("f", &message(1), "a.")
        );
        assert_eq!(
            OnceKey::new("f", &message(1), "").record_key(),
            "f.SHOP.1.="
        );
        assert_ne!(
            OnceKey::new("f", &message(1), ""),
            OnceKey::new("f", &message(1), "=")
        );
    }

    #[test]
    fn record_keys_are_valid_kv_keys() {
        let inputs = [
            message(7),
            InputRef::batch(Arc::from("SHOP"), [3, 4, 9]),
            InputRef::request(Some("_INBOX.abc.def")),
            InputRef::request(None),
        ];
        for input in &inputs {
            for step in ["charge", "", ".", "a b", "..", "*", ">", "ü"] {
                let key = OnceKey::new("f", input, step);
                let record = key.record_key();
                assert!(
                    !record.starts_with('.') && !record.ends_with('.') && !record.contains(".."),
                    "{record}"
                );
                assert!(
                    record
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_=.".contains(c)),
                    "{record}"
                );
                assert_eq!(record.split('.').count(), 4, "{record}");
            }
        }
    }

    #[test]
    fn batches_are_keyed_by_their_members_and_requests_by_their_reply() {
        let batch = |sequences: &[u64]| {
            OnceKey::new(
                "f",
                &InputRef::batch(Arc::from("S"), sequences.iter().copied()),
                "s",
            )
        };
        assert_eq!(batch(&[3, 4]), batch(&[3, 4]));
        assert_eq!(batch(&[3, 4]), batch(&[4, 3]), "order does not matter");
        assert_ne!(batch(&[3, 4]), batch(&[3, 5]));
        assert_ne!(batch(&[3, 4]), batch(&[3, 4, 5]));
        assert!(batch(&[3, 4]).as_str().starts_with("jetfn:f:S:3-"));
        let request = OnceKey::new("f", &InputRef::request(Some("_INBOX.x")), "s");
        assert_eq!(request.as_str(), "jetfn:f:request:_INBOX=2Ex:s");
        assert_eq!(request.record_key(), "f.request._INBOX=2Ex.s");
    }
}
