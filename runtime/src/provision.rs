//! The `provision` command: create (or update) the streams and durable consumers of the selected
//! functions with the runtime's own binding code, and the pods' advisory consumer for them
//! (crashed dead letters), then exit. Run it before a Deployment that
//! KEDA keeps at zero replicas: KEDA reads the consumers' lag, so they must exist first.

use std::process::ExitCode;
use std::time::Duration;

use async_nats::jetstream;

use crate::config::{Config, FunctionConfig};
use crate::consumer::provision_function;
use crate::dlq::advisory::{self, advisory_consumer};
use crate::dlq::ADVISORY_STREAM;
use crate::manifests::stream_of;
use crate::registry::Registry;

/// Flags of `provision`.
#[derive(Debug, clap::Args)]
pub(crate) struct ProvisionArgs {
    /// Give up (exit 1) when no NATS server answers within this long.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    connect_timeout: Duration,
}

/// Provisions every selected function; exit 0 when all are in place, 1 on the first failure, 2
/// on bad configuration.
pub(crate) fn command(args: &ProvisionArgs, config: &Config, registry: &Registry) -> ExitCode {
    let functions = match config.functions(registry) {
        Ok(functions) => functions,
        Err(error) => return crate::command::config_error(error),
    };
    let provisioned = crate::command::block_on(async {
        let client =
            crate::nats::connect_once(&config.nats, "jetfn-provision", args.connect_timeout)
                .await
                .map_err(|e| e.to_string())?;
        let js = crate::nats::jetstream(&client, &config.nats);
        let result = provision_all(&js, &functions, config.auto_create_streams).await;
        let _ = client.flush().await;
        result
    });
    match provisioned {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("jetfn provision: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn provision_all(
    js: &jetstream::Context,
    functions: &[FunctionConfig],
    auto_create_streams: bool,
) -> Result<(), String> {
    // The bucket of once-only steps, so that pods without the right to create streams can use
    // `ctx.once`.
    crate::once::ensure_bucket(js)
        .await
        .map_err(|e| e.to_string())?;
    println!("once-only steps: KV bucket {}", crate::once::BUCKET);
    for function in functions {
        let bound = provision_function(js, function, auto_create_streams)
            .await
            .map_err(|e| format!("{}: {e}", function.name))?;
        let ordered = match &function.ordered_by {
            Some(by) => format!(", ordered by {by} (its lease in KV bucket JETFN_ORDERED)"),
            None => String::new(),
        };
        println!(
            "{}: stream {}, durable consumer {} on {}, dead letters to {}{ordered}",
            function.name, bound.stream, function.name, function.subject, function.dlq
        );
        if let Ok(expected) = stream_of(function) {
            if expected != bound.stream {
                eprintln!(
                    "jetfn provision: warning: {} is bound to stream {} but its manifests name \
                     stream {expected}; set the function's `stream` to {} so KEDA reads the right consumer",
                    function.name, bound.stream, bound.stream
                );
            }
        }
    }
    if !functions.is_empty() {
        let names: Vec<&str> = functions.iter().map(|f| f.name.as_str()).collect();
        advisory::bind(js, &names).await?;
        println!(
            "crashed dead letters: durable consumer {} on {ADVISORY_STREAM}",
            advisory_consumer(names.iter().copied())
        );
        for retired in advisory::retire_per_function(js, &names).await? {
            println!(
                "crashed dead letters: durable consumer {retired} on {ADVISORY_STREAM} (one per \
                 function, from an earlier jetfn) goes after 7 days without a pod pulling from it"
            );
        }
    }
    Ok(())
}
