//! The command line of every binary whose `main` is [`jetfn::main()`](crate::main).

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use jetfn_grammar::duration::format_duration;

use crate::app::App;
use crate::command::{block_on, config_error};
use crate::config::Config;
use crate::local_server::{answers, find_nats_server, INSTALL_HINT};
use crate::registry::Registry;
use crate::runtime::RuntimeError;
use crate::runtime::{Runtime, RuntimeHandle};
use crate::telemetry;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "A jetfn function runtime: runs the selected #[event_handler] functions on NATS JetStream and #[request_handler] functions on NATS request/reply"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the selected functions until SIGTERM/SIGINT (the default).
    Run,
    /// As `run`, but first start a local nats-server (JetStream, data under .jetfn/) when none
    /// answers at NATS_URL.
    Dev,
    /// The registered functions with subject, stream, consumer and policy.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Inspect or replay a function's dead letters.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Print the Kubernetes Deployment + KEDA ScaledObject YAML of the selected functions.
    Manifests(crate::deploy::ManifestsArgs),
    /// Create the streams and durable consumers of the selected functions, then exit
    /// (idempotent).
    Provision(crate::deploy::ProvisionArgs),
    /// Print an AsyncAPI 3.0 document (YAML) of the selected functions: a channel per subject,
    /// a receive operation and a message per function.
    Asyncapi,
    /// Exit 0 when this host's /health (JETFN_HTTP_ADDR) answers 200; for Docker HEALTHCHECK.
    Healthcheck,
}

#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// One line per dead letter: sequence, time, kind, deliveries, error.
    List {
        /// The function.
        function: String,
    },
    /// Republish dead letters to their original subject, then remove them from the DLQ.
    Replay {
        /// The function.
        function: String,
        /// Replay at most this many (oldest first).
        #[arg(long)]
        limit: Option<usize>,
    },
}

/// Parses the command line and runs it: `App::new().main()`. Bad configuration exits 2 with
/// one line on stderr.
pub fn main() -> ExitCode {
    App::new().main()
}

impl App {
    /// Parses the command line and runs it (`run` by default; the hooks run for `run` and
    /// `dev` only); see the crate docs.
    pub fn main(self) -> ExitCode {
        run(self)
    }
}

/// Parses the command line and runs it with `app`.
fn run(app: App) -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(error) => return config_error(error),
    };
    let registry = match Registry::collect() {
        Ok(registry) => registry,
        Err(error) => return config_error(error),
    };
    let runtime = |config: &Config| Runtime::new(config.clone(), &registry);
    match cli.command.unwrap_or(Command::Run) {
        Command::Dlq { command } => dlq(config, &registry, command),
        Command::Manifests(args) => crate::deploy::manifests(&args, &config, &registry),
        Command::Provision(args) => crate::deploy::provision(&args, &config, &registry),
        Command::Healthcheck => crate::probe::healthcheck(&config),
        Command::Asyncapi => crate::deploy::asyncapi(&config, &registry),
        Command::List { json } => match runtime(&config) {
            Ok(runtime) => list(&runtime, json),
            Err(error) => config_error(error),
        },
        command @ (Command::Run | Command::Dev) => match runtime(&config) {
            Ok(runtime) => serve(runtime.app(app), &config, matches!(command, Command::Dev)),
            Err(error) => config_error(error),
        },
    }
}

