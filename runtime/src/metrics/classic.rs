//! The classic Prometheus text format 0.0.4, made from the OpenMetrics text that
//! `prometheus-client` writes (it encodes nothing else).
//!
//! The two formats share the sample lines; what differs, and what [`from_openmetrics`] changes:
//!
//! | OpenMetrics | text 0.0.4 |
//! |---|---|
//! | `# TYPE x counter`, samples `x_total` | `# TYPE x_total counter` (and `# HELP x_total`): the family is named after its series |
//! | `x_created` samples of counters and histograms | dropped (0.0.4 has no created timestamps) |
//! | `# TYPE x unknown` | `# TYPE x untyped` |
//! | `# TYPE x info`, samples `x_info` | `# TYPE x_info gauge` |
//! | `# UNIT`, `# EOF` | dropped |
//! | exemplars (` # {...} v`) after a sample | dropped |
//! | timestamps in seconds | milliseconds |

use std::fmt::Write as _;

/// The OpenMetrics exposition `text` rewritten as the classic text format 0.0.4.
pub(crate) fn from_openmetrics(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    // The HELP line of the family being read: written once its TYPE says how it is named.
    let mut help: Option<&str> = None;
    let mut family = Family::default();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest);
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            family = Family::new(name, kind);
            if let Some(help) = help.take() {
                let text = help.split_once(' ').map_or("", |(_, text)| text);
                let _ = writeln!(out, "# HELP {} {}", family.exposed, help_text(text));
            }
            let _ = writeln!(out, "# TYPE {} {}", family.exposed, family.kind);
        } else if line.starts_with('#') || line.trim().is_empty() {
            // `# UNIT`, `# EOF` and other comments have no 0.0.4 counterpart.
        } else if let Some(sample) = sample(line) {
            if !family.drops(sample.name) {
                out.push_str(sample.series);
                out.push(' ');
                out.push_str(sample.value);
                if let Some(millis) = sample.timestamp.and_then(millis) {
                    let _ = write!(out, " {millis}");
                }
                out.push('\n');
            }
        }
    }
    out
}

/// What the current family is called and typed in 0.0.4.
#[derive(Debug, Default)]
struct Family {
    /// The OpenMetrics family name.
    name: String,
    /// The name its `# HELP` and `# TYPE` carry in 0.0.4.
    exposed: String,
    /// Its 0.0.4 type.
    kind: &'static str,
}

impl Family {
    fn new(name: &str, kind: &str) -> Self {
        let (exposed, kind) = match kind {
            "counter" => (format!("{name}_total"), "counter"),
            "gauge" => (name.to_owned(), "gauge"),
            "histogram" => (name.to_owned(), "histogram"),
            "summary" => (name.to_owned(), "summary"),
            "info" => (format!("{name}_info"), "gauge"),
            "stateset" => (name.to_owned(), "gauge"),
            _ => (name.to_owned(), "untyped"),
        };
        Self {
            name: name.to_owned(),
            exposed,
            kind,
        }
    }

    /// Whether the series `sample` of this family has no place in 0.0.4.
    fn drops(&self, sample: &str) -> bool {
        matches!(self.kind, "counter" | "histogram" | "summary")
            && sample
                .strip_prefix(self.name.as_str())
                .is_some_and(|suffix| suffix == "_created")
    }
}

/// 0.0.4 escapes backslash and newline in HELP, not the double quotes OpenMetrics escapes.
fn help_text(text: &str) -> String {
    text.replace("\\\"", "\"")
}

/// One sample line, split.
#[derive(Debug, PartialEq)]
struct Sample<'a> {
    /// The metric name.
    name: &'a str,
    /// The name and the label set, as written.
    series: &'a str,
    value: &'a str,
    timestamp: Option<&'a str>,
}

/// `name{labels} value [timestamp] [# exemplar]`; `None` when the line is not one.
fn sample(line: &str) -> Option<Sample<'_>> {
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    let series_end = if line[name_end..].starts_with('{') {
        name_end + label_set_len(&line[name_end..])?
    } else {
        name_end
    };
    let series = &line[..series_end];
    let rest = line[series_end..].trim_start();
    // An exemplar follows ` # ` after the value (and timestamp).
    let rest = rest.split_once(" # ").map_or(rest, |(sample, _)| sample);
    let mut fields = rest.split_whitespace();
    let value = fields.next()?;
    let timestamp = fields.next();
    Some(Sample {
        name,
        series,
        value,
        timestamp,
    })
}

