//! A request subject that a stream would capture: callers would get the stream's publish ack
//! (`{"stream":..,"seq":..}`) instead of the function's reply, silently.
//!
//! With `auto_create_streams` on, jetfn may create, for any event function whose stream is
//! missing, a stream capturing `<first token>.>` of its subject. When that pattern covers a
//! request function's subject, the runtime refuses to start (exit 2, naming the stream and the
//! subject) rather than risk it. The check is made at start, without a server: an event function
//! and a request function conflict when either is selected (another pod of the same binary may
//! run the other one).

use super::{ConfigError, FunctionConfig, RequestConfig};
use crate::topology::derived_stream_name;

/// Fails on the first request function whose subject the auto-created stream of an event
/// function would capture; only pairs with at least one `selected` function count.
pub(super) fn check(
    events: &[FunctionConfig],
    requests: &[RequestConfig],
    selected: &dyn Fn(&str) -> bool,
) -> Result<(), ConfigError> {
    for event in events {
        let Some(stream) = derived_stream_name(&event.subject) else {
            continue;
        };
        let first = event.subject.split('.').next().unwrap_or_default();
        let pattern = format!("{first}.>");
        for request in requests {
            if !(selected(&event.name) || selected(&request.name)) {
                continue;
            }
            if captures(first, &request.subject) {
                let stream = event.stream.clone().unwrap_or(stream);
                return Err(ConfigError::invalid(
                    "auto_create_streams",
                    format!(
                        "stream `{stream}` ({pattern}), which jetfn creates for event function \
                         `{}` when it is missing, would capture subject `{}` of request function \
                         `{}` (callers would get publish acks instead of replies); give the \
                         request function a subject outside {pattern}, or create the stream \
                         yourself with subjects that leave it out and set \
                         JETFN_AUTO_CREATE_STREAMS=false",
                        event.name, request.subject, request.name
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Whether `<first>.>` matches some subject that `subject` (maybe with wildcards) matches.
fn captures(first: &str, subject: &str) -> bool {
    let mut tokens = subject.split('.');
    let head = tokens.next().unwrap_or_default();
    let has_more = tokens.next().is_some();
    match head {
        ">" => true,
        "*" => has_more,
        _ => head == first && has_more,
    }
}

#[cfg(test)]
mod tests {
    use super::captures;

    #[test]
    fn a_tail_wildcard_stream_captures_longer_subjects_of_its_token() {
        assert!(captures("myshop", "myshop.stock.check"));
        assert!(captures("myshop", "myshop.*"));
        assert!(captures("myshop", "*.check"));
        assert!(captures("myshop", ">"));
        assert!(!captures("myshop", "myshop"));
        assert!(!captures("myshop", "inventory.check"));
        assert!(!captures("myshop", "myshopx.check"));
        assert!(!captures("myshop", "*"));
    }
}
