//! Span export from the standard `OTEL_*` variables.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::ConfigError;

/// Where and how spans are exported.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OtlpConfig {
    /// The full URL spans are sent to (for HTTP, `.../v1/traces`).
    pub endpoint: String,
    /// The wire protocol.
    pub protocol: OtlpProtocol,
    /// Headers of every export request (`OTEL_EXPORTER_OTLP_[TRACES_]HEADERS`, `k=v,k2=v2`,
    /// values percent-decoded). Their values are left out of `Debug` output: they are often
    /// credentials.
    pub headers: Vec<(String, String)>,
    /// The most time one export may take, retries included
    /// (`OTEL_EXPORTER_OTLP_[TRACES_]TIMEOUT`, milliseconds; default 10 s).
    pub timeout: Duration,
    /// A PEM file of certificates trusted for an `https://` endpoint besides the system's
    /// (`OTEL_EXPORTER_OTLP_[TRACES_]CERTIFICATE`): a private collector's CA.
    pub certificate: Option<PathBuf>,
}

impl std::fmt::Debug for OtlpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let header_names: Vec<&str> = self.headers.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("OtlpConfig")
            .field("endpoint", &self.endpoint)
            .field("protocol", &self.protocol)
            .field("headers", &header_names)
            .field("timeout", &self.timeout)
            .field("certificate", &self.certificate)
            .finish()
    }
}

/// OTLP wire protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// `http/protobuf`.
    HttpProtobuf,
    /// `grpc`.
    Grpc,
}

/// Why `grpc` is refused when jetfn is built without the feature that brings it.
#[cfg(not(feature = "otlp-grpc"))]
pub(crate) const GRPC_NEEDS_FEATURE: &str = "`grpc` needs the cargo feature `otlp-grpc` of jetfn \
     (jetfn = { features = [\"otlp-grpc\"] }); or export over `http/protobuf`, the default";

/// The export configuration the variables ask for; `None` when export is off.
pub(super) fn from_vars(
    vars: &BTreeMap<String, String>,
) -> Result<Option<OtlpConfig>, ConfigError> {
    let get = |name: &str| vars.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
    if get("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || get("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"))
    {
        return Ok(None);
    }
    let (protocol_var, protocol) = signal_or_general(&get, "PROTOCOL");
    let protocol = match protocol {
        None | Some("http/protobuf") => OtlpProtocol::HttpProtobuf,
        #[cfg(feature = "otlp-grpc")]
        Some("grpc") => OtlpProtocol::Grpc,
        #[cfg(not(feature = "otlp-grpc"))]
        Some("grpc") => {
            return Err(ConfigError::Invalid {
                key: protocol_var,
                message: GRPC_NEEDS_FEATURE.to_owned(),
            })
        }
        Some(other) => {
            return Err(ConfigError::Invalid {
                key: protocol_var,
                message: format!("expected `http/protobuf` or `grpc`, got {other:?}"),
            })
        }
    };
    let endpoint = match (
        get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
        get("OTEL_EXPORTER_OTLP_ENDPOINT"),
    ) {
        (Some(traces), _) => traces.to_owned(),
        (None, Some(base)) if protocol == OtlpProtocol::HttpProtobuf => {
            format!("{}/v1/traces", base.trim_end_matches('/'))
        }
        (None, Some(base)) => base.to_owned(),
        (None, None) => return Ok(None),
    };
    let (headers_var, headers) = signal_or_general(&get, "HEADERS");
    let headers = match headers {
        None => Vec::new(),
        Some(list) => headers_from(list).map_err(|message| ConfigError::Invalid {
            key: headers_var,
            message,
        })?,
    };
    let (timeout_var, timeout) = signal_or_general(&get, "TIMEOUT");
    let timeout = match timeout {
        None => Duration::from_secs(10),
        Some(millis) => millis
            .parse::<u64>()
            .ok()
            .filter(|millis| *millis > 0)
            .map(Duration::from_millis)
            .ok_or_else(|| ConfigError::Invalid {
                key: timeout_var,
                message: format!("expected milliseconds above 0, like 10000, got {millis:?}"),
            })?,
    };
    let (compression_var, compression) = signal_or_general(&get, "COMPRESSION");
    match compression {
        None => {}
        Some(none) if none.eq_ignore_ascii_case("none") => {}
        Some(other) => {
            return Err(ConfigError::Invalid {
                key: compression_var,
                message: format!(
                    "{other:?} is not supported: jetfn sends spans uncompressed; set `none` or \
                     unset it"
                ),
            })
        }
    }
    let (certificate_var, certificate) = signal_or_general(&get, "CERTIFICATE");
    let certificate = certificate.map(PathBuf::from);
    if let Some(path) = &certificate {
        if !path.is_file() {
            return Err(ConfigError::Invalid {
                key: certificate_var,
                message: format!(
                    "{} is not a file (expected PEM certificates)",
                    path.display()
                ),
            });
        }
    }
    Ok(Some(OtlpConfig {
        endpoint,
        protocol,
        headers,
        timeout,
        certificate,
    }))
}

/// `OTEL_EXPORTER_OTLP_TRACES_<SUFFIX>` when set, else `OTEL_EXPORTER_OTLP_<SUFFIX>`: the name
/// read and its value.
fn signal_or_general<'a>(
    get: &impl Fn(&str) -> Option<&'a str>,
    suffix: &str,
) -> (String, Option<&'a str>) {
    let traces = format!("OTEL_EXPORTER_OTLP_TRACES_{suffix}");
    match get(&traces) {
        Some(value) => (traces, Some(value)),
        None => {
            let general = format!("OTEL_EXPORTER_OTLP_{suffix}");
            let value = get(&general);
            (general, value)
        }
    }
}

/// `k=v,k2=v2` (as the OpenTelemetry specification has it): names trimmed, values trimmed and
/// percent-decoded.
fn headers_from(list: &str) -> Result<Vec<(String, String)>, String> {
    list.split(',')
        .filter(|item| !item.trim().is_empty())
        .map(|item| {
            let (name, value) = item.split_once('=').ok_or_else(|| {
                format!("expected NAME=VALUE pairs separated by commas, got {item:?}")
            })?;
            let name = name.trim();
            if name.is_empty() {
                return Err(format!("a header without a name in {item:?}"));
            }
            let value = percent_encoding::percent_decode_str(value.trim())
                .decode_utf8()
                .map_err(|_| format!("the value of {name} does not decode to UTF-8"))?;
            Ok((name.to_owned(), value.into_owned()))
        })
        .collect()
}
