//! A message a function's consumer delivered: the message, and the client that acks it.
//!
//! `async_nats`'s `jetstream::Message` carries a clone of the whole `jetstream::Context` (its
//! client's channel sender and watch receivers, several `Arc`s, the API prefix), made for every
//! message and dropped after its ack: about 4 % of a delivery's client CPU in the benchmark's
//! profile. A [`Delivered`] shares its function's client instead (one reference count), and
//! reads its reply subject (ADR-15) with [`Info::parse`], the same as `Message::info()` reads it
//! (a test compares the two) without making a calendar date of the publish time.

use std::ops::Deref;
use std::sync::Arc;

use async_nats::jetstream::AckKind;

/// A delivered message and the client its acks go through.
#[derive(Debug, Clone)]
pub(crate) struct Delivered {
    message: async_nats::Message,
    client: Arc<async_nats::Client>,
}

impl Deref for Delivered {
    type Target = async_nats::Message;

    fn deref(&self) -> &async_nats::Message {
        &self.message
    }
}

impl Delivered {
    pub(crate) fn new(message: async_nats::Message, client: Arc<async_nats::Client>) -> Self {
        Self { message, client }
    }

    /// Tells the server `kind` for this delivery (as `jetstream::Message::ack_with`: a plain
    /// publish to the reply subject, not confirmed).
    pub(crate) async fn ack_with(&self, kind: AckKind) -> Result<(), async_nats::Error> {
        let reply = self.message.reply.clone().ok_or(NotJetStream::NoReply)?;
        self.client.publish(reply, kind.into()).await?;
        Ok(())
    }

    /// What the reply subject says of this delivery.
    pub(crate) fn info(&self) -> Result<Info<'_>, NotJetStream> {
        Info::parse(self.message.reply.as_deref().ok_or(NotJetStream::NoReply)?)
    }
}

/// Why a message is not a JetStream delivery: its reply subject is not a `$JS.ACK.` subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum NotJetStream {
    /// The message has no reply subject.
    #[error("the message has no reply subject")]
    NoReply,
    /// The reply subject does not start with `$JS.ACK.`.
    #[error("the reply subject does not start with `$JS.ACK.`")]
    Prefix,
    /// The reply subject has neither 7 nor at least 9 tokens after `$JS.ACK.`.
    #[error("the reply subject has {0} tokens after `$JS.ACK.` (7, or 9 and more, expected)")]
    Tokens(usize),
    /// A number in the reply subject is not one.
    #[error("the reply subject's {0} is not a number")]
    Number(&'static str),
}

/// The metadata in a delivery's reply subject (ADR-15), as `async_nats`'s `Message::info()`
/// reads it, but for the publish time, which stays nanoseconds.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Info<'a> {
    pub(crate) stream: &'a str,
    pub(crate) delivered: i64,
    pub(crate) stream_sequence: u64,
    pub(crate) consumer_sequence: u64,
    /// Nanoseconds since the Unix epoch.
    pub(crate) published: i128,
    pub(crate) pending: u64,
}

impl<'a> Info<'a> {
    /// `$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<published ns>.<pending>`,
    /// or with `<domain>.<account hash>.` before the stream and any tokens after `<pending>`.
    pub(crate) fn parse(reply: &'a str) -> Result<Self, NotJetStream> {
        let rest = reply.strip_prefix("$JS.ACK.").ok_or(NotJetStream::Prefix)?;
        // The first 10 tokens, as `info()` looks at no more. A plain byte loop: `split('.')`
        // searches for each dot with a call of its own.
        let mut tokens = [""; 10];
        let mut count = 0;
        let mut start = 0;
        for (at, byte) in rest.bytes().enumerate() {
            if byte == b'.' {
                tokens[count] = &rest[start..at];
                count += 1;
                start = at + 1;
                if count == tokens.len() {
                    break;
                }
            }
        }
        if count < tokens.len() {
            tokens[count] = &rest[start..];
            count += 1;
        }
        let fields = match count {
            7 => &tokens[..7],
            9.. => &tokens[2..9],
            other => return Err(NotJetStream::Tokens(other)),
        };
        let [stream, _consumer, delivered, stream_sequence, consumer_sequence, published, pending] =
            fields
        else {
            return Err(NotJetStream::Tokens(count));
        };
        fn number<T: std::str::FromStr>(
            token: &str,
            what: &'static str,
        ) -> Result<T, NotJetStream> {
            token.parse().map_err(|_| NotJetStream::Number(what))
        }
        // Parsed in the order `info()` parses them, all of them, so that the same subjects fail.
        let delivered = number(delivered, "delivery count")?;
        let stream_sequence = number(stream_sequence, "stream sequence")?;
        let consumer_sequence = number(consumer_sequence, "consumer sequence")?;
        // Nanoseconds fit a u64 until the year 2554; an i128 is parsed only past that (or
        // before the epoch), as `info()` parses one.
        let published = match published.parse::<u64>() {
            Ok(nanos) => i128::from(nanos),
            Err(_) => number(published, "publish time")?,
        };
        let pending = number(pending, "pending count")?;
        Ok(Self {
            stream,
            delivered,
            stream_sequence,
            consumer_sequence,
            published,
            pending,
        })
    }
}