fn list(runtime: &Runtime, json: bool) -> ExitCode {
    if json {
        // One array: the event functions, then the request functions, each with its `kind`.
        let tagged = |value: serde_json::Result<serde_json::Value>, kind: &str| {
            value.map(|mut value| {
                if let Some(map) = value.as_object_mut() {
                    map.insert("kind".to_owned(), kind.into());
                }
                value
            })
        };
        let now = std::time::SystemTime::now();
        let entries: serde_json::Result<Vec<_>> = runtime
            .functions()
            .iter()
            .map(|f| {
                tagged(serde_json::to_value(f), "event").map(|mut value| {
                    if let (Some(next), Some(map)) = (f.next_firing(now), value.as_object_mut()) {
                        map.insert("next_firing".to_owned(), next.into());
                    }
                    value
                })
            })
            .chain(
                runtime
                    .requests()
                    .iter()
                    .map(|r| tagged(serde_json::to_value(r), "request")),
            )
            .collect();
        match entries.and_then(|entries| serde_json::to_string_pretty(&entries)) {
            Ok(text) => println!("{text}"),
            Err(error) => {
                eprintln!("jetfn: {error}");
                return ExitCode::FAILURE;
            }
        }
        return ExitCode::SUCCESS;
    }
    let rows: Vec<[String; 8]> = runtime
        .functions()
        .iter()
        .map(|f| {
            let stream = f
                .stream
                .clone()
                .or_else(|| crate::topology::derived_stream_name(&f.subject))
                .unwrap_or_else(|| "?".to_owned());
            [
                f.name.clone(),
                f.subject.clone(),
                stream,
                f.name.clone(),
                f.max_deliver.to_string(),
                f.backoff.to_string(),
                format_duration(f.ack_wait),
                format!("{}-{}", f.min_workers, f.max_workers),
            ]
        })
        .collect();
    let header = [
        "FUNCTION", "SUBJECT", "STREAM", "CONSUMER", "MAX", "BACKOFF", "ACK_WAIT", "WORKERS",
    ];
    print!("{}", table(&header, &rows, 4));
    let scheduled: Vec<_> = runtime
        .functions()
        .iter()
        .filter(|f| f.schedule.is_some())
        .collect();
    if !scheduled.is_empty() {
        let now = std::time::SystemTime::now();
        println!();
        println!(
            "{:<24} {:<24} {:>8} {:<24}",
            "SCHEDULED FUNCTION", "SCHEDULE (UTC)", "TICK_TTL", "NEXT FIRING"
        );
        for f in scheduled {
            println!(
                "{:<24} {:<24} {:>8} {:<24}",
                f.name,
                f.schedule.as_deref().unwrap_or_default(),
                f.schedule_ttl.map(format_duration).unwrap_or_default(),
                f.next_firing(now).unwrap_or_default(),
            );
        }
    }
    let ordered: Vec<_> = runtime
        .functions()
        .iter()
        .filter_map(|f| Some((f, f.ordered_by.as_ref()?)))
        .collect();
    if !ordered.is_empty() {
        println!();
        println!(
            "{:<24} {:<24} {:>10}  LEASE",
            "ORDERED FUNCTION", "ORDERED_BY", "PARTITIONS"
        );
        for (f, by) in ordered {
            println!(
                "{:<24} {:<24} {:>10}  JETFN_ORDERED[{}]",
                f.name,
                by.to_string(),
                1,
                f.name
            );
        }
    }
    if !runtime.requests().is_empty() {
        println!();
        println!(
            "{:<24} {:<32} {:<10} {:>8} {:>7}",
            "REQUEST FUNCTION", "SUBJECT", "QUEUE", "TIMEOUT", "WORKERS"
        );
        for r in runtime.requests() {
            println!(
                "{:<24} {:<32} {:<10} {:>8} {:>7}",
                r.name,
                r.subject,
                "jetfn",
                format_duration(r.timeout),
                r.max_workers,
            );
        }
    }
    ExitCode::SUCCESS
}

/// A table: each column as wide as its widest cell, the first `left` columns left-aligned and
/// the rest right-aligned, one space apart.
fn table<const N: usize>(header: &[&str; N], rows: &[[String; N]], left: usize) -> String {
    let mut widths = header.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; N]| {
        let cells = cells
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (cell, width))| {
                if i < left {
                    format!("{cell:<width$}")
                } else {
                    format!("{cell:>width$}")
                }
            });
        format!("{}\n", cells.collect::<Vec<_>>().join(" "))
    };
    let mut text = line(*header);
    for row in rows {
        text.push_str(&line(row.each_ref().map(String::as_str)));
    }
    text
}

/// `dlq list` and `dlq replay`: the function may be any registered one, selected or not.
fn dlq(mut config: Config, registry: &Registry, command: DlqCommand) -> ExitCode {
    let (DlqCommand::List { function } | DlqCommand::Replay { function, .. }) = &command;
    if let Err(message) = crate::dlq::check_function(registry, function) {
        eprintln!("jetfn dlq: {message}");
        return ExitCode::from(crate::command::EXIT_CONFIG);
    }
    config.select = Some(vec![function.clone()]);
    let dlq_subject = match config.functions(registry) {
        Ok(functions) => match functions.into_iter().next() {
            Some(function) => function.dlq,
            None => return config_error(format!("no event function `{function}`")),
        },
        Err(error) => return config_error(error),
    };
    let result = block_on(async {
        // With the configured credentials and TLS, like every other connection.
        let client = crate::nats::connect_once(&config.nats, "jetfn-dlq", Duration::from_secs(10))
            .await
            .map_err(|e| e.to_string())?;
        let js = crate::nats::jetstream(&client, &config.nats);
        let outcome = match command {
            DlqCommand::List { .. } => crate::dlq::list(&js, &dlq_subject, None)
                .await
                .map(|letters| print_dead_letters(&letters)),
            DlqCommand::Replay { limit, .. } => crate::dlq::replay(&js, &dlq_subject, limit)
                .await
                .map(|n| println!("replayed {n} dead letter(s) from {dlq_subject}")),
        };
        let _ = client.flush().await;
        outcome.map_err(|e| e.to_string())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("jetfn dlq: {message}");
            ExitCode::FAILURE
        }
    }
}