/// The length of the `{...}` at the start of `text`, quoted label values (with their escapes)
/// skipped; `None` when it is not closed.
fn label_set_len(text: &str) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (index, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '}' if !quoted => return Some(index + 1),
            _ => {}
        }
    }
    None
}

/// An OpenMetrics timestamp (seconds, may be fractional) as 0.0.4 milliseconds.
fn millis(seconds: &str) -> Option<i64> {
    let seconds: f64 = seconds.parse().ok()?;
    // Rounding to whole milliseconds is what the format holds.
    Some((seconds * 1000.0).round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_typed_under_their_total_series_and_lose_created_and_exemplars() {
        let openmetrics = "# HELP jetfn_messages Messages settled.\n\
             # TYPE jetfn_messages counter\n\
             jetfn_messages_total{function=\"a\",outcome=\"ack\"} 2 # {trace_id=\"x\"} 1.0 1.5\n\
             jetfn_messages_created{function=\"a\",outcome=\"ack\"} 1700000000.0\n\
             # EOF\n";
        assert_eq!(
            from_openmetrics(openmetrics),
            "# HELP jetfn_messages_total Messages settled.\n\
             # TYPE jetfn_messages_total counter\n\
             jetfn_messages_total{function=\"a\",outcome=\"ack\"} 2\n"
        );
    }

    #[test]
    fn gauges_and_histograms_keep_their_names_and_units_go() {
        let openmetrics = "# HELP d_seconds Run time.\n\
             # TYPE d_seconds histogram\n\
             # UNIT d_seconds seconds\n\
             d_seconds_sum{function=\"a\"} 0.5\n\
             d_seconds_count{function=\"a\"} 3\n\
             d_seconds_bucket{le=\"0.1\",function=\"a\"} 1\n\
             d_seconds_bucket{le=\"+Inf\",function=\"a\"} 3\n\
             # HELP up 1 while connected\n\
             # TYPE up gauge\n\
             up 1\n\
             # EOF\n";
        assert_eq!(
            from_openmetrics(openmetrics),
            "# HELP d_seconds Run time.\n\
             # TYPE d_seconds histogram\n\
             d_seconds_sum{function=\"a\"} 0.5\n\
             d_seconds_count{function=\"a\"} 3\n\
             d_seconds_bucket{le=\"0.1\",function=\"a\"} 1\n\
             d_seconds_bucket{le=\"+Inf\",function=\"a\"} 3\n\
             # HELP up 1 while connected\n\
             # TYPE up gauge\n\
             up 1\n"
        );
    }

    #[test]
    fn unknown_info_and_timestamps_are_translated() {
        let openmetrics = "# TYPE x unknown\n\
             x 1 1700000000.25\n\
             # HELP build Build.\n\
             # TYPE build info\n\
             build_info{version=\"1\"} 1\n";
        assert_eq!(
            from_openmetrics(openmetrics),
            "# TYPE x untyped\n\
             x 1 1700000000250\n\
             # HELP build_info Build.\n\
             # TYPE build_info gauge\n\
             build_info{version=\"1\"} 1\n"
        );
    }

    #[test]
    fn label_values_may_hold_braces_quotes_and_hashes() {
        let line = r#"m_total{a="} # {",b="q\"}"} 7 # {t="1"} 1"#;
        assert_eq!(
            sample(line),
            Some(Sample {
                name: "m_total",
                series: r#"m_total{a="} # {",b="q\"}"}"#,
                value: "7",
                timestamp: None,
            })
        );
        assert_eq!(sample("m{a=\"unclosed} 1"), None);
        assert_eq!(sample("no_value"), None);
    }

    #[test]
    fn the_runtime_registry_converts_line_for_line() {
        let metrics = super::super::Metrics::new();
        let function = metrics.function("f", false);
        function.acked.inc();
        function.duration.observe(0.25);
        let openmetrics = metrics.encode(super::super::Format::OpenMetrics);
        let classic = metrics.encode(super::super::Format::Text);
        assert!(openmetrics.ends_with("# EOF\n"), "{openmetrics}");
        assert!(!classic.contains("# EOF"), "{classic}");
        assert!(
            classic.contains("# TYPE jetfn_messages_total counter\n"),
            "{classic}"
        );
        assert!(
            classic.contains("jetfn_messages_total{function=\"f\",outcome=\"ack\"} 1\n"),
            "{classic}"
        );
        // Every sample line of the OpenMetrics text is in the classic one, unchanged.
        let samples = |text: &str| -> Vec<String> {
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(samples(&openmetrics), samples(&classic));
    }
}