#[cfg(test)]
mod tests {
    use async_nats::jetstream;

    use super::*;

    const V1: &str = "$JS.ACK.ORDERS.worker.3.42.40.1700000000123456789.7";

    #[test]
    fn reads_both_formats() {
        assert_eq!(
            Info::parse(V1),
            Ok(Info {
                stream: "ORDERS",
                delivered: 3,
                stream_sequence: 42,
                consumer_sequence: 40,
                published: 1_700_000_000_123_456_789,
                pending: 7,
            })
        );
        for v2 in [
            "$JS.ACK.hub.ACCHASH.ORDERS.worker.3.42.40.1700000000123456789.7.tok",
            "$JS.ACK._.ACCHASH.ORDERS.worker.3.42.40.1700000000123456789.7",
            "$JS.ACK.hub.ACCHASH.ORDERS.worker.3.42.40.1700000000123456789.7.tok.more",
        ] {
            assert_eq!(Info::parse(v2), Info::parse(V1), "{v2}");
        }
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        for (reply, error) in [
            ("_INBOX.abc", NotJetStream::Prefix),
            ("$JS.ACK.ORDERS.worker.3.42", NotJetStream::Tokens(4)),
            (
                "$JS.ACK.a.b.ORDERS.worker.3.42.40.1",
                NotJetStream::Tokens(8),
            ),
            (
                "$JS.ACK.ORDERS.worker.x.42.40.1.7",
                NotJetStream::Number("delivery count"),
            ),
            (
                "$JS.ACK.ORDERS.worker.3.-42.40.1.7",
                NotJetStream::Number("stream sequence"),
            ),
            (
                "$JS.ACK.ORDERS.worker.3.42.z.1.7",
                NotJetStream::Number("consumer sequence"),
            ),
            (
                "$JS.ACK.ORDERS.worker.3.42.40.now.7",
                NotJetStream::Number("publish time"),
            ),
            (
                "$JS.ACK.ORDERS.worker.3.42.40.1.",
                NotJetStream::Number("pending count"),
            ),
        ] {
            assert_eq!(Info::parse(reply), Err(error), "{reply}");
        }
    }

    /// The same as `async_nats`'s `Message::info()` on every subject it reads, and both refuse
    /// the same subjects (but for publish times beyond the year 9999, which `info()` refuses).
    #[tokio::test]
    async fn agrees_with_async_nats() {
        // A client that never connects: `info()` only reads the message.
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect("127.0.0.1:1")
            .await
            .expect("a client without a server");
        let context = jetstream::new(client);
        let subjects = [
            V1,
            "$JS.ACK.hub.ACCHASH.ORDERS.worker.3.42.40.1700000000123456789.7.tok",
            "$JS.ACK._.ACCHASH.S.c.1.1.1.0.0",
            "$JS.ACK.S.c.18446744073709551615.1.1.1.0",
            "$JS.ACK.S.c.-1.1.1.-5.0",
            "$JS.ACK.S.c.1.1.1.18446744073709551616.0",
            "$JS.ACK.S.c.+2.+3.4.5.6",
            "$JS.ACK.S.c.1.1.1.1",
            "$JS.ACK.S.c.1.1.1.1.1.1",
            "$JS.ACK.S.c.1.1.1.1.1.1.1.1.1.1.1.1",
            "$JS.ACK.S..1.1.1.1.1",
            "$JS.ACKS.c.1.1.1.1.1",
            "$JS.ACK.S.c.1.1.1.1.x",
            "",
        ];
        for subject in subjects {
            let message = jetstream::Message {
                message: async_nats::Message {
                    subject: "orders.created".into(),
                    reply: Some(subject.into()),
                    payload: bytes::Bytes::new(),
                    headers: None,
                    status: None,
                    description: None,
                    length: 0,
                },
                context: context.clone(),
            };
            let theirs = message.info().ok().map(|info| {
                let published = info.published.unix_timestamp_nanos();
                (
                    info.stream.to_owned(),
                    info.delivered,
                    info.stream_sequence,
                    info.consumer_sequence,
                    published,
                    info.pending,
                )
            });
            let ours = Info::parse(subject).ok().map(|ours| {
                let Info {
                    stream,
                    delivered,
                    stream_sequence,
                    consumer_sequence,
                    published,
                    pending,
                } = ours;
                (
                    stream.to_owned(),
                    delivered,
                    stream_sequence,
                    consumer_sequence,
                    published,
                    pending,
                )
            });
            assert_eq!(ours, theirs, "{subject}");
        }
    }
}