fn print_dead_letters(letters: &[crate::dlq::DeadLetter]) {
    use crate::dlq::headers as h;
    println!(
        "{:>8}  {:<30}  {:<9}  {:>10}  ERROR",
        "SEQ", "FAILED_AT", "KIND", "DELIVERIES"
    );
    for letter in letters {
        println!(
            "{:>8}  {:<30}  {:<9}  {:>10}  {}",
            letter.sequence,
            letter.header(h::FAILED_AT),
            letter.header(h::ERROR_KIND),
            letter.header(h::DELIVERIES),
            letter.header(h::ERROR),
        );
    }
}

fn serve(runtime: Runtime, config: &Config, dev: bool) -> ExitCode {
    let tokio = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(tokio) => tokio,
        Err(error) => {
            eprintln!("jetfn: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    // The OTLP exporters need the runtime entered when they are built.
    let telemetry = tokio.block_on(async { telemetry::init(config) });
    let code = tokio.block_on(async {
        let _server = if dev {
            match dev_server(config).await {
                Ok(server) => server,
                Err(message) => {
                    eprintln!("jetfn dev: {message}");
                    return ExitCode::FAILURE;
                }
            }
        } else {
            None
        };
        let handle = match runtime.start().await {
            Ok(handle) => handle,
            Err(error) => {
                eprintln!("jetfn: {error}");
                return ExitCode::FAILURE;
            }
        };
        run_until_signal(handle).await
    });
    telemetry.shutdown();
    code
}

/// Runs until SIGTERM or SIGINT, then drains; a second signal exits at once. A runtime that
/// cannot start (a startup hook failed: exit 1; a state type missing: exit 2) ends at once.
async fn run_until_signal(handle: RuntimeHandle) -> ExitCode {
    let mut signals = match Signals::new() {
        Ok(signals) => signals,
        Err(error) => {
            eprintln!("jetfn: cannot listen for signals: {error}");
            handle.stop().await;
            return ExitCode::FAILURE;
        }
    };
    let shutdown = handle.shutdown_switch();
    let finished = handle.finished();
    tokio::pin!(finished);
    tokio::select! {
        result = &mut finished => return exit_code(result),
        () = signals.next() => {}
    }
    tracing::info!("signal received: draining (a second signal exits at once)");
    shutdown();
    tokio::select! {
        result = &mut finished => exit_code(result),
        () = signals.next() => {
            tracing::warn!("second signal: exiting without draining");
            ExitCode::from(130)
        }
    }
}

/// 0 after a drain; 2 and one line per mistake for a configuration error (missing state);
/// 1 and the error for a failure to start (a startup hook).
fn exit_code(result: Result<(), RuntimeError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(RuntimeError::State(lines)) => {
            for line in lines {
                eprintln!("jetfn: {line}");
            }
            ExitCode::from(crate::command::EXIT_CONFIG)
        }
        Err(error) if error.is_config() => {
            eprintln!("jetfn: {error}");
            ExitCode::from(crate::command::EXIT_CONFIG)
        }
        Err(error) => {
            eprintln!("jetfn: {error}");
            ExitCode::FAILURE
        }
    }
}

struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        Ok(Self {
            #[cfg(unix)]
            term: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?,
        })
    }

    async fn next(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Starts nats-server with JetStream (data under `.jetfn/`) unless one answers at the first
/// NATS URL; the child is killed when the returned value is dropped.
async fn dev_server(config: &Config) -> Result<Option<tokio::process::Child>, String> {
    let url = config.nats.urls.first().ok_or("no NATS URL")?;
    let (host, port) = (url.host().to_owned(), url.port());
    if answers(&host, port, Duration::from_millis(500)).await {
        tracing::info!(%host, port, "a NATS server answers; using it");
        return Ok(None);
    }
    let binary = find_nats_server(None).ok_or(INSTALL_HINT)?;
    let store = std::path::Path::new(".jetfn");
    std::fs::create_dir_all(store).map_err(|e| format!("cannot create .jetfn/: {e}"))?;
    tracing::info!(binary = %binary.display(), %host, port, "starting a local nats-server (data under .jetfn/)");
    let child = tokio::process::Command::new(&binary)
        .args(["-js", "-sd"])
        .arg(store)
        .args(["-a", &host, "-p", &port.to_string(), "-m", "8222"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !answers(&host, port, Duration::from_millis(200)).await {
        if tokio::time::Instant::now() > deadline {
            return Err(format!(
                "nats-server did not answer on {host}:{port} within 10s"
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(Some(child))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_table_fits_its_widest_cells() {
        let rows = [
            [
                "reserve_inventory".to_owned(),
                "SHOP_EVENTS_LONG_NAME".to_owned(),
                "1s..60s".to_owned(),
            ],
            ["a".to_owned(), "S".to_owned(), "200ms..5s".to_owned()],
        ];
        let text = super::table(&["FUNCTION", "STREAM", "BACKOFF"], &rows, 2);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "FUNCTION          STREAM                  BACKOFF"
        );
        assert_eq!(
            lines[1],
            "reserve_inventory SHOP_EVENTS_LONG_NAME   1s..60s"
        );
        assert_eq!(
            lines[2],
            "a                 S                     200ms..5s"
        );
    }
}
