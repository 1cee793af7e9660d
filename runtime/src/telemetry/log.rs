//! Log lines that carry the trace and span ids of the delivery they were written in.
//!
//! A delivery has no `tracing` span of its own (its span is made with the OpenTelemetry API, see
//! the module above), so the ids are not span fields: [`WithTraceIds`] reads the current
//! OpenTelemetry context when a line is written and adds `trace_id` and `span_id` to it. Lines
//! written outside a delivery cost nothing extra, and a delivery costs nothing for lines it does
//! not write.

use opentelemetry::trace::TraceContextExt;
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Whether text lines get ANSI colours: only when stderr is a terminal, and not when `NO_COLOR`
/// is set to anything but the empty string (<https://no-color.org>).
pub(super) fn ansi() -> bool {
    use std::io::IsTerminal;
    ansi_for(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    )
}

fn ansi_for(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(|value| value.is_empty())
}

/// How a line is laid out, so the ids can be added in its grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Layout {
    /// `... message key=value trace_id=... span_id=...`
    Text,
    /// `{..., "trace_id": "...", "span_id": "..."}`
    Json,
}

/// An event formatter that adds the current trace and span ids to what `inner` writes.
pub(super) struct WithTraceIds<F> {
    pub(super) inner: F,
    pub(super) layout: Layout,
}

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let context = opentelemetry::Context::current();
        let span = context.span();
        let ids = span.span_context();
        if !ids.is_valid() {
            return self.inner.format_event(ctx, writer, event);
        }
        // The inner formatter ends its line; the ids go before that end.
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        let trimmed = line.trim_end_matches('\n');
        let (trace_id, span_id) = (ids.trace_id(), ids.span_id());
        match self.layout {
            Layout::Json => match trimmed.strip_suffix('}') {
                Some(object) => {
                    let separator = if object.trim_end().ends_with('{') {
                        ""
                    } else {
                        ","
                    };
                    writeln!(
                        writer,
                        r#"{object}{separator}"trace_id":"{trace_id}","span_id":"{span_id}"}}"#
                    )
                }
                None => writeln!(writer, "{trimmed}"),
            },
            Layout::Text => writeln!(writer, "{trimmed} trace_id={trace_id} span_id={span_id}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use opentelemetry::trace::{SpanContext, TraceFlags, TraceState};
    use opentelemetry::trace::{SpanId, TraceId};
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// Collects what the fmt layer writes.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Lines {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("lines").extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Lines {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().expect("lines").clone()).expect("utf-8")
        }
    }

    fn in_a_delivery(f: impl FnOnce()) {
        let ids = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").expect("trace id"),
            SpanId::from_hex("00f067aa0ba902b7").expect("span id"),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        let _attached = opentelemetry::Context::new()
            .with_remote_span_context(ids)
            .attach();
        f();
    }

    #[test]
    fn colours_only_on_a_terminal_without_no_color() {
        use std::ffi::OsStr;
        assert!(ansi_for(true, None));
        assert!(ansi_for(true, Some(OsStr::new(""))));
        assert!(!ansi_for(true, Some(OsStr::new("1"))));
        assert!(
            !ansi_for(false, None),
            "a file or a pipe gets no escape codes"
        );
    }

    #[test]
    fn json_lines_get_the_ids_as_fields_only_inside_a_delivery() {
        let lines = Lines::default();
        let writer = lines.clone();
        let layer = tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(move || writer.clone());
        let layer = layer.event_format(WithTraceIds {
            inner: tracing_subscriber::fmt::format().json().flatten_event(true),
            layout: Layout::Json,
        });
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(order = 7, "outside");
            in_a_delivery(|| tracing::warn!(order = 8, "inside"));
        });
        let text = lines.text();
        let parsed: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).expect("a JSON line"))
            .collect();
        assert_eq!(parsed.len(), 2, "{text}");
        assert!(parsed[0].get("trace_id").is_none(), "{text}");
        assert_eq!(parsed[1]["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(parsed[1]["span_id"], "00f067aa0ba902b7");
        assert_eq!(parsed[1]["order"], 8);
        assert_eq!(parsed[1]["message"], "inside");
    }

    #[test]
    fn text_lines_end_with_the_ids_inside_a_delivery() {
        let lines = Lines::default();
        let writer = lines.clone();
        let layer = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .event_format(WithTraceIds {
                inner: tracing_subscriber::fmt::format().with_ansi(false),
                layout: Layout::Text,
            });
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("outside");
            in_a_delivery(|| tracing::info!(order = 8, "inside"));
        });
        let text = lines.text();
        let all: Vec<&str> = text.lines().collect();
        assert_eq!(all.len(), 2, "{text}");
        assert!(!all[0].contains("trace_id"), "{text}");
        assert!(
            all[1].ends_with(
                "inside order=8 trace_id=4bf92f3577b34da6a3ce929d0e0e4736 span_id=00f067aa0ba902b7"
            ),
            "{text}"
        );
    }
}
