//! Which exposition format a scrape gets, from its `Accept` header, as Go's `promhttp` (with
//! OpenMetrics enabled) decides: the acceptable media ranges in order of preference (`q`, then
//! position); OpenMetrics for the first `application/openmetrics-text` (version 1.0.0, 0.0.1 or
//! none), the text format 0.0.4 for `text/plain` (version 0.0.4 or none) or a wildcard; the text
//! format when nothing else fits or there is no header.

/// An exposition format `/metrics` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// The classic Prometheus text format 0.0.4.
    Text,
    /// OpenMetrics 1.0.0 text.
    OpenMetrics,
}

impl Format {
    /// The `Content-Type` of a response in this format.
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// The format for a request with this `Accept` header (`None`: no header).
    pub(crate) fn negotiate(accept: Option<&str>) -> Self {
        let Some(accept) = accept else {
            return Format::Text;
        };
        let mut ranges: Vec<(f32, usize, Option<Format>)> = accept
            .split(',')
            .enumerate()
            .filter_map(|(position, range)| {
                let (format, q) = media_range(range)?;
                (q > 0.0).then_some((q, position, format))
            })
            .collect();
        // Highest q first; equal q in the order given.
        ranges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        ranges
            .into_iter()
            .find_map(|(_, _, format)| format)
            .unwrap_or(Format::Text)
    }
}

/// One media range of an `Accept` header: the format it asks for (`None`: one we do not write)
/// and its quality; `None` when it is malformed.
fn media_range(range: &str) -> Option<(Option<Format>, f32)> {
    let mut parts = range.split(';').map(str::trim);
    let media = parts.next()?.to_ascii_lowercase();
    if media.is_empty() {
        return None;
    }
    let (mut q, mut version) = (1.0_f32, None);
    for parameter in parts {
        let (key, value) = parameter.split_once('=')?;
        let value = value.trim().trim_matches('"');
        match key.trim().to_ascii_lowercase().as_str() {
            "q" => {
                q = value
                    .parse()
                    .ok()
                    .filter(|q: &f32| (0.0..=1.0).contains(q))?
            }
            "version" => version = Some(value.to_owned()),
            _ => {}
        }
    }
    let format = match (media.as_str(), version.as_deref()) {
        ("application/openmetrics-text", None | Some("1.0.0" | "0.0.1")) => {
            Some(Format::OpenMetrics)
        }
        ("text/plain", None | Some("0.0.4")) | ("text/*" | "*/*", _) => Some(Format::Text),
        _ => None,
    };
    Some((format, q))
}

#[cfg(test)]
mod tests {
    use super::Format::{self, OpenMetrics, Text};

    #[test]
    fn accept_headers_choose_as_promhttp_does() {
        let cases: &[(Option<&str>, Format)] = &[
            (None, Text),
            (Some(""), Text),
            (Some("*/*"), Text),
            (Some("text/plain"), Text),
            (Some("text/plain;version=0.0.4"), Text),
            (Some("application/json"), Text),
            (Some("application/openmetrics-text"), OpenMetrics),
            (
                Some("application/openmetrics-text; version=1.0.0; charset=utf-8"),
                OpenMetrics,
            ),
            // What Prometheus 2.x sends.
            (
                Some(
                    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                     version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
                ),
                OpenMetrics,
            ),
            // Prometheus 3 with `scrape_protocols: [PrometheusText0.0.4]`.
            (Some("text/plain;version=0.0.4;q=0.5,*/*;q=0.1"), Text),
            // The preferred range wins, whatever its position.
            (
                Some("text/plain;q=0.5,application/openmetrics-text;q=0.9"),
                OpenMetrics,
            ),
            (
                Some("application/openmetrics-text;q=0.2,text/plain;q=0.8"),
                Text,
            ),
            // Refused (q=0), unknown versions and formats we do not write are skipped.
            (Some("application/openmetrics-text;q=0"), Text),
            (Some("application/openmetrics-text;version=2.0.0"), Text),
            (
                Some(
                    "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;\
                     encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.5",
                ),
                OpenMetrics,
            ),
            // Malformed ranges are ignored, not fatal.
            (Some("application/openmetrics-text;q=abc,text/plain"), Text),
            (Some("APPLICATION/OpenMetrics-Text"), OpenMetrics),
        ];
        for (accept, expected) in cases {
            assert_eq!(Format::negotiate(*accept), *expected, "Accept: {accept:?}");
        }
    }

    #[test]
    fn each_format_names_its_content_type() {
        assert_eq!(
            Text.content_type(),
            "text/plain; version=0.0.4; charset=utf-8"
        );
        assert!(OpenMetrics
            .content_type()
            .starts_with("application/openmetrics-text; version=1.0.0"));
    }
}
